"""Output-aware activation ranges: shrink the int8 range of the activations the network's output is most
sensitive to, where that lowers the error of the whole int8 network on the calibration data.

Per-tensor range methods (:mod:`edgeport.quantization.ranges`) each minimize the error of one tensor. What a
tensor's rounding costs the *output* differs by orders of magnitude between tensors (measured on ImageNet-trained
EfficientNet-Lite0, each activation quantized alone: the stem's ReLU6 output 29.9 dB SQNR, the input 31.7 dB,
~100 others 42-45 dB), and for the few costly ones clipping harder than the local MSE optimum trades a little
clipping error for finer steps that the rest of the network amplifies less. The search:

1. simulates int8 on the fused graph (the graph the int8 targets export): every activation fake-quantized to the
   asymmetric int8 grid of its ``method`` range, every conv/linear weight per channel as both converters do;
2. ranks activations by the output SQNR with that activation alone quantized (one pass each);
3. for the ``top`` worst, in that order, tries ranges scaled by each of SCALES with everything quantized, keeping
   the best scale only when the output SQNR on the scoring samples rises by at least MIN_GAIN_DB.

The result is a scale per chosen tensor, with the tensor's value signature (element count, min, max, mean over
the calibration data). Each exporter finds the same tensor among its own calibrated tensors by that signature
(:func:`apply`) -- the converters rename and re-lay-out tensors, but not their values -- and scales its own
range for it. A tensor no backend tensor matches is left as it was, and counted.

Why by hand: no library does this on a torch.export graph. ORT's and TFLite's calibrators are per tensor; AIMET's
and NNCF's range searches are per tensor too (NNCF's accuracy-aware search works on whole-layer fallbacks).
Measured cost and gain: docs/quantization.md, "Output-aware ranges".
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import fx

from edgeport.graph.fuse import CLAMP_OPS, CONV_OPS, LINEAR_OPS, RELU_OPS, attr_tensor, only_user
from edgeport.quantization.ranges import RangeCollector, Signature, histogram_signatures  # noqa: F401 (re-exported)

aten = torch.ops.aten
SCALES = (0.9, 0.8, 0.7, 0.6, 0.5)  # range multipliers tried per tensor, in order
TOP = 12  # tensors searched: the most sensitive ones
SCORE_SAMPLES = 16  # calibration samples the whole network's error is measured on while searching
RANK_SAMPLES = 8  # calibration samples each tensor's own cost is measured on (ranking only)
MIN_GAIN_DB = 0.02  # a scale is kept only when the whole network's SQNR rises by this much
# ops whose output is the same values rearranged: their int8 tensor is their input's grid, never a range of its own
_LAYOUT_OPS = {aten.view.default, aten.reshape.default, aten._unsafe_view.default, aten.flatten.using_ints,
               aten.permute.default, aten.transpose.int, aten.squeeze.dim, aten.unsqueeze.default,
               aten.clone.default, aten.contiguous.default, aten.split.Tensor, aten.split_with_sizes.default,
               aten.chunk.default, aten.slice.Tensor, aten.select.int, aten.index_select.default, aten.max_pool2d.default}
_FUSED_ACTIVATIONS = RELU_OPS | CLAMP_OPS


@dataclass(frozen=True)
class Shrink:
    tensor: str  # fused-graph node name
    scale: float  # multiplier of the method's range
    signature: Signature
    gain_db: float  # whole-network SQNR gain in the simulation when it was kept


@dataclass
class RangeSearchReport:
    method: str
    samples: int  # calibration samples the SQNR was scored on
    tensors: int  # activations simulated
    searched: int
    sqnr_before_db: float
    sqnr_after_db: float
    seconds: float
    chosen: list[Shrink] = field(default_factory=list)

    def summary(self) -> str:
        return (f"output-aware ranges: {len(self.chosen)} of the {self.searched} most sensitive activations narrowed "
                f"({self.method} ranges, simulated int8 {self.sqnr_before_db:.1f} -> {self.sqnr_after_db:.1f} dB SQNR on "
                f"{self.samples} calibration samples, {self.seconds:.0f} s)")

    def to_dict(self) -> dict:
        return {"method": self.method, "samples": self.samples, "tensors": self.tensors, "searched": self.searched,
                "sqnr_before_db": round(self.sqnr_before_db, 2), "sqnr_after_db": round(self.sqnr_after_db, 2),
                "seconds": round(self.seconds, 1),
                "chosen": [{"tensor": s.tensor, "scale": s.scale, "gain_db": round(s.gain_db, 3)} for s in self.chosen]}


def _points(gm: fx.GraphModule) -> list[fx.Node]:
    """The fused graph's activations that become int8 tensors of their own: every float op output except a
    conv/linear/add whose only user is a ReLU/ReLU6 (the converters fuse it) and rearranging ops."""
    points = []
    for n in gm.graph.nodes:
        if n.op != "call_function" or n.target in _LAYOUT_OPS:
            continue
        val = n.meta.get("val")
        if not isinstance(val, torch.Tensor) or not val.is_floating_point():
            continue
        user = only_user(n)
        if user is not None and user.op == "call_function" and user.target in _FUSED_ACTIVATIONS:
            continue
        points.append(n)
    return points


def _grid(lo: float, hi: float) -> tuple[float, float]:
    """(scale, zero point) of TFLite's / ORT's asymmetric int8 grid for [lo, hi] (0 included)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / 255 or 1.0
    return scale, float(min(max(round(-128 - lo / scale), -128), 127))


class _Simulation:
    """A copy of the graph with a fake-quant step after every point; ``ranges[name]`` (None: float) sets it."""

    def __init__(self, gm: fx.GraphModule, points: list[fx.Node], quantize_weights: bool):
        import copy

        self.gm = copy.deepcopy(gm)
        self.ranges: dict[str, tuple[float, float] | None] = {}
        self.observe = None  # called with (name, value) at every point when set
        names = {p.name for p in points}
        sim = self

        def fq(x: torch.Tensor, name: str) -> torch.Tensor:
            if sim.observe is not None:
                sim.observe(name, x)
            r = sim.ranges.get(name)
            if r is None:
                return x
            scale, zero = _grid(*r)
            # what fake_quantize_per_tensor_affine computes (round half to even), in ops torch.func.vmap batches
            return (torch.clamp(torch.round(x / scale) + zero, -128, 127) - zero) * scale

        for n in list(self.gm.graph.nodes):
            if n.name in names:
                with self.gm.graph.inserting_after(n):
                    q = self.gm.graph.call_function(fq, (n, n.name))
                n.replace_all_uses_with(q, delete_user_cb=lambda u, q=q: u is not q)
            if quantize_weights and n.op == "call_function" and n.target in CONV_OPS | LINEAR_OPS:
                from edgeport.quantization.equalization import replace_param
                from edgeport.quantization.weight_grid import fake_quant

                w = attr_tensor(self.gm, n.args[1])
                if w is not None and w.is_floating_point():
                    replace_param(self.gm, n.args[1].target, fake_quant(w))
        self.gm.recompile()

    def __call__(self, x: torch.Tensor, chunk: int) -> torch.Tensor:
        return run_batched(self.gm, x, chunk)


VMAP_SAMPLES = 16  # samples one vmapped call of a batch-1 graph takes (memory: 16 samples' activations at once)


def run_batched(gm: torch.nn.Module, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """``gm`` on every sample of ``x``. A graph captured for batch 1 (its reshapes name that batch) runs one sample a
    call, where Python's per-op overhead dominates small inputs; torch.func.vmap runs VMAP_SAMPLES at once (measured:
    3x faster on a 64x64 MobileNetV3-Small). A graph vmap cannot batch runs sample by sample."""
    from edgeport.runtimes.torch_runner import run_module

    with torch.no_grad():
        if chunk == 1 and len(x) > 1:
            try:
                return torch.cat([torch.func.vmap(gm)(part[:, None]).flatten(0, 1) for part in x.split(VMAP_SAMPLES)])
            except Exception:  # noqa: BLE001 -- an op without a batching rule: fall back to one sample a call
                pass
        return run_module(gm, x, chunk)


def _sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    noise = float(((ref.double() - out.double()) ** 2).sum())
    return math.inf if noise == 0 else 10 * math.log10(float((ref.double() ** 2).sum()) / noise)


def _observe(gm: fx.GraphModule, points: list[fx.Node], x: torch.Tensor, chunk: int, method: str,
             percentile: float) -> tuple[dict[str, tuple[float, float]], dict[str, Signature]]:
    """``method`` ranges and value signatures of every point over ``x``."""
    collector = RangeCollector(method, percentile)
    stats: dict[str, list[float]] = {}
    captured: dict[str, torch.Tensor] = {}
    sim = _Simulation(gm, points, quantize_weights=False)
    # a copy: an in-place op downstream (hardswish_, relu_) would change the captured tensor
    sim.observe = lambda name, v: captured.__setitem__(name, v.detach().clone())
    with torch.no_grad():
        for part in x.split(chunk):
            captured.clear()
            sim.gm(part)
            arrays = {k: v.float().numpy() for k, v in captured.items()}
            collector.collect(arrays)
            for k, a in arrays.items():
                s = stats.setdefault(k, [0, math.inf, -math.inf, 0.0])
                s[0] += a.size
                s[1], s[2] = min(s[1], float(a.min())), max(s[2], float(a.max()))
                s[3] += float(a.astype(np.float64).sum())
    signatures = {k: Signature(int(c), lo, hi, total / max(c, 1)) for k, (c, lo, hi, total) in stats.items()}
    return collector.ranges(), signatures


def search(gm: fx.GraphModule, calibration: np.ndarray, reference: torch.nn.Module | None = None, method: str = "mse",
           percentile: float = 99.99, top: int = TOP, score_samples: int = SCORE_SAMPLES,
           on_step=lambda s: None) -> RangeSearchReport:
    """The output-aware range scales for ``gm`` (the int8 targets' fused graph) on ``calibration`` (float NCHW).

    ``reference``: what the int8 network should compute, when ``gm`` is not it: bias correction moves ``gm``'s
    float outputs on purpose (so that its int8 outputs land on the original's), so the error is measured against
    the graph before it (default: ``gm`` itself)."""
    from edgeport.quantization.equalization import chunk_size, subset

    start = time.monotonic()
    chunk, multiple = chunk_size(gm)
    x = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
    points = _points(gm)
    base, signatures = _observe(gm, points, x, chunk, method, percentile)
    points = [p for p in points if p.name in base and base[p.name][1] > base[p.name][0]]
    xs = subset(x, score_samples, multiple)
    xr = subset(xs, RANK_SAMPLES, multiple)
    ref = run_batched(reference if reference is not None else gm, xs, chunk)
    ref_r = run_batched(reference if reference is not None else gm, xr, chunk)
    alone = _Simulation(gm, points, quantize_weights=False)
    sensitivity = {}
    for i, p in enumerate(points):
        alone.ranges = {p.name: base[p.name]}
        sensitivity[p.name] = _sqnr(ref_r, alone(xr, chunk))
        if i % 20 == 0:
            on_step(f"output-aware ranges: sensitivity {i}/{len(points)}")
    del alone
    full = _Simulation(gm, points, quantize_weights=True)
    full.ranges = dict(base)
    before = best = _sqnr(ref, full(xs, chunk))
    chosen = []
    ranked = sorted(sensitivity, key=sensitivity.get)[:top]
    for name in ranked:
        lo, hi = base[name]
        kept, top_db = None, best + MIN_GAIN_DB
        for s in SCALES:  # every scale: the error is not monotone in it (a ReLU6 output measured best at 0.6)
            full.ranges[name] = (lo * s, hi * s)
            got = _sqnr(ref, full(xs, chunk))
            if got >= top_db:
                kept, top_db = s, got
        full.ranges[name] = (lo * kept, hi * kept) if kept else (lo, hi)
        if kept:
            gain, best = top_db - best, top_db
        if kept:
            chosen.append(Shrink(name, kept, signatures[name], gain))
    return RangeSearchReport(method, len(xs), len(points), len(ranked), before, best, time.monotonic() - start, chosen)


def apply(ranges: Mapping[str, tuple[float, float]], signatures: Mapping[str, Signature],
          chosen: list[Shrink]) -> tuple[dict[str, tuple[float, float]], list[str]]:
    """``ranges`` (a backend's tensor -> (lo, hi)) with each chosen tensor's range scaled, the backend tensor found by
    its signature (every tensor that matches: a reshape of it holds the same values); and the chosen tensors that
    no backend tensor matched."""
    out = dict(ranges)
    unmatched = []
    for s in chosen:
        hits = [k for k, sig in signatures.items() if k in out and sig.matches(s.signature)]
        if not hits:
            unmatched.append(s.tensor)
        for k in hits:
            lo, hi = out[k]
            out[k] = (lo * s.scale, hi * s.scale)
    return out, unmatched


def applied(chosen: list[Shrink], unmatched: list[str]) -> dict:
    """What an exporter records of the shrinks it applied (file metadata ``quantization.range_search``)."""
    return {"narrowed": {s.tensor: s.scale for s in chosen if s.tensor not in unmatched}, "unmatched": unmatched}
