import pytest
import torch
from torch import nn

from edgeport.graph.capture import capture
from edgeport.graph.channel_order import shuffles_into_weights
from edgeport.graph.fuse import check_equivalence, fuse
from edgeport.models.channel_shuffle import channel_shuffle
from edgeport.models.shufflenet_v1 import shufflenet_v1
from edgeport.models.shufflenet_v2 import shufflenet_v2_x0_5

aten = torch.ops.aten
SHUFFLE_OPS = {aten.transpose.int, aten.view.default, aten.contiguous.default}


def _randomize_bn(model):
    """Random BN statistics so that a wrong channel order cannot hide behind identical channels."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def _rewritten(model, shape):
    gm, _ = fuse(capture(model, torch.zeros(shape)).module())
    return gm, shuffles_into_weights(gm)


def _targets(gm):
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


@pytest.mark.parametrize(
    "factory, shuffles", [(shufflenet_v2_x0_5, 16), (lambda **kw: shufflenet_v1(groups=3, **kw), 15)], ids=["v2", "v1_g3"]
)
def test_shufflenets_lose_every_shuffle_and_compute_the_same(factory, shuffles):
    torch.manual_seed(0)
    model = _randomize_bn(factory(num_classes=10))
    shape = (1, 3, 64, 64)
    gm, done = _rewritten(model, shape)
    assert len(done) == shuffles
    assert not SHUFFLE_OPS & set(_targets(gm))
    x = torch.randn(4, 3, 64, 64)
    eq = check_equivalence(model, gm, {"x": x}, batch=1)
    assert eq.max_rel_error < 1e-5, eq.describe(1e-5)


def test_shufflenet_v2_reads_each_producer_in_one_slice_per_unit():
    torch.manual_seed(0)
    gm, _ = _rewritten(_randomize_bn(shufflenet_v2_x0_5(num_classes=10)), (1, 3, 64, 64))
    # a stride-1 unit reads one contiguous slice from each earlier conv whose channels it takes; never a
    # slice per channel (that would mean the producers' output order was not chosen for their readers)
    slices = _targets(gm).count(aten.slice.Tensor)
    assert 0 < slices <= 80


class ShuffleThenOther(nn.Module):
    """A shuffle read by something that is not a conv (an add and the output): true order is rebuilt."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 6, 1)
        self.b = nn.Conv2d(6, 6, 1)

    def forward(self, x):
        y = channel_shuffle(torch.relu(self.a(x)), 3)
        return self.b(y) + y, y


def test_shuffle_read_by_non_convs_is_rebuilt_in_true_order_bit_for_bit():
    torch.manual_seed(0)
    model = ShuffleThenOther().eval()
    gm, done = _rewritten(model, (1, 3, 5, 5))
    assert len(done) == 1 and aten.transpose.int not in _targets(gm)
    x = torch.randn(1, 3, 5, 5)
    with torch.no_grad():
        ref, out = model(x), gm(x)
    assert torch.equal(ref[1], out[1])  # only slices and a concatenation: the very same values
    assert torch.allclose(ref[0], out[0], rtol=1e-5, atol=1e-6)


def test_model_without_shuffle_is_untouched():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()).eval()
    gm, done = _rewritten(model, (1, 3, 4, 4))
    assert done == [] and aten.slice.Tensor not in _targets(gm)
