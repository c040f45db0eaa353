"""onnx-int8: the fused fp32 ONNX graph, statically quantized by ONNX Runtime into a QDQ model.

Recipe (the issue's "static QDQ via quantize_static, per-channel int8 weights, int8 activations"):

* fp32 graph from :func:`edgeport.exporters.onnx_fp32.to_onnx` (made once per export run, copied here);
* spatial ``ReduceMean`` (global average pooling as PyTorch exports ``x.mean((2, 3))``) rewritten to the
  equivalent ``GlobalAveragePool``: ORT does not quantize ReduceMean, so it stayed a float op;
* calibration with ORT's own calibrators (MinMax, Percentile at ``req.quant.percentile``, Entropy; "mse": ORT's
  histograms, ranges from :func:`edgeport.quantization.ranges.mse_ranges`) over
  ``req.calibration``, one batch (1, or the model's fixed batch) per reader call, 8 batches per chunk;
  the ranges are handed to ``quantize_static`` through its calibration cache (see :func:`calibrate`);
* ``quantize_static``: ``QuantFormat.QDQ``, per-channel symmetric int8 weights (zero point 0), asymmetric
  int8 activations (S8S8, ORT's recommended default), int32 biases;
* where the CPU's u8*s8 kernels would saturate (x86 without VNNI; see
  :func:`edgeport.runtimes.cpu_features.choose_reduce_range` for why that still applies to S8S8 QDQ on x86), 8-bit
  weights whose per-channel scales bound every pair the kernel adds (``int8-pairs``,
  :mod:`edgeport.quantization.weight_grid`), handed to ``quantize_static`` as tensor overrides and checked in
  the written graph; ``--onnx-reduce-range on`` keeps ORT's 7-bit ``reduce_range`` weights instead;
* nodes named in ``req.quant.float_fallback`` (ONNX node names, or layer names as in the state dict,
  e.g. ``features.0.0``) stay float;
* checked with onnx.checker (full), written atomically; ORT's intermediate files live in a temporary
  folder, never in ``req.out_dir``.

Measured on BN-recalibrated (random-init) MobileNetV2-224, 64 image-like calibration samples, ORT 1.32:

* ``quant_pre_process`` is *not* run: on our onnxsim-simplified graph it changed nothing (100 nodes and
  109 initializers before and after, same op counts, identical scales, bit-identical int8 outputs) and
  cost 0.34 s; it only silences ORT's "consider pre-processing" warning.
* Graph coverage 64/64 compute ops int8. But ORT's CPU provider on x86 *runs* only 39/64 in integer
  kernels (15 Conv, 10 Add float): on x86 it must turn int8 activations into uint8 (``QDQS8ToU8``),
  which it does only for a QuantizeLinear with one consumer, and every residual-block input has two
  (the next conv and the Add). ORT's ``DedicatedQDQPair`` option does not change that (measured: still
  39/64). On ARM, int8 QDQ is kept native and all 64 fuse (``ort_coverage(.., qdq_int8_allowed=True)``).
  Single-thread x86 (AVX-512 VNNI) latency, interleaved medians of 100 runs: fp32 7.05 ms, this S8S8
  model 6.27 ms, the same recipe with uint8 activations (``quantize(..., activations="uint8")``, 64/64
  fused) 3.82 ms. :func:`edgeport.formats.int8_coverage.ort_coverage` shows the runtime view.

Parity thresholds: ``edgeport.exporters.INT8`` (SQNR and top-1 agreement; no elementwise bound).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeport.errors import UserError
from edgeport.exporters import (
    AUTO_FLOAT,
    INT8,
    RANGE_SEARCH,
    RANGE_SEARCH_APPLIED,
    ROUNDED,
    ROUNDED_CHECK,
    TARGETS,
    ExportRequest,
    QuantOptions,
    Target,
    metadata,
    onnx_fp32,
    register_target,
)
from edgeport.quantization import ranges as calibration_ranges
from edgeport.quantization.options import (
    CALIBRATION_METHODS,
    DEPLOY_PRESETS,
    ONNX_ACTIVATIONS,
    ONNX_FORMATS,
    REDUCE_RANGE_GRIDS,
    deploy_options,  # noqa: F401  (re-exported: edgeport.exporters.onnx_int8.deploy_options)
)
from edgeport.quantization.options import REDUCE_RANGE as REDUCE_RANGE_CHOICES
from edgeport.runtimes import cpu_features
from edgeport.util.atomic_file import write_bytes

# the closed sets and --deploy presets live in edgeport.quantization.options (defined once)
METHODS, FORMATS, ACTIVATIONS, REDUCE_RANGE = CALIBRATION_METHODS, ONNX_FORMATS, ONNX_ACTIVATIONS, REDUCE_RANGE_CHOICES
ONNX_DEPLOY = DEPLOY_PRESETS
MAX_CALIBRATION_CHUNK = 8  # batches held in memory at once by ORT's calibrators (ranges/histograms merge across chunks)
ENTROPY_BINS = 512  # histogram bins for the entropy (KL) calibrator; ORT's default 128 degenerates to MinMax
ENTROPY_QUANTIZED_BINS = 128  # ORT's default


@dataclass
class QuantReport:
    """What one quantization did (kept for the lead's artifact metadata and for tests)."""

    method: str
    calibration_batches: int
    batch: int
    reduce_range: bool
    cpu: str
    weight_grid: str = "int8"  # edgeport.quantization.weight_grid.WEIGHT_GRIDS
    pair_check: dict | None = None  # int8-pairs: {"layers", "worst_pair"} read from the written graph
    format: str = "qdq"
    activations: str = "s8"
    excluded_nodes: list[str] = field(default_factory=list)
    rewritten_reduce_means: int = 0
    seconds: float = 0.0
    auto_float: list[dict] = field(default_factory=list)  # nodes ORT's quantizer could not take (kept float)
    range_search: dict | None = None  # the output-aware range search's shrinks applied (calibrate)

    def to_dict(self) -> dict:
        return asdict(self)


LAST_REPORT: QuantReport | None = None  # the report of the last export() in this process


def _quant_facts(quant: QuantOptions) -> dict:
    return {"method": quant.method, "format": quant.onnx_format, "activations": quant.onnx_activations,
            "float_fallback": list(quant.float_fallback), "cle": quant.cle, "bias_correction": quant.bias_correction,
            "hard_activations": quant.onnx_hard_activations, "adaround": quant.adaround}


def fp32_graph(req: ExportRequest) -> onnx.ModelProto:
    """The fp32 ONNX graph onnx-int8 quantizes (and the per-layer diagnosis compares with): the run's onnx-fp32
    graph, or that of the program :func:`edgeport.graph.rewrites.for_ort_int8` rewrote, made once per run."""
    from edgeport.graph.rewrites import for_ort_int8

    hard = req.quant.onnx_hard_activations == "int8"
    key = ("onnx-int8 fp32 graph", hard)
    if key not in req.cache:
        program, notes = for_ort_int8(req.program, req.example, hard_activations=hard)
        req.cache[key] = (onnx_fp32.to_onnx(req) if program is req.program
                          else onnx_fp32.to_onnx(replace(req, program=program, cache={})), notes)
    return req.cache[key][0]


def weight_grid(quant: QuantOptions, cpu=None) -> str:
    """onnx-int8's weight grid (:mod:`edgeport.quantization.weight_grid`) under ``quant``: what
    ``onnx_reduce_range`` names, and for "auto" "int8-pairs" on a CPU whose kernels would saturate plain 8-bit
    weights (:func:`edgeport.runtimes.cpu_features.choose_reduce_range`), else "int8"."""
    setting = quant.onnx_reduce_range
    if setting == "auto":
        setting = "pairs" if cpu_features.choose_reduce_range(cpu or cpu_features.detect()) else "off"
    return REDUCE_RANGE_GRIDS[setting]


def export(req: ExportRequest) -> Path:
    global LAST_REPORT
    calibration = check_calibration(req.calibration, tuple(req.example.shape))
    fp32 = fp32_graph(req)
    batch = 1 if req.dynamic_batch else int(req.example.shape[0])
    search = req.cache.get(RANGE_SEARCH)
    model, report = quantize(fp32, calibration, req.quant, batch=batch, shrinks=search.chosen if search else None)
    facts = _quant_facts(req.quant)
    facts["weight_grid"] = report.weight_grid
    if report.pair_check:
        facts["pair_check"] = report.pair_check
    if report.range_search:
        facts["range_search"] = report.range_search
        req.cache.setdefault(RANGE_SEARCH_APPLIED, {})["onnx-int8"] = report.range_search
    if rewrites := req.cache[("onnx-int8 fp32 graph", req.quant.onnx_hard_activations == "int8")][1]:
        facts["rewrites"] = rewrites
    if report.auto_float:
        req.cache.setdefault(AUTO_FLOAT, {})["onnx-int8"] = report.auto_float
        facts["auto_float"] = [a["layer"] for a in report.auto_float]
    if req.cache.get(ROUNDED):  # AdaRound's weights: did ORT reproduce them? (7-bit reduce_range weights cannot)
        from edgeport.quantization import adaround_check

        facts["adaround_check"] = adaround_check.compare(req.cache[ROUNDED]["q"], adaround_check.onnx_int8_weights(model),
                                                          req.cache[ROUNDED]["scales"])
        facts["adaround_check"]["weight_grid"] = report.weight_grid
        req.cache.setdefault(ROUNDED_CHECK, {})["onnx-int8"] = facts["adaround_check"]
    if req.metadata:
        metadata.set_onnx(model, metadata.for_target(req.metadata, "onnx-int8", "NCHW", quantization=facts))
    dest = req.out_dir / TARGETS.get("onnx-int8").filename(req.name)
    write_bytes(dest, model.SerializeToString())
    LAST_REPORT = report
    return dest


def check_calibration(calibration: np.ndarray | None, input_shape: tuple[int, ...]) -> np.ndarray:
    """The calibration array as contiguous float32 (N, *input_shape[1:]), or a UserError saying what is wrong."""
    if calibration is None or np.size(calibration) == 0:
        raise UserError("int8 needs calibration data: pass --calib", "a folder of representative images or a .npy of preprocessed inputs")
    data = np.asarray(calibration)
    if data.ndim != len(input_shape) or tuple(data.shape[1:]) != tuple(input_shape[1:]):
        raise UserError(
            f"calibration inputs have shape {tuple(data.shape)}, but the model takes {tuple(input_shape)}",
            f"calibration must be (N, {', '.join(map(str, input_shape[1:]))}), preprocessed like the model's inputs",
        )
    if not np.issubdtype(data.dtype, np.floating):
        raise UserError(f"calibration inputs are {data.dtype}, expected float32 preprocessed inputs")
    data = np.ascontiguousarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        raise UserError("calibration inputs contain NaN or infinity", "check the preprocessing of the calibration data")
    return data


def quantize(
    fp32: onnx.ModelProto,
    calibration: np.ndarray,
    quant: QuantOptions = QuantOptions(),
    *,
    batch: int = 1,
    reduce_range: bool | None = None,
    activations: str | None = None,
    ranges_cache: dict | None = None,
    shrinks: list | None = None,
) -> tuple[onnx.ModelProto, QuantReport]:
    """Static quantization of ``fp32`` (in memory) with per-channel int8 weights.

    Format (QDQ / QOperator), activation type and reduce_range come from ``quant`` (onnx_format,
    onnx_activations, onnx_reduce_range); the keyword arguments override them. ``reduce_range=None`` with
    onnx_reduce_range "auto" picks it from this CPU (:func:`edgeport.runtimes.cpu_features.choose_reduce_range`).
    ``reduce_range`` True / False: the "int7" / "int8" weight grid whatever ``quant`` says.
    ``activations``: "s8"/"int8" (the default) or "u8"/"uint8" (fully fused by ORT on x86, see above).
    ``ranges_cache``: a dict kept by a caller that quantizes the same model and calibration data many times
    (accuracy control: only the float fallback changes), so the activation ranges are computed once per method.
    ``shrinks``: the output-aware range search's choices (edgeport.quantization.range_search.Shrink), applied to the
    ranges of the tensors they match (histogram methods; the report's ``range_search`` says what was applied).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import save_tensors_data

    if quant.method not in METHODS:
        raise UserError(f"unknown calibration method {quant.method!r} for onnx-int8", f"choose from {', '.join(METHODS)}")
    if quant.method == "percentile" and not 0 < quant.percentile <= 100:
        raise UserError(f"percentile {quant.percentile} is outside (0, 100]", "e.g. 99.99")
    fmt = quant.onnx_format
    if fmt not in FORMATS:
        raise UserError(f"unknown onnx-int8 format {fmt!r}", f"choose from {', '.join(FORMATS)}")
    acts = {"int8": "s8", "uint8": "u8"}.get(activations or "", activations or quant.onnx_activations)
    if acts not in ACTIVATIONS:
        raise UserError(f"unknown onnx-int8 activation type {acts!r}", f"choose from {', '.join(ACTIVATIONS)}")
    if quant.onnx_reduce_range not in REDUCE_RANGE:
        raise UserError(f"unknown reduce-range setting {quant.onnx_reduce_range!r}", f"choose from {', '.join(REDUCE_RANGE)}")
    calibration = np.ascontiguousarray(calibration, dtype=np.float32)
    usable = len(calibration) // batch * batch
    if usable == 0:
        raise UserError(f"{len(calibration)} calibration samples cannot fill one batch of {batch}", f"pass at least {batch}")
    cpu = cpu_features.detect()
    grid = weight_grid(quant, cpu) if reduce_range is None else ("int7" if reduce_range else "int8")

    start = time.perf_counter()
    model = onnx.ModelProto()
    model.CopyFrom(fp32)
    rewritten = rewrite_spatial_reduce_mean(model)
    excluded = resolve_nodes(model, quant.float_fallback)
    overrides = pair_bounded_scales(model) if grid == "int8-pairs" else {}
    reader = CalibrationReader(onnx_fp32.INPUT_NAME, calibration[:usable], batch)
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy, "mse": CalibrationMethod.MinMax}[quant.method]

    with tempfile.TemporaryDirectory(prefix="edgeport-int8-") as tmp, quiet_ort():
        tmp = Path(tmp)
        key = ("onnx-ranges", quant.method, quant.percentile, id(shrinks) if shrinks else None)
        if ranges_cache is not None and key in ranges_cache:
            ranges, searched = ranges_cache[key]
        else:
            ranges, searched = calibrate(model, reader, quant, tmp, shrinks)
            if ranges_cache is not None:
                ranges_cache[key] = ranges, searched
        cache = tmp / "calibration.json"
        save_tensors_data(ranges, cache)
        out = tmp / "model.int8.onnx"

        def attempt(nodes: list[str]) -> None:
            fresh = onnx.ModelProto()  # a failed attempt may have changed the model it was given
            fresh.CopyFrom(model)
            quantize_static(
                fresh,
                out,
                None,  # ranges come from the cache written above
                quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                per_channel=True,
                reduce_range=grid == "int7",
                activation_type=QuantType.QInt8 if acts == "s8" else QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=nodes,
                calibrate_method=method,
                calibration_cache_path=cache,
                extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                               **({"TensorQuantOverrides": overrides} if overrides else {})},
            )
            onnx.checker.check_model(onnx.load(str(out)), full_check=True)  # ORT can write an invalid graph

        auto = _quantizable(attempt, model, excluded)
        qmodel = onnx.load(str(out))
    qmodel.producer_name = "edgeport"
    report = QuantReport(quant.method, len(reader), batch, grid == "int7", cpu.describe(), weight_grid=grid, format=fmt,
                         activations=acts, excluded_nodes=excluded, rewritten_reduce_means=rewritten,
                         seconds=time.perf_counter() - start, auto_float=auto, range_search=searched)
    if grid == "int8-pairs":
        report.pair_check = check_pairs(qmodel)
    return qmodel, report


def _weights(model: onnx.ModelProto, ops: dict[str, int]) -> list[tuple[str, int, int, bool]]:
    """(initializer, per-channel axis, groups, transposed) of every weight ``model``'s nodes of type ``ops`` (op ->
    the weight's input index) read from an initializer, directly or through a DequantizeLinear; ``transposed``: the
    weight is (K, N), a MatMul's or a Gemm's without transB, so its channels are its columns."""
    inits = {i.name for i in model.graph.initializer}
    dq = {n.output[0]: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    found = []
    for node in model.graph.node:
        if node.op_type not in ops or len(node.input) <= ops[node.op_type]:
            continue
        name = node.input[ops[node.op_type]]
        name = dq.get(name, name)
        if name not in inits:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        transposed = node.op_type in ("MatMul", "QLinearMatMul", "MatMulInteger") or (
            node.op_type in ("Gemm", "QGemm") and not attrs.get("transB", 0))
        found.append((name, 1 if transposed else 0, int(attrs.get("group", 1)), transposed))
    return found


def pair_bounded_scales(model: onnx.ModelProto) -> dict[str, list[dict]]:
    """ORT TensorQuantOverrides putting every 2-D conv/linear weight of the fp32 ``model`` on the "int8-pairs" grid
    (:mod:`edgeport.quantization.weight_grid`); other weights get ORT's 7-bit ``reduce_range`` (per tensor)."""
    import torch

    from edgeport.quantization import weight_grid as grids

    arrays = {i.name: i for i in model.graph.initializer}
    overrides: dict[str, list[dict]] = {}
    for name, axis, groups, transposed in _weights(model, {"Conv": 1, "Gemm": 1, "MatMul": 1}):
        w = numpy_helper.to_array(arrays[name])
        if w.ndim < 2 or (transposed and w.ndim != 2) or not np.issubdtype(w.dtype, np.floating):
            overrides[name] = [{"reduce_range": True}]
            continue
        scales = grids.channel_scales(torch.from_numpy(np.array(w.T if transposed else w)), "int8-pairs", groups)
        overrides[name] = [{"scale": np.float32(s), "zero_point": np.int8(0)} for s in scales.double().numpy()]
        overrides[name][0]["axis"] = axis
    return overrides


# where each int8 op reads its weight: QDQ graphs (through a DequantizeLinear) and QOperator graphs
INT8_WEIGHT_INPUTS = {"Conv": 1, "Gemm": 1, "MatMul": 1, "QLinearConv": 3, "QLinearMatMul": 3, "QGemm": 3, "MatMulInteger": 1}


def check_pairs(model: onnx.ModelProto) -> dict:
    """Read every int8 conv/linear weight of the quantized ``model`` and check that no pair an x86 kernel without VNNI
    adds in int16 can saturate (edgeport.quantization.weight_grid.worst_pair); an InternalError if one can."""
    from edgeport.errors import InternalError
    from edgeport.quantization import weight_grid as grids

    arrays = {i.name: i for i in model.graph.initializer}
    worst, layers = 0, 0
    for name, _, groups, transposed in _weights(model, INT8_WEIGHT_INPUTS):
        q = numpy_helper.to_array(arrays[name])
        if q.dtype != np.int8 or q.ndim < 2:
            continue
        layers += 1
        worst = max(worst, grids.worst_pair(q.T if transposed and q.ndim == 2 else q, groups))
    if worst > grids.PAIR_LIMIT:
        raise InternalError(f"onnx-int8 holds an int8 weight pair summing to {worst} > {grids.PAIR_LIMIT}: x86 kernels "
                            "without VNNI would saturate it", "a bug in edgeport; --onnx-reduce-range on avoids it")
    return {"layers": layers, "worst_pair": worst}


MAX_AUTO_FLOAT = 8  # bisections (each keeps a node or an op type float) before the export gives up


def _quantizable(attempt, model: onnx.ModelProto, excluded: list[str]) -> list[dict]:
    """Run ``attempt(nodes_to_exclude)`` (ORT's quantize_static, then onnx.checker on what it wrote); when that
    fails on some node, find
    the nodes it cannot quantize and keep them float. Returns those nodes ([{"layer", "op", "tensor", "why"}]).

    ORT's quantizer raises plain Python errors from inside its op handlers without naming the node (e.g.
    "Quantization parameter shared mode is not supported for weight yet", on MobileViT-v2's attention), so the
    node is found by bisection: excluding every node must work, then the shortest prefix of the graph whose
    exclusion works ends at a culprit; repeat until nothing fails. ~log2(nodes) quantizations per culprit,
    each without calibration (the ranges are computed once, before). MobileViT-v2's GroupNorm exports as
    Reshape -> InstanceNormalization -> Reshape: ORT fails on it in both ways (the error above, and a quantized
    graph onnx.checker rejects: "Inferred shape and existing shape differ in rank")."""
    from edgeport.errors import UnsupportedOp
    from edgeport.formats.layer_names import onnx_names

    def works(nodes: list[str]) -> bool:
        try:
            attempt(nodes)
            return True
        except Exception:  # noqa: BLE001 - ORT's quantizer fails with arbitrary types; the first error is reported
            return False

    try:
        attempt(excluded)
        return []
    except Exception as exc:  # noqa: BLE001
        why = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:160]}"
    candidates = [n.name for n in model.graph.node if n.name not in excluded]
    if not works(excluded + candidates):
        raise UnsupportedOp(f"onnxruntime cannot quantize the model: {why}",
                            "the error is not tied to one node; export the float targets, or report the model") from None
    names, ops = onnx_names(model), {n.name: n.op_type for n in model.graph.node}
    kept: list[str] = []
    for _ in range(MAX_AUTO_FLOAT):
        lo, hi = 0, len(candidates)  # excluding candidates[:hi] works, [:lo] does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if works(excluded + kept + candidates[:mid]):
                hi = mid
            else:
                lo = mid
        culprit = candidates[hi - 1]
        # a handler fails on an op type, not on one node: try all of that type at once before bisecting again
        same = [c for c in candidates if ops[c] == ops[culprit]]
        kept += same if len(same) > 1 and works(excluded + kept + same) else [culprit]
        candidates = [c for c in candidates if c not in kept]
        if works(excluded + kept):
            return [{"layer": names.get(k, k), "op": ops[k], "tensor": k, "why": why} for k in kept]
    raise UnsupportedOp(f"onnxruntime cannot quantize the model: {why}",
                        f"{MAX_AUTO_FLOAT} searches did not isolate the failing nodes; keep the attention blocks float with --allow-float")


def calibrate(model: onnx.ModelProto, reader: "CalibrationReader", quant: QuantOptions, workdir: Path, shrinks=None):
    """Activation ranges (ORT ``TensorsData``) of ``model`` over the reader's batches, with ORT's calibrators, and
    which ``shrinks`` (edgeport.quantization.range_search) were applied: {"narrowed", "unmatched"} or None.

    Batches go through in chunks of MAX_CALIBRATION_CHUNK: ORT's histogram calibrators keep every
    intermediate output of a ``collect_data`` call in memory (MobileNetV2-224: 101 tensors, 53 MB per
    sample, so 0.42 GB per chunk of 8), and merge ranges / histograms across calls.

    Entropy uses ENTROPY_BINS histogram bins instead of ORT's default 128: with 128 bins and 128
    quantized bins, ORT's KL search has a single candidate (the full range), so "entropy" returns exactly
    the MinMax ranges (by construction; observed: identical scales and outputs on MobileNetV2). 512 bins
    give 193 candidates; the search is pure Python, ~0.25 s per tensor (MobileNetV2-224: +16 s).

    "mse" collects the same signed-value histograms (ORT's entropy collector, MSE_BINS bins) and hands them to
    :func:`edgeport.quantization.ranges.mse_ranges`; the result is plain (min, max) ranges, as MinMax gives.
    The shrinks find their tensors by the values' signature, read from those histograms: mse, percentile and
    entropy ranges take them; MinMax collects no histogram, and its ranges are left as they are.
    """
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    method, options = {
        "minmax": (CalibrationMethod.MinMax, {}),
        "percentile": (CalibrationMethod.Percentile, {"percentile": float(quant.percentile)}),
        "entropy": (CalibrationMethod.Entropy, {"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS}),
        "mse": (CalibrationMethod.Entropy, {"num_bins": calibration_ranges.MSE_BINS}),
    }[quant.method]
    path = workdir / "calibration_input.onnx"
    onnx.save(model, str(path))
    calibrator = create_calibrator(
        path,
        sorted(set(QLinearOpsRegistry) | set(QDQRegistry)),  # the op types quantize_static quantizes
        augmented_model_path=str(workdir / "augmented.onnx"),
        calibrate_method=method,
        extra_options=options,
    )
    try:
        for start in range(0, len(reader), MAX_CALIBRATION_CHUNK):
            reader.set_range(start, start + MAX_CALIBRATION_CHUNK)
            calibrator.collect_data(reader)
        if quant.method == "minmax" or (quant.method != "mse" and not shrinks):
            return calibrator.compute_data(), None
        from onnxruntime.quantization.calibrate import TensorsData

        hist = calibrator.collector.histogram_dict
        if quant.method == "mse":
            found = calibration_ranges.mse_ranges(hist)
        else:
            found = {k: (float(v.range_value[0]), float(v.range_value[1])) for k, v in calibrator.compute_data().items()}
        searched = None
        if shrinks:
            from edgeport.quantization import range_search

            found, unmatched = range_search.apply(found, range_search.histogram_signatures(hist), shrinks)
            searched = range_search.applied(shrinks, unmatched)
        return TensorsData(CalibrationMethod.MinMax, {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in found.items()}), searched
    finally:
        del calibrator  # holds an InferenceSession on a file in workdir


def rewrite_spatial_reduce_mean(model: onnx.ModelProto) -> int:
    """Replace ``ReduceMean`` over the spatial axes of a 4-D tensor by ``GlobalAveragePool`` (+ ``Flatten``).

    Same values in fp32; ORT quantizes GlobalAveragePool (and fuses it to QLinearGlobalAveragePool) but
    leaves ReduceMean in float between a DequantizeLinear and the next QuantizeLinear.
    """
    g = model.graph
    init = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    ranks = _ranks(model)
    new_nodes, count = [], 0
    for node in g.node:
        axes = _reduce_axes(node, init, consts)
        rank = ranks.get(node.input[0]) if node.input else None
        if node.op_type != "ReduceMean" or axes is None or rank != 4 or sorted(a % 4 for a in axes) != [2, 3]:
            new_nodes.append(node)
            continue
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        name = node.name or f"reduce_mean_{count}"
        if keepdims:
            new_nodes.append(helper.make_node("GlobalAveragePool", [node.input[0]], [node.output[0]], name=name))
        else:
            pooled = f"{node.output[0]}_gap"
            new_nodes.append(helper.make_node("GlobalAveragePool", [node.input[0]], [pooled], name=name))
            new_nodes.append(helper.make_node("Flatten", [pooled], [node.output[0]], name=f"{name}_flatten", axis=1))
        count += 1
    if count:
        del g.node[:]
        g.node.extend(new_nodes)
        used = {i for n in g.node for i in n.input}
        unused = [i for i in g.initializer if i.name not in used]
        for i in unused:
            g.initializer.remove(i)
    return count


def resolve_nodes(model: onnx.ModelProto, names: tuple[str, ...] | list[str]) -> list[str]:
    """ONNX node names for ``names``: node names as they are, or layer names as :mod:`edgeport.formats.layer_names` gives
    them (``features.0.0``, ``features.3`` for a whole block, ``Add after features.3.conv.2``)."""
    if not names:
        return []
    from edgeport.formats.layer_names import onnx_names, resolve

    return resolve({k: v for k, v in onnx_names(model).items() if k}, names)


class CalibrationReader:
    """ORT CalibrationDataReader over an in-memory array: one batch per ``get_next`` call.

    ``set_range`` selects the batches the next ``get_next`` calls walk through (chunked calibration).
    """

    def __init__(self, input_name: str, data: np.ndarray, batch: int):
        self.input_name = input_name
        self.batches = [data[i : i + batch] for i in range(0, len(data) - batch + 1, batch)]
        self._it = iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return self

    def __next__(self):
        item = self.get_next()
        if item is None:
            raise StopIteration
        return item

    def get_next(self) -> dict[str, np.ndarray] | None:
        b = next(self._it, None)
        return None if b is None else {self.input_name: b}

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.batches[start_index:end_index])

    def rewind(self) -> None:
        self._it = iter(self.batches)


def _reduce_axes(node, init, consts) -> list[int] | None:
    if node.op_type != "ReduceMean":
        return None
    for a in node.attribute:  # opset < 18
        if a.name == "axes":
            return list(a.ints)
    if len(node.input) > 1 and node.input[1]:
        src = node.input[1]
        if src in init:
            return [int(v) for v in numpy_helper.to_array(init[src]).ravel()]
        if src in consts:
            return [int(v) for v in numpy_helper.to_array(consts[src].attribute[0].t).ravel()]
    return None


def _ranks(model: onnx.ModelProto) -> dict[str, int]:
    try:
        g = onnx.shape_inference.infer_shapes(model).graph
    except Exception:
        g = model.graph
    return {v.name: len(v.type.tensor_type.shape.dim) for v in list(g.value_info) + list(g.input) + list(g.output)
            if v.type.tensor_type.HasField("shape")}


@contextlib.contextmanager
def quiet_ort():
    """ORT's quantizer prints progress to stdout and warns through the root logger; keep both off the CLI."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


# int8 parity is judged by SQNR and top-1 agreement (INT8), never by elementwise bounds.
register_target(Target("onnx-int8", "onnx", "int8", export, INT8, parent="onnx-fp32",
                       writer="onnxruntime.quantization.quantize_static"))
