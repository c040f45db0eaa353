"""Labelled datasets for accuracy evaluation: every sample of a source, with its class index.

Sources: ``fashion-mnist`` (the 10,000-image test split; ``fashion-mnist:train`` or ``fashion-mnist:DIR``),
``digits`` (scikit-learn's 1,797 8x8 digits), an ImageFolder-style directory (one sub-folder per class;
the sorted sub-folder names are the class indices 0..K-1, as in torchvision's ImageFolder), or an ``.npz``
with images under ``x``/``images`` and integer labels under ``y``/``labels``.

Pixels stay uint8 (image files are decoded lazily) and are preprocessed batch by batch with the very code
calibration uses (:mod:`edgeport.data.preprocess`, :func:`edgeport.data.calibration.array_inputs`), so
several artifacts with different preprocessing can be evaluated on one loaded source without holding the
float copy (10,000 x 3 x 64 x 64 float32 is 490 MB) in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.data import calibration, fashion_mnist
from edgeport.data.preprocess import Preprocess
from edgeport.errors import UserError

SOURCES_HINT = "give fashion-mnist, digits, an ImageFolder directory (one sub-folder per class) or an .npz with x and y"
X_KEYS = ("x", "images", "inputs", "data")
Y_KEYS = ("y", "labels", "targets")


@dataclass(frozen=True)
class LabelledData:
    source: str
    labels: np.ndarray  # int64 (N,)
    classes: tuple[str, ...] | None  # class names when the source defines them (their count must match the model)
    images: np.ndarray | None = None  # uint8 (N, H, W[, C]) or float32 already-preprocessed NCHW (npz)
    files: tuple[Path, ...] | None = None  # image files, decoded per batch

    def __len__(self) -> int:
        return len(self.labels)

    def batches(self, pre: Preprocess, input_shape: tuple[int, ...], batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(float32 NCHW inputs, labels) in order, ``batch`` samples at a time, preprocessed with ``pre``."""
        for i in range(0, len(self), batch):
            j = min(len(self), i + batch)
            if self.files is not None:
                x = calibration.preprocess_images([_decode(p) for p in self.files[i:j]], pre)
            else:
                x, _ = calibration.array_inputs(self.images[i:j], None, pre, input_shape, self.source)
            yield x, self.labels[i:j]


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise UserError(f"cannot read image {path}: {exc}") from None


def _image_folder(root: Path) -> LabelledData:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    loose = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in calibration.IMAGE_SUFFIXES]
    if not classes:
        what = f"{len(loose)} images but no class sub-folders" if loose else "no class sub-folders"
        raise UserError(f"{root} is unlabelled: {what}", "put each class's images in its own sub-folder (root/<class>/img.jpg)")
    if loose:
        raise UserError(f"{root} has {len(loose)} images outside the class sub-folders (e.g. {loose[0].name})",
                        "move them into root/<class>/ or remove them")
    files, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in calibration.IMAGE_SUFFIXES)
        if not found:
            # An empty class folder would still take an index; evaluating without it would hide a mistake.
            raise UserError(f"class folder {root / name} holds no images ({', '.join(sorted(calibration.IMAGE_SUFFIXES))})")
        files += found
        labels += [index] * len(found)
    return LabelledData(str(root), np.asarray(labels, np.int64), tuple(classes), files=tuple(files))


def _npz(path: Path) -> LabelledData:
    if path.suffix.lower() == ".npy":
        raise UserError(f"{path} is unlabelled (an .npy holds one array)", "save an .npz with x (images) and y (labels)")
    try:
        data = np.load(path, allow_pickle=False)
        keys = list(data.keys())
    except (ValueError, OSError, AttributeError) as exc:
        raise UserError(f"cannot read {path}: {str(exc).splitlines()[0][:160]}") from None
    x_key = next((k for k in X_KEYS if k in keys), None)
    y_key = next((k for k in Y_KEYS if k in keys), None)
    if x_key is None:
        raise UserError(f"{path} has no images (arrays: {', '.join(keys) or 'none'})", f"store them under one of {', '.join(X_KEYS)}")
    if y_key is None:
        raise UserError(f"{path} is unlabelled (arrays: {', '.join(keys)})",
                        f"store integer class indices under one of {', '.join(Y_KEYS)}")
    x, y = data[x_key], data[y_key]
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise UserError(f"{path}: {y_key} must be {len(x)} non-negative integer class indices, got {y.dtype} {y.shape}")
    if len(x) == 0:
        raise UserError(f"{path} holds no samples")
    return LabelledData(str(path), y.astype(np.int64), None, images=x)


def load(spec: str) -> LabelledData:
    """The whole labelled source ``spec`` (see the module docstring); typed errors when missing or unlabelled."""
    name, _, arg = spec.partition(":")
    if name == "fashion-mnist":
        split = arg if arg in ("train", "test") else "test"
        x, y = fashion_mnist.load(split, Path(arg) if arg and arg not in ("train", "test") else None)
        return LabelledData(f"fashion-mnist:{split}", y, fashion_mnist.CLASSES, images=x)
    if spec == "digits":
        from edgeport.data import digits

        x, y = digits.load()
        return LabelledData("digits (scikit-learn)", y, digits.CLASSES, images=x)
    if spec == "synthetic":
        raise UserError("synthetic data has no labels, so it cannot measure accuracy", SOURCES_HINT)
    path = Path(spec)
    if not path.exists():
        raise UserError(f"dataset {spec!r} not found", SOURCES_HINT)
    if path.is_dir():
        if (path / "t10k-images-idx3-ubyte.gz").is_file():
            return load(f"fashion-mnist:{path}")
        return _image_folder(path)
    if path.suffix.lower() in (".npz", ".npy"):
        return _npz(path)
    raise UserError(f"cannot evaluate on {path}", SOURCES_HINT)
