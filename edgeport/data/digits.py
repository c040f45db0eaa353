"""scikit-learn's handwritten digits (UCI optdigits test set): 1,797 grayscale 8x8 images, 10 classes.

The images hold counts 0..16 (ink pixels in 4x4 blocks of the original 32x32 bitmaps). They are mapped
linearly to uint8 0..255 (``round(v * 255 / 16)``) so they go through the same preprocessing as every other
image source (:mod:`edgeport.data.preprocess`: resize to the model's size, channels, mean/std).
"""

from __future__ import annotations

import numpy as np

from edgeport.errors import RuntimeMissing

CLASSES = tuple(str(d) for d in range(10))
MAX_VALUE = 16


def load() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (1797, 8, 8), labels int64 (1797,))."""
    try:
        from sklearn.datasets import load_digits  # the data file ships inside scikit-learn (no download)
    except ImportError:
        raise RuntimeMissing("the digits dataset needs scikit-learn", "pip install 'edgeport[digits]' (scikit-learn)") from None
    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / MAX_VALUE)).astype(np.uint8)
    return images, np.asarray(bunch.target, dtype=np.int64)
