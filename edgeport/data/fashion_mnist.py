"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (IDX files, gzip), read offline.

Why by hand: the format is 16 header bytes and raw uint8 pixels; torchvision's reader would be the only
alternative and torchvision has no CPU build here.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from edgeport.errors import UserError

DEFAULT_DIR = Path(os.environ.get("EDGEPORT_FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def _read_idx(path: Path, magic: int) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if int.from_bytes(data[:4], "big") != magic:
        raise UserError(f"{path} is not an IDX file of the expected kind")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split: str = "test", root: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (N, 28, 28), labels int64 (N,)) for ``split`` in {"train", "test"}."""
    if split not in _FILES:
        raise UserError(f"Fashion-MNIST has no split {split!r}", "use train or test")
    root = Path(root or DEFAULT_DIR)
    img_name, lbl_name = _FILES[split]
    if not (root / img_name).is_file():
        raise UserError(
            f"Fashion-MNIST not found in {root}",
            "install it with `apt-get install dataset-fashion-mnist` or set EDGEPORT_FASHION_MNIST",
        )
    images = _read_idx(root / img_name, 0x0803)
    labels = _read_idx(root / lbl_name, 0x0801).astype(np.int64)
    return images, labels
