"""Cross-layer equalization (CLE) and empirical bias correction on the fused graph, before export.

Both follow Nagel et al., "Data-Free Quantization Through Weight Equalization and Bias Correction" (DFQ,
ICCV 2019). They act on the fused ``torch.fx.GraphModule`` of :mod:`edgeport.graph.fuse`, so every target
exported from it (ONNX and TFLite int8 alike) inherits the change.

* CLE: for conv1 -> [ReLU | ReLU6 | nothing] -> conv2, where each tensor in between has exactly one user
  and conv2 reads conv1's channels one to one, output channel i of conv1 is divided by
  s_i = sqrt(r1_i / r2_i) and the matching input slice of conv2 multiplied by it (r = max |w| of the
  channel / slice). ReLU commutes with a positive scale, so the float function is unchanged; ReLU6 does
  not. DFQ and Qualcomm's AIMET make it a ReLU in an equalized pair, which changes the model wherever an
  activation exceeds 6 (measured on an ImageNet-trained network: the float model 5.8 dB from the original,
  64 % top-1 agreement). edgeport (``relu6="exact"``, the default) equalizes a ReLU6 pair only when the
  ReLU6 never clips on the calibration data (its input stays <= 6 on every sample), where ReLU6 and ReLU
  are the same function on that data; other ReLU6 pairs are skipped and reported with the measured maximum.
  ``relu6="replace"`` is DFQ's rule, on request. Whatever the rule, CLE's own float change is measured and
  CLE refuses (:class:`EqualizationRefused`) when it exceeds ``CLE_MIN_SQNR_DB`` without ``relu6="replace"``.
  The scales of a chain of pairs interact, so we iterate to convergence (capped), in float64, and round once.
* Bias correction (the empirical variant): int8 weights shift each layer's mean output by
  E[conv(x, Wq) - conv(x, W)]. On calibration inputs we simulate the weight quantization both backends
  apply (per-output-channel symmetric, round, clamp) and subtract that mean, per output channel, from the
  bias. W stays float: the exporters quantize it the same way afterwards.

Why by hand: torch.ao has no DFQ, and AIMET (the library that has it) is a large GPU-oriented install
that works on its own model wrappers, not on a torch.export graph. The arithmetic is a few lines; the
graph walking reuses :mod:`edgeport.graph.fuse`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import fx

from edgeport.errors import UserError
from edgeport.graph.fuse import (
    CONV_OPS,
    LINEAR_OPS,
    activation_kind,
    attr_tensor,
    free_bias_name,
    get_attr,
    module_path,
    only_user,
    set_param,
)
from edgeport.quantization.weight_grid import fake_quant
from edgeport.runtimes.torch_runner import run_module

aten = torch.ops.aten
WEIGHTED = CONV_OPS | LINEAR_OPS
MAX_ITERATIONS = 200
CONVERGED = 1e-6  # stop when every scale of an iteration is within this (relative) of 1
DEAD_RANGE = 1e-8  # a channel whose range is below this fraction of the layer's largest is left alone
BIAS_SAMPLES = 128  # calibration samples for bias correction: enough for a per-channel mean, seconds not minutes
METRIC_SAMPLES = 512  # samples on which the float change is measured
RELU6_RULES = ("exact", "keep", "replace")  # ReLU6 between a pair: equalize where exact / skip / make it ReLU (DFQ)
CLE_MIN_SQNR_DB = 60.0  # an exact equalization moves float outputs by rounding only (measured > 90 dB)


class EqualizationRefused(UserError):
    """CLE would change what the float model computes beyond CLE_MIN_SQNR_DB."""


@dataclass
class EqualizationReport:
    pairs: list[tuple[str, str]] = field(default_factory=list)  # (conv1, conv2) module paths
    relu6_replaced: list[str] = field(default_factory=list)
    relu6_max: dict[str, float] = field(default_factory=dict)  # ReLU6 layer -> its input's max on calibration data
    cle_sqnr_db: float | None = None  # CLE alone: equalized vs original float model (inf: bit-exact)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (conv1 -> conv2, why not)
    iterations: int = 0
    converged: bool = True
    bias_corrected: list[str] = field(default_factory=list)
    bias_samples: int = 0
    weight_grid: str = "int8"  # edgeport.quantization.weight_grid.WEIGHT_GRIDS
    # Transformed vs untransformed fused graph, measured on ``metric_samples`` inputs of ``metric_source``.
    float_sqnr_db: float | None = None
    float_max_rel: float | None = None
    top1_agreement: float | None = None
    metric_samples: int = 0
    metric_source: str = ""

    def summary(self) -> str:
        parts = []
        if self.pairs or self.iterations:
            conv = "converged" if self.converged else f"not converged after {self.iterations}"
            clipping = sum("clips" in why for _, why in self.skipped)
            parts.append(f"CLE: {len(self.pairs)} conv pairs equalized ({self.iterations} iterations, {conv}), "
                         f"{len(self.relu6_replaced)} ReLU6 -> ReLU"
                         + (f", {clipping} pairs skipped: their ReLU6 clips" if clipping else ""))
        if self.bias_corrected:
            parts.append(f"bias correction: {len(self.bias_corrected)} layers on {self.bias_samples} samples "
                         f"({self.weight_grid} weights)")
        if self.float_sqnr_db is not None:
            sqnr = "exact" if math.isinf(self.float_sqnr_db) else f"SQNR {self.float_sqnr_db:.1f} dB"
            parts.append(f"float change: {sqnr}, max rel {self.float_max_rel:.1e}, top-1 agreement "
                         f"{100 * self.top1_agreement:.2f} % ({self.metric_samples} {self.metric_source} samples)")
        return "; ".join(parts) or "equalization: nothing done"

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["float_sqnr_db"] is not None and math.isinf(d["float_sqnr_db"]):
            d["float_sqnr_db"] = None  # JSON has no inf; float_max_rel 0 says it was exact
        if d["cle_sqnr_db"] is not None and math.isinf(d["cle_sqnr_db"]):
            d["cle_sqnr_db"] = None
        d["pairs"] = [list(p) for p in self.pairs]
        d["skipped"] = [{"pair": p, "reason": why} for p, why in self.skipped]
        return d


def equalize(gm: fx.GraphModule, calibration: np.ndarray | None, *, cle: bool = True, bias_correction: bool = True,
             weight_grid: str = "int8", relu6: str = "exact") -> EqualizationReport:
    """Apply CLE and/or empirical bias correction to the fused graph ``gm`` in place.

    ``calibration``: float32 NCHW inputs (needed for bias correction; without it the float change is
    measured on edgeport's synthetic inputs). ``weight_grid``: the weight grid to simulate
    (:mod:`edgeport.quantization.weight_grid`). "int8" is what both backends use by default; onnx-int8 on x86 CPUs
    without VNNI uses another, and the export makes a graph of its own for it.
    ``relu6``: what to do with a ReLU6 between a pair, one of RELU6_RULES (see the module docstring).
    Raises :class:`EqualizationRefused` when CLE moves the float model below CLE_MIN_SQNR_DB (unless
    ``relu6="replace"``, the user's consent to DFQ's change): ``gm`` is then equalized and must be dropped.
    """
    if relu6 not in RELU6_RULES:
        raise ValueError(f"relu6={relu6!r}: one of {RELU6_RULES}")
    if bias_correction and calibration is None:
        raise ValueError("bias correction needs calibration inputs")  # the CLI checks first; this is a bug
    report = EqualizationReport(weight_grid=weight_grid)
    chunk, multiple = chunk_size(gm)
    metric_x, report.metric_source = _metric_inputs(gm, calibration, chunk, multiple)
    report.metric_samples = len(metric_x)
    before = run_module(gm, metric_x, chunk)
    if cle:
        data = metric_x if report.metric_source == "calibration" else None
        _equalize_pairs(gm, report, relu6, data, chunk)
        gm.graph.lint()
        gm.recompile()
        report.cle_sqnr_db = _float_change(before, run_module(gm, metric_x, chunk))[0]
        if report.cle_sqnr_db < CLE_MIN_SQNR_DB and relu6 != "replace":
            raise EqualizationRefused(
                f"--cle would change the float model: SQNR {report.cle_sqnr_db:.1f} dB < {CLE_MIN_SQNR_DB:.0f} dB "
                f"against the original on {report.metric_samples} {report.metric_source} samples",
                "export without --cle (bias correction alone is safe), or report this model: the pairs were "
                "chosen to be exact")
    if bias_correction:
        x = subset(torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32)), BIAS_SAMPLES, multiple)
        report.bias_samples = len(x)
        report.bias_corrected = _correct_biases(gm, x, chunk, weight_grid)
    gm.graph.lint()
    gm.recompile()
    after = run_module(gm, metric_x, chunk)
    report.float_sqnr_db, report.float_max_rel, report.top1_agreement = _float_change(before, after)
    return report


# --- cross-layer equalization ----------------------------------------------------------------------------


def _weight_node(gm: fx.GraphModule, node: object) -> fx.Node | None:
    """The get_attr weight of a conv/linear read by no other node, else None."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target in WEIGHTED):
        return None
    w = node.args[1] if len(node.args) > 1 else None
    if attr_tensor(gm, w) is None or len(w.users) != 1:
        return None
    b = node.args[2] if len(node.args) > 2 else None
    if b is not None and (attr_tensor(gm, b) is None or len(b.users) != 1):
        return None
    return w


def _groups(node: fx.Node) -> int:
    if node.target in LINEAR_OPS:
        return 1
    return int(node.args[6] if len(node.args) > 6 else node.kwargs.get("groups", 1))


def find_pairs(gm: fx.GraphModule, relu6: bool = True) -> tuple[list[tuple[fx.Node, fx.Node | None, fx.Node]], list[tuple[str, str]]]:
    """(conv1, activation or None, conv2) triples CLE may equalize, and conv->op->conv chains it must skip."""
    pairs, skipped = [], []
    for conv1 in gm.graph.nodes:
        if _weight_node(gm, conv1) is None:
            continue
        act = only_user(conv1)
        if act is None:
            continue
        kind = activation_kind(act)
        name = f"{module_path(conv1)} -> {module_path(only_user(act) or act)}"
        if act.target in WEIGHTED:
            act, conv2 = None, act
        else:
            conv2 = only_user(act)
            if conv2 is None or conv2.op != "call_function" or conv2.target not in WEIGHTED:
                continue
            if kind == "ReLU6" and not relu6:
                skipped.append((name, "ReLU6 between them (kept: replace_relu6=False)"))
                continue
            if kind not in ("ReLU", "ReLU6"):
                op = getattr(act.target, "__name__", str(act.target)).split(".")[0]
                skipped.append((name, f"{op} between them is not scale-equivariant"))
                continue
        name = f"{module_path(conv1)} -> {module_path(conv2)}"
        if conv2.args[0] is not (act if act is not None else conv1):
            continue
        if _weight_node(gm, conv2) is None:
            skipped.append((name, "second layer's weight is shared or computed at run time"))
            continue
        if (conv1.target in LINEAR_OPS) != (conv2.target in LINEAR_OPS):
            continue
        w1, w2 = attr_tensor(gm, conv1.args[1]), attr_tensor(gm, conv2.args[1])
        if w1.shape[0] != w2.shape[1] * _groups(conv2):
            skipped.append((name, "channel counts do not match one to one"))
            continue
        pairs.append((conv1, act, conv2))
    return pairs, skipped


def _in_view(w2: torch.Tensor, groups: int) -> torch.Tensor:
    """conv2's weight as [groups, out/group, in/group, rest]: input channel c is [c // (in/g), :, c % (in/g)]."""
    out, per_group = w2.shape[0], w2.shape[1]
    return w2.reshape(groups, out // groups, per_group, -1)


def _input_ranges(w2: torch.Tensor, groups: int) -> torch.Tensor:
    return _in_view(w2, groups).abs().amax(dim=(1, 3)).reshape(-1)


def _equalize_pairs(gm: fx.GraphModule, report: EqualizationReport, relu6: str, data: torch.Tensor | None,
                    chunk: int) -> None:
    pairs, report.skipped = find_pairs(gm, relu6 != "keep")
    if relu6 == "exact":
        pairs = _exact_relu6_pairs(gm, pairs, report, data, chunk)
    if not pairs:
        return
    # float64 working copies of every weight/bias involved; written back (as new parameters) once.
    work: dict[str, torch.Tensor] = {}
    for conv1, _, conv2 in pairs:
        for n in (conv1.args[1], conv2.args[1], conv1.args[2] if len(conv1.args) > 2 else None):
            if n is not None and n.target not in work:
                work[n.target] = attr_tensor(gm, n).detach().double().clone()
    report.converged = False
    for it in range(1, MAX_ITERATIONS + 1):
        worst = 0.0
        for conv1, _, conv2 in pairs:
            w1, w2 = work[conv1.args[1].target], work[conv2.args[1].target]
            g = _groups(conv2)
            r1 = w1.abs().reshape(w1.shape[0], -1).amax(dim=1)
            r2 = _input_ranges(w2, g)
            live = (r1 > DEAD_RANGE * r1.max()) & (r2 > DEAD_RANGE * r2.max())
            s = torch.where(live, torch.sqrt(r1 / torch.where(live, r2, 1.0)), torch.ones_like(r1))
            w1 /= s.view(-1, *[1] * (w1.dim() - 1))
            b1 = conv1.args[2] if len(conv1.args) > 2 else None
            if b1 is not None:
                work[b1.target] /= s
            view = _in_view(w2, g)
            view *= s.reshape(g, 1, -1, 1)
            work[conv2.args[1].target] = view.reshape(w2.shape)
            worst = max(worst, float(s.log().abs().max()))
        report.iterations = it
        if worst < CONVERGED:
            report.converged = True
            break
    for target, value in work.items():
        replace_param(gm, target, value.to(get_attr(gm, target).dtype))
    for conv1, act, conv2 in pairs:
        report.pairs.append((module_path(conv1), module_path(conv2)))
        if act is not None and activation_kind(act) == "ReLU6":
            act.target, act.args, act.kwargs = aten.relu.default, (act.args[0],), {}
            report.relu6_replaced.append(module_path(act))


def _exact_relu6_pairs(gm: fx.GraphModule, pairs: list, report: EqualizationReport, data: torch.Tensor | None,
                       chunk: int) -> list:
    """``pairs`` without those whose ReLU6 clips (or may clip: no calibration data) on the calibration data;
    each ReLU6's measured input maximum goes to ``report.relu6_max``, each dropped pair to ``report.skipped``."""
    acts = [act for _, act, _ in pairs if act is not None and activation_kind(act) == "ReLU6"]
    if not acts:
        return pairs
    top = _input_maxima(gm, acts, data, chunk) if data is not None else {}
    kept = []
    for conv1, act, conv2 in pairs:
        if act in acts:
            name = f"{module_path(conv1)} -> {module_path(conv2)}"
            if act not in top:
                report.skipped.append((name, "ReLU6 between them and no calibration data to show it never clips"))
                continue
            report.relu6_max[module_path(act)] = top[act]
            if top[act] > 6.0:
                report.skipped.append((name, f"ReLU6 between them clips on the calibration data (input max "
                                             f"{top[act]:.2f} > 6): ReLU there would change the model"))
                continue
        kept.append((conv1, act, conv2))
    return kept


def _input_maxima(gm: fx.GraphModule, acts: list[fx.Node], x: torch.Tensor, chunk: int) -> dict[fx.Node, float]:
    """The largest value each node in ``acts`` receives (its first input) over the samples ``x``."""
    sources = {act.args[0]: act for act in acts}
    top = {act: -math.inf for act in acts}

    class Record(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n in sources:
                top[sources[n]] = max(top[sources[n]], float(out.max()))
            return out

    with torch.no_grad():
        for i in range(0, len(x), chunk):
            Record(gm).run(x[i : i + chunk])
    return top


def replace_param(gm: fx.GraphModule, target: str, value: torch.Tensor) -> None:
    """Store ``value`` under ``target`` as a fresh parameter: the old tensor may be the user's model's own
    (torch.export shares unfused weights with it), which must not change."""
    owner, _, name = target.rpartition(".")
    mod = gm.get_submodule(owner) if owner else gm
    delattr(mod, name)
    mod.register_parameter(name, torch.nn.Parameter(value.detach().clone(), requires_grad=False))


# --- empirical bias correction ---------------------------------------------------------------------------


class Const:
    """A value that is the same for every chunk (a weight, a bias)."""

    def __init__(self, value):
        self.value = value


def last_uses(gm: fx.GraphModule) -> tuple[list[fx.Node], dict[fx.Node, int]]:
    """The graph's nodes in order, and for each node the index of the last node that reads it (when its value can go)."""
    nodes = list(gm.graph.nodes)
    last_use: dict[fx.Node, int] = {}
    for i, n in enumerate(nodes):
        for a in n.all_input_nodes:
            last_use[a] = i
    return nodes, last_use


def _correct_biases(gm: fx.GraphModule, x: torch.Tensor, chunk: int, grid: str) -> list[str]:
    """Walk the graph once in topological order over the chunks of ``x``; at each conv/linear, correct its
    bias from its actual input (which includes the corrections made upstream), then run it."""
    nodes, last_use = last_uses(gm)
    chunks = list(x.split(chunk))
    env: dict[fx.Node, object] = {}
    corrected = []

    def value(a: fx.Node, k: int):
        v = env[a]
        return v.value if isinstance(v, Const) else v[k]

    with torch.no_grad():
        for i, n in enumerate(nodes):
            if n.op == "placeholder":
                env[n] = chunks
            elif n.op == "get_attr":
                env[n] = Const(get_attr(gm, n.target))
            elif n.op == "output":
                break
            elif n.op == "call_function" and n.target in WEIGHTED and _bias_correctable(gm, n, env):
                env[n] = _run_corrected(gm, n, env, grid)
                corrected.append(module_path(n))
            else:
                env[n] = [run_node(gm, n, lambda a, k=k: value(a, k)) for k in range(len(chunks))]
            for a in n.all_input_nodes:
                if last_use.get(a) == i:
                    del env[a]
    return corrected


def _bias_correctable(gm: fx.GraphModule, n: fx.Node, env: dict) -> bool:
    w = n.args[1] if len(n.args) > 1 else None
    b = n.args[2] if len(n.args) > 2 else None
    weight = attr_tensor(gm, w)
    if weight is None or not weight.is_floating_point():
        return False
    if b is not None and (attr_tensor(gm, b) is None or len(b.users) != 1):
        return False
    # stride, padding... must be literals; the input the only per-chunk value
    return not any(isinstance(env.get(a), list) for a in n.all_input_nodes[1:]) and not n.kwargs


def _run_corrected(gm: fx.GraphModule, n: fx.Node, env: dict, grid: str) -> list[torch.Tensor]:
    xs = env[n.args[0]]
    x = torch.cat(xs)
    w = attr_tensor(gm, n.args[1])
    b_node = n.args[2] if len(n.args) > 2 else None
    rest = [env[a].value if isinstance(a, fx.Node) else a for a in n.args[3:]]
    groups = rest[3] if n.target in CONV_OPS and len(rest) > 3 else 1  # aten.convN(x, w, b, stride, padding, dilation, groups)
    delta = n.target(x, fake_quant(w, grid, groups) - w, None, *rest)  # conv(x, Wq) - conv(x, W): linear in W
    dims = [d for d in range(delta.dim()) if d != (delta.dim() - 1 if n.target in LINEAR_OPS else 1)]
    shift = delta.double().mean(dim=dims)
    old = attr_tensor(gm, b_node) if b_node is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    new = (old.double() - shift).to(old.dtype)
    if b_node is not None:
        replace_param(gm, b_node.target, new)
    else:
        b_node = set_param(gm, gm.graph, n, new_bias_name(gm, n.args[1].target), new)
        args = list(n.args) + [None] * (3 - len(n.args))
        args[2] = b_node
        n.args = tuple(args)
    env[b_node] = Const(attr_tensor(gm, b_node))
    out = n.target(x, w, attr_tensor(gm, b_node), *rest)
    return list(out.split([len(c) for c in xs]))


def new_bias_name(gm: fx.GraphModule, weight_target: str) -> str:
    """fuse's name for a new bias, unless taken: its two candidates (``bias``, ``bias_folded``) run out when
    several bias-less convs share an owner, e.g. graph_rewrites' avg-pool depthwise convs at the root."""
    name = free_bias_name(gm, weight_target)
    owner, _, attr = name.rpartition(".")
    if not hasattr(gm.get_submodule(owner) if owner else gm, attr):
        return name
    owner, _, w = weight_target.rpartition(".")
    mod = gm.get_submodule(owner) if owner else gm
    attr, i = f"{w}_bias", 1
    while hasattr(mod, attr):
        attr, i = f"{w}_bias_{i}", i + 1
    return f"{owner}.{attr}" if owner else attr


def run_node(gm: fx.GraphModule, n: fx.Node, value):
    args = fx.node.map_arg(n.args, value)
    kwargs = fx.node.map_arg(n.kwargs, value)
    if n.op == "call_function":
        return n.target(*args, **kwargs)
    if n.op == "call_module":
        return gm.get_submodule(n.target)(*args, **kwargs)
    if n.op == "call_method":
        return getattr(args[0], n.target)(*args[1:], **kwargs)
    raise AssertionError(f"unexpected node {n.op} {n.target}")


# --- inputs and the measured float change -----------------------------------------------------------------


def chunk_size(gm: fx.GraphModule) -> tuple[int, int]:
    """(samples per call, what the sample count must be a multiple of): a static capture takes only its
    traced batch; a dynamic-batch capture takes any, run 64 at a time."""
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            val = n.meta.get("val")
            dim = val.shape[0] if val is not None and hasattr(val, "shape") else 1
            return (dim, dim) if isinstance(dim, int) else (64, 1)
    return 1, 1


def subset(x: torch.Tensor, n: int, multiple: int) -> torch.Tensor:
    """Up to ``n`` samples spread evenly over ``x``, a multiple of ``multiple`` of them."""
    n = max(multiple, min(n, len(x)) // multiple * multiple)
    idx = np.linspace(0, len(x) - 1, n).round().astype(int)
    return x[torch.from_numpy(idx)]


def _metric_inputs(gm: fx.GraphModule, calibration: np.ndarray | None, chunk: int,
                   multiple: int) -> tuple[torch.Tensor, str]:
    if calibration is not None:
        x = torch.from_numpy(np.ascontiguousarray(calibration, dtype=np.float32))
        return subset(x, METRIC_SAMPLES, multiple), "calibration"
    from edgeport.data import sample_inputs

    placeholder = next(n for n in gm.graph.nodes if n.op == "placeholder")
    shape = tuple(int(d) if isinstance(d, int) else chunk for d in placeholder.meta["val"].shape)
    x = torch.cat(list(sample_inputs.check_set(shape).values()))
    return subset(x, len(x), multiple), "synthetic"


def _float_change(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float, float]:
    """(SQNR dB, max |Δ| / max |before|, top-1 agreement) of ``after`` against ``before``."""
    ref, out = before.double().reshape(len(before), -1), after.double().reshape(len(after), -1)
    noise = float(((ref - out) ** 2).sum())
    sqnr = math.inf if noise == 0 else 10 * math.log10(float((ref**2).sum()) / noise)
    rel = float((ref - out).abs().max() / ref.abs().max().clamp_min(1e-12))
    agree = float((ref.argmax(dim=1) == out.argmax(dim=1)).double().mean())
    return sqnr, rel, agree
