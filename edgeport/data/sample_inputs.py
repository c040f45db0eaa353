"""Deterministic inputs for equivalence and parity checks when no calibration data is given.

Two kinds: white noise (exercises every weight) and "image-like" fields - smooth random colour
gradients with a few hard edges, scaled to [0, 1] and normalised with ImageNet mean/std - whose
statistics resemble preprocessed photos far more than noise does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def noise(shape: tuple[int, ...], n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape[1:]), generator=g)


def image_like(shape: tuple[int, ...], n: int, seed: int = 1) -> torch.Tensor:
    """``n`` smooth, edged, normalised images of ``shape[1:]`` (C, H, W); other ranks fall back to noise."""
    if len(shape) != 4:
        return noise(shape, n, seed)
    _, c, h, w = shape
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, c, 4, 4), generator=g)
    img = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    # A few axis-aligned rectangles of flat colour: edges like objects on a background.
    for i in range(n):
        for _ in range(3):
            y0, x0 = (int(v) for v in torch.randint(0, max(h - 1, 1), (2,), generator=g))
            y1, x1 = (y0 + 1 + int(torch.randint(0, h // 2 + 1, (1,), generator=g)),
                      x0 + 1 + int(torch.randint(0, w // 2 + 1, (1,), generator=g)))
            img[i, :, y0:y1, x0:x1] = torch.rand((c, 1, 1), generator=g)
    img = img.clamp(0, 1)
    if c == 3:
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        return (img - mean) / std
    return (img - 0.5) / 0.25


def check_set(shape: tuple[int, ...], n: int = 8) -> dict[str, torch.Tensor]:
    """The named inputs used by equivalence checks: noise and image-like, ``n`` of each."""
    return {"noise": noise(shape, n), "image-like": image_like(shape, n)}


def recalibrate_batchnorm(model: torch.nn.Module, batches: list[torch.Tensor]) -> torch.nn.Module:
    """Re-estimate BatchNorm running statistics from ``batches`` (a "calibrated" random-weight model).

    A freshly initialised net has running_mean 0 / running_var 1, so its activations blow up or vanish
    and its logits barely depend on the input; after this, activations are normalised by real statistics.
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.training) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    with torch.no_grad():
        for b in batches:
            model(b)
    for m, (momentum, training) in zip(bns, saved):
        m.momentum = momentum
        m.train(training)
    return model.eval()
