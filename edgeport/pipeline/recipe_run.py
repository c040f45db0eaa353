"""``edgeport run``: for each recipe, capture -> fuse -> quantize -> export -> validate -> bench, with a cache.

Three cached stages, each keyed by content (edgeport.pipeline.stage_cache): *export* (capture, fuse, quantize and
export every target; key: model code, weights, recipe sections, calibration data, tool versions and
edgeport's exporter code), *validate* (key: the artifacts' sha256, validation data, thresholds) and *bench*
(key: artifact sha256, device, threads, budget, host CPU, runtime versions). A hit restores the stage's
record instead of recomputing it, and the result says which stages were reused. Every number comes from a
measurement, made now or in the run that filled the cache (the manifest says which).

A recipe whose thresholds fail does not stop the others: every recipe runs, then the caller exits 3.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeport.errors import EdgeportError
from edgeport.pipeline import stage_cache
from edgeport.pipeline.artifact import ALL_TOOLS, Artifact, tool_versions
from edgeport.pipeline.recipe import Recipe
from edgeport.pipeline.shards import ShardSpec
from edgeport.pipeline.stage_cache import StageCache, hash_files, key_of, producer_sources
from edgeport.quantization.options import HOST_DEPLOY, resolve_deploy
from edgeport.util.atomic_file import atomic_path, write_text


@dataclass
class RecipeResult:
    recipe: Recipe
    model: str = ""
    artifacts: list[dict] = field(default_factory=list)  # Artifact.to_dict() with paths relative to --out
    fusion: dict | None = None
    int8_problems: list[str] = field(default_factory=list)
    validation: dict | None = None
    accuracy: list[dict] = field(default_factory=list)  # accuracy checks against [accuracy] thresholds
    timings: list[dict] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)  # stage -> seconds in this run
    reused: list[str] = field(default_factory=list)  # stages restored from the cache
    warnings: list[str] = field(default_factory=list)
    nondeterministic: list[dict] = field(default_factory=list)  # targets whose rebuild changed bytes
    per_layer: dict | None = None  # target -> [{"layer", "sqnr_db"}]: filled by a per-layer diagnosis when one exists
    accuracy_control: list[dict] | None = None  # [quantize] max_accuracy_drop: ControlResult.to_dict() per int8 target
    recommendation: list[dict] = field(default_factory=list)  # per device, when the recipe benches several (bench.recommend)
    made_with: dict = field(default_factory=dict)  # input_shape, weights, data, quantization, equalization: parity.json's
    error: str | None = None
    error_code: int | None = None

    @property
    def failures(self) -> list[str]:
        out = list(self.int8_problems)
        for c in (self.validation or {}).get("checks", []):
            if c["judged"] and not c["passed"]:
                out.append(f"{c['stage']}: {'; '.join(c['failures'])}")
        out += [f"{a['target']}: {'; '.join(a['failures'])}" for a in self.accuracy if not a["passed"]]
        out += [f"{c['target']}: accuracy control: drop {c['drop']:.2f} points exceeds the budget {c['budget']:.2f}"
                + (f" ({c['unreachable']})" if c.get("unreachable") else "")
                for c in self.accuracy_control or [] if not c["within_budget"]]
        return out

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures


class _Clock:
    """Times named stages of one recipe and tells the display which stage runs."""

    def __init__(self, result: RecipeResult, show: Callable[[str], None]):
        self.result, self.show = result, show
        self.current: str | None = None
        self.started = 0.0

    def stage(self, name: str) -> None:
        self.stop()
        self.current, self.started = name, time.perf_counter()
        self.show(name)

    def stop(self) -> None:
        if self.current is not None:
            d = self.result.durations
            d[self.current] = round(d.get(self.current, 0.0) + time.perf_counter() - self.started, 3)
            self.current = None


class Inputs:
    """What a recipe's stages read, loaded once and only when a stage misses the cache."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self._loaded = self._data = self._prep = None
        self._data_done = False

    @property
    def loaded(self):
        if self._loaded is None:
            from edgeport.models import source as model_source

            m = self.recipe.model
            kwargs = {k: v for k, v in {"num_classes": m.num_classes, "width_mult": m.width}.items() if v is not None}
            self._loaded = model_source.load(m.ref, weights=m.weights, input_shape=m.input_shape, **kwargs)
        return self._loaded

    @property
    def data(self):
        """The DataSplit, or None when the recipe has no [data] calib (synthetic parity checks only)."""
        if not self._data_done:
            from dataclasses import replace

            from edgeport.data import calibration

            d = self.recipe.data
            if d.calib is not None:
                pre = replace(self.loaded.data_preprocess(), **{k: tuple(v) if isinstance(v, list) else v
                                                                for k, v in self.recipe.preprocess.items()})
                self._data = calibration.load(d.calib, pre, self.loaded.input_shape, d.calib_samples, d.val_samples, d.seed,
                                              d.val_data)
                for part in (self._data.calibration, self._data.validation):
                    calibration.check_fits(part, self.loaded.input_shape)
            self._data_done = True
        return self._data

    def prepared(self):
        if self._prep is None:
            from edgeport.pipeline.export_flow import prepare

            self._prep = prepare(self.loaded, self.recipe.dynamic_batch)
        return self._prep


def model_code_files(ref: str) -> list[Path]:
    """The source files that define the model: the zoo package, or the user's file/module."""
    import importlib.util

    target, sep, _ = ref.rpartition(":")
    if not sep:
        return [stage_cache.EDGEPORT_DIR / "models", stage_cache.EDGEPORT_DIR / "registry.py"]
    if target.endswith(".py"):
        return [Path(target)]
    spec = importlib.util.find_spec(target)
    return [Path(spec.origin)] if spec and spec.origin else []


def _weights_file(recipe: Recipe) -> Path | None:
    if recipe.model.weights is not None:
        return recipe.model.weights
    if ":" not in recipe.model.ref:
        from edgeport.models import MODELS

        spec = MODELS.get(recipe.model.ref)
        return stage_cache.EDGEPORT_DIR / spec.weights if spec.weights else None
    return None


def _data_files(calib: str | None) -> list[Path]:
    if calib in (None, "synthetic"):
        return []
    if calib.startswith("fashion-mnist"):
        from edgeport.data import fashion_mnist

        rest = calib.partition(":")[2]
        return [Path(rest) if rest not in ("", "train", "test") else fashion_mnist.DEFAULT_DIR]
    return [Path(calib)]


def export_key(recipe: Recipe) -> str:
    raw = recipe.raw
    return key_of({
        "stage": "export",
        "model_code": hash_files(model_code_files(recipe.model.ref), stage_cache.CODE_SUFFIXES),
        "weights": hash_files([w]) if (w := _weights_file(recipe)) else None,
        "recipe": {s: raw.get(s) for s in ("model", "preprocess", "data", "quantize", "export")},
        # deploy = "x86" means this machine's preset; only then is it in the key (other keys stay as they were)
        **({"deploy": resolve_deploy(recipe.quantize.deploy)} if recipe.quantize.deploy == HOST_DEPLOY else {}),
        "data": hash_files(_data_files(recipe.data.calib)),
        "tools": tool_versions(ALL_TOOLS),
        "edgeport": producer_sources(),
    })


def run_recipe(recipe: Recipe, out: Path, cache: StageCache, show: Callable[[str], None] = lambda s: None) -> RecipeResult:
    """Run one recipe into ``out/<recipe.name>/``; EdgeportErrors are recorded on the result, not raised."""
    result = RecipeResult(recipe, model=recipe.model.ref.rpartition(":")[2])
    clock = _Clock(result, show)
    inputs = Inputs(recipe)
    try:
        artifacts, targets = _export_stage(recipe, inputs, out, cache, clock, result)
        _validate_stage(recipe, inputs, artifacts, targets, out, cache, clock, result)
        _bench_stage(recipe, artifacts, out, cache, clock, result)
    except EdgeportError as exc:
        result.error, result.error_code = str(exc), exc.exit_code
    finally:
        clock.stop()
    return result


def _export_stage(recipe, inputs: Inputs, out: Path, cache: StageCache, clock: _Clock, result: RecipeResult):
    from edgeport.exporters import TARGETS, load_all

    load_all()
    clock.stage("hash inputs")
    key = export_key(recipe)
    targets = [TARGETS.get(t) for t in recipe.targets]
    hit = cache.load("export", key)
    if hit is None:
        record, folder = _build_export(recipe, inputs, targets, key, cache, clock, result)
    else:
        record, folder = hit
        result.reused.append("export")
    result.fusion, result.int8_problems = record["fusion"], record["int8_problems"]
    result.per_layer = record.get("per_layer")
    result.accuracy_control = record.get("accuracy_control")
    result.model = record["model"]
    if record.get("input_shape") is None:  # an entry from before input_shape was recorded: read it from the model
        record = {**record, "input_shape": list(inputs.loaded.input_shape)}
    result.made_with = {k: record.get(k) for k in ("input_shape", "weights", "quantization", "equalization")}
    result.made_with["data"] = record.get("data")
    clock.stage("write artifacts")
    dest = Path(out) / recipe.name
    artifacts = []
    for a in record["artifacts"]:
        path = dest / a["file"]
        with atomic_path(path) as tmp:
            shutil.copyfile(folder / a["file"], tmp)
        art = Artifact.from_file(path, a["target"], a["format"], dtypes=a["dtypes"], parent=a["parent"], tools=a["tools"])
        if art.sha256 != a["sha256"]:
            raise EdgeportError(f"cache entry {folder} is damaged ({a['file']} changed)", "rerun with --force")
        sidecar = {**art.to_dict(), "path": str(path.relative_to(out)), "recipe": recipe.name,
                   "dtype_summary": a["dtype_summary"], "cache_key": key}
        write_text(path.with_name(path.name + ".json"), _json(sidecar))
        artifacts.append(art)
        result.artifacts.append({**sidecar, "sidecar": str(path.relative_to(out)) + ".json"})
    return artifacts, targets


def _build_export(recipe, inputs: Inputs, targets, key: str, cache: StageCache, clock: _Clock, result: RecipeResult):
    from edgeport.exporters import QuantOptions
    from edgeport.formats.graph_summary import summarize
    from edgeport.pipeline.export_flow import run_export

    clock.stage("load model + data")
    loaded, data = inputs.loaded, inputs.data
    q = recipe.quantize
    staging = cache.staging("export")
    stage_names = {"capture + fuse": "capture + fuse"}

    def on_stage(s: str) -> None:  # int8 targets quantize while they export
        name = stage_names.get(s) or (f"quantize + export {s[7:]}" if s.endswith("-int8") else s)
        clock.stage(name)

    try:
        from edgeport.exporters.onnx_int8 import deploy_options

        quant = deploy_options(QuantOptions(q.method, io_dtype=q.io_dtype, float_fallback=q.allow_float, no_float=q.no_float, cle=q.cle,
                                            bias_correction=q.bias_correction, adaround=q.adaround,
                                            range_search=q.range_search), q.deploy,
                               onnx_format=q.onnx_format, onnx_activations=q.onnx_activations, onnx_reduce_range=q.onnx_reduce_range,
                               onnx_hard_activations=q.onnx_hard_activations)
        # the run's fp32 models, SavedModel and TFLite calibration, kept for the diagnosis and accuracy control
        keep: dict | None = {} if q.per_layer or q.max_accuracy_drop is not None else None
        run = run_export(loaded, targets, staging, data=data, quant=quant,
                         dynamic_batch=recipe.dynamic_batch, validate=False, on_stage=on_stage, cache=keep,
                         pte_layout=recipe.pte_layout)
        try:
            per_layer = _per_layer(run, data, clock) if q.per_layer else None
            control = _accuracy_control(recipe, run, data, run.request.quant, keep, clock) if q.max_accuracy_drop is not None else None
        finally:
            if keep is not None:
                keep.clear()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # no half-built entry left in the cache
        raise
    inputs._prep = run.prep
    clock.stage("summarize graphs")
    tools = tool_versions(ALL_TOOLS)
    arts = []
    for a in run.artifacts:
        g = summarize(a.path)
        ops: dict[str, int] = {}
        for (_, dt), n in g.op_dtypes.items():
            ops[dt] = ops.get(dt, 0) + n
        arts.append({"file": a.path.name, "target": a.target, "format": a.format, "sha256": a.sha256, "size": a.size,
                     "dtypes": a.dtypes, "parent": a.parent, "tools": tools,
                     "dtype_summary": {"compute_ops": ops, "weight_elements": dict(g.weight_dtypes)}})
    calibration = None if data is None else {"source": data.calibration.source, "samples": len(data.calibration),
                                             "synthetic": data.calibration.synthetic}
    record = {"model": loaded.name, "files": [a["file"] for a in arts], "artifacts": arts,
              "input_shape": list(loaded.input_shape), "weights": str(loaded.weights) if loaded.weights else None,
              "quantization": dict(run.request.quant.__dict__), "equalization": run.equalization,
              "data": None if calibration is None else {"calibration": calibration},
              "fusion": {**run.prep.report.to_dict(), "max_rel_error": run.prep.equivalence.max_rel_error},
              "int8_problems": run.int8_problems, "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "per_layer": per_layer, "accuracy_control": control}
    previous = cache.peek("export", key)  # with --force: what the same inputs gave last time
    if previous is not None:
        result.nondeterministic += changed_bytes(previous[0]["artifacts"], arts)
    return record, cache.store("export", key, record, staging)


def _per_layer(run, data, clock: _Clock) -> dict | None:
    """[quantize] per_layer: edgeport.diagnose.per_layer of the int8 targets on the validation data, as target -> rows
    in graph order (manifest ``per_layer_int8``); None without int8 targets or data."""
    from edgeport.diagnose.per_layer import diagnose_run

    if data is None or not any(a.target.endswith("-int8") for a in run.artifacts):
        return None
    clock.stage("per-layer diagnosis")
    return diagnose_run(run, data.validation.inputs, data.validation.source).series()


def _accuracy_control(recipe: Recipe, run, data, quant, cache: dict, clock: _Clock) -> list[dict]:
    """[quantize] max_accuracy_drop: edgeport.quantization.accuracy_control on each int8 target (scored on ``control_data``, else
    the validation split: accuracy with labels, agreement with the float model without). The controlled files replace
    the staged ones; the layers kept float become the artifact's allowed float fallback."""
    from edgeport.data import labelled
    from edgeport.quantization.accuracy_backends import control_set, control_targets

    q = recipe.quantize
    spec = q.control_data
    if spec is not None and (recipe.folder / spec).exists():
        spec = str(recipe.folder / spec)
    clock.stage("accuracy control")
    val = data.validation
    source = labelled.load(spec) if spec is not None else None
    if source is None and val.labels is not None:  # the validation split, labelled: score accuracy on it
        from edgeport.quantization.accuracy_control import ControlSet

        reference, _ = run.prep.outputs(val.inputs)
        cset = ControlSet(val.inputs, val.labels, reference, f"{val.source}, {len(val)} samples")
    else:
        cset = control_set(run.prep, source, q.control_samples, val)
    int8 = [a.target for a in run.artifacts if a.target.endswith("-int8")]
    results = control_targets(run.prep, int8, data.calibration.inputs, quant, cset, q.max_accuracy_drop,
                              run.artifacts[0].path.parent, cache, on_step=lambda s: None, bench=False)
    for i, a in enumerate(run.artifacts):  # the files changed: re-read hash, size and int8/float op counts
        if a.target in int8:
            from edgeport.formats.int8_coverage import coverage_of

            cov = coverage_of(a.path)
            run.artifacts[i] = Artifact.from_file(a.path, a.target, a.format, dtypes={"int8": cov.int8_total, "float": cov.float_total},
                                                  parent=a.parent, tools=a.tools)
    return [{**r.to_dict(), "control_data": cset.source} for r in results]


def changed_bytes(before: list[dict], after: list[dict]) -> list[dict]:
    """Targets whose rebuild from the same inputs (same cache key) gave different bytes, with the tool that wrote them."""
    old = {a["target"]: a["sha256"] for a in before}
    from edgeport.exporters import TARGETS, load_all

    load_all()
    return [{"target": a["target"], "tool": TARGETS.get(a["target"]).writer if a["target"] in TARGETS else "?",
             "before": old[a["target"]], "after": a["sha256"]}
            for a in after if a["target"] in old and old[a["target"]] != a["sha256"]]


def _validate_stage(recipe, inputs: Inputs, artifacts, targets, out, cache: StageCache, clock: _Clock, result: RecipeResult):
    clock.stage("validate")
    key = key_of({
        "stage": "validate", "artifacts": [a.sha256 for a in artifacts],
        "data": hash_files(_data_files(recipe.data.calib) + _data_files(recipe.data.val_data)),
        "recipe": {s: recipe.raw.get(s) for s in ("model", "preprocess", "data", "thresholds", "export")},
        "tools": tool_versions(ALL_TOOLS), "edgeport": producer_sources(),
    })
    hit = cache.load("validate", key)
    if hit is not None:
        record = hit[0]
        result.reused.append("validate")
    else:
        from edgeport.pipeline.export_flow import ExportRun, validate_run

        run = ExportRun(inputs.prepared(), list(artifacts), list(targets))
        validate_run(run, inputs.data, recipe.thresholds)
        d = recipe.data
        told = inputs.data.warnings(d.calib_samples, d.val_samples, any(t.precision == "int8" for t in targets)) if inputs.data else []
        val = run.validation_data
        record = {"validation": run.validation.to_dict(), "warnings": told + run.warnings,
                  "data": val.validation_record()}
        cache.store("validate", key, record)
    result.validation = record["validation"]
    if result.made_with.get("data") is not None and record.get("data") is not None:
        result.made_with["data"] = {**result.made_with["data"], "validation": record["data"]}
    result.warnings += [_in_recipe_terms(w) for w in record["warnings"]]
    result.accuracy = accuracy_checks(recipe, result.validation)
    _write_parity(recipe, artifacts, out, result)


# the CLI flags a library warning names -> the recipe keys that do the same (longest first: --calib-samples before --calib)
_RECIPE_TERMS = (("--min-sqnr/--min-top1", "[thresholds.int8]"), ("--calib-samples", "[data] calib_samples"),
                 ("--val-samples", "[data] val_samples"), ("--val-data", "[data] val_data"), ("--calib", "[data] calib"),
                 ("--weights", "[model] weights"))


def _in_recipe_terms(warning: str) -> str:
    for flag, key in _RECIPE_TERMS:
        warning = warning.replace(flag, key)
    return warning


def _write_parity(recipe, artifacts, out: Path, result: RecipeResult) -> None:
    """parity.json beside the recipe's artifacts, with the keys `edgeport export` writes (edgeport.validation.parity_file.build):
    bench and eval find each file's record there (by sha256), and an export of the same model and input shape into
    the same folder merges with it."""
    from edgeport.runtimes.cpu_features import describe_host
    from edgeport.validation import parity_file

    problems = list(result.int8_problems)
    validation = result.validation or {}
    made = result.made_with
    per_artifact = {"data": made.get("data"), "quantization": made.get("quantization")}
    parity_file.write(Path(out) / recipe.name, {
        "schema": parity_file.SCHEMA, "model": result.model, "input_shape": made.get("input_shape"),
        "weights": made.get("weights"), "host": describe_host(), "fusion": result.fusion, "data": made.get("data"),
        "quantization": made.get("quantization"), "equalization": made.get("equalization"), "recipe": recipe.name,
        "artifacts": [{**a.to_dict(), "path": str(a.path), "made_with": per_artifact} for a in artifacts], "int8_problems": problems,
        "validation": validation, "passed": not problems and validation.get("passed", True),
    })


def accuracy_checks(recipe: Recipe, validation: dict) -> list[dict]:
    """Judge each artifact's top-1 on labelled data against the recipe's [accuracy] section."""
    acc = recipe.accuracy
    reference = validation["accuracy"]["torch"]
    out = []
    if reference is None or (acc.min_top1 is None and acc.max_drop is None):
        return out
    for c in validation["checks"]:
        if c["against"] != "torch" or c["accuracy"] is None:
            continue
        failures = []
        if acc.min_top1 is not None and c["accuracy"] < acc.min_top1:
            failures.append(f"accuracy {c['accuracy']:.4f} < {acc.min_top1:g}")
        if acc.max_drop is not None and reference - c["accuracy"] > acc.max_drop + 1e-12:
            failures.append(f"accuracy drop {reference - c['accuracy']:.4f} > {acc.max_drop:g} (PyTorch {reference:.4f})")
        out.append({"target": c["stage"], "accuracy": c["accuracy"], "reference": reference, "min_top1": acc.min_top1,
                    "max_drop": acc.max_drop, "passed": not failures, "failures": failures})
    return out


def _bench_stage(recipe, artifacts, out: Path, cache: StageCache, clock: _Clock, result: RecipeResult):
    from edgeport.benchmark.devices import parse_device
    from edgeport.runtimes.cpu_features import describe

    b = recipe.bench
    host = describe()
    reused = 0
    for device_text in b.devices:
        device = parse_device(device_text)
        for art in artifacts:
            for n in b.threads:
                clock.stage(f"bench {art.target}")
                key = key_of({"stage": "bench", "sha256": art.sha256, "device": device.text, "threads": n, "budget": b.budget_s,
                              "host": host if device.kind == "local" else None, "tools": tool_versions(ALL_TOOLS),
                              "edgeport": producer_sources()})
                hit = cache.load("bench", key)
                if hit is not None:
                    timing = hit[0]["timing"]
                    reused += 1
                else:
                    timing = {**_measure(device, art.path, n, b.budget_s), "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
                    cache.store("bench", key, {"timing": timing})
                result.timings.append({**timing, "artifact": str(art.path.relative_to(out)), "target": art.target,
                                       "device": device.text, "threads": n, "cached": hit is not None})
    if reused and reused == len(result.timings):
        result.reused.append("bench")
    if len(b.devices) > 1:  # which file to ship on each device: edgeport.benchmark.recommend's rule
        from edgeport.benchmark.recommend import from_timings, recommend

        result.recommendation = [r.to_dict() for r in recommend(from_timings(result.timings, result.validation))]


def _measure(device, path: Path, threads: int, budget_s: float) -> dict:
    """Time ``path`` on ``device``: in-process for local, through edgeport.benchmark.devices for the others."""
    if device.kind == "local":
        from edgeport.benchmark.local import bench_artifact

        t = bench_artifact(path, threads=threads, budget_s=budget_s)
        return {k: v for k, v in t.to_dict().items() if k not in ("artifact", "target", "threads")}
    from edgeport.benchmark.device_bench import bench_on
    from edgeport.benchmark.devices import open_device

    d = bench_on(open_device(device), path, threads).to_dict()  # latency on the device + its outputs vs this host's
    return {k: v for k, v in d.items() if k not in ("artifact", "threads", "device")}


def _json(d: dict) -> str:
    import json

    return json.dumps(d, indent=2, sort_keys=True, default=str)


@dataclass(frozen=True)
class RunResult:
    """Every recipe of one ``edgeport run`` and the reports written for them."""

    results: tuple[RecipeResult, ...]
    manifest: dict
    written: tuple[Path, ...]  # manifest.json, report.md, report.html, junit.xml

    @property
    def passed(self) -> bool:
        return all(r.passed and not r.error for r in self.results)

    def failure(self, out: Path) -> EdgeportError | None:
        """The typed error a caller raises for this run (``run_failure``)."""
        from edgeport.report.manifest import recipe_entry

        return run_failure([recipe_entry(r) for r in self.results], out)


def run_failure(recipes: list[dict], out: Path) -> EdgeportError | None:
    """The typed error a run's manifest entries (edgeport.report.manifest.recipe_entry) call for, after the reports
    in ``out`` are written: the first recipe error (with its exit code), else the failed thresholds (exit 3). One
    rule for `edgeport run` and `edgeport report merge`, so a merged run exits as the unsharded run would."""
    from edgeport.errors import ParityFailed

    errors = [r for r in recipes if r["error"]]
    if errors:
        e = EdgeportError(f"{errors[0]['name']}: {errors[0]['error']}", f"see {out / 'report.md'}")
        e.exit_code = errors[0].get("error_code") or 1
        return e
    failed = [r for r in recipes if not r["passed"]]
    if failed:
        return ParityFailed(f"{len(failed)} recipe(s) failed thresholds: "
                            + "; ".join(f"{r['name']}: {r['failures'][0]}" for r in failed), f"see {out / 'report.md'}")
    return None


def parse_recipes(paths: list[Path], allowed: tuple[Path, ...] = ()) -> list[Recipe]:
    """Every recipe checked before anything runs; two recipes may not write the same artifacts. ``allowed``:
    folders outside the recipes' own that their data and weights may come from."""
    from edgeport.errors import UserError
    from edgeport.pipeline import recipe as recipe_mod

    parsed = [recipe_mod.parse(p, allowed) for p in paths]
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"two recipes are both named {dup!r}: their artifacts would overwrite each other",
                        "give one of them a different file name or a top-level name = \"...\"")
    return parsed


def run_recipes(recipes: list[Recipe], out: Path, cache_dir: Path | None = None, force: bool = False, wait: bool = False,
                start: Callable[[Recipe], Callable[[str], None]] = lambda r: (lambda s: None),
                done: Callable[[RecipeResult], None] = lambda res: None, shard: ShardSpec | None = None) -> RunResult:
    """Run parsed recipes one after another into ``out`` (locked against a concurrent run), then write
    manifest.json, report.md, report.html and junit.xml. ``start(recipe)`` returns the stage callback of that
    recipe; ``done(result)`` is called after each. With ``shard``, only that shard's part of ``recipes``
    (edgeport.pipeline.shards) runs and the manifest records the split for ``edgeport report merge``."""
    from edgeport import report
    from edgeport.pipeline import shards
    from edgeport.pipeline.out_lock import locked
    from edgeport.report import manifest

    cache = StageCache(cache_dir, force=force)
    started, t0 = time.time(), time.perf_counter()
    results = []
    with locked(out, wait=wait):
        for r in recipes if shard is None else shards.select(recipes, shard):
            res = run_recipe(r, out, cache, start(r))
            results.append(res)
            done(res)
        m = manifest.build(results, started, time.perf_counter() - t0, force, cache.root)
        if shard is not None:
            m["shard"] = shards.record(recipes, shard)
        written = tuple(report.write_all(out, m))
    return RunResult(tuple(results), m, written)
