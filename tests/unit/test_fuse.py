import pytest
import torch
import torch.nn.functional as F
from torch import nn

from edgeport.data import sample_inputs
from edgeport.graph.capture import capture
from edgeport.graph.fuse import check_equivalence, fuse
from tests.fixtures.byo_model import build as build_byo


def _randomize_bn(model):
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model.eval()


def _fuse(model, shape):
    model = _randomize_bn(model)
    gm, report = fuse(capture(model, torch.zeros(shape)).module())
    return model, gm, report


class Patterns(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, groups=8), nn.BatchNorm2d(8)
        self.c3, self.b3 = nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8)
        self.lone_bn = nn.BatchNorm2d(8)
        self.fc, self.bn1d = nn.Linear(8, 4), nn.BatchNorm1d(4)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.relu6(self.b2(self.c2(x)))
        x = self.b3(self.c3(x))
        x = self.lone_bn(torch.sigmoid(x))
        return self.bn1d(self.fc(x.mean((2, 3))))


def test_patterns_fold_and_report():
    model, gm, report = _fuse(Patterns(), (1, 3, 16, 16))
    assert report.counts() == {"Conv+BN": 1, "Conv+BN+ReLU": 1, "Conv+BN+ReLU6": 1, "Linear+BN": 1}
    assert report.folded_bn == 4
    assert len(report.unfused_bn) == 1
    bn, why = report.unfused_bn[0]
    assert bn == "lone_bn" and "sigmoid" in why
    ops = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert ops.count(torch.ops.aten.batch_norm.default) == 1  # only the unfoldable one is left
    # no dead BN parameters left behind
    assert not any(name.startswith(("b1.", "b2.", "b3.", "bn1d.")) for name, _ in gm.named_parameters())
    eq = check_equivalence(model, gm, sample_inputs.check_set((1, 3, 16, 16), 4), batch=1)
    assert eq.max_rel_error <= 1e-5, eq


def test_shared_conv_output_is_not_folded():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.c, self.b = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.c(x)
            return self.b(y) + y  # the conv output feeds more than the BN

    model, gm, report = _fuse(Shared(), (1, 3, 8, 8))
    assert report.folded_bn == 0
    assert report.unfused_bn and "also used elsewhere" in report.unfused_bn[0][1]
    assert check_equivalence(model, gm, {"x": torch.randn(1, 3, 8, 8)}).max_rel_error <= 1e-6


def test_folding_really_changes_weights():
    """A broken fold (e.g. ignoring running_var) must be caught by the equivalence check."""
    model, gm, _ = _fuse(Patterns(), (1, 3, 16, 16))
    gm.c1.weight.data.mul_(1.01)
    eq = check_equivalence(model, gm, {"x": torch.randn(1, 3, 16, 16)})
    assert not eq.ok(1e-5)


def test_byo_model_shuffle_se_hswish_pass_through():
    model = build_byo()
    gm, report = fuse(capture(model, torch.zeros(1, 3, 32, 32)).module())
    assert report.counts() == {"Conv+BN": 1, "Conv+BN+ReLU": 1, "Conv+BN+ReLU6": 1, "Conv+ReLU": 1}  # SE fc1+ReLU
    assert [bn for bn, _ in report.unfused_bn] == ["post_bn"]
    targets = {n.target for n in gm.graph.nodes if n.op == "call_function"}
    aten = torch.ops.aten
    assert {aten.hardswish.default, aten.hardsigmoid.default, aten.transpose.int} <= targets
    eq = check_equivalence(model, gm, sample_inputs.check_set((1, 3, 32, 32), 4), batch=1)
    assert eq.max_rel_error <= 1e-5


FAMILY_REPRESENTATIVES = ["mobilenet_v1_x0_25", "mobilenet_v2", "mobilenet_v3_small", "shufflenet_v1_g3", "shufflenet_v2_x0_5"]


@pytest.mark.parametrize("name", FAMILY_REPRESENTATIVES)
def test_zoo_family_fusion_equivalence(name):
    """Every BN gets non-trivial statistics, so every fold does real arithmetic; outputs agree to 1e-5."""
    from edgeport.models import MODELS

    shape = (1, 3, 64, 64)
    torch.manual_seed(0)
    model = _randomize_bn(MODELS.get(name).build(num_classes=10))
    gm, report = fuse(capture(model, torch.zeros(shape)).module())
    assert report.folded_bn == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not report.unfused_bn
    eq = check_equivalence(model, gm, sample_inputs.check_set(shape, 4), batch=1)
    assert eq.max_rel_error <= 1e-5, eq


@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_calibrated_fusion_is_as_exact_as_the_original(name):
    """With BN statistics from data, random-weight nets amplify fp32 rounding; the fused graph must still be
    no farther from a float64 run than the float32 original is."""
    from edgeport.models import MODELS

    shape = (1, 3, 64, 64)
    torch.manual_seed(0)
    model = MODELS.get(name).build(num_classes=10)
    sample_inputs.recalibrate_batchnorm(model, [sample_inputs.image_like((16, 3, 64, 64), 16, seed=s) for s in range(2)])
    gm, _ = fuse(capture(model, torch.zeros(shape)).module())
    eq = check_equivalence(model, gm, sample_inputs.check_set(shape, 4), batch=1, tolerance=0.0)
    assert eq.fused_vs_exact is not None and eq.original_vs_exact is not None
    assert eq.fused_vs_exact <= 1.5 * eq.original_vs_exact, eq
    assert eq.max_rel_error <= 1e-4, eq  # two independent fp32 noise terms, not a systematic error


def test_failed_equivalence_description_keeps_the_float64_numbers():
    from edgeport.graph.fuse import Equivalence

    bad = Equivalence(3e-3, 1e-2, ("x",), fused_vs_exact=3e-3, original_vs_exact=1e-6)
    assert not bad.ok() and "fused 3.0e-03, original 1.0e-06" in bad.describe()
    assert "rounding level" not in bad.describe()
    good = Equivalence(2e-5, 1e-5, ("x",), fused_vs_exact=5e-6, original_vs_exact=5e-6)
    assert good.ok() and "rounding level" in good.describe()


class _BiaslessFunctionalConvs(nn.Module):
    """Three bias-less functional convs + BN under one owner: each folded bias needs its own name."""

    def __init__(self):
        super().__init__()
        self.w = nn.ParameterList([nn.Parameter(torch.randn(4, 4, 1, 1)) for _ in range(3)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(4) for _ in range(3)])
        for bn in self.bns:
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.bias.data.uniform_(-1, 1)

    def forward(self, x):
        for w, bn in zip(self.w, self.bns):
            x = bn(F.conv2d(x, w))
        return x


def test_several_biasless_convs_under_one_owner_get_distinct_folded_biases():
    model = _BiaslessFunctionalConvs().eval()
    x = torch.randn(1, 4, 8, 8)
    gm, report = fuse(capture(model, x).module())
    assert report.folded_bn == 3
    biases = [n for n, _ in gm.named_parameters() if "bias" in n]
    assert len(biases) == len(set(biases)) == 3
    with torch.no_grad():
        assert torch.allclose(gm(x), model(x), atol=1e-5)
