"""Recipes: one TOML file per model saying how to export, judge and time it (``edgeport run``).

A recipe is parsed with tomllib into frozen dataclasses. Every mistake is a UserError that names the file,
the line and the key: tomllib reports line numbers only for syntax errors, so for unknown keys, wrong types
and impossible values the line is found again in the text (``_line_of``). Paths (weights, a model file,
calibration data) are resolved relative to the recipe's folder and may not leave it, so a recipe folder
is a self-contained unit a CI job can check out and run.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeport.data import DEFAULT_CALIBRATION, DEFAULT_VALIDATION
from edgeport.errors import EdgeportError, UserError
from edgeport.quantization.options import DEFAULT_METHOD
from edgeport.validation.checks import Thresholds

# Float32 rounding alone keeps fp32 artifacts near 110-150 dB SQNR against PyTorch (measured 110-130 dB):
# a floor above this can never pass and is a typo, not a policy.
MAX_SQNR_DB = 200.0
DATA_WORDS = ("synthetic", "fashion-mnist")

# section -> key -> (type name, python types); "list[int]" etc. are checked element by element.
_NUM = (int, float)
SCHEMA: dict[str, dict[str, tuple[str, tuple]]] = {
    "model": {"name": ("string", (str,)), "weights": ("string", (str,)), "input_shape": ("list[int]", (int,)),
              "num_classes": ("integer", (int,)), "width": ("number", _NUM)},
    "preprocess": {"size": ("integer", (int,)), "resize": ("integer", (int,)), "channels": ("integer", (int,)),
                   "mean": ("list[number]", _NUM), "std": ("list[number]", _NUM), "scale": ("string", (str,)),
                   "bgr": ("boolean", (bool,))},
    "data": {"calib": ("string", (str,)), "val_data": ("string", (str,)), "calib_samples": ("integer", (int,)),
             "val_samples": ("integer", (int,)), "seed": ("integer", (int,))},
    "quantize": {"method": ("string", (str,)), "io_dtype": ("string", (str,)), "allow_float": ("list[string]", (str,)),
                 "no_float": ("boolean", (bool,)),
                 # onnx-int8 (edgeport.exporters.onnx_int8): deploy preset, then explicit settings
                 "deploy": ("string", (str,)), "onnx_format": ("string", (str,)), "onnx_activations": ("string", (str,)),
                 "onnx_reduce_range": ("string", (str,)), "onnx_hard_activations": ("string", (str,)),
                 # edgeport.quantization.equalization on the fused graph before export
                 "cle": ("boolean", (bool,)), "bias_correction": ("boolean", (bool,)),
                 # edgeport.quantization.adaround on the fused graph (after CLE); needs [data] calib
                 "adaround": ("boolean", (bool,)),
                 # edgeport.quantization.range_search (tflite-int8, onnx-int8); needs [data] calib
                 "range_search": ("boolean", (bool,)),
                 # edgeport.diagnose.per_layer of the int8 targets (manifest per_layer_int8, report plot and table)
                 "per_layer": ("boolean", (bool,)),
                 # edgeport.quantization.accuracy_control on the int8 targets: budget in points (as --max-accuracy-drop), its data
                 "max_accuracy_drop": ("number", _NUM), "control_data": ("string", (str,)),
                 "control_samples": ("integer", (int,))},
    "export": {"targets": ("list[string]", (str,)), "dynamic_batch": ("boolean", (bool,)), "pte_layout": ("string", (str,))},
    "accuracy": {"min_top1": ("number", _NUM), "max_drop": ("number", _NUM)},
    "bench": {"devices": ("list[string]", (str,)), "threads": ("list[int]", (int,)), "budget_s": ("number", _NUM)},
}
THRESHOLD_KEYS = {"max_abs": ("number", _NUM), "max_rel": ("number", _NUM), "min_sqnr_db": ("number", _NUM),
                  "min_top1": ("number", _NUM)}
TOP_LEVEL = {"name": ("string", (str,))}


@dataclass(frozen=True)
class ModelSection:
    ref: str  # zoo name, pkg.module:factory, or /resolved/file.py:factory
    weights: Path | None = None
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    width: float | None = None


@dataclass(frozen=True)
class DataSection:
    calib: str | None = None  # synthetic | fashion-mnist[:dir] | resolved path; None: synthetic checks only
    calib_samples: int = DEFAULT_CALIBRATION
    val_samples: int = DEFAULT_VALIDATION
    seed: int = 0
    val_data: str | None = None  # held-out validation data of its own (as calib); None: a disjoint part of calib


@dataclass(frozen=True)
class QuantSection:
    method: str = DEFAULT_METHOD
    io_dtype: str = "int8"
    allow_float: tuple[str, ...] = ()
    deploy: str | None = None  # onnx-int8 preset, one of options.DEPLOY_CHOICES (x86: from the CPU that runs the recipe)
    onnx_format: str | None = None  # qdq | qoperator; None: from deploy / the default
    onnx_activations: str | None = None  # s8 | u8
    onnx_reduce_range: str | None = None  # one of edgeport.quantization.options.REDUCE_RANGE
    onnx_hard_activations: str | None = None  # float | int8
    no_float: bool = False  # any float op in an int8 file fails the recipe, automatic fallbacks included
    cle: bool = False  # cross-layer equalization (edgeport.quantization.equalization)
    bias_correction: bool | None = None  # empirical bias correction; None: on with real [data] calib (QuantOptions)
    adaround: bool = False  # AdaRound weight rounding (edgeport.quantization.adaround); needs [data] calib
    range_search: bool = False  # output-aware ranges (edgeport.quantization.range_search); needs [data] calib
    per_layer: bool = False  # per-layer int8 diagnosis on the validation data (~20 s per int8 target, measured)
    max_accuracy_drop: float | None = None  # accuracy control budget, points of top-1 (edgeport.quantization.accuracy_control)
    control_data: str | None = None  # labelled data control scores on (edgeport.data.labelled); None: the validation split
    control_samples: int = 2000


@dataclass(frozen=True)
class AccuracySection:
    """Judged on labelled validation data only: top-1 of each artifact at least ``min_top1``, and at most
    ``max_drop`` below the PyTorch model's."""

    min_top1: float | None = None
    max_drop: float | None = None


@dataclass(frozen=True)
class BenchSection:
    devices: tuple[str, ...] = ("local",)
    threads: tuple[int, ...] = (1,)
    budget_s: float = 2.0


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    model: ModelSection
    preprocess: dict  # overrides of the model's Preprocess fields
    data: DataSection
    quantize: QuantSection
    targets: tuple[str, ...]
    dynamic_batch: bool
    thresholds: dict  # target name or precision -> Thresholds (merged over the defaults)
    accuracy: AccuracySection
    bench: BenchSection
    raw: dict = field(default_factory=dict, compare=False, repr=False)  # the TOML as read, for cache keys
    pte_layout: str = "nchw"  # executorch targets' input memory, one of edgeport.exporters.PTE_LAYOUTS

    @property
    def folder(self) -> Path:
        return self.path.parent


class RecipeError(UserError):
    pass


class _Ctx:
    """The file being read, to point errors at a line."""

    def __init__(self, path: Path, text: str, allowed: tuple[Path, ...] = ()):
        self.path, self.text = path, text
        self.allowed = tuple(Path(a).resolve() for a in allowed)  # folders outside the recipe's that data may come from

    def fail(self, section: tuple[str, ...], key: str | None, message: str, hint: str | None = None) -> RecipeError:
        line = _line_of(self.text, section, key)
        where = f"[{'.'.join(section)}] " if section else ""
        return RecipeError(f"{self.path}:{line}: {where}{message}", hint)


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")


def _parts(dotted: str) -> tuple[str, ...]:
    return tuple(p.strip().strip("\"'") for p in re.findall(r"""\"[^\"]*\"|'[^']*'|[^.]+""", dotted))


def _line_of(text: str, section: tuple[str, ...], key: str | None) -> int:
    """1-based line where ``section.key`` is written (or the section's header, or the key anywhere, or 1)."""
    table: tuple[str, ...] = ()
    header_line = loose = None
    want = section + ((key,) if key is not None else ())
    for n, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m:
            table = _parts(m.group(1))
            if table == want:
                return n
            if table == section and header_line is None:
                header_line = n
            continue
        k = _KEY.match(line)
        if k:
            full = table + _parts(k.group(1))
            if full == want:
                return n
            if key is not None and _parts(k.group(1))[-1:] == (key,) and loose is None:
                loose = n
    return header_line or loose or 1


def _check_type(ctx: _Ctx, section: tuple[str, ...], key: str, value, spec: tuple[str, tuple]):
    type_name, types = spec
    ok = lambda v: isinstance(v, types) and not (isinstance(v, bool) and bool not in types)  # noqa: E731
    if type_name.startswith("list["):
        if not isinstance(value, list) or not all(ok(v) for v in value):
            raise ctx.fail(section, key, f"{key} must be a {type_name}, got {value!r}")
        return [float(v) if types == _NUM else v for v in value]
    if not ok(value):
        raise ctx.fail(section, key, f"{key} must be a {type_name}, got {type(value).__name__} {value!r}")
    return float(value) if types == _NUM else value


def _check_keys(ctx: _Ctx, section: tuple[str, ...], table, known: dict) -> dict:
    if not isinstance(table, dict):
        raise ctx.fail(section[:-1], section[-1], f"{section[-1]} must be a table ([{'.'.join(section)}])")
    out = {}
    for key, value in table.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(known)}"
            raise ctx.fail(section, key, f"unknown key {key!r}", hint)
        out[key] = _check_type(ctx, section, key, value, known[key])
    return out


def _local_path(ctx: _Ctx, section: tuple[str, ...], key: str, text: str, what: str) -> Path:
    """``text`` resolved against the recipe's folder; it must exist and stay inside that folder (a symlink placed
    there counts as inside, wherever it points) or inside a folder the caller allowed (``run --allow-path``)."""
    folder = ctx.path.parent.resolve()
    given = Path(os.path.normpath(folder / Path(text).expanduser()))  # '..' folded, symlinks not followed
    path = given.resolve()
    roots = (folder, *ctx.allowed)
    if not any(p.is_relative_to(root) for root in roots for p in (given, path)):
        raise ctx.fail(section, key, f"{what} {text!r} is outside the recipe's folder {folder}",
                       "put it (or a symlink to it) next to the recipe and give a relative path, or allow its folder "
                       "with `edgeport run --allow-path DIR`")
    if not path.exists():
        raise ctx.fail(section, key, f"{what} {text!r} does not exist (looked for {path})")
    return path


def _model(ctx: _Ctx, t: dict) -> ModelSection:
    sec = ("model",)
    if "name" not in t:
        raise ctx.fail(sec, None, "name is missing", "give a zoo name (edgeport models) or module:factory")
    ref = t["name"]
    target, sep, attr = ref.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target):
        ref = f"{_local_path(ctx, sec, 'name', target, 'model file')}:{attr}"
    elif not sep:
        from edgeport.models import MODELS

        if ref not in MODELS.names():
            close = difflib.get_close_matches(ref, MODELS.names(), n=1)
            raise ctx.fail(sec, "name", f"unknown zoo model {ref!r}",
                           f"did you mean {close[0]!r}?" if close else "run `edgeport models`, or use module:factory")
    shape = t.get("input_shape")
    if shape is not None and (len(shape) < 2 or any(d <= 0 for d in shape)):
        raise ctx.fail(sec, "input_shape", f"input_shape {shape} needs at least 2 positive dimensions", "e.g. [1, 3, 224, 224]")
    if t.get("num_classes") is not None and t["num_classes"] < 1:
        raise ctx.fail(sec, "num_classes", f"num_classes must be positive, got {t['num_classes']}")
    if t.get("width") is not None and not t["width"] > 0:
        raise ctx.fail(sec, "width", f"width must be positive, got {t['width']}")
    weights = _local_path(ctx, sec, "weights", t["weights"], "weights file") if "weights" in t else None
    if weights is not None and not weights.is_file():
        raise ctx.fail(sec, "weights", f"weights {t['weights']!r} is not a file")
    return ModelSection(ref, weights, tuple(shape) if shape else None, t.get("num_classes"), t.get("width"))


def _data(ctx: _Ctx, t: dict) -> DataSection:
    sec = ("data",)
    specs = {}
    for key, what in (("calib", "calibration data"), ("val_data", "validation data")):
        spec = t.get(key)
        name, _, rest = (spec or "").partition(":")
        if spec is None or spec in DATA_WORDS or (name == "fashion-mnist" and rest in ("train", "test")):
            pass  # words, not paths
        elif name == "fashion-mnist":
            spec = f"fashion-mnist:{_local_path(ctx, sec, key, rest, 'Fashion-MNIST folder')}"
        else:
            spec = str(_local_path(ctx, sec, key, spec, what))
        specs[key] = spec
    if specs["val_data"] is not None and specs["calib"] is None:
        raise ctx.fail(sec, "val_data", "val_data is held out from calibration data and [data] has no calib",
                       'add [data] calib = "<image folder, .npy/.npz, fashion-mnist or synthetic>", or remove val_data')
    for key in ("calib_samples", "val_samples"):
        if key in t and t[key] < 1:
            raise ctx.fail(sec, key, f"{key} must be at least 1, got {t[key]}")
    return DataSection(specs["calib"], t.get("calib_samples", DEFAULT_CALIBRATION), t.get("val_samples", DEFAULT_VALIDATION),
                       t.get("seed", 0), specs["val_data"])


def _choice(ctx: _Ctx, sec: tuple[str, ...], t: dict, key: str, allowed: tuple[str, ...]) -> None:
    if key in t and t[key] not in allowed:
        raise ctx.fail(sec, key, f"{key} {t[key]!r} is not one of {', '.join(allowed)}")


def _pte_layout(ctx: _Ctx, export: dict) -> str:
    from edgeport.exporters import PTE_LAYOUTS

    _choice(ctx, ("export",), export, "pte_layout", PTE_LAYOUTS)
    return export.get("pte_layout", "nchw")


def _fraction(ctx: _Ctx, sec: tuple[str, ...], t: dict, key: str) -> None:
    if key in t and not 0.0 <= t[key] <= 1.0:
        raise ctx.fail(sec, key, f"{key} = {t[key]:g} is impossible: it is a fraction between 0 and 1")


def _target_names() -> tuple[str, ...]:
    from edgeport.exporters import target_names

    return tuple(target_names())


def _precisions() -> tuple[str, ...]:
    from edgeport.exporters import TARGETS

    return tuple(dict.fromkeys(TARGETS.get(n).precision for n in _target_names()))


def _thresholds(ctx: _Ctx, table) -> dict:
    from edgeport.exporters import FP16, FP32, INT8

    TARGET_NAMES, PRECISIONS = _target_names(), _precisions()

    defaults = {"fp32": FP32, "fp16": FP16, "int8": INT8}
    if not isinstance(table, dict):
        raise ctx.fail((), "thresholds", "thresholds must be a table of [thresholds.<target or precision>]")
    out = {}
    for name, t in table.items():
        sec = ("thresholds", name)
        if name not in TARGET_NAMES + PRECISIONS:
            close = difflib.get_close_matches(name, TARGET_NAMES + PRECISIONS, n=1)
            raise ctx.fail(("thresholds",), name, f"unknown threshold group {name!r}",
                           f"did you mean {close[0]!r}?" if close
                           else f"use a target ({', '.join(TARGET_NAMES)}) or a precision ({', '.join(PRECISIONS)})")
        t = _check_keys(ctx, sec, t, THRESHOLD_KEYS)
        _fraction(ctx, sec, t, "min_top1")
        for key in ("max_abs", "max_rel"):
            if key in t and t[key] < 0:
                raise ctx.fail(sec, key, f"{key} = {t[key]:g} is impossible: an error bound cannot be negative")
        if "min_sqnr_db" in t and t["min_sqnr_db"] > MAX_SQNR_DB:
            raise ctx.fail(sec, "min_sqnr_db", f"min_sqnr_db = {t['min_sqnr_db']:g} is impossible: float32 rounding alone "
                           f"limits SQNR to about 150 dB", f"use at most {MAX_SQNR_DB:g}; fp32 artifacts measure 110-130 dB")
        precision = name if name in PRECISIONS else name.rsplit("-", 1)[1]
        base = defaults[precision]
        if "max_abs" in t and "max_rel" not in t:
            t["max_rel"] = t["max_abs"] if base.max_rel is not None else None
        out[name] = replace(base, **t)
    return out


def parse(path: Path, allowed: tuple[Path, ...] = ()) -> Recipe:
    """Read and validate the recipe at ``path``; data and weights may also come from the ``allowed`` folders."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise UserError(f"recipe {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read recipe {path}: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    ctx = _Ctx(path, text, allowed)
    known = {**TOP_LEVEL, **{k: None for k in SCHEMA}, "thresholds": None}
    for key, value in raw.items():
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            raise ctx.fail((), key, f"unknown section or key {key!r}",
                           f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}")
    tables = {s: _check_keys(ctx, (s,), raw.get(s, {}), keys) for s, keys in SCHEMA.items()}
    name = _check_type(ctx, (), "name", raw["name"], TOP_LEVEL["name"]) if "name" in raw else path.stem
    if "model" not in raw:
        raise ctx.fail((), None, "the [model] section is missing", "add [model] with name = \"<zoo name or module:factory>\"")
    try:
        return _build(ctx, raw, tables, name)
    except RecipeError:
        raise
    except EdgeportError as exc:  # e.g. a device spec refused by its parser
        raise RecipeError(f"{path}: {exc.message}", exc.hint) from None


def _build(ctx: _Ctx, raw: dict, tables: dict, name: str) -> Recipe:
    pre, quant, export, acc, bench = (tables[s] for s in ("preprocess", "quantize", "export", "accuracy", "bench"))
    _choice(ctx, ("preprocess",), pre, "scale", ("meanstd", "127"))
    from edgeport.quantization import options

    for key, (allowed, _flag) in options.CHOICES.items():
        _choice(ctx, ("quantize",), quant, key, allowed)
    _choice(ctx, ("quantize",), quant, "deploy", options.DEPLOY_CHOICES)
    TARGET_NAMES = _target_names()
    targets = tuple(dict.fromkeys(export.get("targets", ["onnx-fp32"])))
    for t in targets:
        if t not in TARGET_NAMES:
            close = difflib.get_close_matches(t, TARGET_NAMES, n=1)
            raise ctx.fail(("export",), "targets", f"unknown target {t!r}",
                           f"did you mean {close[0]!r}?" if close else f"choose from {', '.join(TARGET_NAMES)}")
    if not targets:
        raise ctx.fail(("export",), "targets", "targets is empty", f"choose from {', '.join(TARGET_NAMES)}")
    if any(t.endswith("int8") for t in targets) and tables["data"].get("calib") is None:
        raise ctx.fail(("export",), "targets", "int8 targets need calibration data and [data] has no calib",
                       'add [data] calib = "<image folder, .npy/.npz, fashion-mnist or synthetic>"')
    for key, what in (("bias_correction", "bias correction"), ("adaround", "AdaRound"), ("range_search", "the range search")):
        if quant.get(key) and tables["data"].get("calib") is None:
            raise ctx.fail(("quantize",), key, f"{what} needs calibration data and [data] has no calib",
                           'add [data] calib = "<image folder, .npy/.npz, fashion-mnist or synthetic>"')
    for key in ("min_top1", "max_drop"):
        _fraction(ctx, ("accuracy",), acc, key)
    if "max_accuracy_drop" in quant and not 0 <= quant["max_accuracy_drop"] <= 100:
        raise ctx.fail(("quantize",), "max_accuracy_drop", f"max_accuracy_drop {quant['max_accuracy_drop']:g} is not a "
                       "number of points between 0 and 100", "e.g. 0.5 (half a point of top-1)")
    if quant.get("control_samples", 1) < 1:
        raise ctx.fail(("quantize",), "control_samples", "control_samples must be positive")
    if "max_accuracy_drop" in quant and not any(t.endswith("int8") for t in targets):
        raise ctx.fail(("quantize",), "max_accuracy_drop", "accuracy control needs an int8 target",
                       'add "onnx-int8" or "tflite-int8" to [export] targets')
    if any(n < 1 for n in bench.get("threads", [1])) or not bench.get("threads", [1]):
        raise ctx.fail(("bench",), "threads", f"threads {bench['threads']} must be positive integers")
    if "budget_s" in bench and not bench["budget_s"] > 0:
        raise ctx.fail(("bench",), "budget_s", f"budget_s must be positive, got {bench['budget_s']:g}")
    from edgeport.benchmark.devices import parse_device

    for d in bench.get("devices", ["local"]):
        try:
            parse_device(d)
        except EdgeportError as exc:
            raise ctx.fail(("bench",), "devices", exc.message, exc.hint) from None
    return Recipe(
        name=name, path=ctx.path, model=_model(ctx, tables["model"]), preprocess=dict(pre),
        data=_data(ctx, tables["data"]),
        quantize=QuantSection(quant.get("method", DEFAULT_METHOD), quant.get("io_dtype", "int8"), tuple(quant.get("allow_float", ())),
                              *(quant.get(k) for k in ("deploy", "onnx_format", "onnx_activations", "onnx_reduce_range",
                                                        "onnx_hard_activations")),
                              no_float=quant.get("no_float", False),
                              cle=quant.get("cle", False), bias_correction=quant.get("bias_correction"),
                              adaround=quant.get("adaround", False), range_search=quant.get("range_search", False),
                              per_layer=quant.get("per_layer", False), max_accuracy_drop=quant.get("max_accuracy_drop"),
                              control_data=quant.get("control_data"), control_samples=quant.get("control_samples", 2000)),
        targets=targets, dynamic_batch=export.get("dynamic_batch", False), pte_layout=_pte_layout(ctx, export),
        thresholds=_thresholds(ctx, raw.get("thresholds", {})),
        accuracy=AccuracySection(acc.get("min_top1"), acc.get("max_drop")),
        bench=BenchSection(tuple(bench.get("devices", ["local"])), tuple(bench.get("threads", [1])), bench.get("budget_s", 2.0)),
        raw=raw,
    )


def threshold_for(recipe: Recipe, target: str) -> Thresholds | None:
    """The recipe's own thresholds for ``target`` (by name, then precision), or None for the defaults."""
    return recipe.thresholds.get(target) or recipe.thresholds.get(target.rsplit("-", 1)[1])
