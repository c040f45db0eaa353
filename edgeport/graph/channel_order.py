"""Carry ShuffleNet's channel shuffles into the channel order of convolution weights (exact).

A channel shuffle (view -> transpose -> view, edgeport/models/channel_shuffle.py) is a fixed permutation
of channels. onnx2tf turns each one into NHWC<->NCHW TRANSPOSEs around a RESHAPE pair (measured:
ShuffleNetV1 g=3 int8 has 45 TRANSPOSE + 30 RESHAPE). But a permutation costs nothing where a convolution
reads the tensor: a dense conv reads its input channels in any order if its weight's input channels are
permuted the same way; a depthwise conv likewise, its output then carrying the same order on; a grouped
conv needs each group's channels together but in any order within the group. And a conv that produces
channels may produce them in any order if its weight's output channels are permuted.

So we evaluate shuffles, channel concatenations and channel splits symbolically: each tensor inside such
a region is a list of (physical tensor, channel) pairs, one per true channel. Where a conv reads it, we
build it from the physical tensors with channel slices and one concatenation, in the cheapest order the
conv allows, and permute that conv's weights to match; anything else reads it in its true order. First
we choose the output order of every conv that feeds a region so that what each reader takes from it is
one contiguous slice (in ShuffleNetV2 every channel is read exactly once, so this always works).

Not in edgeport's default export path (graph_rewrites.rewrite_for_edge), because of what it measured on
ShuffleNetV2 x1.0 int8 (BN-calibrated random weights): TRANSPOSE 61 -> 0 and RESHAPE 32 -> 0, but
TFLiteConverter gives every concatenation its own int8 scale, so reading one conv's output from several
concatenations costs a requantizing QUANTIZE per slice (53), and concatenations of more than a few inputs
fell out of XNNPACK (4 builtin, 5 partitions); ShuffleNetV1 g=3 needs g*g slices per unit (135) and 15
of its 9-input concatenations ran in builtin kernels. Kept, tested, for a layout that keeps each stage
in one scale (one concatenation per unit, each producer read by one concatenation) -- future work.

Exact in real arithmetic: only the order of channels and of weight entries changes. In float a dense conv
may sum its inputs in another order (rounding only; the equivalence check after fusion covers it).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
from torch import fx

from edgeport.graph.fuse import CONV_OPS, RELU6_OPS, RELU_OPS, get_attr, module_path, set_param

aten = torch.ops.aten
CAT_OPS = {aten.cat.default}
SPLIT_OPS = {aten.chunk.default, aten.split.Tensor, aten.split_with_sizes.default}
VIEW_OPS = {aten.view.default, aten.reshape.default, aten._unsafe_view.default}
COPY_OPS = {aten.contiguous.default, aten.clone.default}
PER_CHANNEL_ACT = RELU_OPS | RELU6_OPS | {aten.hardtanh.default, aten.hardtanh_.default}

Entry = tuple[fx.Node, int]  # (physical tensor, its channel in the producer's original order)


def _shape(node: object) -> tuple[int, ...] | None:
    val = node.meta.get("val") if isinstance(node, fx.Node) else None
    return tuple(int(d) for d in val.shape) if val is not None and hasattr(val, "shape") else None


def _channels(node: fx.Node) -> int | None:
    shape = _shape(node)
    return shape[1] if shape is not None and len(shape) == 4 else None


def _shuffle(node: fx.Node) -> tuple[fx.Node, int, list[fx.Node]] | None:
    """(input, groups, inner nodes) when ``node`` is the last view of view(N,g,C/g,H,W) -> transpose(1,2)
    [-> contiguous] -> view(N,C,H,W) and the inner nodes are used by nothing else."""
    if node.op != "call_function" or node.target not in VIEW_OPS:
        return None
    inner, prev = [], node.args[0]
    while isinstance(prev, fx.Node) and prev.target in COPY_OPS:
        inner.append(prev)
        prev = prev.args[0]
    if not (isinstance(prev, fx.Node) and prev.target == aten.transpose.int and sorted(prev.args[1:3]) == [1, 2]):
        return None
    five = prev.args[0]
    if not (isinstance(five, fx.Node) and five.target in VIEW_OPS):
        return None
    inner += [prev, five]
    src, s5, s4 = five.args[0], _shape(five), _shape(node)
    if not isinstance(src, fx.Node) or s5 is None or s4 is None or len(s5) != 5 or _shape(src) != s4:
        return None
    if s4 != (s5[0], s5[1] * s5[2], s5[3], s5[4]) or any(len(n.users) != 1 for n in inner):
        return None
    return src, s5[1], inner


def _conv_kind(node: fx.Node, channels: int) -> str | None:
    """'dense', 'depthwise' or 'grouped' for a 2-D conv reading ``channels`` channels as its input."""
    if node.op != "call_function" or node.target not in CONV_OPS:
        return None
    groups = node.args[6] if len(node.args) > 6 else 1
    weight = node.args[1]
    if not (isinstance(weight, fx.Node) and weight.op == "get_attr" and len(weight.users) == 1):
        return None
    out = get_attr(node.graph.owning_module, weight.target).shape[0]
    if groups == 1:
        return "dense"
    if groups == channels == out:
        bias = node.args[2] if len(node.args) > 2 else None
        if bias is None or (isinstance(bias, fx.Node) and bias.op == "get_attr" and len(bias.users) == 1):
            return "depthwise"
        return None
    return "grouped"


@dataclass
class Demand:
    """A node that reads a symbolic tensor: how it may receive it."""

    user: fx.Node
    source: fx.Node  # the symbolic node it reads
    entries: list[Entry]
    mode: str  # 'dense' | 'depthwise' | 'grouped' | 'exact'


class _Region:
    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.virtual: dict[fx.Node, list[Entry]] = {}
        self.demands: list[Demand] = []
        self.position: dict[fx.Node, list[int]] = {}  # physical order of a reordered producer / depthwise
        self.shuffles = {n: sh for n in gm.graph.nodes if (sh := _shuffle(n)) is not None}
        self.inner = {i for _, _, inner in self.shuffles.values() for i in inner}

    def entries(self, node: object) -> list[Entry] | None:
        if not isinstance(node, fx.Node):
            return None
        if node in self.virtual:
            return self.virtual[node]
        c = _channels(node)
        return None if c is None else [(node, i) for i in range(c)]

    # -- phase 1: evaluate shuffles, concatenations and splits symbolically --------------------------
    def trace(self) -> None:
        for node in self.gm.graph.nodes:
            if node.op != "call_function":
                if node.op == "output":
                    self._read(node)
                continue
            if node in self.inner:
                continue  # part of a shuffle: dead once the shuffle's readers are rewired
            if node in self.shuffles:
                src, g, _ = self.shuffles[node]
                ent = self.entries(src)
                n = len(ent) // g
                self.virtual[node] = [ent[(j % g) * n + j // g] for j in range(len(ent))]
                continue
            if node.target in CAT_OPS and (node.args[1] if len(node.args) > 1 else 0) == 1:
                parts = [self.entries(a) for a in node.args[0]]
                feeds_shuffle = any(u in self.inner for u in node.users)
                if (feeds_shuffle or any(a in self.virtual for a in node.args[0])) and all(p is not None for p in parts):
                    self.virtual[node] = [e for p in parts for e in p]
                    continue
            if node.target in SPLIT_OPS and node.args[0] in self.virtual and self._split(node):
                continue
            if node.target is operator.getitem and node.args[0] in self.virtual:
                continue  # handled by _split
            self._read(node)

    def _split(self, node: fx.Node) -> bool:
        ent = self.virtual[node.args[0]]
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        if dim != 1:
            return False
        if node.target == aten.chunk.default:
            k = node.args[1]
            step = -(-len(ent) // k)
            sizes = [min(step, len(ent) - i) for i in range(0, len(ent), step)]
        elif node.target == aten.split.Tensor:
            step = node.args[1]
            sizes = [min(step, len(ent) - i) for i in range(0, len(ent), step)]
        else:
            sizes = list(node.args[1])
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        users = list(node.users)
        if not all(u.target is operator.getitem for u in users):
            return False
        self.virtual[node] = ent
        for u in users:
            i = u.args[1]
            self.virtual[u] = ent[starts[i] : starts[i] + sizes[i]]
        return True

    def _read(self, node: fx.Node) -> None:
        for a in node.all_input_nodes:
            if a not in self.virtual:
                continue
            mode = "exact"
            if node.target in CONV_OPS and node.args[0] is a and len(set(self.virtual[a])) == len(self.virtual[a]):
                mode = _conv_kind(node, len(self.virtual[a])) or "exact"
            self.demands.append(Demand(node, a, self.virtual[a], mode))
            if mode == "depthwise":
                self.virtual[node] = [(node, i) for i in range(len(self.virtual[a]))]
                self.position[node] = list(range(len(self.virtual[a])))

    # -- phase 2: output order of the convs that feed the regions -------------------------------------
    def _reorderable_conv(self, node: fx.Node) -> fx.Node | None:
        """The dense conv behind ``node`` (through single-user per-channel activations) when its output
        channels may be permuted: its weight and bias are its own and nothing outside the regions reads it."""
        if not all(u in self.virtual or u in self.inner for u in node.users):
            return None  # something reads it in its own order
        conv = node
        while conv.op == "call_function" and conv.target in PER_CHANNEL_ACT:
            conv = conv.args[0]
            if len(conv.users) != 1:
                return None
        if conv.op != "call_function" or conv.target not in CONV_OPS or (len(conv.args) > 6 and conv.args[6] != 1):
            return None
        w, b = conv.args[1], conv.args[2] if len(conv.args) > 2 else None
        def own(p):
            return isinstance(p, fx.Node) and p.op == "get_attr" and len(p.users) == 1

        return conv if own(w) and (b is None or own(b)) else None

    def choose_orders(self) -> list[str]:
        order: dict[fx.Node, list[int]] = {}
        for d in self.demands:
            for node, ch in d.entries:
                order.setdefault(node, [])
                if ch not in order[node]:
                    order[node].append(ch)
        done = []
        for node, chans in order.items():
            if node in self.position:
                continue
            c = _channels(node)
            conv = self._reorderable_conv(node) if c is not None else None
            if conv is None:
                continue
            perm = chans + [i for i in range(c) if i not in set(chans)]
            if perm == list(range(c)):
                continue
            self._permute(conv, perm, out=True)
            self.position[node] = [0] * c
            for new, old in enumerate(perm):
                self.position[node][old] = new
            done.append(module_path(conv))
        return done

    def _permute(self, conv: fx.Node, perm: list[int], out: bool) -> None:
        """Permute ``conv``'s output channels (weight rows and bias) or its input channels by ``perm``."""
        idx = torch.tensor(perm)
        w_node = conv.args[1]
        w = get_attr(self.gm, w_node.target)
        if out:
            new_w = w[idx]
        else:  # a grouped conv's weight holds each group's input channels locally: permute group by group
            groups = conv.args[6] if len(conv.args) > 6 else 1
            size, rows = len(perm) // groups, w.shape[0] // groups
            new_w = torch.cat([
                w[g * rows : (g + 1) * rows][:, idx[g * size : (g + 1) * size] - g * size] for g in range(groups)
            ])
        conv.replace_input_with(w_node, set_param(self.gm, self.gm.graph, conv, w_node.target, new_w))
        b_node = conv.args[2] if len(conv.args) > 2 else None
        if out and isinstance(b_node, fx.Node):
            b = get_attr(self.gm, b_node.target)
            conv.replace_input_with(b_node, set_param(self.gm, self.gm.graph, conv, b_node.target, b[idx]))

    # -- phase 3: build each read from slices of physical tensors --------------------------------------
    def _physical(self, e: Entry) -> tuple[fx.Node, int]:
        node, ch = e
        return node, self.position[node][ch] if node in self.position else ch

    def _layout(self, d: Demand) -> list[int]:
        """Indices into ``d.entries`` in the order they will be stored."""
        rank = {}
        for node, _ in d.entries:
            rank.setdefault(node, len(rank))
        def key(i):
            return (rank[d.entries[i][0]], self._physical(d.entries[i])[1])

        idx = list(range(len(d.entries)))
        if d.mode in ("dense", "depthwise"):
            return sorted(idx, key=key)
        if d.mode == "grouped":
            groups = d.user.args[6]
            size = len(idx) // groups
            return [i for g in range(groups) for i in sorted(idx[g * size : (g + 1) * size], key=key)]
        return idx

    def _build(self, d: Demand, layout: list[int], cache: dict) -> fx.Node:
        phys = [self._physical(d.entries[i]) for i in layout]
        key = tuple(phys)
        if key in cache:
            return cache[key]
        runs: list[list] = []
        for node, p in phys:
            if runs and runs[-1][0] is node and runs[-1][2] == p:
                runs[-1][2] += 1
            else:
                runs.append([node, p, p + 1])
        graph = self.gm.graph
        with graph.inserting_before(d.user):
            parts = []
            for node, start, end in runs:
                if start == 0 and end == _channels(node):
                    parts.append(node)
                else:
                    parts.append(graph.call_function(aten.slice.Tensor, (node, 1, start, end)))
                    parts[-1].meta = dict(d.user.meta)
            built = parts[0]
            if len(parts) > 1:
                built = graph.call_function(aten.cat.default, (parts, 1))
                built.meta = dict(d.user.meta)
        cache[key] = built
        return built

    def materialize(self) -> int:
        cache: dict = {}
        for d in self.demands:
            layout = self._layout(d)
            built = self._build(d, layout, cache)
            d.user.replace_input_with(d.source, built)
            if d.mode in ("dense", "grouped"):
                self._permute(d.user, layout, out=False)
            elif d.mode == "depthwise":
                self._permute(d.user, layout, out=True)
                for new, old in enumerate(layout):
                    self.position[d.user][old] = new
        return len(cache)


def shuffles_into_weights(gm: fx.GraphModule) -> list[str]:
    """Rewrite every channel shuffle as described above; returns the shuffled layers' names ([] if none)."""
    region = _Region(gm)
    shuffles = list(region.shuffles)
    if not shuffles:
        return []
    region.trace()
    region.choose_orders()
    region.materialize()
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()
    return [module_path(n) for n in shuffles]
