"""One preprocessing path for training, calibration and validation, so the numbers compare like with like.

uint8 images (N, H, W) or (N, H, W, C) -> float32 NCHW: grayscale -> C channels, channel order, resize
(bilinear, torch's kernel, deterministic), centre crop, then either mean/std on [0, 1] or (x - 127) / 128.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from edgeport.errors import UserError


@dataclass(frozen=True)
class Preprocess:
    size: int = 224  # output H = W
    resize: int | None = None  # resize the shorter side to this before a centre crop to `size`; None: straight to size
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    scale: str = "meanstd"  # "meanstd" ([0,1] then mean/std) or "127" ((x - 127) / 128)
    bgr: bool = False  # reverse channel order (models trained on OpenCV-loaded images)

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """``mean/std``, ``(x - 127) / 128`` and BGR, in a few words."""
        values = "(x - 127) / 128" if self.scale == "127" else f"mean {list(self.mean)} std {list(self.std)}"
        return values + (", BGR" if self.bgr else "")

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocess":
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise UserError(f"unknown preprocessing keys: {', '.join(sorted(unknown))}", f"known: {', '.join(cls.__dataclass_fields__)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return apply(self, images)


# Fashion-MNIST models: 28x28 grayscale -> 64x64, 3 channels, [-1, 1].
FASHION_MNIST = Preprocess(size=64, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def apply(p: Preprocess, images: np.ndarray, batch: int = 256) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise UserError(f"images must be uint8 pixels, got {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise UserError(f"images must be (N, H, W) or (N, H, W, C), got shape {images.shape}")
    out = [_apply_batch(p, images[i : i + batch]) for i in range(0, len(images), batch)]
    return np.concatenate(out) if out else np.zeros((0, p.channels, p.size, p.size), np.float32)


def _apply_batch(p: Preprocess, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float()  # NCHW, 0..255
    c = x.shape[1]
    if c == 4:
        x, c = x[:, :3], 3  # drop alpha
    if c == 1 and p.channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif c == 3 and p.channels == 1:
        x = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    elif c != p.channels:
        raise UserError(f"images have {c} channels, the model wants {p.channels}")
    if p.bgr and p.channels == 3:
        x = x.flip(1)
    h, w = x.shape[-2:]
    if p.resize:
        s = p.resize / min(h, w)
        x = F.interpolate(x, size=(max(p.size, round(h * s)), max(p.size, round(w * s))), mode="bilinear", align_corners=False)
        top, left = (x.shape[-2] - p.size) // 2, (x.shape[-1] - p.size) // 2
        x = x[..., top : top + p.size, left : left + p.size]
    elif (h, w) != (p.size, p.size):
        x = F.interpolate(x, size=(p.size, p.size), mode="bilinear", align_corners=False)
    if p.scale == "127":
        x = (x - 127.0) / 128.0
    elif p.scale == "meanstd":
        mean = torch.tensor(p.mean[: p.channels]).view(1, -1, 1, 1)
        std = torch.tensor(p.std[: p.channels]).view(1, -1, 1, 1)
        x = (x / 255.0 - mean) / std
    else:
        raise UserError(f"unknown scaling {p.scale!r}", "use meanstd or 127")
    return x.contiguous().numpy().astype(np.float32)
