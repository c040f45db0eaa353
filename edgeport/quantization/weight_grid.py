"""The grids int8 targets put conv/linear weights on: symmetric, per output channel, zero point 0. Defined once here
for the exporters (onnx-int8 hands ONNX Runtime's quantizer the scales) and for bias correction, which simulates
the grid the file will hold.

* ``int8``: scale ``max|w| / 127`` (TFLiteConverter; ONNX Runtime without ``reduce_range``).
* ``int7``: scale ``max|w| / 64``, values in [-64, 64] (ONNX Runtime's ``reduce_range``): on an x86 CPU without
  VNNI, ORT's u8*s8 GEMM kernels add two adjacent products ``a0*w0 + a1*w1`` into a saturating int16
  (VPMADDUBSW, :mod:`edgeport.runtimes.cpu_features`); with 7-bit weights ``255 * 64 * 2 = 32640`` cannot
  saturate, at the price of one bit on every weight.
* ``int8-pairs``: the 8-bit grid, with each channel's scale made just large enough that no pair the kernel adds
  can saturate: for every two weights ``(w[2j], w[2j+1])`` along the GEMM's reduction axis K,
  ``|q0| + |q1| <= 128`` when they share a sign (``255 * 128 = 32640``); pairs of opposite signs cannot
  saturate. Depthwise convolutions keep the plain 8-bit grid: ORT's depthwise kernel widens to 16 bits
  before it multiplies and accumulates in int32 (checked in tests/exporters/test_weight_grid.py).
  Which weights are paired: MLAS packs B four K values at a time and VPMADDUBSW sums the bytes two by two, so
  the pairs are K indices (2j, 2j+1). K is the input channel for a 1x1 conv and a linear layer; for a KxK conv
  it is (cin, kh, kw) in ORT's NCHW kernels and (kh, kw, cin) in its NHWC ones, so both orders are bounded.
  Measured (EfficientNet-Lite0, ImageNet weights, mse ranges, no bias correction, 63 photos, AVX2 host):
  int7 9.1 dB, int8 with 8-bit depthwise only 10.5 dB, int8-pairs 15.4 dB, which is what 8-bit weights give
  without saturation (ORT's unfused QDQ graph, computed in float: 15.4 dB); the fused integer graph matches
  the unfused one as closely as int7's does (29.5 vs 29.6 dB), where plain int8 falls to 7.1 dB.

Written by hand: the pair bound depends on MLAS's kernel layout, which no quantizer models.
"""

from __future__ import annotations

import numpy as np
import torch

WEIGHT_GRIDS = ("int8", "int7", "int8-pairs")
QMAX = {"int8": 127, "int7": 64, "int8-pairs": 127}
PAIR_LIMIT = 128  # |q0| + |q1| of a same-sign pair: 255 * 128 = 32640 <= 32767 (int16)


def is_depthwise(shape: tuple[int, ...], groups: int) -> bool:
    """A conv ORT runs with its depthwise kernel: one input and one output channel per group."""
    return len(shape) >= 3 and groups > 1 and shape[1] == 1 and shape[0] == groups


def k_orders(w: torch.Tensor) -> list[torch.Tensor]:
    """``w`` (out channels first; a conv's (out, in, *kernel) or a linear's (out, in)) as (out, K) rows, once per
    order ORT's kernels may reduce it in."""
    rows = [w.reshape(w.shape[0], -1)]
    if w.dim() >= 3 and int(np.prod(w.shape[2:])) > 1:
        rows.append(w.movedim(1, -1).reshape(w.shape[0], -1))  # kernel positions first, then input channels
    return rows


def pair_magnitude(rows: torch.Tensor) -> torch.Tensor:
    """Per row: the largest ``|a0*w0 + a1*w1| / max(a)`` over the K pairs (2j, 2j+1) and non-negative a: ``|w0| +
    |w1|`` for a same-sign pair, the larger magnitude otherwise."""
    if rows.shape[1] % 2:
        rows = torch.cat([rows, rows.new_zeros(rows.shape[0], 1)], dim=1)
    a, b = rows[:, 0::2], rows[:, 1::2]
    same = torch.sign(a) * torch.sign(b) > 0
    return torch.where(same, a.abs() + b.abs(), torch.maximum(a.abs(), b.abs())).amax(dim=1)


def channel_scales(w: torch.Tensor, grid: str, groups: int = 1) -> torch.Tensor:
    """The per-output-channel scale of ``w`` on ``grid`` (1 for an all-zero channel, as ORT does)."""
    if grid not in WEIGHT_GRIDS:
        raise ValueError(f"weight grid {grid!r}: one of {WEIGHT_GRIDS}")
    w = w.detach()
    peak = w.reshape(w.shape[0], -1).abs().amax(dim=1)
    if grid == "int8-pairs" and not is_depthwise(tuple(w.shape), groups):
        # (|w0| + |w1|) / s <= 127 keeps the rounded pair within 127 + 1 = PAIR_LIMIT
        peak = torch.stack([peak, *(pair_magnitude(r) for r in k_orders(w))]).amax(dim=0)
    scale = peak / QMAX[grid]
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def fake_quant(w: torch.Tensor, grid: str = "int8", groups: int = 1) -> torch.Tensor:
    """Quantize-dequantize ``w`` per output channel on ``grid``: round half to even, clamp to [-qmax, qmax]."""
    scale = channel_scales(w, grid, groups).reshape(-1, *([1] * (w.dim() - 1))).to(w.dtype)
    return torch.clamp(torch.round(w / scale), -QMAX[grid], QMAX[grid]) * scale


def worst_pair(q: np.ndarray, groups: int = 1) -> int:
    """The largest same-sign pair sum ``|q0| + |q1|`` in an int8 weight (out channels first) as a kernel without VNNI
    would pair it: 0 for a depthwise conv (its kernel does not pair). Over PAIR_LIMIT, u8 activations can saturate."""
    if is_depthwise(q.shape, groups):
        return 0
    t = torch.from_numpy(q.astype(np.int32))
    return int(max(pair_magnitude(r).max() for r in k_orders(t)))
