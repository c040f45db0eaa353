"""Fold BatchNorm into the preceding Conv/Linear and mark Conv(+BN)+ReLU/ReLU6 groups, on any model that
torch.export can capture.

Why by hand: torch.ao's eager ``fuse_modules`` needs the user to name module pairs, and FX-based folding
(``torch.fx.experimental.optimization.fuse``) needs ``symbolic_trace``, which fails on many real models
and sees only ``nn.Module`` calls. We work on the ATen graph of ``torch.export``, which captures functional
code too, and do the arithmetic with torch's own ``fuse_conv_bn_weights`` / ``fuse_linear_bn_weights``.
The graph surgery (find the pattern, swap the weights, drop the BN node) is all that is ours.

The result is a ``torch.fx.GraphModule`` that computes the same function (checked by
:func:`check_equivalence`) and a :class:`FusionReport` that says what was folded and what could not be.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import fx
from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

from edgeport.errors import UserError

aten = torch.ops.aten

CONV_OPS = {aten.conv1d.default, aten.conv2d.default, aten.conv3d.default}
LINEAR_OPS = {aten.linear.default}
# aten.batch_norm(input, weight, bias, running_mean, running_var, training, momentum, eps, cudnn_enabled)
BN_OPS = {aten.batch_norm.default}
# Activations that ONNX Runtime and TFLite/XNNPACK fuse into the preceding convolution's epilogue.
RELU_OPS = {aten.relu.default, aten.relu_.default}
RELU6_OPS = {aten.relu6.default}
CLAMP_OPS = {aten.hardtanh.default, aten.hardtanh_.default, aten.clamp.default}


@dataclass
class FusedGroup:
    kind: str  # e.g. "Conv+BN+ReLU6", "Linear+BN", "Conv+ReLU"
    conv: str  # module path of the conv/linear in the original model
    bn: str | None
    activation: str | None


@dataclass
class FusionReport:
    groups: list[FusedGroup] = field(default_factory=list)
    unfused_bn: list[tuple[str, str]] = field(default_factory=list)  # (bn module path, reason)
    rewrites: list[str] = field(default_factory=list)  # one line per edgeport.graph.rewrites rewrite

    @property
    def folded_bn(self) -> int:
        return sum(1 for g in self.groups if g.bn)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for g in self.groups:
            out[g.kind] = out.get(g.kind, 0) + 1
        return dict(sorted(out.items()))

    def summary(self) -> str:
        kinds = ", ".join(f"{n}× {k}" for k, n in self.counts().items()) or "nothing to fuse"
        line = f"fused {len(self.groups)} groups ({kinds}); folded {self.folded_bn} BatchNorm"
        if self.unfused_bn:
            line += f"; {len(self.unfused_bn)} BatchNorm left unfolded"
        if self.rewrites:
            line += "; " + "; ".join(self.rewrites)
        return line

    def to_dict(self) -> dict:
        return {
            "groups": [g.__dict__ for g in self.groups],
            "counts": self.counts(),
            "folded_bn": self.folded_bn,
            "unfused_bn": [{"bn": bn, "reason": why} for bn, why in self.unfused_bn],
            "rewrites": self.rewrites,
        }


def module_path(node: fx.Node) -> str:
    """The original module path of a node (from torch.export's nn_module_stack), or the node name."""
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        path = list(stack.values())[-1][0]
        if path:
            return path.replace("L__self__.", "").replace("L['self'].", "")
    return node.name


def attr_tensor(gm: fx.GraphModule, node: object) -> torch.Tensor | None:
    if isinstance(node, fx.Node) and node.op == "get_attr":
        return get_attr(gm, node.target)
    return None


def get_attr(gm: fx.GraphModule, target: str) -> torch.Tensor:
    owner, _, name = target.rpartition(".")
    return getattr(gm.get_submodule(owner) if owner else gm, name)


def set_param(gm: fx.GraphModule, graph: fx.Graph, anchor: fx.Node, target: str, value: torch.Tensor) -> fx.Node:
    """Store ``value`` as parameter ``target`` (replacing any old one) and return a get_attr node for it."""
    owner, _, name = target.rpartition(".")
    mod = gm.get_submodule(owner) if owner else gm
    if hasattr(mod, name):
        delattr(mod, name)
    mod.register_parameter(name, torch.nn.Parameter(value.detach().clone(), requires_grad=False))
    with graph.inserting_before(anchor):
        return graph.get_attr(target)


def free_bias_name(gm: fx.GraphModule, weight_target: str) -> str:
    """``<layer>.bias`` for a conv that had none (torchvision-like names), unless that name is taken."""
    owner = weight_target.rpartition(".")[0]
    mod = gm.get_submodule(owner) if owner else gm
    name, n = "bias", 0
    while getattr(mod, name, None) is not None:  # several bias-less convs under one owner (e.g. functional code)
        n += 1
        name = "bias_folded" if n == 1 else f"bias_folded_{n}"
    return f"{owner}.{name}" if owner else name


def activation_kind(node: fx.Node) -> str | None:
    if node.op != "call_function":
        return None
    if node.target in RELU_OPS:
        return "ReLU"
    if node.target in RELU6_OPS:
        return "ReLU6"
    if node.target in CLAMP_OPS:
        lo, hi = (list(node.args[1:3]) + [None, None])[:2]
        if node.target != aten.clamp.default:
            lo = 0.0 if lo is None else lo
        if lo == 0 and hi == 6:
            return "ReLU6"
        if lo == 0 and hi is None:
            return "ReLU"
    return None


def only_user(node: fx.Node) -> fx.Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _fold_bn(gm: fx.GraphModule, producer: fx.Node, bn: fx.Node) -> str | None:
    """Fold ``bn`` into ``producer`` (a conv or linear). Returns None on success, else why not."""
    if len(producer.users) != 1:
        return f"{module_path(producer)} output is also used elsewhere"
    x_in, w_node, b_node = (list(producer.args) + [None, None, None])[:3]
    weight = attr_tensor(gm, w_node)
    if weight is None:
        return f"{module_path(producer)} weight is computed at run time"
    if b_node is not None and attr_tensor(gm, b_node) is None:
        return f"{module_path(producer)} bias is computed at run time"
    if len(w_node.users) != 1:
        return f"{module_path(producer)} weight is shared with another layer"
    bn_w, bn_b, mean, var = (attr_tensor(gm, a) for a in bn.args[1:5])
    training, eps = bn.args[5], bn.args[7]
    if training:
        return "BatchNorm runs in training mode (call model.eval())"
    if mean is None or var is None:
        return "BatchNorm has no running statistics"
    bias = attr_tensor(gm, b_node) if b_node is not None else None
    channels = mean.shape[0]
    bn_w = bn_w if bn_w is not None else torch.ones(channels)
    bn_b = bn_b if bn_b is not None else torch.zeros(channels)
    dtype = weight.dtype
    def d(t):  # fold in float64, round once to the model's dtype
        return None if t is None else t.double()

    with torch.no_grad():
        fold = fuse_conv_bn_weights if producer.target in CONV_OPS else fuse_linear_bn_weights
        new_w, new_b = fold(d(weight), d(bias), d(mean), d(var), eps, d(bn_w), d(bn_b))
        new_w, new_b = new_w.to(dtype), new_b.to(dtype)
    graph = gm.graph
    new_w_node = set_param(gm, graph, producer, w_node.target, new_w)
    bias_target = b_node.target if b_node is not None else free_bias_name(gm, w_node.target)
    new_b_node = set_param(gm, graph, producer, bias_target, new_b)
    args = list(producer.args)
    while len(args) < 3:
        args.append(None)
    args[1], args[2] = new_w_node, new_b_node
    producer.args = tuple(args)
    bn.replace_all_uses_with(producer)
    graph.erase_node(bn)
    return None


def fuse(gm: fx.GraphModule) -> tuple[fx.GraphModule, FusionReport]:
    """Fold Conv/Linear+BN and record Conv(+BN)+ReLU/ReLU6 groups in an exported graph module (in place)."""
    report = FusionReport()
    graph = gm.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in BN_OPS:
            continue
        producer = node.args[0]
        bn_name = module_path(node)
        if not (isinstance(producer, fx.Node) and producer.op == "call_function"):
            report.unfused_bn.append((bn_name, "input is not an operation (graph input?)"))
            continue
        if producer.target not in CONV_OPS | LINEAR_OPS:
            op = getattr(producer.target, "__name__", str(producer.target)).split(".")[0]
            report.unfused_bn.append((bn_name, f"follows {op} ({module_path(producer)}), not a conv or linear"))
            continue
        why = _fold_bn(gm, producer, node)
        if why:
            report.unfused_bn.append((bn_name, why))
            continue
        kind = "Conv" if producer.target in CONV_OPS else "Linear"
        act_node = only_user(producer)
        act = activation_kind(act_node) if act_node is not None else None
        report.groups.append(
            FusedGroup(
                kind="+".join(filter(None, [kind, "BN", act])),
                conv=module_path(producer),
                bn=bn_name,
                activation=module_path(act_node) if act else None,
            )
        )
    # Conv+activation pairs without a BN (e.g. a model that was already folded).
    grouped = {g.conv for g in report.groups}
    for node in graph.nodes:
        if node.op == "call_function" and node.target in CONV_OPS and module_path(node) not in grouped:
            act_node = only_user(node)
            act = activation_kind(act_node) if act_node is not None else None
            if act:
                report.groups.append(FusedGroup(f"Conv+{act}", module_path(node), None, module_path(act_node)))
    graph.eliminate_dead_code()
    graph.lint()
    gm.recompile()
    _drop_unused_attrs(gm)
    return gm, report


def _drop_unused_attrs(gm: fx.GraphModule) -> None:
    """Delete BN parameters/buffers that no node reads any more, so the fused module carries no dead weight."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            mod = gm.get_submodule(owner) if owner else gm
            delattr(mod, attr)


@dataclass(frozen=True)
class Equivalence:
    """How far the fused graph's outputs are from the original model's, relative to the largest output.

    Deep nets with BatchNorm can amplify float32 rounding (each of the two models is then off from exact
    arithmetic by ~1e-5 on its own). When fused-vs-original exceeds the tolerance we also measure both
    against a float64 run of the original: ``fused_vs_exact`` and ``original_vs_exact`` (the fp32 noise floor).
    """

    max_rel_error: float
    max_abs_error: float
    inputs: tuple[str, ...]
    fused_vs_exact: float | None = None
    original_vs_exact: float | None = None

    def ok(self, tolerance: float = 1e-5) -> bool:
        if self.max_rel_error <= tolerance:
            return True
        if self.fused_vs_exact is None or self.original_vs_exact is None:
            return False
        # Fusion adds no error of its own: the fused model is as close to exact as the original is.
        return self.fused_vs_exact <= max(1.5 * self.original_vs_exact, tolerance)

    def describe(self, tolerance: float = 1e-5) -> str:
        line = f"max relative error {self.max_rel_error:.1e} (tolerance {tolerance:.0e})"
        if self.fused_vs_exact is not None:
            line += f"; vs float64: fused {self.fused_vs_exact:.1e}, original {self.original_vs_exact:.1e}"
            if self.ok(tolerance):
                line += " (both at float32 rounding level)"
        return line


def check_equivalence(
    original: torch.nn.Module,
    fused: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    batch: int | None = None,
    tolerance: float = 1e-5,
) -> Equivalence:
    """Compare fused with original over named inputs (``batch``: samples per call for a static capture)."""
    ref, out = [], []
    with torch.no_grad():
        for name, x in inputs.items():
            chunks = [x] if batch is None else list(x.split(batch))
            r = [t for c in chunks for t in _flat(original(c))]
            if not all(bool(torch.isfinite(t).all()) for t in r):
                raise UserError(
                    f"the PyTorch model itself produces NaN or inf on {name} inputs of shape {tuple(x.shape)}",
                    "fix the model (or its weights) first: nothing can be validated against non-finite outputs",
                )
            o = [t for c in chunks for t in _flat(fused(c))]
            if len(r) != len(o):
                raise UserError("fused model returns a different number of outputs than the original")
            ref += r
            out += o
    rel, err = _rel_error(ref, out)
    if rel <= tolerance:
        return Equivalence(rel, err, tuple(inputs))
    exact = _float64_outputs(original, inputs)
    if exact is None:
        return Equivalence(rel, err, tuple(inputs))
    return Equivalence(rel, err, tuple(inputs), _rel_error(exact, out)[0], _rel_error(exact, ref)[0])


def _rel_error(ref: list[torch.Tensor], out: list[torch.Tensor]) -> tuple[float, float]:
    worst_rel, worst_abs = 0.0, 0.0
    for r, o in zip(ref, out):
        e = (r.double() - o.double()).abs().max().item()
        worst_abs = max(worst_abs, e)
        worst_rel = max(worst_rel, e / max(r.double().abs().max().item(), 1e-12))
    return worst_rel, worst_abs


def _float64_outputs(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor] | None:
    """The original model run in float64, or None if it cannot run in float64 (e.g. hard-coded fp32 tensors)."""
    try:
        exact = copy.deepcopy(model).double()
        with torch.no_grad():
            return [t for x in inputs.values() for t in _flat(exact(x.double()))]
    except Exception:
        return None


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _flat(o)]
    raise UserError(f"model output of type {type(out).__name__} is not a tensor, tuple or dict of tensors")
