"""Exact rewrites of the fused graph that make the exported files run better on edge runtimes.

max-pool after ReLU: PyTorch's MaxPool2d(padding=p) pads with -inf. onnx2tf cannot map its symmetric
padding to TFLite's SAME, so it emits PADV2(-inf) + MAX_POOL_2D(VALID); in int8 that PADV2 makes XNNPACK
fail to prepare the whole graph (measured on ShuffleNetV2). When the pooled tensor comes from a ReLU/ReLU6
it is >= 0, and every pooling window holds at least one real element, so padding with 0 gives the same
maximum: we rewrite to constant_pad_nd(0) + max_pool2d(padding=0), which exports as a plain PAD that
XNNPACK takes in int8. The equivalence check after fusion covers these rewrites too.
"""

from __future__ import annotations

import operator

import torch
from torch import fx

from edgeport.graph.fuse import BN_OPS, CLAMP_OPS, CONV_OPS, LINEAR_OPS, RELU6_OPS, RELU_OPS, get_attr, module_path, set_param

aten = torch.ops.aten
MAXPOOL_OPS = {aten.max_pool2d.default}
AVGPOOL_OPS = {aten.avg_pool2d.default}



def _replaced(gm: fx.GraphModule, node: fx.Node, made: tuple[fx.Node, ...]) -> str:
    """Put ``made`` (new nodes computing ``node``'s value, the last one its result) in ``node``'s place: they take
    its metadata, its users read the last one, and ``node`` goes. Returns the result's name for the notes."""
    for n in made:
        n.meta = dict(node.meta)
    node.replace_all_uses_with(made[-1])
    gm.graph.erase_node(node)
    return module_path(made[-1])


def _recompiled(gm: fx.GraphModule, done: list[str], dead_code: bool = False) -> list[str]:
    """``done`` (a rewrite's notes), after checking and recompiling ``gm`` when the rewrite changed anything."""
    if done:
        if dead_code:
            gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
    return done

def _non_negative(node: object) -> bool:
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return False
    if node.target in RELU_OPS | RELU6_OPS:
        return True
    if node.target in MAXPOOL_OPS | AVGPOOL_OPS:  # max/mean of non-negative values (zero padding included)
        return _non_negative(node.args[0])
    if node.target == aten.constant_pad_nd.default:
        return (node.args[2] if len(node.args) > 2 else 0) >= 0 and _non_negative(node.args[0])
    if node.target in CLAMP_OPS:
        lo = node.args[1] if len(node.args) > 1 else None
        return lo is not None and lo >= 0
    return False


def zero_pad_maxpool(gm: fx.GraphModule) -> list[str]:
    """Rewrite padded max-pools of non-negative inputs; returns the rewritten layers' names."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in MAXPOOL_OPS:
            continue
        args = list(node.args) + [None] * (6 - len(node.args))
        x, kernel, stride, padding, dilation, ceil_mode = args[:6]
        padding = list(padding or [0, 0])
        if len(padding) == 1:
            padding = padding * 2
        if not any(padding) or ceil_mode or not _non_negative(x):
            continue
        ph, pw = padding
        with gm.graph.inserting_before(node):
            padded = gm.graph.call_function(aten.constant_pad_nd.default, (x, [pw, pw, ph, ph], 0.0))
        padded.meta = dict(x.meta)
        new_args = [padded, kernel, stride or kernel, [0, 0]]
        if dilation is not None:
            new_args.append(dilation)
        node.args = tuple(new_args)
        done.append(module_path(node))
    return _recompiled(gm, done)


# --- h-swish / hard-sigmoid as ops XNNPACK runs in int8 -------------------------------------------------
#
# LiteRT's XNNPACK delegate (2.3) takes HARD_SWISH only in float and has no RELU_0_TO_1 (what onnx2tf makes
# of a hard-sigmoid) at all, so in an int8 MobileNetV3 every h-swish and SE gate ran in a builtin kernel and
# cut the graph into ~30 delegate partitions (measured: V3-Small 84 of 112 nodes delegated, 29 partitions).
# We compute 6*hswish(x) = x * relu6(x + 3) (ADD with fused RELU6, MUL) and 6*hsigmoid(x) = relu6(x + 3)
# (the +3 goes into the bias of the conv that feeds it, which then carries a fused RELU6), and push the
# pending factor 1/6 forward through ops it commutes with (pooling, mean, flatten, eval dropout, products)
# into the weights of the next conv/linear. No 1/6 multiply is left, which also keeps TFLiteConverter from
# matching its x*relu6(x+3)*(1/6) pattern back into HARD_SWISH. Exact in real arithmetic; in float the
# outputs move by rounding only (the equivalence check after fusion covers it).

HARDSWISH_OPS = frozenset({aten.hardswish.default, aten.hardswish_.default})
HARDSIGMOID_OPS = frozenset({aten.hardsigmoid.default, aten.hardsigmoid_.default})
# One tensor input, f(c * x) = c * f(x) for c > 0.
SCALE_COMMUTING = {
    aten.adaptive_avg_pool2d.default, aten.avg_pool2d.default, aten.mean.dim, aten.flatten.using_ints,
    aten.view.default, aten.reshape.default, aten.clone.default, aten.max_pool2d.default,
    aten.dropout.default, aten.dropout_.default, *RELU_OPS,
}
MUL_OPS = {aten.mul.Tensor, aten.mul_.Tensor}
ADD_OPS = {aten.add.Tensor, aten.add_.Tensor}
WEIGHTED_OPS = CONV_OPS | LINEAR_OPS


def _exclusive_attr(gm: fx.GraphModule, node: object, user: fx.Node) -> torch.Tensor | None:
    """The tensor behind a get_attr node that only ``user`` reads (safe to change), else None."""
    if isinstance(node, fx.Node) and node.op == "get_attr" and set(node.users) == {user}:
        return get_attr(gm, node.target)
    return None


def _commutes(node: fx.Node) -> bool:
    if node.target not in SCALE_COMMUTING:
        return False
    if node.target in (aten.dropout.default, aten.dropout_.default):
        return not node.args[2]  # train=False: identity
    return True


class _Scales:
    """Nodes whose computed value is ``factor`` times the true value, and the one-off corrections."""

    def __init__(self, gm: fx.GraphModule):
        self.gm, self.factor, self.fixed = gm, {}, {}

    def of(self, node: object) -> float:
        return self.factor.get(node, 1.0) if isinstance(node, fx.Node) else 1.0

    def true_value(self, node: fx.Node, before: fx.Node) -> fx.Node:
        """``node`` itself, or (once per node) ``node * (1/factor)`` inserted before its first such user."""
        f = self.of(node)
        if f == 1.0:
            return node
        if node not in self.fixed:
            with self.gm.graph.inserting_before(before):
                self.fixed[node] = self.gm.graph.call_function(aten.mul.Tensor, (node, 1.0 / f))
            self.fixed[node].meta = dict(node.meta)
        return self.fixed[node]

    def _scale_output(self, node: object, f: float) -> bool:
        """Multiply a conv/linear's output by ``f`` through its weight and bias, if only ``node``'s one
        user sees it and the parameters are its own."""
        if not (isinstance(node, fx.Node) and node.target in WEIGHTED_OPS and len(node.users) == 1 and len(node.args) > 2):
            return False
        w, b = _exclusive_attr(self.gm, node.args[1], node), _exclusive_attr(self.gm, node.args[2], node)
        if w is None or b is None or self.of(node) != 1.0:
            return False
        for arg, value in ((node.args[1], w), (node.args[2], b)):
            node.replace_input_with(arg, set_param(self.gm, self.gm.graph, node, arg.target, value * f))
        return True

    def _scale_producer(self, other: object, add: fx.Node, f: float) -> str | None:
        """Make ``other`` (the unscaled side of a residual ``add``) f times larger at its source: the conv it comes
        from through ops that commute with a positive scale (ReLU, pooling), each read by the next only, gets its
        weight and bias times f, and every other reader of ``other`` (a conv/linear) its weight divided by f.
        Exact; no op is added. Measured on tests/fixtures/third_party.HardSwishResidualNet-style blocks
        (benchmarks/hswish_residual.py): this removes the MUL by 6 the residual's other side needed. None when the
        graph has another shape (a reader that cannot take 1/f, a shared parameter, a branch in the chain)."""
        if not (isinstance(node := other, fx.Node) and f > 0 and self.of(other) == 1.0):
            return None
        while node.op == "call_function" and _commutes(node) and node.target not in WEIGHTED_OPS:
            node = node.args[0]
            if not isinstance(node, fx.Node) or len(node.users) != 1 or self.of(node) != 1.0:
                return None
        readers = [u for u in other.users if u is not add]
        weights = [_exclusive_attr(self.gm, u.args[1], u) if u.target in WEIGHTED_OPS and u.args[0] is other
                   and len(u.all_input_nodes) <= 3 else None for u in readers]
        if any(w is None for w in weights) or (node is other and readers):
            return None
        if not self._scale_output(node, f):
            return None
        for u, w in zip(readers, weights):
            u.replace_input_with(u.args[1], set_param(self.gm, self.gm.graph, u, u.args[1].target, w / f))
        return module_path(node)

    def _scale_bn(self, node: fx.Node) -> bool:
        """An eval-mode BatchNorm reading f*x computes BN(x) with mean f*mu, var f^2*var and eps f^2*eps."""
        f = self.of(node.args[0])
        mean, var = (_exclusive_attr(self.gm, node.args[i], node) for i in (3, 4))
        if mean is None or var is None:
            return False
        for i, value in ((3, mean * f), (4, var * f * f)):
            node.replace_input_with(node.args[i], set_param(self.gm, self.gm.graph, node, node.args[i].target, value))
        args = list(node.args)
        args[7] = args[7] * f * f
        node.args = tuple(args)
        return True

    def absorb(self, node: fx.Node) -> str | None:
        """Take pending factors on ``node``'s inputs; returns a note when folded into weights."""
        scaled = [a for a in node.all_input_nodes if self.of(a) != 1.0]
        if not scaled:
            return None
        if node.target in MUL_OPS:
            self.factor[node] = self.of(node.args[0]) * self.of(node.args[1])
            return None
        if node.target in ADD_OPS and scaled == [node.args[0]] and isinstance(node.args[1], (int, float)) and not node.kwargs:
            node.args = (node.args[0], node.args[1] * self.of(node.args[0]))  # 6h + 6c = 6(h + c)
            self.factor[node] = self.of(node.args[0])
            return None
        if node.target in BN_OPS and scaled == [node.args[0]] and not node.args[5] and self._scale_bn(node):
            return module_path(node)
        if node.target in ADD_OPS and len(scaled) == 1 and not node.kwargs and len(node.args) == 2:
            # a residual add of a scaled and an unscaled tensor: scale the unscaled side's conv up instead
            other = node.args[1] if scaled[0] is node.args[0] else node.args[0]
            f = self.of(scaled[0])
            if self._scale_output(other, f):
                self.factor[node] = f
                return module_path(other)
            scaled_conv = self._scale_producer(other, node, f)
            if scaled_conv is not None:
                self.factor[node] = f
                return scaled_conv
            if isinstance(other, fx.Node):
                # no conv of its own on that side: multiply it by the factor (an int8 MUL by a constant, which
                # XNNPACK runs) and keep the factor pending. Putting 1/6 back on the h-swish's side instead
                # gives TFLiteConverter x*relu6(x+3)*(1/6), which it fuses into HARD_SWISH: outside XNNPACK in
                # int8 (measured: 2 partitions, HARD_SWISH in LiteRT's builtin kernels).
                with self.gm.graph.inserting_before(node):
                    up = self.gm.graph.call_function(aten.mul.Tensor, (other, f))
                up.meta = dict(other.meta)
                node.replace_input_with(other, up)
                self.factor[node] = f
                return None
        if node.op == "call_function" and _commutes(node) and scaled == [node.args[0]]:
            self.factor[node] = self.of(node.args[0])
            return None
        if (node.target in ADD_OPS and len(scaled) == 2 and len(node.args) == 2 and not node.kwargs
                and self.of(node.args[0]) == self.of(node.args[1])):
            self.factor[node] = self.of(node.args[0])  # f*a + f*b = f*(a + b)
            return None
        weight = _exclusive_attr(self.gm, node.args[1], node) if node.target in WEIGHTED_OPS else None
        if weight is not None and scaled == [node.args[0]]:
            new_w = set_param(self.gm, self.gm.graph, node, node.args[1].target, weight / self.of(node.args[0]))
            node.replace_input_with(node.args[1], new_w)
            return module_path(node)
        for a in scaled:
            node.replace_input_with(a, self.true_value(a, node))
        return None


def _conv_with_own_bias(gm: fx.GraphModule, node: object) -> torch.Tensor | None:
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target in WEIGHTED_OPS):
        return None
    if len(node.users) != 1 or len(node.args) < 3:
        return None
    return _exclusive_attr(gm, node.args[2], node)


def relu6_hard_activations(gm: fx.GraphModule, ops: frozenset = HARDSWISH_OPS | HARDSIGMOID_OPS) -> list[str]:
    """Rewrite h-swish and hard-sigmoid (those of ``ops``) as described above; one note per rewritten activation."""
    scales, notes, graph = _Scales(gm), [], gm.graph

    def made_node(made: list, target, args) -> fx.Node:
        made.append(graph.call_function(target, args))
        return made[-1]

    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target in ops:
            x = scales.true_value(node.args[0], node)
            bias = _conv_with_own_bias(gm, x) if node.target in HARDSIGMOID_OPS else None
            if bias is not None:  # the conv adds the +3 itself
                x.replace_input_with(x.args[2], set_param(gm, graph, x, x.args[2].target, bias + 3.0))
            made = []
            with graph.inserting_before(node):
                shifted = x if bias is not None else made_node(made, aten.add.Tensor, (x, 3.0))
                out = made_node(made, aten.hardtanh.default, (shifted, 0.0, 6.0))
                if node.target in HARDSWISH_OPS:
                    out = made_node(made, aten.mul.Tensor, (x, out))
            kind = "h-swish" if node.target in HARDSWISH_OPS else "hard-sigmoid"
            notes.append(f"{_replaced(gm, node, tuple(made))} ({kind})")
            scales.factor[out] = 6.0
        else:
            scales.absorb(node)
    for node in graph.nodes:
        if node.op == "output":
            scales.absorb(node)
    return _recompiled(gm, notes, dead_code=True)


# --- ShuffleNetV1's shortcut: average pool and the ReLU after the concatenation --------------------------
#
# Measured on ShuffleNetV1 g=3 int8: XNNPACK (LiteRT 2.3) takes neither int8 AVERAGE_POOL_2D nor the
# standalone int8 RELU after the stride-2 units' concatenation; both ran in builtin kernels (6 partitions).
# relu(cat(a, b)) = cat(relu(a), relu(b)), and a ReLU of a non-negative tensor (an average of the previous
# unit's ReLU output) is the identity, while a ReLU after a conv fuses into it. An average pool with
# count_include_pad (PyTorch's default) is a depthwise conv whose weights are all 1/(kh*kw): DEPTHWISE_CONV_2D
# runs in XNNPACK in int8, and its equal weights quantize exactly.


def relu_before_cat(gm: fx.GraphModule) -> list[str]:
    """Move a ReLU after a channel concatenation onto its inputs, dropping it where an input is >= 0."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in RELU_OPS:
            continue
        cat = node.args[0]
        if not (isinstance(cat, fx.Node) and cat.target == aten.cat.default and len(cat.users) == 1):
            continue
        with gm.graph.inserting_before(cat):
            parts = []
            for part in cat.args[0]:
                if not _non_negative(part):
                    part = gm.graph.call_function(aten.relu.default, (part,))
                    part.meta = dict(node.meta)
                parts.append(part)
        cat.args = (parts, *cat.args[1:])
        node.replace_all_uses_with(cat)
        gm.graph.erase_node(node)
        done.append(module_path(node))
    return _recompiled(gm, done)


def _free_root_name(gm: fx.GraphModule, name: str) -> str:
    """``name``, or ``name`` followed by underscores, whichever the graph module has no attribute for yet."""
    while hasattr(gm, name):
        name += "_"
    return name


def _pool_weight_name(gm: fx.GraphModule, node: fx.Node, n: int) -> str:
    """``<pool module>.weight``, so the depthwise conv is reported under the pool's own name (layer_names). A pool
    has no parameters, so the graph module has no submodule for it yet: an empty one is added. A generated name
    when the pool has no module path or that name is taken."""
    path = module_path(node)
    if path != node.name:
        try:
            owner = gm.get_submodule(path)
        except AttributeError:
            owner = gm.get_submodule(path) if gm.add_submodule(path, torch.nn.Module()) else None
        if owner is not None and not hasattr(owner, "weight"):
            return f"{path}.weight"
    return f"avgpool_as_depthwise_{n}"


def avgpool_as_depthwise(gm: fx.GraphModule) -> list[str]:
    """Rewrite 2-D average pools that count padding (or have none) as depthwise convs with 1/(kh*kw) weights."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in AVGPOOL_OPS:
            continue
        args = list(node.args) + [None] * (7 - len(node.args))
        x, kernel, stride, padding, ceil_mode, count_pad, divisor = args[:7]
        kernel = list(kernel) * (2 if len(kernel) == 1 else 1)
        padding = list(padding or [0, 0]) * (2 if padding and len(padding) == 1 else 1)
        val = x.meta.get("val") if isinstance(x, fx.Node) else None
        if ceil_mode or divisor is not None or (count_pad is False and any(padding)) or val is None or val.dim() != 4:
            continue
        channels = int(val.shape[1])
        weight = torch.full((channels, 1, *kernel), 1.0 / (kernel[0] * kernel[1]), dtype=val.dtype)
        w_node = set_param(gm, gm.graph, node, _pool_weight_name(gm, node, len(done)), weight)
        stride = list(stride or kernel)
        node.target = aten.conv2d.default
        node.args = (x, w_node, None, stride, padding, [1, 1], channels)
        done.append(module_path(node))
    return _recompiled(gm, done)


def rewrite_for_edge(gm: fx.GraphModule) -> list[str]:
    """Every rewrite above, in order; one summary line per rewrite that changed something."""
    lines = []
    pools = zero_pad_maxpool(gm)
    if pools:
        lines.append(f"max-pool padding made explicit (zero pad, exact after ReLU): {', '.join(pools)}")
    relus = relu_before_cat(gm)
    if relus:
        lines.append(f"ReLU after concatenation moved onto its inputs: {', '.join(relus)}")
    averages = avgpool_as_depthwise(gm)
    if averages:
        lines.append(f"average pool as depthwise conv (1/k² weights): {', '.join(averages)}")
    return lines


def l2_norm_as_sum_of_squares(gm: fx.GraphModule) -> list[str]:
    """||x||_2 over some dims (F.normalize, XCA attention) as sqrt(sum(x*x)): the same value, spelled without
    ONNX's ReduceL2, which onnx2tf 1.28.8 cannot convert with a single axis (it hands tf.norm an
    ``np.int64`` axis: "'axis' must be None, an integer, or a tuple of 2 unique integers"; timm edgenext)."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.linalg_vector_norm.default:
            continue
        args = list(node.args) + [None] * (3 - len(node.args))
        x, order, dims = args[0], args[1] if len(node.args) > 1 else node.kwargs.get("ord", 2), args[2]
        keepdim = node.args[3] if len(node.args) > 3 else node.kwargs.get("keepdim", False)
        if order != 2 or dims is None or node.kwargs.get("dtype") is not None:
            continue
        with gm.graph.inserting_before(node):
            square = gm.graph.call_function(aten.mul.Tensor, (x, x))
            total = gm.graph.call_function(aten.sum.dim_IntList, (square, list(dims), keepdim))
            root = gm.graph.call_function(aten.sqrt.default, (total,))
        done.append(_replaced(gm, node, (square, total, root)))
    return _recompiled(gm, done)


CONSTANT_PAD_OPS = {aten.constant_pad_nd.default, aten.pad.default}


def constant_pad_as_zero_pad(gm: fx.GraphModule) -> list[str]:
    """A constant pad with a value v != 0 (EfficientViT's linear attention pads v with ones) as a zero pad plus a
    constant tensor that holds v where the padding is and 0 elsewhere: the same values exactly (x + 0 = x).
    TFLite writes a non-zero pad as PADV2, which LiteRT's XNNPACK delegate takes in neither int8 nor float
    (measured on timm efficientvit_b0: 4 PADV2 in builtin kernels, 5 partitions); PAD and ADD it runs."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in CONSTANT_PAD_OPS:
            continue
        x, pad = node.args[0], list(node.args[1])
        if node.target is aten.pad.default:  # pad(x, pad, mode="constant", value=None)
            mode = node.args[2] if len(node.args) > 2 else node.kwargs.get("mode", "constant")
            value = node.args[3] if len(node.args) > 3 else node.kwargs.get("value")
            if mode != "constant":
                continue
        else:  # constant_pad_nd(x, pad, value=0)
            value = node.args[2] if len(node.args) > 2 else node.kwargs.get("value", 0.0)
        val = x.meta.get("val") if isinstance(x, fx.Node) else None
        k = len(pad) // 2
        if not value or val is None or any(p < 0 for p in pad) or not all(isinstance(d, int) for d in val.shape[-k:]):
            continue
        inner = torch.zeros(tuple(val.shape[-k:]), dtype=val.dtype)
        padded = torch.nn.functional.pad(inner, pad, value=float(value))
        mask = padded.reshape((1,) * (val.dim() - k) + tuple(padded.shape))
        name = _free_root_name(gm, f"edgeport_pad_value_{len(done)}")
        const = set_param(gm, gm.graph, node, name, mask)
        with gm.graph.inserting_before(node):
            zero = gm.graph.call_function(aten.constant_pad_nd.default, (x, pad, 0.0))
            out = gm.graph.call_function(aten.add.Tensor, (zero, const))
        done.append(_replaced(gm, node, (zero, out)))
    return _recompiled(gm, done)


def channels_last_global_pool_as_mean(gm: fx.GraphModule) -> list[str]:
    """A global average pool (``adaptive_avg_pool2d`` to 1x1) of a tensor in channels-last strides (after
    ``permute``, as in timm's EdgeNeXt/ConvNeXt blocks) as ``mean`` over H, W with keepdim: the same values.
    torch.onnx decomposes that pool into a mean and an ``as_strided`` that restores the strides, which ONNX
    writes as a Gather with an index tensor; LiteRT's XNNPACK delegate takes GATHER in neither int8 nor float
    (measured on timm edgenext_xx_small: one GATHER in builtin kernels, 2 partitions in fp32). A contiguous
    input (every zoo model) is left as it is."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.adaptive_avg_pool2d.default:
            continue
        x, size = node.args[0], node.args[1]
        val = x.meta.get("val") if isinstance(x, fx.Node) else None
        if val is None or val.dim() != 4 or val.is_contiguous() or list(size if isinstance(size, (list, tuple)) else [size] * 2) != [1, 1]:
            continue
        with gm.graph.inserting_before(node):
            mean = gm.graph.call_function(aten.mean.dim, (x, [2, 3], True))
        done.append(_replaced(gm, node, (mean,)))
    return _recompiled(gm, done)


def _spatial_step(node: object, dims: tuple[int, ...]) -> tuple[fx.Node, int, int] | None:
    """(input, dim, step) when ``node`` is a slice of a 4-D tensor along one of ``dims`` from 0 to the end with
    a step > 1, else None."""
    if not (isinstance(node, fx.Node) and node.op == "call_function" and node.target is aten.slice.Tensor):
        return None
    x, dim, start, end, step = (list(node.args) + [0, 0, None, None, 1][len(node.args):])[:5]
    val = x.meta.get("val") if isinstance(x, fx.Node) else None
    if val is None or val.dim() != 4 or not isinstance(step, int) or step <= 1 or dim % 4 not in dims:
        return None
    size = val.shape[dim % 4]
    if start not in (0, None) or not isinstance(size, int) or (end is not None and end < size):
        return None
    return x, dim % 4, step


def strided_slice_as_depthwise(gm: fx.GraphModule) -> list[str]:
    """A spatial subsample ``x[:, ::s, ::s]`` of a (B, H, W, C) tensor (LeViT's attention subsample) as a 1x1
    depthwise conv with stride s and weights 1 between two permutes: the same values (each output is 1 * one
    input; weight 1 is exact in int8 too). TFLite writes the slice as a STRIDED_SLICE with strides 2, which
    LiteRT's XNNPACK delegate takes in neither int8 nor float (measured on timm levit_128s: 2 in builtin
    kernels, 3 partitions in fp32); DEPTHWISE_CONV_2D and TRANSPOSE it runs in both."""
    done = []
    for node in list(gm.graph.nodes):
        outer = _spatial_step(node, (1, 2))
        if outer is None or any(_spatial_step(u, (1, 2)) for u in node.users):
            continue  # rewrite from the last slice of a chain
        steps, x = {outer[1]: outer[2]}, outer[0]
        inner = _spatial_step(x, (1, 2))
        if inner is not None and inner[1] not in steps and len(x.users) == 1:
            steps[inner[1]] = inner[2]
            x = inner[0]
        channels = x.meta["val"].shape[3]
        if not isinstance(channels, int):
            continue
        name = _free_root_name(gm, f"edgeport_subsample_{len(done)}")
        weight = set_param(gm, gm.graph, node, name, torch.ones(channels, 1, 1, 1, dtype=x.meta["val"].dtype))
        with gm.graph.inserting_before(node):
            nchw = gm.graph.call_function(aten.permute.default, (x, [0, 3, 1, 2]))
            conv = gm.graph.call_function(aten.conv2d.default,
                                          (nchw, weight, None, [steps.get(1, 1), steps.get(2, 1)], [0, 0], [1, 1], channels))
            out = gm.graph.call_function(aten.permute.default, (conv, [0, 2, 3, 1]))
        done.append(_replaced(gm, node, (nchw, conv, out)))  # the inner slice goes with the dead code
    return _recompiled(gm, done, dead_code=True)


def for_xnnpack_int8(program: torch.export.ExportedProgram, example: torch.Tensor) -> torch.export.ExportedProgram:
    """The fused program with h-swish/hard-sigmoid computed with ReLU6 (see above), for the TFLite targets
    only: in ONNX Runtime the same rewrite buys nothing in float and cost int8 accuracy (measured on the
    trained Fashion-MNIST MobileNetV3-Small: onnx-int8 SQNR 30.1 -> 25.0 dB), while in LiteRT it moves every
    op into XNNPACK (29 partitions -> 1). Returns ``program`` itself when there is nothing to rewrite; the
    TFLite artifacts' parity check against PyTorch covers the rewrite."""
    from edgeport.graph.capture import capture

    gm = program.module()
    hard = relu6_hard_activations(gm)
    norms = l2_norm_as_sum_of_squares(gm)
    pads = constant_pad_as_zero_pad(gm)
    views = channels_last_global_pool_as_mean(gm)
    subsamples = strided_slice_as_depthwise(gm)
    if not hard and not norms and not pads and not views and not subsamples:
        return program
    return capture(gm, example)


# --- a spatial mean that keeps its dims, for ExecuTorch's XNNPACK partitioner -----------------------------------------
#
# ExecuTorch 1.5's XNNPACK partitioner takes aten.mean.dim only with keepdim=True over the last two dims of a 4-D
# tensor (it becomes XNNPACK's global average pooling); a classifier head's x.mean((2, 3)) ran in ExecuTorch's
# portable kernels in fp32 and split the graph into two XNNPACK partitions (measured on tests/fixtures/byo_model.py
# and ShuffleNetV2's head). mean(x, (2, 3)) == flatten(mean(x, (2, 3), keepdim=True), 1) exactly.

MEAN_OPS = {aten.mean.dim}


def spatial_mean_keepdim(gm: fx.GraphModule) -> list[str]:
    """Rewrite spatial means of 4-D tensors that drop their dims as keepdim means + flatten; returns their names."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in MEAN_OPS or node.kwargs.get("dtype") is not None:
            continue
        x, dims = node.args[0], node.args[1] if len(node.args) > 1 else None
        keepdim = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
        val = x.meta.get("val") if isinstance(x, fx.Node) else None
        if keepdim or dims is None or val is None or val.dim() != 4 or sorted(d % 4 for d in dims) != [2, 3]:
            continue
        with gm.graph.inserting_before(node):
            kept = gm.graph.call_function(aten.mean.dim, (x, list(dims), True))
            flat = gm.graph.call_function(aten.flatten.using_ints, (kept, 1))
        done.append(_replaced(gm, node, (kept, flat)))
    return _recompiled(gm, done)


# --- scalar operands as 4-D constants, for ExecuTorch's XNNPACK layout pass ------------------------------------------
#
# ExecuTorch's XNNPACK backend runs 4-D activations in NHWC and its ChannelsLastTaggedReshapePass makes every input
# of an elementwise op share one layout; an operand that is not 4-D cannot be NHWC, so x + 3 (a scalar, lifted to a
# 0-D tensor by the quantizer) put a transpose to NCHW before the add and one back after it: 18 extra int8
# StaticTranspose nodes in MobileNetV3-Small's h-swishes (38 vs 20). The same constant shaped (1, 1, 1, 1) broadcasts
# to the same values and is NHWC as well as NCHW.

SCALAR_OPERAND_OPS = {aten.add.Tensor, aten.sub.Tensor, aten.mul.Tensor}


def scalar_operands_4d(gm: fx.GraphModule) -> list[str]:
    """Give add/sub/mul of a 4-D tensor and a Python number a (1, 1, 1, 1) constant operand instead."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in SCALAR_OPERAND_OPS or node.kwargs or len(node.args) != 2:
            continue
        x, c = node.args
        val = x.meta.get("val") if isinstance(x, fx.Node) else None
        if isinstance(c, bool) or not isinstance(c, (int, float)) or val is None or val.dim() != 4 or not val.dtype.is_floating_point:
            continue
        name = _free_root_name(gm, f"_edgeport_operand_{len(done)}")
        const = set_param(gm, gm.graph, node, name, torch.full((1, 1, 1, 1), float(c), dtype=val.dtype))
        node.args = (x, const)
        done.append(module_path(node))
    return _recompiled(gm, done)


# --- a BatchNorm that follows no conv, as a depthwise 1x1 conv -----------------------------------------------------------
#
# Fusion folds every BN into the conv or linear before it; one that follows something else (an add, a concatenation)
# stays. ExecuTorch's XNNPACKQuantizer has no pattern for a standalone batch_norm: XNNPACK ran it in fp32 (as a
# depthwise conv, between Convert nodes), and the ops after it too (measured on tests/fixtures/byo_model.py: the BN and
# the mean after it float). In eval mode BN(x) = x * s + t per channel, s = gamma / sqrt(var + eps),
# t = beta - mean * s: a depthwise 1x1 conv, which the quantizer takes in int8.


def batchnorm_as_depthwise(gm: fx.GraphModule) -> list[str]:
    """Rewrite eval-mode 2-D batch norms left after fusion as depthwise 1x1 convs; returns their names."""
    from edgeport.graph.fuse import attr_tensor

    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in BN_OPS or len(node.args) < 8 or node.args[5]:
            continue
        x, weight, bias, mean, var = node.args[:5]
        val = x.meta.get("val") if isinstance(x, fx.Node) else None
        mean_t, var_t = attr_tensor(gm, mean), attr_tensor(gm, var)
        if val is None or val.dim() != 4 or mean_t is None or var_t is None:
            continue
        gamma = attr_tensor(gm, weight) if weight is not None else torch.ones_like(mean_t)
        beta = attr_tensor(gm, bias) if bias is not None else torch.zeros_like(mean_t)
        if gamma is None or beta is None:
            continue
        scale = gamma / torch.sqrt(var_t + float(node.args[7]))
        shift = beta - mean_t * scale
        channels = int(val.shape[1])
        name = module_path(node) if module_path(node) != node.name else f"bn_as_depthwise_{len(done)}"
        w = set_param(gm, gm.graph, node, _free(gm, f"{name}.dw_weight"), scale.reshape(channels, 1, 1, 1).to(val.dtype))
        b = set_param(gm, gm.graph, node, _free(gm, f"{name}.dw_bias"), shift.to(val.dtype))
        node.target = aten.conv2d.default
        node.args = (x, w, b, [1, 1], [0, 0], [1, 1], channels)
        node.kwargs = {}
        done.append(name)
    return _recompiled(gm, done, dead_code=True)


def _free(gm: fx.GraphModule, target: str) -> str:
    """``target`` if nothing in ``gm`` has that name yet (its owner module must exist), else a generated name."""
    owner, _, name = target.rpartition(".")
    try:
        mod = gm.get_submodule(owner) if owner else gm
    except AttributeError:
        mod = None
    if mod is not None and not hasattr(mod, name):
        return target
    n = 0
    while hasattr(gm, f"_edgeport_{name}_{n}"):
        n += 1
    return f"_edgeport_{name}_{n}"


def maxpool_padding_back(gm: fx.GraphModule) -> list[str]:
    """Undo :func:`zero_pad_maxpool` (a TFLite-only need): ``max_pool2d(constant_pad_nd(x, p, 0))`` of a non-negative
    ``x`` back to ``max_pool2d(x, padding=p)``. ExecuTorch's XNNPACK takes a padded max pool in int8, but its runtime
    refused the int8 StaticConstantPad the rewrite leaves ("xnn_status_invalid_parameter", int8 ShuffleNetV2: the
    program did not load). Exact for the same reason as the rewrite: the windows' maxima are the same."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in MAXPOOL_OPS:
            continue
        args = list(node.args) + [None] * (6 - len(node.args))
        pad, kernel, stride, padding, dilation, ceil_mode = args[:6]
        if not (isinstance(pad, fx.Node) and pad.target == aten.constant_pad_nd.default and len(pad.users) == 1):
            continue
        value = pad.args[2] if len(pad.args) > 2 else 0.0
        sizes = list(pad.args[1])
        kernel = list(kernel) * (2 if len(kernel) == 1 else 1)
        if value != 0 or any(padding or [0, 0]) or ceil_mode or len(sizes) != 4 or not _non_negative(pad.args[0]):
            continue
        pw, pw2, ph, ph2 = sizes
        if pw != pw2 or ph != ph2 or ph > kernel[0] // 2 or pw > kernel[1] // 2:
            continue
        new_args = [pad.args[0], kernel, stride or kernel, [ph, pw]]
        if dilation is not None:
            new_args.append(dilation)
        node.args = tuple(new_args)
        gm.graph.erase_node(pad)
        done.append(module_path(node))
    return _recompiled(gm, done)


# --- a channel split as slices ----------------------------------------------------------------------------
#
# ExecuTorch's XNNPACK partitioner has no config for split / split_with_sizes, so ShuffleNetV2's 13 channel splits
# (x.chunk(2, dim=1)) ran as split_with_sizes_copy in ExecuTorch's portable kernels, in fp32, between 14 XNNPACK
# partitions. Each piece of a split is a slice of its input (exact), and XNNPACK takes a static slice in int8
# (ExecuTorch's quantizer gives a slice its input's scale, which XNNPACK requires).

SPLIT_OPS = {aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default}


def _split_sizes(node: fx.Node) -> tuple[int, list[int]] | None:
    """The dim of a split node and its piece sizes along it, or None when they are not static."""
    value = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
    dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
    if value is None or not isinstance(dim, int) or not isinstance(value.shape[dim], int):
        return None
    total, arg = value.shape[dim], node.args[1]
    if node.target is aten.split_with_sizes.default:
        return (dim, list(arg)) if all(isinstance(a, int) for a in arg) else None
    if not isinstance(arg, int) or arg <= 0:
        return None
    each = arg if node.target is aten.split.Tensor else -(-total // arg)  # chunk: arg pieces of ceil(total / arg)
    return dim, [min(each, total - start) for start in range(0, total, each)]


def split_as_slices(gm: fx.GraphModule) -> list[str]:
    """Each piece of a static split / chunk read by index becomes ``slice(x, dim, start, end)``; one note per split."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in SPLIT_OPS:
            continue
        split = _split_sizes(node)
        users = list(node.users)
        if split is None or not all(u.target is operator.getitem and isinstance(u.args[1], int) for u in users):
            continue
        dim, sizes = split
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        for piece in users:
            i = piece.args[1]
            with gm.graph.inserting_before(piece):
                sliced = gm.graph.call_function(aten.slice.Tensor, (node.args[0], dim, starts[i], starts[i] + sizes[i]))
            _replaced(gm, piece, (sliced,))
        gm.graph.erase_node(node)
        done.append(module_path(node))
    return _recompiled(gm, done)


RESHAPE_OPS = {aten.view.default, aten.reshape.default}


def reshape_without_contiguous(gm: fx.GraphModule) -> list[str]:
    """``x.contiguous().view(shape)`` as ``x.reshape(shape)`` (the channel shuffle's transpose -> contiguous -> view):
    the same values, one op fewer. ExecuTorch's XNNPACKQuantizer propagates an int8 scale through view, transpose
    and slice but not through contiguous, so in ShuffleNetV2 the shuffle's last reshape and the channel split's
    slices after it ran in fp32 inside XNNPACK, with 3 Convert nodes per unit. One note per contiguous removed."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.contiguous.default or len(node.args) != 1 or node.kwargs:
            continue
        if not node.users or not all(u.op == "call_function" and u.target in RESHAPE_OPS for u in node.users):
            continue
        for user in list(node.users):
            user.target = aten.reshape.default
        node.replace_all_uses_with(node.args[0])
        gm.graph.erase_node(node)
        done.append(module_path(node))
    return _recompiled(gm, done)


def transpose_before_reshape_as_copy(gm: fx.GraphModule) -> list[str]:
    """A transpose (or permute) whose every user is a reshape, as ``permute_copy``: the same values, made
    contiguous by the op itself. ExecuTorch lowers a reshape of a transposed (non-contiguous) tensor as clone + view,
    and XNNPACK's partitioner takes a clone in fp32 only, so each ShuffleNetV2 channel shuffle ran its reshape in
    fp32 with a Convert pair around it (16 of each); after a permute_copy the reshape is a plain int8 view
    (XNNPACKQuantizer shares the scale through permute_copy as through transpose). One note per transpose."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (aten.transpose.int, aten.permute.default) or node.kwargs:
            continue
        if not node.users or not all(u.op == "call_function" and u.target in RESHAPE_OPS for u in node.users):
            continue
        val = node.args[0].meta.get("val") if isinstance(node.args[0], fx.Node) else None
        if val is None:
            continue
        if node.target is aten.transpose.int:
            perm = list(range(val.dim()))
            a, b = (d % val.dim() for d in node.args[1:3])
            perm[a], perm[b] = perm[b], perm[a]
        else:
            perm = [d % val.dim() for d in node.args[1]]
        node.target, node.args = aten.permute_copy.default, (node.args[0], perm)
        done.append(module_path(node))
    return _recompiled(gm, done)


def channel_shuffle_as_gather(gm: fx.GraphModule) -> list[str]:
    """ShuffleNet's channel shuffle ``x.view(B, g, C/g, H, W).transpose(1, 2).reshape(B, C, H, W)`` as one
    ``index_select`` of the channels (ONNX Gather on axis 1): output channel k is input channel (k % g) * C/g + k // g,
    the same values. Why (onnx-int8 on x86, ORT 1.32): ORT runs QLinearConv in NHWC and wraps the 5-D
    Reshape/Transpose/Reshape in NCHW with Transposes: ShuffleNetV2 x1.0 had 47 Transposes in its int8 graph (16 in
    fp32), 22 % of its int8 time; with the Gather 34, and the int8 file ran 0.70-0.72x fp32 instead of 0.90x
    (interleaved medians, 1 thread, AVX-512 VNNI host). Returns one note per shuffle."""
    done = []
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target is not aten.transpose.int or tuple(node.args[1:]) != (1, 2):
            continue
        split = node.args[0]
        if not (isinstance(split, fx.Node) and split.target in RESHAPE_OPS and len(split.users) == 1
                and len(split.args[1]) == 5 and all(isinstance(d, int) for d in split.args[1])):
            continue
        last = node
        if len(last.users) == 1 and next(iter(last.users)).target is aten.contiguous.default:
            last = next(iter(last.users))
        merged = next(iter(last.users)) if len(last.users) == 1 else None
        batch, groups, per, h, w = split.args[1]
        if not (merged is not None and merged.target in RESHAPE_OPS and list(merged.args[1]) == [batch, groups * per, h, w]):
            continue
        name = _free_root_name(gm, "_edgeport_shuffle_index")
        gm.register_buffer(name, torch.tensor([(k % groups) * per + k // groups for k in range(groups * per)]))
        with gm.graph.inserting_before(merged):
            index = gm.graph.get_attr(name)
            picked = gm.graph.call_function(aten.index_select.default, (split.args[0], 1, index))
        done.append(_replaced(gm, merged, (index, picked)))
    return _recompiled(gm, done, dead_code=True)


def for_ort_int8(program: torch.export.ExportedProgram, example: torch.Tensor,
                 hard_activations: bool) -> tuple[torch.export.ExportedProgram, list[str]]:
    """The fused program as onnx-int8 quantizes it: max-pool padding back inside the pool (ORT ran the Pad that
    :func:`zero_pad_maxpool` leaves in float between a DequantizeLinear and a QuantizeLinear: ShuffleNetV2's stem),
    channel shuffles as a gather (:func:`channel_shuffle_as_gather`), and with ``hard_activations`` h-swish /
    hard-sigmoid as ReLU6 (:func:`relu6_hard_activations`): ORT has no integer kernel for HardSigmoid, so on
    MobileNetV3-Large 50 of 141 ops ran in float between DQ/Q, while the ReLU6 form is QLinearAdd + QLinearMul with
    the Clip in the QuantizeLinear's range (133/133 integer kernels). That costs accuracy (measured on the trained
    Fashion-MNIST MobileNetV3-Small: SQNR 30.1 -> 25.0 dB, top-1 agreement 0.994 -> 0.989), hence an option.
    Returns ``program`` itself when nothing changed, and one note per rewrite; the onnx-int8 parity check against
    PyTorch covers them."""
    from edgeport.graph.capture import capture

    gm = program.module()
    notes = [f"max-pool padding back inside the pool: {m}" for m in maxpool_padding_back(gm)]
    notes += [f"channel shuffle as a channel gather: {m}" for m in channel_shuffle_as_gather(gm)]
    if hard_activations:
        notes += [f"{a} with ReLU6" for a in relu6_hard_activations(gm)]
    if not notes:
        return program, []
    return capture(gm, example), notes


def for_executorch(program: torch.export.ExportedProgram, example: torch.Tensor,
                   int8: bool) -> tuple[torch.export.ExportedProgram, list[str]]:
    """The fused program as the ExecuTorch targets lower it: spatial means with keepdim and BatchNorms left by fusion
    as depthwise convs (:func:`batchnorm_as_depthwise`) for both targets, for int8
    hard-sigmoid with ReLU6 (:func:`relu6_hard_activations`: ExecuTorch's XNNPACKQuantizer has no int8 pattern for
    it, and XNNPACK has no int8 hard-sigmoid; h-swish stays one op, which edgeport's quantizer and partitioner hand
    to XNNPACK in int8), then scalar operands as 4-D constants (:func:`scalar_operands_4d`). Returns the program (``program``
    itself when nothing changed) and one note per rewrite; the .pte's parity check against PyTorch covers them."""
    from edgeport.graph.capture import capture

    gm = program.module()
    notes = [f"spatial mean kept 4-D for XNNPACK: {m}" for m in spatial_mean_keepdim(gm)]
    notes += [f"max-pool padding back inside the pool: {m}" for m in maxpool_padding_back(gm)]
    notes += [f"BatchNorm after no conv as a depthwise 1x1 conv: {b}" for b in batchnorm_as_depthwise(gm)]
    notes += [f"channel split as slices: {m}" for m in split_as_slices(gm)]
    notes += [f"reshape without contiguous: {m}" for m in reshape_without_contiguous(gm)]
    notes += [f"transpose before a reshape as permute_copy: {m}" for m in transpose_before_reshape_as_copy(gm)]
    if int8:  # h-swish stays one op: XNNPACK runs it in int8 (edgeport.exporters.executorch.partitioner)
        notes += [f"{a} with ReLU6" for a in relu6_hard_activations(gm, HARDSIGMOID_OPS)]
    scalars = scalar_operands_4d(gm)
    if scalars:
        notes.append(f"{len(scalars)} scalar operand(s) as (1, 1, 1, 1) constants (no NCHW transposes in XNNPACK)")
    if not notes:
        return program, []
    return capture(gm, example), notes
