"""Quantize one model to its int8 targets with one or several calibration methods and compare the results.

The core of ``edgeport quantize`` (edgeport/cli/quantize_cmd.py). The model is captured and fused once (and
equalized once, if asked); every method's export shares one ExportRequest cache, so the fp32 ONNX graph, the
onnx2tf SavedModel and TFLite's calibrated float model are made once (:func:`warm_shared_steps`, timed on their
own) and each method's time is its own calibration + quantization. Each artifact is validated against PyTorch
on the held-out split (SQNR, top-1 agreement: edgeport.pipeline.export_flow.validate_run) and, with labelled data,
evaluated for top-1 accuracy beside the float model (edgeport.validation.evaluation).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from edgeport.errors import UsageError, UserError
from edgeport.exporters import ExportRequest, QuantOptions, Target
from edgeport.quantization.ranges import METHODS
from edgeport.util.atomic_file import write_text
from edgeport.validation.checks import Thresholds

RESULTS_FILE = "methods.json"


@dataclass
class MethodResult:
    method: str
    target: str
    path: str
    seconds: float  # this target's export with this method: calibration ranges + quantization (shared steps apart)
    sqnr_db: float | None  # vs PyTorch on the validation split
    top1_agreement: float | None
    passed: bool  # parity thresholds (and every compute op int8)
    failures: list[str] = field(default_factory=list)
    accuracy: float | None = None  # top-1 on --data
    drop: float | None = None  # float accuracy - accuracy (points of top-1, as a fraction)


@dataclass
class Comparison:
    model: str
    targets: list[str]
    methods: list[str]
    quant: dict
    calibration: dict | None
    validation: dict | None
    shared_seconds: float  # capture + fuse + fp32 ONNX + onnx2tf + TFLite calibration, once for all methods
    results: list[MethodResult] = field(default_factory=list)
    data: dict | None = None  # the labelled evaluation set: source, samples, float top-1
    equalization: dict | None = None
    warnings: list[str] = field(default_factory=list)  # about the data (a split too small, synthetic samples)

    def best(self) -> dict[str, str]:
        """target -> method: highest accuracy on --data (then SQNR), else highest SQNR; passing results first."""
        out = {}
        for target in self.targets:
            rows = [r for r in self.results if r.target == target]
            if not rows:
                continue

            def key(r: MethodResult):
                sqnr = r.sqnr_db if r.sqnr_db is not None else float("inf")  # None: an exact match
                return (r.passed, r.accuracy if r.accuracy is not None else 0.0, sqnr)

            out[target] = max(rows, key=key).method
        return out

    def failed(self) -> list[MethodResult]:
        """The best result of each target when it fails its thresholds (no method passes for that target)."""
        best = self.best()
        return [r for r in self.results if best.get(r.target) == r.method and not r.passed]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["best"] = self.best()
        return d


def check_methods(methods: list[str]) -> list[str]:
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise UsageError(f"unknown calibration method {', '.join(map(repr, unknown)) or '(none)'}",
                         f"choose from {', '.join(METHODS)}")
    return list(dict.fromkeys(methods))


def check_int8_targets(targets: list[Target]) -> None:
    other = [t.name for t in targets if t.precision != "int8"]
    if other:
        raise UsageError(f"edgeport quantize makes int8 targets only, not {', '.join(other)}",
                         "use onnx-int8 and/or tflite-int8 (edgeport export makes float targets)")


def warm_shared_steps(prep, targets: list[Target], calibration, quant: QuantOptions, cache: dict) -> None:
    """Fill ``cache`` with what every method's export reuses: the fp32 ONNX graph; for tflite-int8 the onnx2tf
    SavedModel and TFLite's calibrated float model."""
    from edgeport.exporters import onnx_fp32

    req = ExportRequest(prep.loaded.name, prep.int8_program, prep.example, Path("."), prep.dynamic_batch, calibration,
                        quant, cache)
    onnx_fp32.to_onnx(req)
    if any(t.name == "tflite-int8" for t in targets):
        from edgeport.exporters import tflite

        tflite.calibrated_model(req)


def compare_methods(
    loaded,
    targets: list[Target],
    out_dir: Path,
    data,
    methods: list[str],
    quant: QuantOptions = QuantOptions(),
    thresholds: dict[str, Thresholds] | None = None,
    labelled=None,
    preprocess=None,
    subdirs: bool = True,
    on_stage: Callable[[str], None] = lambda s: None,
    then: Callable[[object, dict], None] | None = None,
) -> Comparison:
    """Export ``targets`` with each of ``methods`` (into ``out_dir/<method>/`` when ``subdirs``), validate them and,
    with ``labelled`` data (edgeport.data.labelled), measure top-1 accuracy of the float model and each artifact,
    with ``preprocess`` (default: the model's own). Writes parity.json beside each method's artifacts."""
    from edgeport.pipeline.export_flow import equalize_prepared, prepare, run_export, with_data
    from edgeport.validation import parity_file

    methods = check_methods(methods)
    check_int8_targets(targets)
    calibration = data.calibration.inputs if data is not None else None
    quant = with_data(quant, data)
    if calibration is None:
        raise UserError("int8 quantization needs calibration data", "pass --calib (an image folder, .npy/.npz, fashion-mnist)")
    t0 = time.perf_counter()
    on_stage("capture + fuse")
    prep = prepare(loaded)
    equalization = None
    if quant.transforms_graph:
        on_stage("equalize")
        equalization = equalize_prepared(prep, calibration, quant)
    cache: dict = {}
    options = {k: v for k, v in asdict(quant).items() if k != "method"}
    comparison = Comparison(loaded.name, [t.name for t in targets], methods, options, None, None, 0.0,
                            equalization=equalization)
    if data is not None:
        comparison.calibration = {"source": data.calibration.source, "samples": len(data.calibration)}
        comparison.validation = {"source": data.validation.source, "samples": len(data.validation)}
    float_accuracy, pre = None, None
    try:
        on_stage("shared steps: fp32 ONNX, onnx2tf, TFLite calibration")
        warm_shared_steps(prep, targets, calibration, quant, cache)
        comparison.shared_seconds = time.perf_counter() - t0
        if labelled is not None:
            on_stage(f"float accuracy on {labelled.source}")
            pre = preprocess or loaded.data_preprocess()
            float_accuracy = _accuracy_of_torch(loaded, labelled, pre)
            comparison.data = {"source": labelled.source, "samples": len(labelled), "float_accuracy": float_accuracy}
        for method in methods:
            out = Path(out_dir) / method if subdirs else Path(out_dir)
            marks: list[tuple[str, float]] = []

            def stage(s: str, method=method, marks=marks) -> None:
                marks.append((s, time.perf_counter()))
                on_stage(f"{method}: {s}")

            q = replace(quant, method=method)
            run = run_export(loaded, targets, out, data=data, quant=q, thresholds=thresholds, on_stage=stage,
                             prepared=prep, cache=cache)
            marks.append(("end", time.perf_counter()))
            parity_file.write(out, parity_file.build(run, data, q))
            comparison.results.extend(_results(run, method, marks, labelled, pre if labelled else None, float_accuracy,
                                               on_stage))
        if then is not None:  # a further step on the same prepared model and shared cache (accuracy control)
            then(prep, cache)
    finally:
        cache.clear()  # drops onnx2tf's temporary SavedModel
    return comparison


def _results(run, method: str, marks, labelled, pre, float_accuracy, on_stage) -> list[MethodResult]:
    seconds = {s.removeprefix("export "): nxt - t for (s, t), (_, nxt) in zip(marks, marks[1:]) if s.startswith("export ")}
    out = []
    problems = {p.split(":", 1)[0]: p for p in run.int8_problems}
    for artifact in run.artifacts:
        checks = [c for c in run.validation.for_stage(artifact.target) if c.against == "torch"] if run.validation else []
        check = checks[0] if checks else None
        failures = (check.failures if check else []) + ([problems[artifact.target]] if artifact.target in problems else [])
        r = MethodResult(method, artifact.target, str(artifact.path), round(seconds.get(artifact.target, 0.0), 3),
                         _finite(check.parity.sqnr_db) if check else None,
                         check.parity.top1_agreement if check else None, not failures, failures)
        if labelled is not None:
            on_stage(f"{method}: accuracy of {artifact.target} on {labelled.source}")
            r.accuracy = _accuracy_of_file(Path(artifact.path), pre, labelled)
            r.drop = float_accuracy - r.accuracy if float_accuracy is not None else None
        out.append(r)
    return out


def _finite(v: float) -> float | None:
    return v if v == v and abs(v) != float("inf") else None


def _accuracy_of_torch(loaded, labelled, pre) -> float:
    from edgeport.validation import evaluation

    return evaluation.evaluate(evaluation.open_torch(loaded, 1, f"{loaded.name} (torch)", lambda _: pre), labelled).top1


def _accuracy_of_file(path: Path, pre, labelled) -> float:
    from edgeport.validation import evaluation

    return evaluation.evaluate(evaluation.open_artifact(path, 1, (pre, "--model"), lambda _: pre), labelled).top1


def write(out_dir: Path, comparison: Comparison) -> Path:
    path = Path(out_dir) / RESULTS_FILE
    write_text(path, json.dumps(comparison.to_dict(), indent=2))
    return path
