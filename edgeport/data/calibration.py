"""Calibration and held-out validation data from what the user points ``--calib`` at.

Sources: ``fashion-mnist`` (Debian's package: calibration from the train split, validation from the test
split), a folder of images (jpg/png; ``class/img.jpg`` sub-folders give labels), an ``.npy`` / ``.npz``
array (uint8 pixels are preprocessed; float32 NCHW is taken as already preprocessed), or ``synthetic``
(image-like noise; only with a loud warning: it says nothing about real accuracy).

Validation data may come from a second source (``--val-data``): calibration then takes up to ``n_calib`` samples
of ``--calib`` and validation up to ``n_val`` of ``--val-data``. Without it, one source too small for both is split
in two (disjoint), and :meth:`DataSplit.shortfall` says so and how to avoid it; asking for counts that fit
(``--calib-samples``/``--val-samples``) accepts the split knowingly and silences it.

A source so small that half of it would be fewer than MIN_CALIBRATION samples is not halved: int8 calibrates on
all of it, since below that count every sample measurably improves the int8 file (docs/real-weights.md,
"How many calibration images"), and validation runs on the same samples, marked in-sample
(``DataSplit.in_sample``: the record says ``held_out: false`` and the warning says the int8 numbers are
optimistic and how to get held-out ones). Otherwise calibration and validation samples are disjoint. Samples are
chosen by a seeded permutation, so the same command gives the same samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.data import DEFAULT_CALIBRATION, DEFAULT_VALIDATION, MIN_CALIBRATION, MIN_CALIBRATION_DOC, fashion_mnist, sample_inputs
from edgeport.data.preprocess import Preprocess
from edgeport.errors import UsageError, UserError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class Samples:
    inputs: np.ndarray  # float32 NCHW, preprocessed
    labels: np.ndarray | None
    source: str
    synthetic: bool = False
    held_out: bool = True  # False: these are the calibration samples (DataSplit.in_sample)

    def __len__(self) -> int:
        return len(self.inputs)

    def validation_record(self) -> dict:
        """What parity.json and a recipe run record about the samples validation ran on."""
        return {"source": self.source, "samples": len(self), "labelled": self.labels is not None, "held_out": self.held_out}


@dataclass(frozen=True)
class DataSplit:
    calibration: Samples
    validation: Samples
    shared: int | None = None  # one source split in two: how many samples it held (None: separate sources)

    @property
    def in_sample(self) -> bool:
        """One source too small to halve: validation is the calibration data itself."""
        return not self.validation.held_out

    def describe(self) -> str:
        """What was used, in one line: counts and sources."""
        c, v = self.calibration, self.validation
        labelled = ", labelled" if v.labels is not None else ""
        if self.in_sample:
            return (f"calibration {len(c)} samples ({c.source}), validation on the same {len(v)} samples{labelled} "
                    f"(in-sample: too few to hold any out)")
        split = f"; one source of {self.shared} samples split in two, disjoint" if self.shared is not None else ""
        return f"calibration {len(c)} samples ({c.source}), validation {len(v)} samples ({v.source}{labelled}){split}"

    def shortfall(self, n_calib: int, n_val: int) -> str | None:
        """A warning when the data held fewer samples than asked for (a small set is split, never padded): what was
        done and how to avoid it. None when the counts asked for were met (a split asked for is accepted)."""
        c, v = len(self.calibration), len(self.validation)
        if self.in_sample:
            return (f"{self.calibration.source}: only {self.shared} samples, too few to split (half would be under "
                    f"{MIN_CALIBRATION}): int8 is calibrated on all {c} and validated on the same samples, so its int8 "
                    f"numbers are in-sample (optimistic); give held-out data with --val-data, or split it knowingly "
                    f"with --calib-samples {self.shared // 2} --val-samples {self.shared - self.shared // 2}")
        if c >= n_calib and v >= n_val:
            return None
        if self.shared is not None:
            return (f"{self.calibration.source}: only {c} calibration + {v} validation samples ({n_calib} + {n_val} asked for): "
                    f"its {self.shared} samples were split in two, disjoint; give held-out data with --val-data to calibrate "
                    f"on all of them, or accept this split with --calib-samples {c} --val-samples {v}")
        short = [f"{part.source}: only {len(part)} {role} samples ({asked} asked for)"
                 for part, role, asked in ((self.calibration, "calibration", n_calib), (self.validation, "validation", n_val))
                 if len(part) < asked]
        return "; ".join(short)

    def too_few_for_int8(self) -> str | None:
        """A warning when int8 calibration rests on fewer than MIN_CALIBRATION samples."""
        n = len(self.calibration)
        if n >= MIN_CALIBRATION:
            return None
        return (f"int8 calibrated on {n} sample{'s' if n != 1 else ''}, fewer than {MIN_CALIBRATION}: below that the "
                f"measured int8 accuracy is not settled ({MIN_CALIBRATION_DOC}); give more with --calib/--calib-samples")

    def warnings(self, n_calib: int, n_val: int, int8: bool) -> list[str]:
        """What a command prints about this data: a shortfall, and too few samples for int8 calibration."""
        return [w for w in (self.shortfall(n_calib, n_val), self.too_few_for_int8() if int8 else None) if w]


def _load_images_folder(folder: Path) -> tuple[list[np.ndarray], np.ndarray | None]:
    from PIL import Image, UnidentifiedImageError

    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {folder}")
    classes = sorted({p.parent.name for p in files if p.parent != folder})
    labelled = classes and all(p.parent != folder for p in files)
    images, labels = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                images.append(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise UserError(f"cannot read image {p}: {exc}") from None
        labels.append(classes.index(p.parent.name) if labelled else -1)
    return images, (np.asarray(labels) if labelled else None)


def preprocess_images(images: list[np.ndarray], pre: Preprocess) -> np.ndarray:
    """Images of different sizes are preprocessed one by one (resize makes them equal)."""
    if len({im.shape for im in images}) == 1:
        return pre(np.stack(images))
    return np.concatenate([pre(im[None]) for im in images])


def array_inputs(arr: np.ndarray, labels: np.ndarray | None, pre: Preprocess, input_shape, origin: str):
    """uint8 pixels (N, H, W[, C]) are preprocessed with ``pre``; float arrays shaped like the model's input
    are taken as already preprocessed. Returns (float32 NCHW inputs, ``labels``)."""
    if arr.dtype == np.uint8:
        return pre(arr), labels
    if arr.dtype in (np.float32, np.float64) and arr.ndim == len(input_shape) and tuple(arr.shape[1:]) == tuple(input_shape[1:]):
        return arr.astype(np.float32), labels
    raise UserError(
        f"{origin}: array of {arr.dtype} {arr.shape} fits neither as uint8 images nor as preprocessed float32 {tuple(input_shape[1:])}",
        "save uint8 pixels (N,H,W[,C]) or float32 inputs shaped like the model's input",
    )


def array_name(arr: np.ndarray) -> str:
    """How an in-memory array (the API's ``calib=`` / ``val_data=``) is named in records and messages."""
    return f"array {arr.dtype}{tuple(arr.shape)}"


def _named(spec) -> str:
    return array_name(spec) if isinstance(spec, np.ndarray) else str(spec)


def _load_array_file(path: Path, pre: Preprocess, input_shape) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0][:160]}") from None
    if isinstance(data, np.lib.npyio.NpzFile):
        keys = list(data.keys())
        if not keys:
            raise UserError(f"{path} holds no arrays")
        x_key = next((k for k in ("images", "x", "inputs", "data") if k in keys), keys[0])
        y_key = next((k for k in ("labels", "y", "targets") if k in keys), None)
        return array_inputs(data[x_key], data[y_key] if y_key else None, pre, input_shape, str(path))
    return array_inputs(data, None, pre, input_shape, str(path))


def _split(inputs: np.ndarray, labels, n_calib: int, n_val: int, seed: int, source: str) -> DataSplit:
    if len(inputs) == 0:
        raise UserError(f"{source} holds no samples")
    if len(inputs) < 2:
        raise UserError(f"{source} has {len(inputs)} sample: need at least 2 (calibration and held-out validation)",
                        "give more samples, or validation data of its own with --val-data")
    order = np.random.default_rng(seed).permutation(len(inputs))
    pick = lambda idx: None if labels is None else labels[idx]  # noqa: E731
    too_small = n_calib + n_val > len(inputs)
    if too_small and len(inputs) // 2 < MIN_CALIBRATION:  # halving would starve calibration: use all of it, in-sample
        calib, val = order[:n_calib], order[:n_val]
        return DataSplit(Samples(inputs[calib], pick(calib), source), Samples(inputs[val], pick(val), source, held_out=False),
                         len(inputs))
    n_c = min(n_calib, len(inputs) // 2) if too_small else n_calib
    calib, val = order[:n_c], order[n_c : n_c + n_val]
    return DataSplit(Samples(inputs[calib], pick(calib), source), Samples(inputs[val], pick(val), source), len(inputs))


def _fashion_split(spec: str, role: str) -> tuple[Path | None, str]:
    """(dataset folder or None for the default, split) of a ``fashion-mnist[:train|:test|:DIR]`` spec; a spec without
    a split calibrates on train and validates on test."""
    rest = spec.partition(":")[2]
    if rest in ("train", "test"):
        return None, rest
    return (Path(rest) if rest else None), ("train" if role == "calibration" else "test")


def _source(spec: str, role: str) -> tuple:
    """What ``spec`` reads, for telling whether --calib and --val-data are the same data."""
    if isinstance(spec, np.ndarray):
        return ("array", id(spec))
    if spec.partition(":")[0] == "fashion-mnist":
        root, split = _fashion_split(spec, role)
        return ("fashion-mnist", str(root.resolve()) if root else None, split)
    if spec == "synthetic":
        return ("synthetic", role)  # generated with a seed per role: never the same samples
    path = Path(spec)
    if path.is_dir() and (path / "train-images-idx3-ubyte.gz").is_file():
        return _source(f"fashion-mnist:{path}", role)
    return ("file", str(path.resolve()))


def _part(spec: str, role: str, pre: Preprocess, input_shape, n: int, seed: int) -> Samples:
    """Up to ``n`` samples of ``spec`` for ``role`` ("calibration" or "validation"), chosen by a seeded permutation."""
    if isinstance(spec, np.ndarray):
        inputs, _ = array_inputs(spec, None, pre, input_shape, array_name(spec))
        idx = np.random.default_rng(seed).permutation(len(inputs))[:n]
        return Samples(inputs[idx], None, array_name(spec))
    if spec == "synthetic":
        gen = sample_inputs.image_like((n, *input_shape[1:]), n, seed=seed + (101 if role == "calibration" else 202)).numpy()
        return Samples(gen, None, "synthetic", True)
    if spec.partition(":")[0] == "fashion-mnist":
        root, split = _fashion_split(spec, role)
        x, y = fashion_mnist.load(split, root)
        idx = np.sort(np.random.default_rng(seed).choice(len(x), size=min(n, len(x)), replace=False))
        return Samples(pre(x[idx]), y[idx] if role == "validation" else None, f"fashion-mnist:{split}")
    if (path := Path(spec)).is_dir() and (path / "train-images-idx3-ubyte.gz").is_file():
        return _part(f"fashion-mnist:{path}", role, pre, input_shape, n, seed)
    inputs, labels = _read(spec, pre, input_shape, role)
    if len(inputs) == 0:
        raise UserError(f"{spec} holds no samples")
    idx = np.random.default_rng(seed).permutation(len(inputs))[:n]
    return Samples(inputs[idx], None if labels is None else labels[idx], spec)


def _read(spec: str, pre: Preprocess, input_shape, role: str = "calibration") -> tuple[np.ndarray, np.ndarray | None]:
    """Every sample of an image folder or .npy/.npz, preprocessed, and their labels (None without)."""
    flag = "--calib" if role == "calibration" else "--val-data"
    path = Path(spec)
    if not path.exists():
        raise UserError(f"{role} source {spec!r} not found ({flag})", "give an image folder, .npy/.npz, fashion-mnist or synthetic")
    if path.is_dir():
        images, labels = _load_images_folder(path)
        return preprocess_images(images, pre), labels
    if path.suffix.lower() in (".npy", ".npz"):
        return _load_array_file(path, pre, input_shape)
    raise UserError(f"cannot use {path} as {role} data ({flag})", "give an image folder, .npy/.npz, fashion-mnist or synthetic")


def load(
    spec: str,
    pre: Preprocess,
    input_shape: tuple[int, ...],
    n_calib: int = DEFAULT_CALIBRATION,
    n_val: int = DEFAULT_VALIDATION,
    seed: int = 0,
    val_spec: str | None = None,
) -> DataSplit:
    """Calibration and held-out validation samples (disjoint) from ``spec``, or, with ``val_spec``, calibration
    from ``spec`` and validation from ``val_spec``."""
    if n_calib < 1 or n_val < 1:
        raise UserError("calibration and validation need at least one sample each")
    for given in (spec, val_spec):
        if given is not None and not isinstance(given, (str, np.ndarray)):
            raise UsageError(f"calibration/validation data of type {type(given).__name__} is not a data source",
                             "give a path (image folder, .npy/.npz), fashion-mnist, synthetic or a numpy array")
    if isinstance(spec, np.ndarray) and val_spec is None:
        inputs, _ = array_inputs(spec, None, pre, input_shape, array_name(spec))
        return _split(inputs, None, n_calib, n_val, seed, array_name(spec))
    if val_spec is not None:
        if _source(spec, "calibration") == _source(val_spec, "validation"):
            raise UsageError(f"--val-data {_named(val_spec)} is the --calib data: validation would not be held out",
                             "omit --val-data to split one source in two (disjoint), or give other data")
        return DataSplit(_part(spec, "calibration", pre, input_shape, n_calib, seed),
                         _part(val_spec, "validation", pre, input_shape, n_val, seed))
    if spec == "synthetic":
        return DataSplit(_part(spec, "calibration", pre, input_shape, n_calib, seed),
                         _part(spec, "validation", pre, input_shape, n_val, seed))
    if spec.partition(":")[0] == "fashion-mnist":  # calibration from train, validation from test: one seeded draw
        root = _fashion_split(spec, "calibration")[0]
        rng = np.random.default_rng(seed)
        tr_x, _ = fashion_mnist.load("train", root)
        te_x, te_y = fashion_mnist.load("test", root)
        ci = np.sort(rng.choice(len(tr_x), size=min(n_calib, len(tr_x)), replace=False))
        vi = np.sort(rng.choice(len(te_x), size=min(n_val, len(te_x)), replace=False))
        return DataSplit(Samples(pre(tr_x[ci]), None, "fashion-mnist:train"), Samples(pre(te_x[vi]), te_y[vi], "fashion-mnist:test"))
    path = Path(spec)
    if path.is_dir() and (path / "train-images-idx3-ubyte.gz").is_file():
        return load(f"fashion-mnist:{path}", pre, input_shape, n_calib, n_val, seed)
    inputs, labels = _read(spec, pre, input_shape)
    return _split(inputs, labels, n_calib, n_val, seed, str(path))


def check_fits(samples: Samples, input_shape: tuple[int, ...]) -> None:
    if tuple(samples.inputs.shape[1:]) != tuple(input_shape[1:]):
        raise UserError(
            f"{samples.source} gives inputs of shape {tuple(samples.inputs.shape[1:])}, the model takes {tuple(input_shape[1:])}",
            "set the preprocessing size/channels to match the model's input",
        )
    if not np.all(np.isfinite(samples.inputs)):
        raise UserError(f"{samples.source} contains NaN or infinite values")


def for_model(loaded, calib: str, calib_samples: int = DEFAULT_CALIBRATION, val_samples: int = DEFAULT_VALIDATION, seed: int = 0,
              preprocess: dict | None = None, val_data: str | None = None) -> DataSplit:
    """The calibration/validation split of ``calib`` (validation from ``val_data`` when given) for a LoadedModel, with
    the model's own preprocessing (``preprocess`` overrides some of its fields: mean, std, scale, bgr...), checked
    against its input shape."""
    from dataclasses import fields, replace

    pre = loaded.data_preprocess()
    if preprocess:
        known = {f.name for f in fields(pre)}
        unknown = sorted(set(preprocess) - known)
        if unknown:
            raise UserError(f"unknown preprocessing field {', '.join(unknown)}", f"choose from {', '.join(sorted(known))}")
        pre = replace(pre, **{k: tuple(v) if isinstance(v, list) else v for k, v in preprocess.items()})
    split = load(calib, pre, loaded.input_shape, calib_samples, val_samples, seed, val_data)
    for part in (split.calibration, split.validation):
        check_fits(part, loaded.input_shape)
    return split
