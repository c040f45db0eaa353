"""The export flow: capture -> fuse (equivalence-checked) -> export each target -> verify int8 graphs ->
parity of every artifact in its own runtime against the PyTorch model, on held-out data."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import fx

from edgeport.data import sample_inputs
from edgeport.data.calibration import DataSplit, Samples
from edgeport.errors import InternalError, UserError
from edgeport.exporters import (
    AUTO_FLOAT,
    RANGE_SEARCH,
    ROUNDED,
    ROUNDED_CHECK,
    WIDENED_RANGES,
    ExportRequest,
    QuantOptions,
    Target,
    chain,
)
from edgeport.graph.capture import capture
from edgeport.graph.fuse import Equivalence, FusionReport, check_equivalence, fuse
from edgeport.graph.rewrites import rewrite_for_edge
from edgeport.models.source import LoadedModel
from edgeport.pipeline.artifact import Artifact, tool_versions
from edgeport.runtimes.torch_runner import run_module
from edgeport.validation.checks import Thresholds, ValidationReport, validate_artifacts

FUSION_TOLERANCE = 1e-5  # relative to the largest output magnitude, eval mode


@dataclass
class Prepared:
    loaded: LoadedModel
    fused: fx.GraphModule
    report: FusionReport
    equivalence: Equivalence
    program: torch.export.ExportedProgram  # fused graph, ready for the exporters
    example: torch.Tensor
    dynamic_batch: bool = False
    # the int8 targets' graph when CLE / bias correction / AdaRound changed it (equalize_prepared); float targets
    # always export ``program``, the model as given
    transformed: torch.export.ExportedProgram | None = None
    transformed_graph: fx.GraphModule | None = None  # the fused graph it was captured from
    # AdaRound's int8 weights and scales, {"q"|"scales": {fused-graph weight name: array}}, for the exporters' check
    rounded: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def outputs(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(original model, fused graph) outputs on float NCHW ``inputs``; the fused graph is the int8 targets'
        transformed one when there is one (validation reports it beside the artifacts)."""
        x = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))
        batch = None if self.dynamic_batch else self.example.shape[0]
        with torch.no_grad():
            reference = run_module(self.loaded.module, x, 256).numpy()
            graph = self.transformed_graph if self.transformed_graph is not None else self.fused
            fused = run_module(graph, x, batch).numpy()
        return reference, fused

    @property
    def int8_program(self) -> torch.export.ExportedProgram:
        """What int8 targets export: the transformed graph if there is one, else the fused graph."""
        return self.transformed if self.transformed is not None else self.program


@dataclass
class ExportRun:
    prep: Prepared
    artifacts: list[Artifact] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    validation: ValidationReport | None = None
    validation_data: Samples | None = None
    int8_problems: list[str] = field(default_factory=list)  # compute ops left float in an int8 artifact
    warnings: list[str] = field(default_factory=list)
    equalization: dict | None = None  # EqualizationReport.to_dict() when --cle/--bias-correction/--adaround ran
    request: ExportRequest | None = None  # what the targets were made from (the per-layer diagnosis reads its models)

    @property
    def passed(self) -> bool:
        return not self.int8_problems and (self.validation is None or not self.validation.failed)


def prepare(loaded: LoadedModel, dynamic_batch: bool = False) -> Prepared:
    """Capture and fuse the model, and prove the fused graph computes what the model computes."""
    example = torch.zeros(loaded.input_shape)
    program = capture(loaded.module, example, dynamic_batch=dynamic_batch)
    fused, report = fuse(program.module())
    report.rewrites = rewrite_for_edge(fused)
    batch = None if dynamic_batch else loaded.input_shape[0]
    equivalence = check_equivalence(loaded.module, fused, sample_inputs.check_set(loaded.input_shape), batch)
    if not equivalence.ok(FUSION_TOLERANCE):
        raise InternalError(  # a bug in edgeport, not a user mistake
            f"fusion changed the outputs of {loaded.name}: {equivalence.describe(FUSION_TOLERANCE)}",
            "this is a bug in edgeport; please report the model",
        )
    fused_program = capture(fused, example, dynamic_batch=dynamic_batch)
    return Prepared(loaded, fused, report, equivalence, fused_program, example, dynamic_batch)


def _fused_copy(prep: Prepared) -> fx.GraphModule:
    """A copy of the fused graph for a transform; the fused graph itself stays the model as given."""
    import copy
    import warnings

    with warnings.catch_warnings():  # torch's pytree specs warn about their own deprecated LeafSpec when copied
        warnings.simplefilter("ignore", FutureWarning)
        return copy.deepcopy(prep.fused)


GRID_PROGRAM = "bias-corrected program"  # req.cache[(GRID_PROGRAM, grid)]: onnx-int8's own program and export cache


def grid_program(cache: dict, quant: QuantOptions) -> tuple | None:
    """(program, export cache) that onnx-int8 exports when its weight grid is not plain 8-bit and bias correction is on
    (made by the export into ``cache``), or None: accuracy control rebuilds onnx-int8 from the same program."""
    from edgeport.exporters.onnx_int8 import weight_grid

    return cache.get((GRID_PROGRAM, weight_grid(quant)))


def bias_corrected_for_grid(prep: Prepared, calibration: np.ndarray, quant: QuantOptions, grid: str):
    """The int8 targets' graph again, with bias correction simulating weights on ``grid``
    (edgeport.quantization.weight_grid): ONNX Runtime's 7-bit reduce_range weights, or 8-bit ones with pair-bounded
    scales, err differently from the plain 8-bit ones the shared graph was corrected for (measured on
    EfficientNet-Lite0 with 7-bit weights: the 8-bit correction took onnx-int8 from 9.0 to 8.2 dB)."""
    from edgeport.quantization.equalization import equalize

    graph = _fused_copy(prep)
    equalize(graph, calibration, cle=quant.cle, bias_correction=True, weight_grid=grid)
    return capture(graph, prep.example, dynamic_batch=prep.dynamic_batch)


def equalize_prepared(prep: Prepared, calibration: np.ndarray | None, quant: QuantOptions) -> dict:
    """CLE / bias correction (edgeport.quantization.equalization) and AdaRound (edgeport.quantization.adaround) on
    a copy of the fused graph, captured as ``prep.transformed``: what the int8 targets export. They exist to make
    int8 closer to the float model, so float targets keep exporting the model as given (``prep.program``).
    prepare() has already proved fusion against the untransformed graph; what the transform changes in float is
    measured in its report and shows in validation (artifacts vs torch)."""
    from edgeport.quantization.equalization import equalize

    graph = _fused_copy(prep)
    out: dict = {}
    if quant.cle or (quant.bias_correction and not quant.adaround):
        # with adaround, bias correction is made inside AdaRound's walk (here it would see on-grid weights: no error)
        report = equalize(graph, calibration, cle=quant.cle, bias_correction=quant.bias_correction and not quant.adaround)
        prep.report.rewrites.append(report.summary())
        out = report.to_dict()
    if quant.adaround:
        from edgeport.quantization.adaround import adaround

        rounded = adaround(graph, calibration, bias_correction=quant.bias_correction)
        prep.report.rewrites.append(rounded.summary())
        prep.rounded = {"q": rounded.chosen, "scales": rounded.scales}
        out["adaround"] = rounded.to_dict()
    prep.transformed = capture(graph, prep.example, dynamic_batch=prep.dynamic_batch)
    prep.transformed_graph = graph
    return out


# the int8 formats whose exporters apply the output-aware range search (ExecuTorch's PT2E observers do not take
# ranges from outside)
SEARCHED_FORMATS = ("tflite", "onnx")


def _search_ranges(run: ExportRun, req: ExportRequest, calibration: np.ndarray, quant: QuantOptions, on_stage) -> None:
    """edgeport.quantization.range_search on the graph the int8 targets export, scored against the fused graph as
    given; the report goes to ``req.cache[RANGE_SEARCH]`` (the exporters apply it) and to the equalization record.
    Once per method in a shared cache (method comparison)."""
    from edgeport.quantization import range_search

    key = (RANGE_SEARCH, quant.method, quant.percentile)
    if key not in req.cache:
        on_stage("output-aware ranges")
        graph = run.prep.transformed_graph if run.prep.transformed_graph is not None else run.prep.fused
        req.cache[key] = range_search.search(graph, calibration, reference=run.prep.fused, method=quant.method,
                                             percentile=quant.percentile, on_step=on_stage)
    report = req.cache[RANGE_SEARCH] = req.cache[key]
    if report.summary() not in run.prep.report.rewrites:
        run.prep.report.rewrites.append(report.summary())
    run.equalization = {**(run.equalization or {}), "range_search": report.to_dict()}


def with_data(quant: QuantOptions, data: DataSplit | None) -> QuantOptions:
    """``quant`` with its automatic choices made for ``data`` (QuantOptions.with_data): bias correction on real
    calibration data, off on synthetic noise or without data."""
    return quant.with_data(data is not None and not data.calibration.synthetic)


def judging_thresholds(target: Target, overrides: dict[str, Thresholds], random_weights: bool = False) -> Thresholds | None:
    """The thresholds an artifact is judged by; None (reported, not judged) for int8 of a random-weight
    zoo model unless the user set int8 thresholds: such a net amplifies any rounding layer by layer, so
    its int8 SQNR/top-1 say nothing about the quantizer (measured: random MobileNetV2 int8 ~11 dB)."""
    chosen = overrides.get(target.name) or overrides.get(target.precision)
    if chosen is None and random_weights and target.precision == "int8":
        return None
    return chosen or target.thresholds


def run_export(
    loaded: LoadedModel,
    targets: list[Target],
    out_dir: Path,
    data: DataSplit | None = None,
    quant: QuantOptions = QuantOptions(),
    dynamic_batch: bool = False,
    validate: bool = True,
    thresholds: dict[str, Thresholds] | None = None,
    on_stage: Callable[[str], None] = lambda s: None,
    prepared: Prepared | None = None,
    cache: dict | None = None,
    pte_layout: str = "nchw",
) -> ExportRun:
    """Export ``targets`` in chain order (parents first) and validate them on held-out data.

    Several runs over one model (edgeport.quantization.method_comparison) pass ``prepared``, the model already captured, fused
    and equalized as ``quant`` asks (prepare(), equalize_prepared()), and ``cache``, the ExportRequest cache they
    share (the fp32 ONNX model, onnx2tf output, TFLite calibration); the caller then clears that cache.
    ``pte_layout`` (one of edgeport.exporters.PTE_LAYOUTS) is the executorch targets' input memory layout."""
    from edgeport.exporters import PTE_LAYOUTS
    from edgeport.formats.int8_coverage import coverage_of
    from edgeport.quantization.options import check_choice

    check_choice(pte_layout, PTE_LAYOUTS, "--pte-layout", "executorch input layout")

    calibration = data.calibration.inputs if data is not None else None
    quant = with_data(quant, data)
    if quant.needs_calibration and calibration is None:
        raise UserError("bias correction and AdaRound need calibration data", "pass --calib (an image folder, fashion-mnist, ...)")
    if prepared is not None:
        run = ExportRun(prepared)
    else:
        on_stage("capture + fuse")
        run = ExportRun(prepare(loaded, dynamic_batch))
    if prepared is None and quant.transforms_graph:
        on_stage("equalize")
        run.equalization = equalize_prepared(run.prep, calibration, quant)
    from edgeport.exporters import metadata

    req = ExportRequest(loaded.name, run.prep.int8_program, run.prep.example, Path(out_dir), dynamic_batch, calibration,
                        quant, cache if cache is not None else {}, metadata.describe(loaded, calibration), pte_layout)
    if run.prep.rounded:
        req.cache[ROUNDED] = run.prep.rounded
    if quant.range_search and calibration is not None and any(t.format in SEARCHED_FORMATS and t.precision == "int8" for t in targets):
        _search_ranges(run, req, calibration, quant, on_stage)
    # float targets export the model as given; they share the int8 targets' steps (fp32 ONNX, onnx2tf) only when no
    # transform changed the int8 graph
    float_req = req if run.prep.transformed is None else replace(req, program=run.prep.program, cache={})
    by_target = {}
    if quant.bias_correction and not quant.adaround and any(t.name == "onnx-int8" for t in targets):
        from edgeport.exporters.onnx_int8 import weight_grid

        if (grid := weight_grid(quant)) != "int8":
            # made once per shared cache (method comparison runs every method on one prepared model), with an export
            # cache of its own (its fp32 ONNX differs from the 8-bit graph's)
            key = (GRID_PROGRAM, grid)
            if key not in req.cache:
                on_stage(f"equalize ({grid} weights for onnx-int8)")
                req.cache[key] = bias_corrected_for_grid(run.prep, calibration, quant, grid), {}
            program, own = req.cache[key]
            # the range search ran on the 8-bit graph; its ranges carry over (activations barely move with the
            # weights' bias correction)
            own.pop(RANGE_SEARCH, None)
            own.update({k: req.cache[k] for k in (RANGE_SEARCH,) if k in req.cache})
            by_target["onnx-int8"] = replace(req, program=program, cache=own)
            if run.equalization is not None:
                run.equalization.setdefault("weight_grid_by_target", {})["onnx-int8"] = grid
    order = list(chain())  # parents first
    for target in sorted(targets, key=lambda t: order.index(t.name) if t.name in order else len(order)):
        on_stage(f"export {target.name}")
        path = target.export(by_target.get(target.name) or (req if target.precision == "int8" else float_req))
        dtypes: dict[str, int] = {}
        auto = req.cache.get(AUTO_FLOAT, {}).get(target.name, [])
        if target.precision == "int8":
            cov = coverage_of(path)
            dtypes = {"int8": cov.int8_total, "float": cov.float_total}
            stuck = cov.critical_float()
            if cov.float_total:  # every op class, not only the conv/FC/add the int8 check requires
                run.warnings.append(f"{target.name}: {cov.line()}")
            if auto:
                run.warnings.append(_auto_float_line(target.name, auto, quant.no_float))
            kept = req.cache.get(ROUNDED_CHECK, {}).get(target.name)
            if kept and kept["missing"]:
                bits = f" (the {kept['weight_grid']} weight grid: AdaRound rounds onto the plain 8-bit one; " \
                    "--onnx-reduce-range off)" if kept.get("weight_grid", "int8") != "int8" else ""
                run.warnings.append(f"{target.name}: {len(kept['missing'])} of {kept['layers']} layers do not hold AdaRound's "
                                    f"int8 weights{bits}")
            widened = req.cache.get(WIDENED_RANGES, {}).get(target.name, [])
            if widened:
                layers = "; ".join(w["layer"] for w in widened[:3]) + ("; ..." if len(widened) > 3 else "")
                run.warnings.append(f"{target.name}: widened the int8 range of {len(widened)} ADD inputs far smaller "
                                    f"than the sum, so XNNPACK runs those ADDs in int8 ({layers})")
            if stuck:  # named as the PyTorch model names them, which is what --allow-float takes
                from edgeport.exporters.onnx_fp32 import to_onnx
                from edgeport.formats.layer_names import artifact_names, requested

                names = artifact_names(path, to_onnx(req))
                kept = {a["tensor"] for a in auto}
                stuck = [names.get(n, n) for n in stuck
                         if n not in kept and not requested(n, names.get(n, n), quant.float_fallback)]
            if quant.no_float and auto:
                stuck = [a["layer"] for a in auto] + stuck
            if stuck:
                run.int8_problems.append(f"{target.name}: {len(stuck)} compute ops left float: {', '.join(stuck[:5])}")
        parent = target.parent
        run.artifacts.append(Artifact.from_file(path, target.name, target.format, dtypes=dtypes, parent=parent,
                                                tools=tool_versions(), auto_float=list(auto)))
        run.targets.append(target)
    run.request = req  # with a caller's ``cache``, its fp32 ONNX / onnx2tf / calibrated models stay usable
    for other in (float_req, *by_target.values()):
        if other is not req:
            other.cache.clear()
    if cache is None:
        req.cache.clear()  # drop onnx2tf's temporary SavedModel now
    if validate:
        on_stage("validate")
        validate_run(run, data, thresholds)
    return run


def _auto_float_line(target: str, auto: list[dict], no_float: bool) -> str:
    """One line for the ops an exporter kept float on its own: how many of each op, the first layers, and why."""
    from collections import Counter

    counts = ", ".join(f"{n} {op}" for op, n in Counter(a["op"] for a in auto).items())
    layers = "; ".join(a["layer"] for a in auto[:3]) + ("; ..." if len(auto) > 3 else "")
    whys = "; ".join(w[:100] for w in list(dict.fromkeys(a["why"] for a in auto))[:2])
    return (f"{target}: kept float because int8 cannot run them: {counts} ({layers}); {whys}"
            + ("" if no_float else " (--no-float makes this an error)"))


def validate_run(run: ExportRun, data: DataSplit | None = None, thresholds: dict[str, Thresholds] | None = None) -> None:
    """Run each artifact of ``run`` in its runtime on held-out data (synthetic without ``data``) and judge it;
    fills run.validation, run.validation_data and run.warnings. Also used on artifacts restored from a cache."""
    loaded = run.prep.loaded
    val = data.validation if data is not None else Samples(
        torch.cat(list(sample_inputs.check_set(loaded.input_shape).values())).numpy(), None, "synthetic", True
    )
    reference, fused = run.prep.outputs(val.inputs)
    pairs = [(a, judging_thresholds(t, thresholds or {}, loaded.random_weights)) for a, t in zip(run.artifacts, run.targets)]
    if loaded.random_weights and any(t is None for _, t in pairs):
        run.warnings.append(
            f"{loaded.name} has random weights: int8 parity is reported but not judged "
            "(pass --weights, or set --min-sqnr/--min-top1 to judge it anyway)"
        )
    run.validation = validate_artifacts(reference, fused, val.inputs, pairs, val.labels, val.source, held_out=val.held_out)
    for c in run.validation.unjudged:
        c.not_judged_because = (f"{loaded.name} has random weights (no checkpoint): its int8 error says nothing about the "
                                "quantizer; pass --weights (torchvision checkpoints load) or set --min-sqnr/--min-top1")
    run.validation_data = val
