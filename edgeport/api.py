"""edgeport's public Python API: ``export``, ``quantize``, ``validate``, ``evaluate``, ``bench``, ``run`` and
``inspect``, re-exported from ``edgeport``. The CLI parses options, calls these and prints their results.

``model`` is an ``nn.Module`` instance, a zoo name (``edgeport models --names``), ``"pkg.module:factory"`` /
``"path/file.py:factory"``, or a saved ``torch.export`` program (``.pt2``). Results are frozen dataclasses;
failures raise typed ``EdgeportError`` subclasses (``.exit_code``, ``.hint``), never ``SystemExit``.

    import edgeport
    r = edgeport.export("mobilenet_v2", ["onnx-fp32", "tflite-int8"], calib="photos/", out="artifacts")
    print(r.artifacts[0].path, r.artifacts[0].parity)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from edgeport.data import DEFAULT_CALIBRATION, DEFAULT_VALIDATION
from edgeport.errors import ParityFailed, UsageError, UserError
from edgeport.quantization.options import QuantOptions

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from edgeport.validation.checks import Thresholds


# --- results ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ParityResult:
    """One artifact compared with the PyTorch model in the artifact's own runtime."""

    against: str  # "torch" (judged) or the stage it was made from (reported only)
    judged: bool  # False: reported, not judged (e.g. int8 of random weights): never a pass
    passed: bool  # only meaningful when judged
    failures: tuple[str, ...]
    metrics: dict  # max_abs, max_rel, cosine, sqnr_db, top1_agreement, top5_overlap, samples
    accuracy: float | None = None  # top-1 on labelled validation data, when there are labels

    @property
    def sqnr_db(self) -> float:
        return self.metrics["sqnr_db"]


@dataclass(frozen=True)
class ArtifactResult:
    """One file edgeport made or checked."""

    target: str  # "tflite-int8"
    path: Path
    sha256: str
    size: int
    format: str  # "tflite"
    int8_coverage: dict | None = None  # compute ops {"int8": n, "float": m}, read from the graph (int8 targets)
    delegation: dict | None = None  # what the runtime's fast path runs (XNNPACK / ORT integer kernels)
    parity: ParityResult | None = None  # None: not validated
    # ops kept float because the converter or runtime cannot run them in int8: {"layer", "op", "tensor", "why"}
    auto_float: tuple[dict, ...] = ()


@dataclass(frozen=True)
class ExportResult:
    model: str
    input_shape: tuple[int, ...]
    artifacts: tuple[ArtifactResult, ...]
    parity_file: Path | None  # parity.json beside the artifacts
    passed: bool  # every judged check passed and every int8 graph is int8
    problems: tuple[str, ...] = ()  # int8 graphs with compute ops left float, failed thresholds
    warnings: tuple[str, ...] = ()
    data: dict | None = None  # calibration/validation sources and sample counts
    fusion: dict = field(default_factory=dict)
    run: Any = field(default=None, repr=False, compare=False)  # the internal ExportRun (the CLI renders it)
    split: Any = field(default=None, repr=False, compare=False)  # the DataSplit used (None without calib)

    def artifact(self, target: str) -> ArtifactResult:
        for a in self.artifacts:
            if a.target == target:
                return a
        raise UserError(f"no {target} artifact in this result", f"it has {', '.join(a.target for a in self.artifacts)}")


@dataclass(frozen=True)
class ValidateResult:
    model: str
    artifacts: tuple[ArtifactResult, ...]
    parity_file: Path | None
    passed: bool
    run: Any = field(default=None, repr=False, compare=False)


# --- model and data ---------------------------------------------------------------------------------------


def load_model(model, *, weights=None, input_shape: Sequence[int] | None = None, num_classes: int | None = None,
               width: float | None = None, name: str | None = None):
    """A LoadedModel (edgeport.models.source) from any of the model kinds the API accepts."""
    from edgeport.models import source

    shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
    kwargs = {k: v for k, v in {"num_classes": num_classes, "width_mult": width}.items() if v is not None}
    if isinstance(model, (str, Path)) and str(model).endswith(".pt2"):
        return source.load_program(Path(model), input_shape=shape)
    if isinstance(model, (str, Path)):
        return source.load(str(model), weights=Path(weights) if weights is not None else None, input_shape=shape, **kwargs)
    return source.from_module(model, input_shape=shape, weights=Path(weights) if weights is not None else None, name=name,
                              **kwargs)


def load_data(loaded, calib, *, calib_samples: int = DEFAULT_CALIBRATION, val_samples: int = DEFAULT_VALIDATION,
              seed: int = 0, preprocess: dict | None = None, val_data: str | Path | np.ndarray | None = None):
    """The calibration/validation DataSplit for ``loaded`` (None without ``calib``): calibration from ``calib``,
    validation from ``val_data`` when given, else a disjoint part of ``calib``."""
    from edgeport.data import calibration

    if calib is None:
        if val_data is not None:
            raise UsageError("val_data without calib: validation data is held out from calibration data",
                             "pass calib= too (an image folder, an .npz, fashion-mnist, ...)")
        return None
    return calibration.for_model(loaded, _source(calib), calib_samples, val_samples, seed, preprocess or {},
                                 _source(val_data))


def _source(data):
    """A data argument as edgeport.data.calibration takes it: paths as strings, arrays (and anything else, which it
    refuses with a typed error) as they are."""
    return str(data) if isinstance(data, Path) else data


def _data_name(data) -> str:
    from edgeport.data.calibration import array_name

    return str(data) if isinstance(data, (str, Path)) else array_name(data) if hasattr(data, "dtype") else repr(data)[:40]


def _label(model) -> str:
    """How progress messages name a model: its reference, or the class of an in-memory module."""
    return str(model) if isinstance(model, (str, Path)) else type(model).__name__


def _targets(targets) -> list:
    from edgeport.exporters import parse_targets

    if isinstance(targets, str):
        return parse_targets(targets)
    names = [getattr(t, "name", t) for t in targets]
    if not all(isinstance(n, str) for n in names):
        raise UsageError(f"targets must be names like 'onnx-fp32': got {targets!r}")
    return parse_targets(",".join(names))


def _parity(check) -> ParityResult:
    return ParityResult(check.against, check.judged, check.judged and check.passed, tuple(check.failures),
                        check.parity.to_dict(), check.accuracy)


def _artifact_results(run, with_delegation: bool) -> tuple[ArtifactResult, ...]:
    from edgeport.formats import format_of

    out = []
    for art in run.artifacts:
        checks = run.validation.for_stage(art.target) if run.validation else []
        judged = [c for c in checks if c.against == "torch"] or checks
        deleg = None
        if with_delegation:
            d = format_of(art.path).delegation(art.path)
            deleg = d.to_dict() if d is not None else None
        out.append(ArtifactResult(art.target, Path(art.path), art.sha256, art.size, art.format,
                                  dict(art.dtypes) or None, deleg, _parity(judged[0]) if judged else None,
                                  tuple(art.auto_float)))
    return tuple(out)


# --- the API ------------------------------------------------------------------------------------------------


def export(
    model,
    targets: str | Iterable[str] = ("onnx-fp32",),
    *,
    input_shape: Sequence[int] | None = None,
    weights: str | Path | None = None,
    calib: str | Path | np.ndarray | None = None,
    val_data: str | Path | np.ndarray | None = None,
    calib_samples: int = DEFAULT_CALIBRATION,
    val_samples: int = DEFAULT_VALIDATION,
    seed: int = 0,
    preprocess: dict | None = None,
    quant: QuantOptions = QuantOptions(),
    out: str | Path = "artifacts",
    validate: bool = True,
    thresholds: dict[str, Thresholds] | None = None,
    dynamic_batch: bool = False,
    pte_layout: str = "nchw",
    num_classes: int | None = None,
    width: float | None = None,
    strict: bool = True,
    require_judged: bool = False,
    delegation: bool = True,
    on_stage: Callable[[str], None] = lambda s: None,
    cache: dict | None = None,
    name: str | None = None,
) -> ExportResult:
    """Capture -> fuse (equivalence-checked) -> export each target -> verify int8 graphs -> validate every
    artifact in its own runtime against PyTorch; writes the artifacts and ``parity.json`` into ``out``.

    ``calib`` is an image folder, an .npy/.npz, ``"fashion-mnist"``, ``"synthetic"`` or a numpy array (uint8 pixels
    N,H,W[,C], preprocessed like a file's, or float32 shaped like the model input); int8 targets need it.
    Calibration takes up to ``calib_samples`` of it and validation up to ``val_samples`` of ``val_data`` (same kinds)
    or, without ``val_data``, of the rest of ``calib`` (a set too small for both is split in two, with a warning).
    ``preprocess`` overrides the model's preprocessing (``mean``, ``std``, ``scale``, ``bgr``, ...).
    ``thresholds`` maps a target or precision ("int8") to edgeport.validation.checks.Thresholds.
    ``pte_layout`` ("nchw" or "nhwc", edgeport.exporters.PTE_LAYOUTS) is the memory layout of the executorch
    targets' image input: "nhwc" files read channels-last memory (shape still NCHW) and skip XNNPACK's input transpose.
    With ``strict`` (the default) a failed threshold or an int8 graph left float raises ParityFailed after
    parity.json is written; the result is on the exception as ``.result``. An artifact compared with PyTorch but
    not judged (int8 of a zoo model's random weights) is never a pass; ``require_judged`` makes it a failure."""
    from edgeport.pipeline.export_flow import run_export
    from edgeport.validation import parity_file

    chosen = _targets(targets)
    for t in chosen:  # an optional extra that is not installed: say so now, not after capture and fusion
        t.check_installed()
    if not isinstance(quant, QuantOptions):
        raise UsageError(f"quant must be edgeport.QuantOptions, not {type(quant).__name__}")
    needs_calib = [t.name for t in chosen if t.precision == "int8"]
    if (needs_calib or quant.needs_calibration) and calib is None:
        raise UserError(f"{', '.join(needs_calib) or 'bias correction / AdaRound'} needs calibration data",
                        "pass calib= (an image folder, an .npz, fashion-mnist, ...); calib='synthetic' only to try the flow")
    on_stage(f"loading {_label(model)}")
    loaded = load_model(model, weights=weights, input_shape=input_shape, num_classes=num_classes, width=width, name=name)
    if calib is not None:
        on_stage(f"{loaded.name}: reading calibration data ({_data_name(calib)})")
    data = load_data(loaded, calib, calib_samples=calib_samples, val_samples=val_samples, seed=seed, preprocess=preprocess,
                     val_data=val_data)
    out = Path(out)
    run = run_export(loaded, chosen, out, data=data, quant=quant, dynamic_batch=dynamic_batch, validate=validate,
                     thresholds=thresholds or {}, on_stage=lambda s: on_stage(f"{loaded.name}: {s}"), cache=cache,
                     pte_layout=pte_layout)
    if data is not None:  # what the data could not give, said first
        run.warnings[:0] = data.warnings(calib_samples, val_samples, int8=bool(needs_calib))
    record = parity_file.build(run, data, run.request.quant)  # the options as run (automatic choices made)
    path = parity_file.write(out, record)
    problems = list(run.int8_problems)
    if run.validation is not None:
        problems += [f"{c.stage} vs {c.against}: {'; '.join(c.failures)}" for c in run.validation.failed]
        if require_judged:
            problems += [f"{c.stage} vs torch: not judged ({c.not_judged_because})" for c in run.validation.unjudged]
    passed = run.passed and not problems
    result = ExportResult(
        loaded.name, tuple(loaded.input_shape), _artifact_results(run, delegation), path, passed, tuple(problems),
        tuple(run.warnings), record.get("data"), record["fusion"], run, data,
    )
    if strict and not passed:
        hint = "allow named layers with --allow-float, or see `edgeport inspect`" if run.int8_problems else f"see {path}"
        exc = ParityFailed(problems[0], hint)
        exc.result = result
        raise exc
    return result


def validate(
    artifacts: Path | str | Iterable[Path | str],
    model,
    *,
    weights: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
    calib: str | Path | np.ndarray | None = None,
    val_data: str | Path | np.ndarray | None = None,
    val_samples: int = DEFAULT_VALIDATION,
    seed: int = 0,
    preprocess: dict | None = None,
    thresholds: dict[str, Thresholds] | None = None,
    report: str | Path | None = None,
    num_classes: int | None = None,
    width: float | None = None,
    strict: bool = True,
    on_stage: Callable[[str], None] = lambda s: None,
) -> ValidateResult:
    """Run existing artifacts in their own runtimes on held-out data (``val_data``, else a part of ``calib``;
    synthetic without either) and compare with ``model``; writes parity.json to ``report`` (default: beside the
    first artifact)."""
    from edgeport.pipeline.artifact import Artifact
    from edgeport.pipeline.export_flow import ExportRun, judging_thresholds, prepare
    from edgeport.validation import parity_file
    from edgeport.validation.checks import target_of_file, validate_artifacts

    paths = [Path(artifacts)] if isinstance(artifacts, (str, Path)) else [Path(a) for a in artifacts]
    if not paths:
        raise UsageError("no artifact to validate")
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p} does not exist")
    on_stage(f"loading {_label(model)}")
    loaded = load_model(model, weights=weights, input_shape=input_shape, num_classes=num_classes, width=width)
    on_stage("preparing data")
    data = load_data(loaded, calib if calib is not None else "synthetic", calib_samples=1, val_samples=val_samples,
                     seed=seed, preprocess=preprocess, val_data=val_data)
    on_stage("capture + fuse")
    prep = prepare(loaded)
    run = ExportRun(prep)
    pairs = []
    overrides = thresholds or {}
    for p in paths:
        target = target_of_file(p)
        art = Artifact.from_file(p, target.name, target.format)
        run.artifacts.append(art)
        run.targets.append(target)
        pairs.append((art, judging_thresholds(target, overrides)))  # the user's override, else the target's own
    on_stage("running artifacts")
    val = run.validation_data = data.validation
    reference, fused = prep.outputs(val.inputs)
    run.validation = validate_artifacts(reference, fused, val.inputs, pairs, val.labels, val.source, held_out=val.held_out)
    path = parity_file.write(Path(report) if report else paths[0].parent, parity_file.build(run, data))
    result = ValidateResult(loaded.name, _artifact_results(run, False), path, not run.validation.failed, run)
    if strict and run.validation.failed:
        c = run.validation.failed[0]
        exc = ParityFailed(f"{c.stage} vs {c.against}: {'; '.join(c.failures)}", f"see {path}")
        exc.result = result
        raise exc
    return result


def inspect(path: str | Path):
    """The graph of an artifact: ops and the dtype each computes in, weight dtypes, inputs/outputs
    (edgeport.formats.graph_summary.GraphSummary; ``.to_dict()`` for JSON)."""
    from edgeport.formats.graph_summary import summarize

    return summarize(Path(path))


def bench(
    artifacts: Path | str | Iterable[Path | str],
    *,
    threads: Sequence[int] = (1,),
    budget_s: float = 5.0,
    device: str = "local",
    device_options: dict | None = None,
) -> list:
    """Latency of each artifact in its own runtime, per thread count: on this machine (a list of
    edgeport.benchmark.local.Timing: p50/p90/p99, load time, memory), or on ``device`` (``qemu-pi5``,
    ``ssh://user@host``, ``docker-arm64``: a list of edgeport.benchmark.device_bench.DeviceResult, with the
    device's outputs compared with this machine's). ``device_options`` go to the device (ssh identity, runs...)."""
    from edgeport.benchmark.devices import parse_device

    paths = [Path(artifacts)] if isinstance(artifacts, (str, Path)) else [Path(a) for a in artifacts]
    if not paths:
        raise UsageError("nothing to time", "pass .onnx/.tflite files")
    for p in paths:
        if not p.is_file():
            raise UserError(f"{p} does not exist")
    counts = [int(n) for n in threads]
    if not counts or any(n < 1 for n in counts):
        raise UsageError(f"threads {tuple(threads)!r} needs positive integers")
    spec = parse_device(device)
    if spec.kind == "local":
        from edgeport.benchmark.local import bench_artifact

        return [bench_artifact(p, threads=n, budget_s=budget_s) for p in paths for n in counts]
    from edgeport.benchmark.device_bench import bench_on
    from edgeport.benchmark.devices import open_device

    dev = open_device(spec, **(device_options or {}))
    if hasattr(dev, "preflight"):
        dev.preflight()
    return [bench_on(dev, p, n) for p in paths for n in counts]


def evaluate(
    artifacts: Path | str | Iterable[Path | str],
    data: str | Path,
    *,
    model=None,
    weights: str | Path | None = None,
    input_shape: Sequence[int] | None = None,
    limit: int | None = None,
    threads: int = 1,
    batch: int = 256,
    preprocess: dict | None = None,
) -> list:
    """Top-1/top-5 accuracy on labelled data (``fashion-mnist``, ``digits``, an ImageFolder directory, an .npz
    with x, y) of ``model`` in PyTorch (first, when given) and of each artifact in its own runtime, with the
    model's preprocessing (or the one parity.json beside the artifact records): EvalResult each
    (edgeport.validation.evaluation)."""
    from dataclasses import replace

    from edgeport.validation import evaluation

    paths = [Path(artifacts)] if isinstance(artifacts, (str, Path)) else [Path(a) for a in artifacts]
    if not paths and model is None:
        raise UsageError("nothing to evaluate", "pass artifacts and/or model=")
    loaded = load_model(model, weights=weights, input_shape=input_shape) if model is not None else None
    overrides = (lambda pre: replace(pre, **preprocess)) if preprocess else (lambda pre: pre)
    dataset = evaluation.labelled_data(str(data), limit)
    subjects = evaluation.open_subjects(paths, loaded, threads, overrides, model_ref=str(model) if isinstance(model, str) else None)
    return [evaluation.evaluate(s, dataset, batch) for s in subjects]


def quantize(
    model,
    calib: str | Path | np.ndarray,
    *,
    targets: str | Iterable[str] = ("onnx-int8", "tflite-int8"),
    methods: Sequence[str] | None = None,
    quant: QuantOptions = QuantOptions(),
    data: str | Path | None = None,
    limit: int | None = None,
    out: str | Path = "artifacts",
    input_shape: Sequence[int] | None = None,
    weights: str | Path | None = None,
    val_data: str | Path | np.ndarray | None = None,
    calib_samples: int = DEFAULT_CALIBRATION,
    val_samples: int = DEFAULT_VALIDATION,
    seed: int = 0,
    preprocess: dict | None = None,
    thresholds: dict[str, Thresholds] | None = None,
    strict: bool = True,
    on_stage: Callable[[str], None] = lambda s: None,
):
    """Int8 targets with one calibration method (``quant.method``) or several (``methods``; files in
    ``out/<method>/``), from one capture, fusion and onnx2tf conversion; each validated against PyTorch and,
    with labelled ``data``, scored for top-1 accuracy beside the float model. Returns the comparison
    (edgeport.quantization.method_comparison.Comparison: a row per method and target, ``best()``) and writes
    ``out/methods.json``. With ``strict``, a target no method passes raises ParityFailed (``.result``)."""
    from dataclasses import replace

    from edgeport.quantization import method_comparison as mc
    from edgeport.validation.evaluation import labelled_data

    chosen = _targets(targets)
    mc.check_int8_targets(chosen)
    several = bool(methods) and len(methods) > 1
    methods = mc.check_methods(list(methods) if methods else [quant.method])
    on_stage(f"loading {_label(model)}")
    loaded = load_model(model, weights=weights, input_shape=input_shape)
    split = load_data(loaded, calib, calib_samples=calib_samples, val_samples=val_samples, seed=seed, preprocess=preprocess,
                      val_data=val_data)
    pre = loaded.data_preprocess()
    if preprocess:
        pre = replace(pre, **preprocess)
    labelled = labelled_data(str(data), limit) if data is not None else None
    out = Path(out)
    comparison = mc.compare_methods(loaded, chosen, out, split, methods, replace(quant, method=methods[0]), thresholds or {},
                                    labelled=labelled, preprocess=pre, subdirs=several, on_stage=on_stage)
    comparison.warnings[:0] = split.warnings(calib_samples, val_samples, int8=True)
    mc.write(out, comparison)
    failed = comparison.failed()
    if strict and failed:
        r = failed[0]
        exc = ParityFailed(f"{r.target} ({r.method}): {'; '.join(r.failures)}", f"see {out / 'methods.json'}")
        exc.result = comparison
        raise exc
    return comparison


@dataclass(frozen=True)
class MergeResult:
    manifest: dict  # what one unsharded run's manifest.json holds (edgeport.report.manifest)
    written: tuple[Path, ...]  # the merged reports

    @property
    def passed(self) -> bool:
        return all(r["passed"] and not r["error"] for r in self.manifest["recipes"])


def merge_reports(shards: Iterable[Path | str], *, out: str | Path, wait: bool = False, strict: bool = True) -> MergeResult:
    """Join the ``out`` folders of the N ``run(..., shard=(K, N))`` jobs of one run into what one unsharded run
    writes (manifest.json, report.md, report.html, junit.xml and the artifacts) in ``out``. Missing, duplicated or
    conflicting shards are errors that name the shard (edgeport.report.merge).
    With ``strict``, a failed recipe raises after the reports are written, as ``run`` does."""
    from edgeport.pipeline.recipe_run import run_failure
    from edgeport.report.merge import merge

    folders = [Path(s) for s in ([shards] if isinstance(shards, (str, Path)) else shards)]
    if not folders:
        raise UsageError("no shard folder given", "pass the --out folder of every `edgeport run --shard K/N` job")
    manifest, written = merge(folders, Path(out), wait=wait)
    result = MergeResult(manifest, tuple(written))
    failure = run_failure(manifest["recipes"], Path(out)) if strict else None
    if failure is not None:
        failure.result = result
        raise failure
    return result


def run(recipes: Path | str | Iterable[Path | str], *, out: str | Path = "artifacts", cache_dir: str | Path | None = None,
        force: bool = False, wait: bool = False, strict: bool = True, allow_paths: Iterable[str | Path] = (),
        shard: tuple[int, int] | str | None = None):
    """Run recipes end to end (capture -> fuse -> quantize -> export -> validate -> bench, each stage cached by
    content) and write manifest.json, report.md, report.html and junit.xml into ``out``: a RunResult
    (edgeport.pipeline.recipe_run). With ``strict``, a recipe error or failed threshold raises after the reports
    are written (the result is on the exception as ``.result``). ``shard=(K, N)`` (or ``"K/N"``) runs only the K-th
    of N disjoint parts of the recipes (edgeport.pipeline.shards); ``merge_reports`` joins the N outputs."""
    from edgeport.pipeline.recipe_run import parse_recipes, run_recipes
    from edgeport.pipeline.shards import parse_spec

    paths = [Path(recipes)] if isinstance(recipes, (str, Path)) else [Path(r) for r in recipes]
    if not paths:
        raise UsageError("no recipe given", "pass recipe TOML files (edgeport recipe new writes one)")
    spec = parse_spec(shard) if shard is not None else None
    out = Path(out)
    parsed = parse_recipes(paths, tuple(Path(p) for p in allow_paths))
    result = run_recipes(parsed, out, cache_dir=Path(cache_dir) if cache_dir else None, force=force, wait=wait, shard=spec)
    failure = result.failure(out) if strict else None
    if failure is not None:
        failure.result = result
        raise failure
    return result
