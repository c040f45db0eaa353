"""Top-1/top-5 accuracy of artifacts (in their own runtime) and PyTorch models on a labelled dataset.

Each thing evaluated is a :class:`Subject`: a name, the runtime that runs it, its NCHW input shape, the
preprocessing its inputs need and a ``run(batch) -> logits`` function. Artifacts run through
:func:`edgeport.runtimes.open_runtime` exactly as validate and bench run them (a fixed-batch file is fed one
batch at a time by its runner); PyTorch models run eagerly in float32.

Preprocessing, first match wins: the ``--model`` given on the command line (its checkpoint's edgeport
metadata or zoo recipe, as export uses it), the ``parity.json`` export wrote beside the artifact (its
model/weights), else ImageNet's default at the artifact's input size -- said out loud, since it is a guess.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.data.labelled import LabelledData
from edgeport.data.preprocess import Preprocess
from edgeport.errors import UsageError, UserError
from edgeport.models.source import CHECKPOINT_SUFFIXES

TOP_K = 5
TORCH_SUFFIXES = CHECKPOINT_SUFFIXES  # checkpoints, run in PyTorch


@dataclass(frozen=True)
class Subject:
    name: str
    format: str  # "onnx", "tflite" or "torch"
    runtime: str  # e.g. "onnxruntime 1.32.0"
    input_shape: tuple[int, ...]  # NCHW as the file declares it (batch may be 1)
    preprocess: Preprocess
    preprocess_from: str  # where the preprocessing came from, printed with the result
    run: Callable[[np.ndarray], np.ndarray] = field(repr=False)


@dataclass(frozen=True)
class EvalResult:
    name: str
    format: str
    runtime: str
    source: str
    samples: int
    top1: float
    top5: float | None  # None when the model has at most TOP_K outputs (top-5 would be trivially 1)
    per_class_top1: list[float | None]  # per label, None for a class with no samples
    seconds: float  # wall time of the evaluation loop, preprocessing included
    preprocess: dict
    preprocess_from: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


# --- where the inputs' shape and preprocessing come from ---------------------------------------------------


def nchw_of(shape, fmt: str) -> tuple[int, ...]:
    """The NCHW input shape of an artifact from its declared input shape (TFLite files from onnx2tf are NHWC)."""
    from edgeport.formats import FORMATS

    return FORMATS.get(fmt).input_nchw(shape)


def preprocess_from_metadata(artifact: Path, fmt) -> tuple[Preprocess, str] | None:
    """The preprocessing the file itself records (edgeport's metadata entry), if it has one."""
    meta = fmt.metadata(artifact)
    if not meta or not isinstance(meta.get("preprocess"), dict):
        return None
    try:
        pre = Preprocess.from_dict(meta["preprocess"])
    except (UserError, TypeError, ValueError):  # an entry edgeport did not write: not trusted, not guessed from
        return None
    return pre, f"{artifact.name}'s own metadata (model {meta.get('model')})"


def preprocess_from_parity(artifact: Path) -> tuple[Preprocess, str] | None:
    """The preprocessing of the model that ``parity.json`` beside ``artifact`` says it was exported from."""
    from edgeport.models import MODELS
    from edgeport.models import source as model_source
    from edgeport.validation import parity_file

    found = parity_file.record_of(artifact)  # the record of this very file (by sha256), not of a namesake
    if found is None:
        return None
    record, record_path = found[0], artifact.parent / parity_file.FILE_NAME
    weights, model = record.get("weights"), record.get("model")
    if weights and Path(weights).is_file():
        _, meta = model_source.load_checkpoint(Path(weights))
        if meta.get("preprocess"):
            return Preprocess.from_dict(meta["preprocess"]), f"{record_path} (checkpoint {Path(weights).name})"
    if isinstance(model, str) and model in MODELS and MODELS.get(model).preprocess is not None:
        return MODELS.get(model).preprocess, f"{record_path} (model {model})"
    return None


def default_preprocess(input_shape: tuple[int, ...]) -> Preprocess:
    """ImageNet mean/std, resize to 1/0.875 of the input then centre crop (LoadedModel's default)."""
    c, h = input_shape[1], input_shape[-1]
    return Preprocess(size=h, resize=round(h / 0.875), channels=c)


def check_preprocess_fits(pre: Preprocess, input_shape: tuple[int, ...], name: str) -> None:
    if (pre.channels, pre.size, pre.size) != tuple(input_shape[1:]):
        raise UserError(
            f"{name} takes inputs of {tuple(input_shape[1:])} but the preprocessing gives "
            f"({pre.channels}, {pre.size}, {pre.size})",
            "pass the --model the artifact was exported from",
        )


# --- subjects ---------------------------------------------------------------------------------------------


def open_artifact(path: Path, threads: int, base: tuple[Preprocess, str] | None,
                  overrides: Callable[[Preprocess], Preprocess]) -> Subject:
    """An .onnx/.tflite file in its runtime; ``base`` is the --model's preprocessing (or None)."""
    from edgeport.formats import format_of

    if not path.is_file():
        raise UserError(f"{path} does not exist")
    fmt = format_of(path)
    runner = fmt.open_runner(path, threads=threads)
    shape = fmt.input_nchw(runner.input_shape)
    found = base or preprocess_from_metadata(path, fmt) or preprocess_from_parity(path)
    if found is None:
        found = (default_preprocess(shape), "ImageNet default at the artifact's input size (no --model, no parity.json)")
    pre = overrides(found[0])
    check_preprocess_fits(pre, shape, path.name)
    return Subject(str(path), fmt.name, f"{runner.name} {runner.version}", shape, pre, found[1], runner.run)


def open_torch(loaded, threads: int, label: str, overrides: Callable[[Preprocess], Preprocess]) -> Subject:
    """A LoadedModel (edgeport.models.source) run eagerly in float32."""
    import torch

    from edgeport.runtimes.torch_runner import run_module

    def run(batch: np.ndarray) -> np.ndarray:
        prev = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return run_module(loaded.module, torch.from_numpy(np.ascontiguousarray(batch))).numpy()
        finally:
            torch.set_num_threads(prev)

    pre = overrides(loaded.data_preprocess())
    check_preprocess_fits(pre, loaded.input_shape, label)
    source = f"checkpoint {loaded.weights.name}" if loaded.weights else f"model {loaded.name}"
    return Subject(label, "torch", f"torch {torch.__version__}", tuple(loaded.input_shape), pre, source, run)


def torch_artifact(path: Path, model: str | None):
    """A .pt/.pth checkpoint as a LoadedModel: the zoo model named in its edgeport metadata, else ``model``."""
    from edgeport.models import source as model_source

    _, meta = model_source.load_checkpoint(path)
    ref = meta.get("model") or model
    if not ref:
        raise UsageError(f"{path} does not say which model it belongs to", "add --model NAME (zoo name or module:factory)")
    return model_source.load(ref, weights=path)


def labelled_data(source: str, limit: int | None = None) -> LabelledData:
    """The labelled set ``source`` names (edgeport.data.labelled), cut to its first ``limit`` samples."""
    from dataclasses import replace

    from edgeport.data import labelled

    if limit is not None and limit < 1:
        raise UsageError("the sample limit must be positive")
    dataset = labelled.load(source)
    if limit is not None:
        dataset = replace(dataset, labels=dataset.labels[:limit],
                          images=None if dataset.images is None else dataset.images[:limit],
                          files=None if dataset.files is None else dataset.files[:limit])
    return dataset


def open_subjects(paths: list[Path], loaded, threads: int, overrides: Callable[[Preprocess], Preprocess],
                  model_ref: str | None = None) -> list[Subject]:
    """What to evaluate: the float model ``loaded`` (a LoadedModel, or None) first, then each path: a .pt
    checkpoint in PyTorch, an artifact in its runtime with ``loaded``'s preprocessing (or its parity.json's)."""
    subjects, base = [], None
    if loaded is not None:
        subjects.append(open_torch(loaded, threads, f"{loaded.name} (torch)", overrides))
        base = (loaded.data_preprocess(), f"--model {loaded.name}")
    for path in paths:
        path = Path(path)
        if path.suffix.lower() in TORCH_SUFFIXES:  # checkpoints, not artifacts: run in PyTorch
            subjects.append(open_torch(torch_artifact(path, model_ref), threads, str(path), overrides))
        else:
            subjects.append(open_artifact(path, threads, base, overrides))
    return subjects


# --- the evaluation loop ----------------------------------------------------------------------------------


def check_outputs(logits: np.ndarray, data: LabelledData, name: str) -> None:
    """A class count that does not match the model's outputs is a user error, not a low accuracy."""
    if logits.ndim != 2:
        raise UserError(f"{name} outputs shape {logits.shape[1:]} per sample; eval needs one score per class")
    k = logits.shape[1]
    if data.classes is not None and len(data.classes) != k:
        raise UserError(
            f"{data.source} has {len(data.classes)} classes but {Path(name).name} outputs {k} scores",
            "evaluate on data labelled with the model's own classes",
        )
    top = int(data.labels.max(initial=0))
    if top >= k:
        raise UserError(f"{data.source} has label {top} but {Path(name).name} outputs only {k} scores",
                        "labels must be class indices 0..outputs-1")


def evaluate(subject: Subject, data: LabelledData, batch: int = 256,
             advance: Callable[[int], None] = lambda n: None) -> EvalResult:
    """Run ``subject`` over every sample of ``data``; ``advance(n)`` after each batch (progress bars)."""
    if batch < 1:
        raise UsageError(f"batch size {batch} must be at least 1")
    t0 = time.perf_counter()
    hit1 = np.zeros(len(data), bool)
    hit5 = np.zeros(len(data), bool)
    k = None
    done = 0
    for x, y in data.batches(subject.preprocess, subject.input_shape, batch):
        logits = np.asarray(subject.run(x), dtype=np.float32)
        if k is None:
            check_outputs(logits, data, subject.name)
            k = logits.shape[1]
        if len(logits) != len(y):
            raise UserError(f"{subject.name} returned {len(logits)} results for {len(y)} inputs")
        # argsort, not argpartition: ties resolve like argmax (lowest index first), so top-1 == argmax
        order = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K]
        hit1[done : done + len(y)] = order[:, 0] == y
        hit5[done : done + len(y)] = (order == y[:, None]).any(axis=1)
        done += len(y)
        advance(len(y))
    seconds = time.perf_counter() - t0
    n_classes = max(k or 0, int(data.labels.max(initial=0)) + 1)
    per_class = [float(hit1[data.labels == c].mean()) if (data.labels == c).any() else None for c in range(n_classes)]
    return EvalResult(
        name=subject.name, format=subject.format, runtime=subject.runtime, source=data.source, samples=len(data),
        top1=float(hit1.mean()), top5=float(hit5.mean()) if k is not None and k > TOP_K else None,
        per_class_top1=per_class, seconds=seconds, preprocess=subject.preprocess.to_dict(),
        preprocess_from=subject.preprocess_from,
    )
