"""AdaRound: learned up/down rounding of conv/linear weights on the fused graph, before export.

Nagel et al., "Up or Down? Adaptive Rounding for Post-Training Quantization" (ICML 2020). Rounding each weight
to the nearest grid point is not what minimises a layer's output error; AdaRound chooses, per weight, floor or
ceil by optimising a soft rounding variable V (rectified sigmoid h(V) in [0, 1], w~ = s * (floor(w/s) + h(V)))
against the layer's output error on calibration inputs, with a regulariser sum(1 - |2h - 1|^beta) (beta annealed
20 -> 2 after a 20 % warm start without it) that drives every h to 0 or 1. Layer by layer, in graph order.

How edgeport uses it:

* The grid is the one both int8 converters compute themselves: per output channel, symmetric,
  scale s = max|w| / qmax (qmax 127: TFLiteConverter, and ORT's quantize_static with reduce_range off; ORT's
  7-bit ``reduce_range`` weights use [-64, 64], a different grid AdaRound's 8-bit choice does not survive).
  Each channel's largest-magnitude weight is kept bit for bit, so the converter derives the same scale;
  every other weight is written back as s * q (clamped to the channel's max), so the converter's own
  round(w / s) gives back exactly the q chosen here. The exporters read the int8 weights out of the written
  file and compare (:mod:`edgeport.quantization.adaround_check`); the export's metadata says how many matched.
* Inputs (the paper's "asymmetric" form): the layer's reconstruction target is the float model's output
  (float inputs, float weights); the rounded layer sees the inputs of the model whose earlier layers are
  already rounded. So a layer can compensate part of the error its predecessors left, which is what makes
  layer-by-layer rounding compose. A ReLU / ReLU6 right after the layer (its only user) is included in the
  error, as in the paper. Activation quantization is not simulated (its ranges are the converters' own).
* Each layer's result is checked: when AdaRound's rounding gives a larger output error on all calibration
  samples than nearest rounding, the layer keeps nearest rounding (reported). So AdaRound never makes a
  layer's own error worse on the calibration data.
* ``bias_correction=True`` adds, after each layer is rounded, the empirical per-channel mean of
  (float output - rounded output) to its bias (DFQ's empirical bias correction, in the same asymmetric
  form). Bias correction of :mod:`edgeport.quantization.equalization` run after AdaRound would see no weight
  error (the weights are already on the grid) and do nothing, so with ``adaround`` the correction is made
  here instead.
* Cost: ITERATIONS Adam steps per layer. Conv2d/linear layers step on ROWS sampled im2col rows (ROWS_PER_IMAGE
  output positions from each of up to SAMPLES calibration images), so a step costs the same at any feature-map
  size; conv1d/conv3d step on BATCH whole images. Measured: 478 s for EfficientNet-Lite0's 50 layers on one
  shared core (docs/real-weights.md); a first version stepping on 4 whole images each time was ~2/3 through
  Lite0 after 10 minutes (core shared with other runs; most time in depthwise layers).

Why by hand: torch.ao has no AdaRound; AIMET (Qualcomm) and NNCF have one, but each is a large install with its
own model wrappers (AIMET's QuantizationSimModel, NNCF's NNCFNetwork) and neither works on a torch.export
fx graph; the algorithm itself is ~100 lines of torch here, and the graph walk is equalization's.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import fx

from edgeport.graph.fuse import LINEAR_OPS, activation_kind, attr_tensor, module_path, only_user, set_param
from edgeport.quantization.equalization import (
    WEIGHTED,
    Const,
    chunk_size,
    last_uses,
    new_bias_name,
    replace_param,
    run_node,
    subset,
)

ITERATIONS = 500  # Adam steps per layer (the paper: 10k on a GPU with 32 images a step; a CPU budget here)
BATCH = 4  # calibration images per step (all their spatial positions), for conv1d/conv3d
# conv2d/linear: output positions per step, from ROWS_PER_IMAGE sampled in each calibration image (a CPU budget:
# 2048 a step took 15 s per 100 steps of Lite0's 1152 -> 320 conv, on a shared core)
ROWS = 512
ROWS_PER_IMAGE = 256
SAMPLES = 64  # calibration images the walk holds (float and rounded streams)
LEARNING_RATE = 1e-2
REG_WEIGHT = 0.01  # lambda of the rounding regulariser
BETA = (20.0, 2.0)  # annealed from / to
WARM_START = 0.2  # fraction of the steps without the regulariser
ZETA, GAMMA = 1.1, -0.1  # rectified sigmoid stretch
ROWS_OPS = LINEAR_OPS | {torch.ops.aten.conv2d.default}


@dataclass
class LayerRounding:
    layer: str
    weight: str  # the fused graph's parameter name
    qmax: int
    error_nearest: float  # mean squared output error on the calibration samples, nearest rounding
    error_adaround: float  # the same, the rounding kept (equal to error_nearest when nearest was kept)
    changed: int  # weights rounded the other way than nearest
    kept_nearest: bool = False


@dataclass
class AdaRoundReport:
    layers: list[LayerRounding] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    samples: int = 0
    iterations: int = ITERATIONS
    batch: int = BATCH
    bias_corrected: int = 0
    seconds: float = 0.0
    # the int8 weights chosen and their per-channel scales, per fused-graph weight name ([out, ...] as in the
    # graph), for edgeport.quantization.adaround_check; not in to_dict()
    chosen: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    scales: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def summary(self) -> str:
        kept = sum(layer.kept_nearest for layer in self.layers)
        gain = [10 * math.log10(layer.error_nearest / layer.error_adaround) for layer in self.layers
                if layer.error_adaround > 0 and layer.error_nearest > 0]
        median = float(np.median(gain)) if gain else 0.0
        return (f"AdaRound: {len(self.layers)} layers ({kept} kept nearest rounding), median layer error "
                f"{median:.1f} dB below nearest, {self.samples} samples x {self.iterations} steps, {self.seconds:.0f} s"
                + (f", bias corrected in {self.bias_corrected}" if self.bias_corrected else ""))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("chosen")
        d.pop("scales")
        d["skipped"] = [{"layer": n, "reason": why} for n, why in self.skipped]
        return d


# --- the grid -------------------------------------------------------------------------------------------


def grid(w: torch.Tensor, qmax: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(scale [out, 1...], w / scale, mask of each channel's max-|w| elements) for per-channel symmetric int8.
    The scale is max|w| / qmax in float32, as the converters compute it; a zero channel gets scale 1 (and q 0,
    as in both converters: without that rule AdaRound could record q = 1 there, which the clamp to max|w| writes
    back as 0)."""
    flat = w.detach().float().reshape(w.shape[0], -1)
    top = flat.abs().amax(dim=1, keepdim=True)
    scale = torch.where(top > 0, top / qmax, torch.ones_like(top))
    is_max = flat.abs() == top  # a zero channel (BN gamma 0: real checkpoints have them) is all max: kept at q = 0
    shape = (w.shape[0],) + (1,) * (w.dim() - 1)
    return scale.reshape(shape), (flat / scale).reshape(w.shape), is_max.reshape(w.shape)


def on_grid(w: torch.Tensor, q: torch.Tensor, qmax: int) -> torch.Tensor:
    """The float weights a converter turns into exactly ``q``: s * q, except each channel's max-|w| element,
    kept as it is (so max|w|, hence s, is unchanged), and nothing beyond that max in magnitude."""
    scale, _, is_max = grid(w, qmax)
    top = w.detach().float().reshape(w.shape[0], -1).abs().amax(dim=1).reshape(scale.shape)
    out = torch.maximum(torch.minimum(scale * q, top), -top)
    return torch.where(is_max, w.detach().float(), out).to(w.dtype)


def quantized(w: torch.Tensor, qmax: int) -> torch.Tensor:
    """What a converter makes of ``w``: round(w / s), clamped (round half to even, as numpy / ORT)."""
    _, ratio, _ = grid(w, qmax)
    return torch.clamp(torch.round(ratio), -qmax, qmax)


# --- one layer ------------------------------------------------------------------------------------------


def _h(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def _apply(kind: str | None, y: torch.Tensor) -> torch.Tensor:
    if kind == "ReLU":
        return torch.relu(y)
    if kind == "ReLU6":
        return torch.clamp(y, 0, 6)
    return y


def _sq_error(a: torch.Tensor, b: torch.Tensor, linear: bool) -> torch.Tensor:
    """Squared error summed over output channels, mean over samples and positions (the paper's ||.||_F^2 per row)."""
    d = (a - b) ** 2
    return d.sum(dim=-1 if linear else 1).mean()


class _Rows:
    """A conv2d/linear layer as a matrix product on sampled rows: inputs [R, groups, K] (im2col of sampled output
    positions), targets [R, out]. A step then costs R * out * K multiply-adds whatever the feature map size,
    and no depthwise-conv weight gradient (slow on CPU) is needed. Other ops (conv1d/3d) run as they are."""

    def __init__(self, op, w: torch.Tensor, b: torch.Tensor | None, rest: list, x_q: torch.Tensor, target: torch.Tensor,
                 per_image: int, generator: torch.Generator):
        self.b = b
        out = w.shape[0]
        if op in LINEAR_OPS:
            self.groups = 1
            self.x = x_q.reshape(-1, 1, w.shape[-1])
            self.t = target.reshape(-1, out)
            self._shuffle(generator)
            return
        stride, padding, dilation, groups = (list(rest) + [1, 0, 1, 1][len(rest):])[:4]
        self.groups = int(groups)
        xs, ts = [], []
        for i in range(0, len(x_q), 8):
            cols = torch.nn.functional.unfold(x_q[i : i + 8], w.shape[2:], dilation=dilation, padding=padding, stride=stride)
            t = target[i : i + 8].flatten(2)  # [n, out, L]
            for k in range(len(cols)):
                pick = torch.randint(0, cols.shape[-1], (min(per_image, cols.shape[-1]),), generator=generator)
                xs.append(cols[k][:, pick].T)
                ts.append(t[k][:, pick].T)
        self.x = torch.cat(xs).reshape(-1, self.groups, w[0].numel())
        self.t = torch.cat(ts)
        self._shuffle(generator)

    def _shuffle(self, generator: torch.Generator) -> None:
        """Rows in random order once, so a step takes a contiguous slice (a view, no gather)."""
        order = torch.randperm(len(self.x), generator=generator)
        self.x, self.t = self.x[order].contiguous(), self.t[order].contiguous()
        self.start = 0

    def __len__(self) -> int:
        return len(self.x)

    def step(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The next ``count`` rows (inputs, targets), cycling through the shuffled rows."""
        count = min(count, len(self.x))
        if self.start + count > len(self.x):
            self.start = 0
        s = slice(self.start, self.start + count)
        self.start += count
        return self.x[s], self.t[s]

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        wg = w.reshape(self.groups, w.shape[0] // self.groups, -1)
        if wg.shape[1] == 1:  # depthwise: one output per group
            y = (x * wg[:, 0, :]).sum(-1)
        else:
            y = torch.einsum("rgk,gok->rgo", x, wg).reshape(len(x), -1)
        return y if self.b is None else y + self.b


def round_layer(op, w: torch.Tensor, b: torch.Tensor | None, rest: list, x_q: torch.Tensor, target: torch.Tensor,
                act: str | None, qmax: int, iterations: int = ITERATIONS, batch: int = BATCH,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, float, float, bool]:
    """AdaRound of one layer: ``op(x, w, b, *rest)`` (an aten conv/linear), rounded inputs ``x_q``, float
    outputs ``target`` (after ``act``). Returns (q, error nearest, error chosen, kept nearest)."""
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    linear = op in LINEAR_OPS
    scale, ratio, is_max = grid(w, qmax)
    floor = torch.floor(ratio)
    rest_frac = (ratio - floor).clamp(1e-4, 1 - 1e-4)
    v = (-torch.log((ZETA - GAMMA) / (rest_frac - GAMMA) - 1)).requires_grad_(True)  # h(v) = frac at the start
    fixed = torch.where(is_max, torch.sign(ratio) * qmax, torch.zeros_like(ratio))
    opt = torch.optim.Adam([v], lr=LEARNING_RATE)
    n = len(x_q)
    rows = _Rows(op, w, b, rest, x_q, target, ROWS_PER_IMAGE, generator) if op in ROWS_OPS else None
    warm = int(WARM_START * iterations)
    for it in range(iterations):
        q_soft = torch.clamp(floor + _h(v), -qmax, qmax)
        w_soft = (scale * torch.where(is_max, fixed, q_soft)).to(w.dtype)
        if rows is not None:
            x, t = rows.step(ROWS)
            loss = _sq_error(_apply(act, rows.forward(x, w_soft)), t, True)
        else:
            idx = torch.randint(0, n, (min(batch, n),), generator=generator)
            loss = _sq_error(_apply(act, op(x_q[idx], w_soft, b, *rest)), target[idx], linear)
        if it >= warm:
            beta = BETA[1] + (BETA[0] - BETA[1]) * (1 - (it - warm) / max(1, iterations - warm))
            h = _h(v)
            loss = loss + REG_WEIGHT * (1 - (2 * h - 1).abs().pow(beta)).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        q = torch.clamp(floor + (v >= 0).float(), -qmax, qmax)
        q = torch.where(is_max, fixed, q)
        nearest = quantized(w, qmax)
        err = {}
        for name, cand in (("nearest", nearest), ("ada", q)):
            total = 0.0
            for i in range(0, n, 16):
                y = _apply(act, op(x_q[i : i + 16], on_grid(w, cand, qmax), b, *rest))
                total += float(_sq_error(y, target[i : i + 16], linear)) * len(y)
            err[name] = total / n
    if err["ada"] > err["nearest"]:
        return nearest, err["nearest"], err["nearest"], True
    return q, err["nearest"], err["ada"], False


# --- the graph walk --------------------------------------------------------------------------------------


def _roundable(gm: fx.GraphModule, n: fx.Node, env: dict) -> str | None:
    """None if ``n`` (a conv/linear) can be rounded, else why not."""
    w = n.args[1] if len(n.args) > 1 else None
    weight = attr_tensor(gm, w)
    if weight is None or not weight.is_floating_point():
        return "weight computed at run time"
    if len(w.users) != 1:
        return "weight shared with another op"
    b = n.args[2] if len(n.args) > 2 else None
    if b is not None and (attr_tensor(gm, b) is None or len(b.users) != 1):
        return "bias computed at run time or shared"
    if n.kwargs or any(isinstance(env.get(a), list) for a in n.all_input_nodes[1:]):
        return "arguments other than the input vary per sample"
    return None


def adaround(gm: fx.GraphModule, calibration: np.ndarray, *, qmax: int = 127, iterations: int | None = None,
             batch: int = BATCH, samples: int = SAMPLES, bias_correction: bool = False, seed: int = 0,
             layers: set[str] | None = None) -> AdaRoundReport:
    """Round every conv/linear weight of the fused graph ``gm`` in place (new parameters; the user's model
    is untouched) with AdaRound on ``calibration`` (float32 NCHW). ``layers``: only these fused-graph weight
    names (tests). Returns what was done, with the int8 weights chosen (``report.chosen``)."""
    start = time.perf_counter()
    iterations = ITERATIONS if iterations is None else iterations
    report = AdaRoundReport(iterations=iterations, batch=batch)
    chunk, multiple = chunk_size(gm)
    x = subset(torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32)), samples, multiple)
    report.samples = len(x)
    gen = torch.Generator().manual_seed(seed)
    nodes, last_use = last_uses(gm)
    chunks = list(x.split(chunk))
    sizes = [len(c) for c in chunks]
    fp: dict[fx.Node, object] = {}  # float model
    rq: dict[fx.Node, object] = {}  # earlier layers rounded

    def value(env, a, k):
        v = env[a]
        return v.value if isinstance(v, Const) else v[k]

    for i, n in enumerate(nodes):
        if n.op == "placeholder":
            fp[n] = rq[n] = chunks
        elif n.op == "get_attr":
            fp[n] = rq[n] = Const(attr_tensor(gm, n))
        elif n.op == "output":
            break
        else:
            with torch.no_grad():
                fp[n] = [run_node(gm, n, lambda a, k=k: value(fp, a, k)) for k in range(len(chunks))]
            why = _roundable(gm, n, fp) if n.op == "call_function" and n.target in WEIGHTED else "not a conv/linear"
            name = n.args[1].target if why is None else None
            if why is None and (layers is None or name in layers):
                rq[n] = _round_node(gm, n, fp, rq, qmax, iterations, batch, bias_correction, gen, sizes, report)
            else:
                if n.op == "call_function" and n.target in WEIGHTED:
                    report.skipped.append((module_path(n), why or "not asked for"))
                with torch.no_grad():
                    rq[n] = [run_node(gm, n, lambda a, k=k: value(rq, a, k)) for k in range(len(chunks))]
        for a in n.all_input_nodes:
            if last_use.get(a) == i:
                fp.pop(a, None)
                rq.pop(a, None)
    gm.graph.lint()
    gm.recompile()
    report.seconds = time.perf_counter() - start
    return report


def _round_node(gm, n, fp, rq, qmax, iterations, batch, bias_correction, gen, sizes, report) -> list[torch.Tensor]:
    w_node = n.args[1]
    b_node = n.args[2] if len(n.args) > 2 else None
    w = attr_tensor(gm, w_node).detach()
    b = attr_tensor(gm, b_node).detach() if b_node is not None else None
    rest = [fp[a].value if isinstance(a, fx.Node) else a for a in n.args[3:]]
    user = only_user(n)
    act = activation_kind(user) if user is not None else None
    act = act if act in ("ReLU", "ReLU6") else None
    x_q = torch.cat(rq[n.args[0]])
    with torch.no_grad():
        y_fp = torch.cat(fp[n])
        target = _apply(act, y_fp)
    q, e_near, e_ada, kept = round_layer(n.target, w, b, rest, x_q, target, act, qmax, iterations, batch, gen)
    new_w = on_grid(w, q, qmax)
    replace_param(gm, w_node.target, new_w)
    rq[w_node] = Const(new_w)
    changed = int((q != quantized(w, qmax)).sum())
    report.layers.append(LayerRounding(module_path(n), w_node.target, qmax, e_near, e_ada, changed, kept))
    report.chosen[w_node.target] = q.to(torch.int8).numpy()
    report.scales[w_node.target] = grid(new_w, qmax)[0].reshape(-1).numpy()
    with torch.no_grad():
        y_q = n.target(x_q, new_w, b, *rest)
        if bias_correction:
            channel = y_q.dim() - 1 if n.target in LINEAR_OPS else 1
            dims = [d for d in range(y_q.dim()) if d != channel]
            shift = (y_fp - y_q).double().mean(dim=dims)
            old = b if b is not None else torch.zeros(w.shape[0], dtype=w.dtype)
            new_b = (old.double() + shift).to(old.dtype)
            if b_node is not None:
                replace_param(gm, b_node.target, new_b)
            else:
                b_node = set_param(gm, gm.graph, n, new_bias_name(gm, w_node.target), new_b)
                args = list(n.args) + [None] * (3 - len(n.args))
                args[2] = b_node
                n.args = tuple(args)
            shape = [1] * y_q.dim()
            shape[channel] = -1
            y_q = y_q + (new_b - old).reshape(shape)
            report.bias_corrected += 1
    return list(y_q.split(sizes))
