import torch
from torch import nn

from edgeport.capture import capture
from edgeport.fuse import check_equivalence
from edgeport.graph_rewrites import zero_pad_maxpool

aten = torch.ops.aten


def _rewrite(model, shape=(1, 3, 15, 16)):
    gm = capture(model.eval(), torch.zeros(shape)).module()
    return gm, zero_pad_maxpool(gm)


def _targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def test_maxpool_after_relu_gets_explicit_zero_pad_and_same_outputs():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    gm, done = _rewrite(model)
    assert len(done) == 1
    assert aten.constant_pad_nd.default in _targets(gm)
    pool = next(n for n in gm.graph.nodes if n.target == aten.max_pool2d.default)
    assert list(pool.args[3]) == [0, 0]
    x = torch.randn(4, 3, 15, 16) * 3
    assert check_equivalence(model, gm, {"x": x}, batch=1).max_rel_error == 0.0


def test_maxpool_of_possibly_negative_input_is_left_alone():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.MaxPool2d(3, 2, 1))  # conv output can be negative
    gm, done = _rewrite(model)
    assert done == [] and aten.constant_pad_nd.default not in _targets(gm)
