"""Per-layer diagnosis of int8 artifacts: for every quantized activation tensor, how far its dequantized int8
value is from the float model's value of the same tensor, on held-out inputs (issue 6).

Columns (one :class:`LayerError` per quantized tensor):

* ``sqnr_db`` / ``rel_rmse``: end to end, the int8 model vs the float model up to this tensor (errors of all
  earlier layers included): ``rel_rmse = rmse / rms(float) = 10 ** (-sqnr_db / 20)``;
* ``error_to_scale``: the *layer-local* error (this op's float result on the int8 model's own inputs vs its
  quantized output) in units of the tensor's quantization step. Pure rounding gives 1/sqrt(12) ~ 0.29;
  TensorFlow's QuantizationDebugger flags layers above :data:`FLAG_ERROR_TO_SCALE` (0.7), where clipping by a too
  narrow range or a poor weight quantization adds to rounding.
* ``fallback``: the name the backend's float fallback takes to keep that op float: an ONNX node name
  (``QuantOptions.float_fallback`` / quantize_static's ``nodes_to_exclude``) or a TFLite op-output tensor name
  (``tflite_ptq.quantize(denylisted_nodes=...)``). Accuracy control ranks layers by this diagnosis.

The backends live in :mod:`edgeport.diagnose.onnx_layers`, :mod:`edgeport.diagnose.tflite_layers` and
:mod:`edgeport.diagnose.pte_layers`;
:func:`diagnose_run` diagnoses every int8 artifact of an export run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.diagnose.metrics import FLAG_ERROR_TO_SCALE, ErrorSums, LayerError, short_name, worst_first  # noqa: F401
from edgeport.errors import UsageError

PER_LAYER_FILE = "per_layer.json"


@dataclass
class Diagnosis:
    """Rows per int8 target of one run, the inputs they were measured on and the time it took."""

    per_target: dict[str, list[LayerError]]
    samples: int
    source: str
    seconds: dict[str, float]
    # target -> largest |difference| between the diagnosed program's outputs and the artifact's (executorch: the
    # diagnostic twin, edgeport.diagnose.pte_layers); 0.0 means the rows describe the file written
    twin_max_abs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {
            "flag_error_to_scale": FLAG_ERROR_TO_SCALE,
            "samples": self.samples,
            "source": self.source,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "targets": {t: [r.to_dict() for r in worst_first(rows)] for t, rows in self.per_target.items()},
        }
        if self.twin_max_abs:
            d["twin_max_abs"] = dict(self.twin_max_abs)
        return d

    def series(self) -> dict[str, list[dict]]:
        """target -> rows in graph order as plain dicts (RecipeResult.per_layer / manifest ``per_layer_int8``)."""
        return {t: [r.to_dict() for r in sorted(rows, key=lambda r: r.position)] for t, rows in self.per_target.items()}


# formats edgeport cannot diagnose layer by layer: format name -> (message, hint); every built-in format can
NOT_DIAGNOSED: dict[str, tuple[str, str]] = {}


def diagnose_run(run, inputs_nchw: np.ndarray, source: str = "") -> Diagnosis:
    """Diagnose every int8 artifact of an export run (:class:`edgeport.pipeline.export_flow.ExportRun`) on ``inputs_nchw``.

    Reads the run's request (``run.request``): pass ``run_export`` a ``cache`` dict of your own so the request's fp32
    ONNX model and onnx2tf output outlive the export (else they are made again), and clear it afterwards."""
    import onnx

    from edgeport.exporters import onnx_fp32
    from edgeport.exporters import tflite as tflite_exporter

    req = run.request
    inputs = np.ascontiguousarray(inputs_nchw, dtype=np.float32)
    out: dict[str, list[LayerError]] = {}
    seconds: dict[str, float] = {}
    twins: dict[str, float] = {}
    for art in run.artifacts:
        if not art.target.endswith("-int8"):
            continue
        start = time.perf_counter()
        if art.format == "onnx":
            from edgeport.diagnose.onnx_layers import diagnose_onnx
            from edgeport.exporters.onnx_int8 import fp32_graph

            out[art.target] = diagnose_onnx(fp32_graph(req), onnx.load(str(art.path)), inputs)
        elif art.format == "tflite":
            from edgeport.diagnose.tflite_layers import diagnose_tflite
            from edgeport.formats.layer_names import onnx_weight_norms

            out[art.target] = diagnose_tflite(Path(art.path).read_bytes(), tflite_exporter.calibrated_model(req), inputs,
                                              onnx_weight_norms(onnx_fp32.to_onnx(req)))
        elif art.format == "executorch":
            from edgeport.diagnose.pte_layers import diagnose_pte

            out[art.target], twins[art.target] = diagnose_pte(req, Path(art.path), inputs)
        else:
            why = NOT_DIAGNOSED.get(art.format, (f"no per-layer diagnosis for {art.format} files", "diagnose onnx-int8 or tflite-int8"))
            raise UsageError(*why)
        seconds[art.target] = time.perf_counter() - start
    return Diagnosis(out, len(inputs), source, seconds, twins)


def write(folder: Path, diagnosis: Diagnosis) -> Path:
    """``per_layer.json`` (worst first per target) beside the artifacts, written atomically."""
    from edgeport.util.atomic_file import write_text

    path = Path(folder) / PER_LAYER_FILE
    write_text(path, json.dumps(diagnosis.to_dict(), indent=2) + "\n")
    return path
