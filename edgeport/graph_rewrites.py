"""Exact rewrites of the fused graph that make the exported files run better on edge runtimes.

max-pool after ReLU: PyTorch's MaxPool2d(padding=p) pads with -inf. onnx2tf cannot map its symmetric
padding to TFLite's SAME, so it emits PADV2(-inf) + MAX_POOL_2D(VALID); in int8 that PADV2 makes XNNPACK
fail to prepare the whole graph (measured on ShuffleNetV2). When the pooled tensor comes from a ReLU/ReLU6
it is >= 0, and every pooling window holds at least one real element, so padding with 0 gives the same
maximum: we rewrite to constant_pad_nd(0) + max_pool2d(padding=0), which exports as a plain PAD that
XNNPACK takes in int8. The equivalence check after fusion covers these rewrites too.
"""

from __future__ import annotations

import torch
from torch import fx

from edgeport.fuse import CLAMP_OPS, RELU6_OPS, RELU_OPS, module_path

aten = torch.ops.aten
MAXPOOL_OPS = {aten.max_pool2d.default}


def _non_negative(node: object) -> bool:
    if not isinstance(node, fx.Node) or node.op != "call_function":
        return False
    if node.target in RELU_OPS | RELU6_OPS:
        return True
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
    if done:
        gm.graph.lint()
        gm.recompile()
    return done
