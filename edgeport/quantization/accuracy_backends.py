"""The int8 targets as accuracy-control backends: list the quantized layers, re-quantize with some kept float.

* tflite-int8: candidates are the compute ops of the default int8 file (their output tensor names are what
  TFLite's ``denylisted_nodes`` takes); builds re-quantize the run's calibrated model
  (:mod:`edgeport.exporters.tflite_ptq`), so no step calibrates again.
* onnx-int8: candidates are the fp32 graph's quantizable compute nodes (``nodes_to_exclude`` takes node names);
  builds call ``onnx_int8.quantize`` with the excluded nodes as ``float_fallback`` and the activation ranges
  computed once (MobileNetV3-Small: 3.7 s per build with calibration, ~1 s without).
* executorch-int8: candidates are the quantized compute ops of the program (graph node names), ranked by one
  per-layer diagnosis instead of one build each (:class:`ExecutorchBackend`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from edgeport.exporters import ExportRequest
from edgeport.quantization.accuracy_control import Backend, Candidate
from edgeport.util.atomic_file import write_bytes

ONNX_CANDIDATE_OPS = ("Conv", "Gemm", "MatMul", "Add", "Mul", "GlobalAveragePool", "AveragePool", "Concat")
TFLITE_CANDIDATE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MUL", "MEAN", "AVERAGE_POOL_2D",
                        "CONCATENATION", "HARD_SWISH", "LOGISTIC")


class TfliteBackend(Backend):
    target = "tflite-int8"

    def __init__(self, req: ExportRequest):
        self.req = req

    def build(self, fallbacks: Sequence[str], dest: Path) -> Path:
        from edgeport.exporters.tflite import export_int8

        made = export_int8(dataclasses.replace(self.req, out_dir=dest.parent), denylisted_nodes=tuple(fallbacks))
        made.replace(dest)
        return dest

    def candidates(self) -> list[Candidate]:
        from edgeport.exporters import onnx_fp32
        from edgeport.formats.graph_summary import tflite_ops
        from edgeport.formats.layer_names import onnx_weight_norms, tflite_names

        probe = Path(self.req.cache.setdefault("accuracy-probe", _tempdir()).name) / "probe.tflite"
        self.build((), probe)
        names = tflite_names(probe.read_bytes(), onnx_weight_norms(onnx_fp32.to_onnx(self.req)))
        return [Candidate(op.output_name, names.get(op.output_name, op.output_name), op.name)
                for op in tflite_ops(probe) if op.name in TFLITE_CANDIDATE_OPS and op.output_name]


class OnnxBackend(Backend):
    target = "onnx-int8"

    def __init__(self, req: ExportRequest):
        from edgeport.exporters.onnx_int8 import check_calibration, fp32_graph

        self.req = req
        self.fp32 = fp32_graph(req)
        self.calibration = check_calibration(req.calibration, tuple(req.example.shape))
        self.batch = 1 if req.dynamic_batch else int(req.example.shape[0])

    def build(self, fallbacks: Sequence[str], dest: Path) -> Path:
        from edgeport.exporters.onnx_int8 import quantize

        quant = dataclasses.replace(self.req.quant, float_fallback=tuple(self.req.quant.float_fallback) + tuple(fallbacks))
        model, _ = quantize(self.fp32, self.calibration, quant, batch=self.batch, ranges_cache=self.req.cache)
        write_bytes(dest, model.SerializeToString())
        return dest

    def candidates(self) -> list[Candidate]:
        from edgeport.formats.layer_names import onnx_names

        names = onnx_names(self.fp32)
        return [Candidate(node.name, names.get(node.name, node.name), node.op_type)
                for node in self.fp32.graph.node if node.op_type in ONNX_CANDIDATE_OPS and node.name]


class ExecutorchBackend(Backend):
    """executorch-int8: candidates are the program's quantized compute ops (graph node names, which
    ``QuantOptions.float_fallback`` takes); a build is a whole PT2E quantization and lowering (tens of seconds on a
    224x224 model), so candidates are ranked by one per-layer diagnosis in ExecuTorch's runtime
    (:mod:`edgeport.diagnose.pte_layers`: largest layer-local error first) instead of one build per candidate, and
    only the search's few trials are built."""

    target = "executorch-int8"
    rank_metric = "error_to_scale"
    OPS = ("conv2d", "linear", "add", "mul", "hardswish", "mean", "adaptive_avg_pool2d", "cat", "avg_pool2d")

    def __init__(self, req: ExportRequest):
        self.req = req

    def build(self, fallbacks: Sequence[str], dest: Path) -> Path:
        from edgeport.exporters.executorch import export_int8

        quant = dataclasses.replace(self.req.quant, float_fallback=tuple(self.req.quant.float_fallback) + tuple(fallbacks))
        made = export_int8(dataclasses.replace(self.req, out_dir=dest.parent, quant=quant))
        made.replace(dest)
        return dest

    def _rows(self, inputs, work: Path):
        """The diagnosis rows of the candidate ops (:mod:`edgeport.diagnose.pte_layers`) on ``inputs``."""
        from edgeport.diagnose.pte_layers import diagnose_pte

        rows, _ = diagnose_pte(self.req, self.build((), work / "rank_base.pte"), inputs)
        return [r for r in rows if r.op in self.OPS]

    def candidates(self) -> list[Candidate]:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="edgeport-accuracy-probe-") as tmp:
            return [Candidate(r.fallback, r.layer, r.op) for r in self._rows(self.req.calibration[:8], Path(tmp))]

    def rank(self, data, run, work: Path, on_step) -> tuple[list[Candidate], list[float]]:
        from edgeport.diagnose.metrics import worst_first
        from edgeport.quantization.accuracy_control import RANK_SAMPLES

        on_step(f"{self.target}: per-layer diagnosis")
        rows = worst_first(self._rows(data.inputs[:RANK_SAMPLES], work))
        return [Candidate(r.fallback, r.layer, r.op) for r in rows], [r.error_to_scale for r in rows]


BACKENDS: dict[str, type[Backend]] = {b.target: b for b in (TfliteBackend, OnnxBackend, ExecutorchBackend)}


def backend_for(target: str, req: ExportRequest) -> Backend:
    from edgeport.errors import UsageError

    if target not in BACKENDS:
        raise UsageError(f"accuracy control has no backend for {target}", f"it controls {', '.join(BACKENDS)}")
    return BACKENDS[target](req)


def _tempdir():
    import tempfile

    return tempfile.TemporaryDirectory(prefix="edgeport-accuracy-probe-")  # removed with the run's cache


def control_set(prep, labelled=None, samples: int = 2000, validation=None, preprocess=None):
    """The data accuracy control scores on: the first ``samples`` of ``labelled`` (preprocessed like the model),
    else the held-out ``validation`` inputs scored by top-1 agreement with the float model."""
    import numpy as np

    from edgeport.errors import UserError
    from edgeport.quantization.accuracy_control import ControlSet

    if labelled is not None:
        pre = preprocess or prep.loaded.data_preprocess()
        xs, ys, have = [], [], 0
        for x, y in labelled.batches(pre, tuple(prep.loaded.input_shape), 500):
            xs.append(x)
            ys.append(y)
            have += len(y)
            if have >= samples:
                break
        inputs, labels, source = np.concatenate(xs)[:samples], np.concatenate(ys)[:samples], labelled.source
    elif validation is not None and len(validation):
        inputs, labels, source = validation.inputs, None, f"{validation.source} (agreement with float)"
    else:
        raise UserError("accuracy control needs data to score on", "pass --data (labelled) or --calib (real images)")
    reference, _ = prep.outputs(inputs)
    return ControlSet(np.ascontiguousarray(inputs, dtype=np.float32), labels, reference, f"{source}, {len(inputs)} samples")


def control_targets(prep, target_names, calibration, quant, cset, budget: float, out_dir: Path, cache: dict,
                    on_step=lambda s: None, bench: bool = True):
    """Accuracy control for each int8 target of ``prep``; each final artifact replaces ``out_dir``'s file of
    that target. ``cache``: the run's ExportRequest cache (fp32 ONNX, SavedModel, TFLite calibration)."""
    from edgeport.exporters import TARGETS
    from edgeport.pipeline.export_flow import grid_program
    from edgeport.quantization.accuracy_control import control

    req = ExportRequest(prep.loaded.name, prep.int8_program, prep.example, Path(out_dir), prep.dynamic_batch, calibration,
                        quant, cache)
    own = grid_program(cache, quant)  # onnx-int8's weight grid got a bias correction of its own: rebuild from it
    results = []
    for name in target_names:
        dest = Path(out_dir) / TARGETS.get(name).filename(prep.loaded.name)
        target_req = dataclasses.replace(req, program=own[0], cache=own[1]) if own and name == "onnx-int8" else req
        results.append(control(backend_for(name, target_req), cset, budget, dest, on_step=on_step, bench=bench))
    return results
