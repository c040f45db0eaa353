"""tflite-fp32, tflite-fp16, tflite-int8: fused ONNX -> onnx2tf (SavedModel, NHWC) -> TFLiteConverter.

Why this path (measured on MobileNetV2, see README): onnx2tf rewrites the NCHW graph in NHWC, so the int8
file has no layout TRANSPOSE, and TFLiteConverter's full-integer PTQ quantizes every CONV_2D,
DEPTHWISE_CONV_2D, ADD, MEAN and FULLY_CONNECTED. litert-torch's PT2E path left 9 of 10 residual ADDs float.

One onnx2tf conversion serves all three targets of an export run (it is the slow step): it is kept in
the request's per-run cache and deleted with it. onnx2tf fetches a sample-image file from the internet for any 3-channel image
input, even when no quantization is asked for; we hand it our own calibration data instead, so nothing is
ever downloaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from edgeport.errors import UnsupportedOp, UserError
from edgeport.exporters import (
    AUTO_FLOAT,
    FP16,
    FP32,
    INT8,
    RANGE_SEARCH,
    RANGE_SEARCH_APPLIED,
    ROUNDED,
    ROUNDED_CHECK,
    TARGETS,
    WIDENED_RANGES,
    ExportRequest,
    Target,
    metadata,
    register_target,
)
from edgeport.exporters.onnx_fp32 import to_onnx
from edgeport.exporters.tf_env import TF_HINT, converter_failure, import_tf, to_nhwc
from edgeport.exporters.tflite_compact import io_renames, share_quantization_vectors, with_metadata
from edgeport.quantization import options
from edgeport.util import native_logs
from edgeport.util.atomic_file import write_bytes


def _sample_images_nhwc(req: ExportRequest) -> np.ndarray:
    """What onnx2tf would download: up to 20 NHWC images. Ours come from the calibration data."""
    data = req.calibration if req.calibration is not None and len(req.calibration) else req.example.numpy()
    return to_nhwc(data[:20])


def saved_model(req: ExportRequest) -> Path:
    """onnx2tf's output folder (SavedModel + model_float32/float16.tflite) for the request's fused graph."""
    if req.dynamic_batch:
        raise UserError("TFLite targets need a fixed batch size", "drop --dynamic-batch for tflite-* targets")
    if "onnx2tf" in req.cache:
        return Path(req.cache["onnx2tf"].name) / "saved_model"
    from edgeport.graph.rewrites import for_xnnpack_int8

    program = for_xnnpack_int8(req.program, req.example)
    model = to_onnx(req if program is req.program else dataclasses.replace(req, program=program, cache={}))
    import_tf()
    import onnx2tf
    import onnx2tf.onnx2tf as o2t_module

    images = _sample_images_nhwc(req)
    tmp = tempfile.TemporaryDirectory(prefix="edgeport-onnx2tf-")
    out = Path(tmp.name) / "saved_model"
    original = o2t_module.download_test_image_data
    o2t_module.download_test_image_data = lambda: images  # never fetch: use our data
    try:
        with native_logs.captured() as log, contextlib.chdir(tmp.name):
            try:
                onnx2tf.convert(
                    onnx_graph=model,
                    output_folder_path=str(out),
                    output_signaturedefs=True,
                    copy_onnx_input_output_names_to_tflite=True,
                    not_use_onnxsim=True,  # already simplified by the onnx-fp32 step
                    non_verbose=True,
                )
                ok = (out / "model_float32.tflite").is_file()
            except Exception as exc:  # onnx2tf raises bare Exceptions and SystemExit on failure
                ok, why = False, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
            except SystemExit:
                ok, why = False, "onnx2tf exited"
        if not ok:
            detail = locals().get("why") or native_logs.tail(log)
            tmp.cleanup()
            raise UnsupportedOp(f"onnx2tf could not convert the model{_failed_onnx_node(log, model)}: {detail}",
                                f"export the ONNX targets, or replace that op in the model; full log: {log}")
        log.unlink(missing_ok=True)
    finally:
        o2t_module.download_test_image_data = original
    req.cache["onnx2tf"] = tmp  # removed when the run's cache is dropped
    return out


def _failed_onnx_node(log: Path, model) -> str:
    """ " at node N (OpType, layer)" from onnx2tf's log ("onnx_op_name: ..." after its trace), or ""."""
    import re

    from edgeport.formats.layer_names import onnx_names

    text = log.read_text(errors="replace") if log.exists() else ""
    found = re.findall(r"onnx_op_name: (\S+)", re.sub(r"\x1b\[[0-9;]*m", "", text))
    if not found:
        return ""
    node = found[-1]
    ops = {n.name: n.op_type for n in model.graph.node}
    return f" at node {node} ({ops.get(node, '?')}, {onnx_names(model).get(node, node)})"


def _copy_onnx2tf_file(req: ExportRequest, target: str, produced: str) -> Path:
    src = saved_model(req) / produced
    dest = req.out_dir / TARGETS.get(target).filename(req.name)
    write_bytes(dest, _described(req, target, src.read_bytes()))
    return dest


def _described(req: ExportRequest, target: str, data: bytes, **extra) -> bytes:
    """The file with its edgeport metadata entry (inputs are NHWC: onnx2tf's layout; a dense output's layout
    mapping when onnx2tf changed it, see output_permutation)."""
    if not req.metadata:
        return data
    perm = output_permutation(req)
    if perm is not None:
        extra["output_permutation"] = perm
    return with_metadata(data, metadata.for_target(req.metadata, target, "NHWC", **extra))


def output_permutation(req: ExportRequest) -> list[int] | None:
    """The axes that bring the .tflite output back to the PyTorch model's layout, or None when it is unchanged.

    onnx2tf rewrites the graph in NHWC and leaves a dense (N, C, H, W) output as (N, H, W, C); nothing in the
    file says so. Measured, not guessed from shapes (an N, C, H, W output with C == H == W would be ambiguous):
    onnx2tf's fp32 file and the fp32 ONNX model run on the same input, and the permutation whose result matches
    is recorded. Made once per run; every tflite target of the run shares onnx2tf's layout."""
    if "tflite-output-permutation" not in req.cache:
        req.cache["tflite-output-permutation"] = _measure_permutation(req)
    return req.cache["tflite-output-permutation"]


def _measure_permutation(req: ExportRequest) -> list[int] | None:
    import itertools

    import onnxruntime as ort

    from edgeport.runtimes.litert_runner import LiteRtRunner

    model = to_onnx(req)
    probe = np.random.default_rng(0).standard_normal(tuple(req.example.shape)).astype(np.float32)
    with native_logs.silenced():
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    want = session.run(None, {session.get_inputs()[0].name: probe})[0]
    got = LiteRtRunner(saved_model(req) / "model_float32.tflite").run(probe)
    if got.shape == want.shape and np.allclose(got, want, rtol=1e-3, atol=1e-4 * (np.abs(want).max() + 1e-12)):
        return None
    for perm in itertools.permutations(range(got.ndim)):
        moved = got.transpose(perm)
        if moved.shape == want.shape and np.allclose(moved, want, rtol=1e-3, atol=1e-3 * (np.abs(want).max() + 1e-12)):
            return list(perm)
    return None  # no layout explains the difference: validation reports the mismatch


def export_fp32(req: ExportRequest) -> Path:
    return _copy_onnx2tf_file(req, "tflite-fp32", "model_float32.tflite")


def export_fp16(req: ExportRequest) -> Path:
    """fp16 weights (dequantized to fp32 at load time by LiteRT/XNNPACK), fp32 compute and I/O."""
    return _copy_onnx2tf_file(req, "tflite-fp16", "model_float16.tflite")


IO_DTYPES = options.IO_DTYPES


def _check_int8_request(req: ExportRequest) -> None:
    if req.calibration is None or not len(req.calibration):
        raise UserError("int8 needs calibration data", "pass --calib (an image folder, .npy/.npz, fashion-mnist)")
    if req.quant.io_dtype not in IO_DTYPES:
        raise UserError(f"unknown --io-dtype {req.quant.io_dtype!r}", f"choose from {', '.join(IO_DTYPES)}")


def calibrated_model(req: ExportRequest) -> bytes:
    """The request's float TFLite model with TFLite's calibrated ranges (see tflite_ptq), made once per run."""
    from edgeport.exporters import tflite_ptq

    _check_int8_request(req)
    if "tflite-calibrated" not in req.cache:
        req.cache["tflite-calibrated"] = tflite_ptq.calibrate(saved_model(req), to_nhwc(req.calibration), req.example.shape[0])
    return req.cache["tflite-calibrated"]


def method_ranges(req: ExportRequest) -> dict[str, tuple[float, float]] | None:
    """Activation ranges of ``req.quant.method`` for the calibrated model's tensors (None for minmax: TFLite's own
    calibration), from :func:`edgeport.quantization.ranges.tflite_collector`, with the output-aware range search's
    shrinks applied (``req.cache[RANGE_SEARCH]``, found among the tensors by their values); made once per run and
    method."""
    from edgeport.quantization import range_search
    from edgeport.quantization import ranges as calibration_ranges

    calibration_ranges.check_method(req.quant.method, req.quant.percentile)
    search = req.cache.get(RANGE_SEARCH)
    if req.quant.method == "minmax" and not (search and search.chosen):
        return None
    key = f"tflite-ranges:{req.quant.method}:{req.quant.percentile}:{id(search) if search else None}"
    if key not in req.cache:
        collector = calibration_ranges.tflite_collector(calibrated_model(req), to_nhwc(req.calibration),
                                                        int(req.example.shape[0]), req.quant.method, req.quant.percentile)
        ranges = collector.ranges()
        if search and search.chosen:
            ranges, unmatched = range_search.apply(ranges, collector.signatures(), search.chosen)
            req.cache.setdefault(RANGE_SEARCH_APPLIED, {})["tflite-int8"] = range_search.applied(search.chosen, unmatched)
        req.cache[key] = ranges
    return req.cache[key]


def export_int8(req: ExportRequest, denylisted_nodes: tuple[str, ...] = (),
                ranges: dict[str, tuple[float, float]] | None = None) -> Path:
    """Full-integer PTQ: per-channel int8 weights, int8 activations, I/O dtype from ``req.quant.io_dtype``.

    Default: one ``TFLiteConverter.convert()`` (TFLite's min/max calibration). With ``ranges`` (another calibration
    method's activation ranges) or ``denylisted_nodes`` (layers kept float by accuracy control), the two-step path
    of :mod:`edgeport.exporters.tflite_ptq` on the run's calibrated model. A ``req.quant.method`` other than
    minmax supplies ``ranges`` when none are given (:func:`method_ranges`)."""
    from edgeport.exporters import tflite_ptq

    _check_int8_request(req)
    for found in (AUTO_FLOAT, WIDENED_RANGES):  # this build finds its own (accuracy control rebuilds)
        req.cache.get(found, {}).pop("tflite-int8", None)
    if ranges is None:
        ranges = method_ranges(req)
    if req.quant.float_fallback:  # the user's layers, and accuracy control's on top
        denylisted_nodes = tuple(dict.fromkeys(float_fallback_nodes(req) + tuple(denylisted_nodes)))
    if ranges or denylisted_nodes:
        calibrated = calibrated_model(req)
        if ranges:
            calibrated = tflite_ptq.with_ranges(calibrated, ranges)
        data = tflite_ptq.quantize(calibrated, req.quant.io_dtype, denylisted_nodes)
    else:
        conv = tflite_ptq.converter(saved_model(req), to_nhwc(req.calibration), req.example.shape[0],
                                    allow_float=bool(req.quant.float_fallback))
        if req.quant.io_dtype != "float32":
            tf = import_tf()
            conv.inference_input_type = getattr(tf, req.quant.io_dtype)
            conv.inference_output_type = getattr(tf, req.quant.io_dtype)
        with native_logs.captured() as log:
            try:
                data = conv.convert()
            except Exception as exc:
                (log.parent / f"{log.stem}-converter.txt").write_text(str(exc))
                raise UnsupportedOp(
                    f"TFLiteConverter could not quantize the model: {converter_failure(exc)}",
                    f"replace that op in the model or export the float targets; full message: {log.parent / log.stem}-converter.txt",
                ) from None
        log.unlink(missing_ok=True)
    data, denylisted_nodes = _runnable(req, data, tuple(denylisted_nodes), ranges)
    if not req.quant.no_float:
        data = _one_partition(req, data, denylisted_nodes, ranges)
    dest = req.out_dir / TARGETS.get("tflite-int8").filename(req.name)
    io = {"io_dtype": req.quant.io_dtype, "quantization": {"method": req.quant.method,
                                                          "float_fallback": list(req.quant.float_fallback),
                                                          "adaround": req.quant.adaround}}
    if applied := req.cache.get(RANGE_SEARCH_APPLIED, {}).get("tflite-int8"):
        io["quantization"]["range_search"] = applied
    if req.cache.get(ROUNDED):  # AdaRound's weights: did the converter reproduce them?
        from edgeport.quantization import adaround_check

        io["quantization"]["adaround_check"] = adaround_check.compare(req.cache[ROUNDED]["q"], adaround_check.tflite_int8_weights(data),
                                                                      req.cache[ROUNDED]["scales"])
        req.cache.setdefault(ROUNDED_CHECK, {})["tflite-int8"] = io["quantization"]["adaround_check"]
    auto = req.cache.get(AUTO_FLOAT, {}).get("tflite-int8")
    widened = req.cache.get(WIDENED_RANGES, {}).get("tflite-int8")
    if widened:
        io["quantization"]["widened_for_xnnpack"] = [w["layer"] for w in widened]
    if auto:
        io["quantization"]["auto_float"] = [a["layer"] for a in auto]
        renames = io_renames(data)  # the written file's I/O are renamed: its coverage will use the new names
        for a in auto:
            a["tensor"] = renames.get(a["tensor"], a["tensor"])
    write_bytes(dest, _described(req, "tflite-int8", share_quantization_vectors(data), **io))
    return dest


MAX_AUTO_FLOAT = 16  # ops kept float automatically before the export gives up naming the last one


def _runnable(req: ExportRequest, data: bytes, denylisted: tuple[str, ...], ranges) -> tuple[bytes, tuple[str, ...]]:
    """The int8 model, with every op LiteRT refuses to run on the calibration data kept float.

    Some int8 kernels reject inputs a float model accepts: DIV checks that no denominator quantizes to its zero
    point (tflite/kernels/div.cc), which linear attention's normaliser does. The converter cannot know, so each
    int8 file is run on the calibration inputs; an op that fails is denylisted (QUANTIZE/DEQUANTIZE around a
    float kernel) and the model re-quantized from the run's calibrated model, until it runs. Each such op is
    recorded in ``req.cache[AUTO_FLOAT]`` (named as the PyTorch model names it) for the export's report."""
    from edgeport.errors import ArtifactFailed
    from edgeport.exporters import tflite_ptq
    from edgeport.formats.layer_names import onnx_weight_norms, tflite_names
    from edgeport.runtimes.litert_runner import LiteRtRunner

    kept: list[dict] = []
    first = data
    for _ in range(MAX_AUTO_FLOAT + 1):
        with _as_file(data) as path:
            runner = LiteRtRunner(path)
            try:
                runner.run(_check_inputs(req, runner.batch))
                break
            except ArtifactFailed as exc:
                node = getattr(exc, "node", None)
                failure = exc
        if node is None or not node.tensor or node.tensor in denylisted or len(kept) == MAX_AUTO_FLOAT:
            raise failure
        layer = tflite_names(data, onnx_weight_norms(to_onnx(req))).get(node.tensor, node.tensor)
        kept.append({"layer": layer, "op": node.op, "tensor": node.tensor, "why": node.message})
        denylisted = (*denylisted, node.tensor)
        calibrated = calibrated_model(req)
        if ranges:
            calibrated = tflite_ptq.with_ranges(calibrated, ranges)
        data = tflite_ptq.quantize(calibrated, req.quant.io_dtype, denylisted)
    if kept:
        _record_kept(req, first, data, kept)
    return data, denylisted


@contextlib.contextmanager
def _as_file(data: bytes):
    """An in-memory .tflite model as a temporary file (LiteRT, the coverage and delegation readers take paths)."""
    with tempfile.TemporaryDirectory(prefix="edgeport-int8-check-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(data)
        yield path


CHECK_SAMPLES = 64  # calibration inputs each int8 file is run on before it is written


def _check_inputs(req: ExportRequest, batch: int) -> np.ndarray:
    n = max(batch, min(len(req.calibration), CHECK_SAMPLES) // batch * batch)
    return req.calibration[:n]


def _record_kept(req: ExportRequest, before: bytes, after: bytes, kept: list[dict]) -> None:
    """Add ``kept`` (ops denylisted on purpose) to the run's AUTO_FLOAT record of tflite-int8, with the compute
    ops TFLite's quantizer then left float downstream of them. It does that when their inputs reach them
    through same-scale ops (RESHAPE, STRIDED_SLICE): measured on linear attention with every variant of
    mlir_quantize's options (denylisted ops or nodes, fully_quantize); they are named with the op they follow."""
    from edgeport.formats.layer_names import onnx_weight_norms, tflite_names

    record = req.cache.setdefault(AUTO_FLOAT, {}).setdefault("tflite-int8", [])
    known = {k["tensor"] for k in record + kept}
    names = tflite_names(after, onnx_weight_norms(to_onnx(req)))
    downstream = sorted(_critical_float(after) - _critical_float(before) - known)
    record += kept + [{"layer": names.get(t, t), "op": "after " + kept[0]["op"], "tensor": t,
                       "why": f"left float by TFLite's quantizer downstream of the float {kept[0]['layer']}"}
                      for t in downstream]


MAX_ISLAND_ROUNDS = 3
ISLAND_WHY = {  # what the export says of an op the float islands took (an int8 ADD is refused for its scales)
    None: "XNNPACK has no int8 kernel for it: kept float, it runs inside the XNNPACK partition",
    "ADD": "XNNPACK refuses this int8 ADD's scales: kept float, it runs inside the XNNPACK partition",
}


def _one_partition(req: ExportRequest, data: bytes, denylisted: tuple[str, ...], ranges) -> bytes:
    """The int8 model with the ops XNNPACK cannot run in int8 kept float, when that puts more of it in XNNPACK.

    An op XNNPACK has no int8 kernel for (a transformer's SOFTMAX, LayerNorm's SQUARED_DIFFERENCE and RSQRT, a
    BATCH_MATMUL of two activations, GELU) runs in LiteRT's builtin kernels
    and cuts the graph into partitions, each switch costing a copy out of and back into XNNPACK. In float, XNNPACK
    runs those ops itself, with QUANTIZE/DEQUANTIZE around them, in its partition. Measured on a MobileViT-style
    block (tests/fixtures/third_party.AttentionNet, x86, 1 thread, a loaded machine): 10 partitions and 1.84 ms in
    int8 -> 1 partition and 0.26 ms with every such op float, LayerNorm's ADD (variance + eps) included. Conv,
    depthwise, FC and ADD stay int8 (the int8 check requires them), except an ADD XNNPACK refuses next to an op
    kept float (:func:`_refused_next_to_float`, LayerNorm's): that block is then one partition.
    Kept only when the partitions decrease and the file runs on the calibration data; each op is recorded like
    the other automatic fallbacks. ``--no-float`` skips it."""
    from edgeport.errors import EdgeportError
    from edgeport.exporters import tflite_add_ranges, tflite_ptq
    from edgeport.formats.delegation import tflite_delegation
    from edgeport.formats.int8_coverage import CRITICAL_TFLITE_OPS
    from edgeport.formats.layer_names import onnx_weight_norms, tflite_names
    from edgeport.runtimes.litert_runner import LiteRtRunner

    def delegation_of(model: bytes, run: bool = True):
        with _as_file(model) as path:
            d = tflite_delegation(path)
            if not run:  # already run by _runnable
                return d, True
            try:
                LiteRtRunner(path).run(_check_inputs(req, int(req.example.shape[0])))
            except EdgeportError:
                return d, False
            return d, True

    current, _ = delegation_of(data, run=False)
    original = data
    kept: list[dict] = []
    widened: dict[str, dict] = {}
    for _ in range(MAX_ISLAND_ROUNDS):
        if (current.partitions or 0) <= 1 or not current.slow_nodes:
            break
        names = tflite_names(data, onnx_weight_norms(to_onnx(req)))
        # conv / depthwise / FC / ADD stay int8 (the int8 check requires them): an ADD XNNPACK refuses is an
        # int8 ADD whose scales it cannot take, left to LiteRT and reported unless it sits next to a float op
        slow = [(t, op) for t, op in current.slow_nodes if t not in denylisted and op not in CRITICAL_TFLITE_OPS]
        slow += _refused_next_to_float(data, current.slow_nodes, {*denylisted, *(t for t, _ in slow)})
        # an int8 ADD refused for a tiny input (a zero-init residual branch) stays int8 with that input widened
        refused_adds = {t for t, op in current.slow_nodes if op == "ADD"} - {t for t, _ in slow} - set(denylisted)
        fixes = tflite_add_ranges.add_fixes(data, refused_adds) if refused_adds else tflite_add_ranges.AddFixes()
        widen = fixes.widened
        slow += [(t, "ADD") for t in fixes.constant]
        if not slow and not widen:
            break
        trial_ranges = {**(ranges or {}), **{t: r for chain in widen.values() for t, r in chain.items()}}
        calibrated = calibrated_model(req)
        if trial_ranges:
            calibrated = tflite_ptq.with_ranges(calibrated, trial_ranges)
        trial = tflite_ptq.quantize(calibrated, req.quant.io_dtype, (*denylisted, *(t for t, _ in slow)))
        after, runs = delegation_of(trial)
        if not runs or (after.partitions or 0) >= (current.partitions or 0):
            break
        kept += [{"layer": names.get(t, t), "op": op, "tensor": t,
                  "why": ISLAND_WHY.get(op, ISLAND_WHY[None])} for t, op in slow]
        widened.update({t: {"layer": names.get(t, t), "tensor": t, "range": [float(f"{v:.4g}") for v in chain[t]]}
                        for t, chain in widen.items()})
        data, current, denylisted, ranges = trial, after, (*denylisted, *(t for t, _ in slow)), trial_ranges
    if kept:
        _record_kept(req, original, data, kept)
    if widened:
        req.cache.setdefault(WIDENED_RANGES, {})["tflite-int8"] = list(widened.values())
    return data


def _refused_next_to_float(data: bytes, slow_nodes, floating: set[str]) -> list[tuple[str, str]]:
    """The ADDs XNNPACK refuses in int8 that sit next to an op kept float (``floating``), through Q/DQ.

    LayerNorm's ``variance + eps`` and attention's ``scores + bias`` are int8 ADDs whose scales XNNPACK
    rejects (a tiny constant beside a wide activation); they sit between ops the islands keep float (RSQRT,
    SOFTMAX), so left int8 each one is a partition of its own. Float, XNNPACK runs it in the island. Measured
    on the sweep's hybrids (docs/third-party.md). An ADD whose neighbours are int8 (h-swish's ``x + 3``
    between a conv and RELU6) stays int8: floating it would cut the graph instead."""
    from edgeport.formats.delegation import tflite_neighbours

    refused = [(t, op) for t, op in slow_nodes if op == "ADD" and t not in floating]
    if not refused:
        return []
    with _as_file(data) as path:
        near = tflite_neighbours(path)
    return [(t, op) for t, op in refused if near.get(t, set()) & floating]


def _critical_float(data: bytes) -> set[str]:
    """The compute ops (tensor names) an int8 .tflite model computes in float."""
    from edgeport.formats.int8_coverage import coverage_of

    with _as_file(data) as path:
        return set(coverage_of(path).critical_float())


def float_fallback_nodes(req: ExportRequest) -> tuple[str, ...]:
    """The op-output tensors ``denylisted_nodes`` takes for the layers the user keeps float
    (``req.quant.float_fallback``: module paths such as ``features.0.0``, or TFLite tensor names), read from a
    default int8 build named by :func:`edgeport.formats.layer_names.tflite_names`; made once per run. Empty when that
    build fails (a model with ops TFLite cannot quantize): the converter then runs with float kernels allowed."""
    from edgeport.exporters import tflite_ptq
    from edgeport.formats.layer_names import onnx_weight_norms, resolve, tflite_names

    key = "tflite-float-fallback:" + "|".join(req.quant.float_fallback)
    if key not in req.cache:
        try:
            probe = tflite_ptq.quantize(calibrated_model(req), req.quant.io_dtype)
        except UnsupportedOp:
            req.cache[key] = ()
        else:
            names = tflite_names(probe, onnx_weight_norms(to_onnx(req)))
            req.cache[key] = tuple(resolve(names, req.quant.float_fallback))
    return req.cache[key]


_NEEDS = {"requires": ("tensorflow", "onnx2tf", "ai_edge_litert"), "install_hint": TF_HINT}  # the tflite extra
register_target(Target("tflite-fp32", "tflite", "fp32", export_fp32, FP32, parent="onnx-fp32", writer="onnx2tf + TFLiteConverter",
                       **_NEEDS))
register_target(Target("tflite-fp16", "tflite", "fp16", export_fp16, FP16, parent="tflite-fp32", writer="TFLiteConverter (fp16)",
                       **_NEEDS))
register_target(Target("tflite-int8", "tflite", "int8", export_int8, INT8, parent="tflite-fp32",
                       writer="TFLiteConverter (full-integer int8)", **_NEEDS))
