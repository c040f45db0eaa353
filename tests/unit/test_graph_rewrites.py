import torch
from torch import nn

from edgeport.graph.capture import capture
from edgeport.graph.fuse import check_equivalence
from edgeport.graph.rewrites import zero_pad_maxpool

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


# --- h-swish / hard-sigmoid with ReLU6 ---------------------------------------------------------------------

from edgeport.graph.rewrites import relu6_hard_activations  # noqa: E402


class SEBlock(nn.Module):
    """MobileNetV3-like: conv -> h-swish -> dw conv -> h-swish -> SE (hard-sigmoid gate) -> 1x1 conv,
    then pool -> linear -> h-swish -> linear."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.Hardswish())
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1, groups=16), nn.Hardswish())
        self.fc1, self.fc2 = nn.Conv2d(16, 8, 1), nn.Conv2d(8, 16, 1)
        self.project = nn.Conv2d(16, 24, 1)
        self.head = nn.Sequential(nn.Linear(24, 32), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(32, 10))

    def forward(self, x):
        x = self.dw(self.stem(x))
        gate = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(x.mean((2, 3), keepdim=True)))))
        x = self.project(x * gate)
        return self.head(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def _rewrite_hard(model, shape=(1, 3, 16, 16)):
    gm = capture(model.eval(), torch.zeros(shape)).module()
    return gm, relu6_hard_activations(gm)


def _scalar_muls(gm):
    return [n for n in gm.graph.nodes if n.target == aten.mul.Tensor and not isinstance(n.args[1], torch.fx.Node)]


def test_hard_activations_become_relu6_with_the_sixth_folded_into_weights():
    torch.manual_seed(0)
    model = SEBlock()
    gm, notes = _rewrite_hard(model)
    targets = _targets(gm)
    assert len(notes) == 4  # three h-swish, one hard-sigmoid
    assert not {aten.hardswish.default, aten.hardswish_.default, aten.hardsigmoid.default} & set(targets)
    assert targets.count(aten.hardtanh.default) == 4
    assert _scalar_muls(gm) == []  # every 1/6 went into a conv/linear weight, none is left as a multiply
    # the hard-sigmoid's +3 went into fc2's bias: only the three h-swish keep an explicit add
    assert sum(1 for n in gm.graph.nodes if n.target == aten.add.Tensor) == 3
    x = torch.randn(8, 3, 16, 16) * 4
    eq = check_equivalence(model, gm, {"x": x}, batch=1)
    assert eq.max_rel_error < 1e-5


def test_hard_swish_read_as_a_true_value_keeps_its_sixth_as_one_multiply_per_tensor():
    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = nn.functional.hardswish(self.conv(x))
            return y + 1.0, nn.functional.hardswish(y)

    torch.manual_seed(0)
    model = Tail()
    gm, notes = _rewrite_hard(model)
    assert len(notes) == 2
    # y + 1 carries the 6 on (6y + 6); the output needs the true y + 1, the second h-swish the true y, the
    # output the true second h-swish: one correction each, shared by all readers of that tensor
    assert len(_scalar_muls(gm)) == 3
    x = torch.randn(4, 3, 16, 16) * 4
    assert check_equivalence(model, gm, {"x": x}, batch=1).max_rel_error < 1e-5


def test_weights_shared_by_two_layers_are_not_scaled():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.conv(nn.functional.hardswish(self.conv(x)))

    torch.manual_seed(0)
    model = Shared()
    gm, _ = _rewrite_hard(model, (1, 4, 8, 8))
    assert len(_scalar_muls(gm)) == 1
    x = torch.randn(4, 4, 8, 8) * 4
    assert check_equivalence(model, gm, {"x": x}, batch=1).max_rel_error < 1e-5


# --- ShuffleNetV1 shortcut: ReLU before the concatenation, average pool as depthwise conv ------------------

from edgeport.graph.rewrites import avgpool_as_depthwise, relu_before_cat  # noqa: E402


class PoolShortcut(nn.Module):
    """ShuffleNetV1's stride-2 unit: cat(avgpool(x), conv(x)) -> ReLU, with x >= 0."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.branch = nn.Conv2d(6, 10, 3, 2, 1)
        self.pool = nn.AvgPool2d(3, 2, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        return torch.relu(torch.cat((self.pool(x), self.branch(x)), 1))


def test_relu_moves_before_cat_and_average_pool_becomes_depthwise_conv():
    torch.manual_seed(0)
    model = PoolShortcut().eval()
    gm = capture(model, torch.zeros(1, 3, 16, 16)).module()
    assert len(relu_before_cat(gm)) == 1
    assert len(avgpool_as_depthwise(gm)) == 1
    targets = _targets(gm)
    assert aten.avg_pool2d.default not in targets
    cat = next(n for n in gm.graph.nodes if n.target == aten.cat.default)
    pooled, branch = cat.args[0]
    assert pooled.target == aten.conv2d.default and pooled.args[-1] == 6  # depthwise, no ReLU: input >= 0
    assert pooled.args[1].target == "pool.weight"  # reported under the pool's own name (edgeport.formats.layer_names)
    assert branch.target == aten.relu.default  # fuses into the branch conv
    assert not any(u.target in RELU_TARGETS for u in cat.users)
    x = torch.randn(4, 3, 16, 16) * 3
    assert check_equivalence(model, gm, {"x": x}, batch=1).max_rel_error < 1e-6


RELU_TARGETS = {aten.relu.default, aten.relu_.default}


def test_average_pool_that_skips_padding_is_left_alone():
    model = nn.Sequential(nn.AvgPool2d(3, 2, 1, count_include_pad=False)).eval()
    gm = capture(model, torch.zeros(1, 3, 8, 8)).module()
    assert avgpool_as_depthwise(gm) == []


def test_residual_add_of_an_h_swish_scales_the_other_branch_conv_instead_of_multiplying():
    """MobileNetV3-Large's first block adds the stem's h-swish to a conv output: a left-over x*(1/6) there
    is what TFLiteConverter fuses back into HARD_SWISH (measured), so the other conv is scaled by 6."""

    class Residual(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.block, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1)

        def forward(self, x):
            h = nn.functional.hardswish(self.stem(x))
            return self.head(self.block(torch.relu(h)) + h)

    torch.manual_seed(0)
    model = Residual()
    gm, notes = _rewrite_hard(model)
    assert len(notes) == 1 and _scalar_muls(gm) == []
    x = torch.randn(4, 3, 16, 16) * 4
    assert check_equivalence(model, gm, {"x": x}, batch=1).max_rel_error < 1e-5


def test_xnnpack_program_rewrites_hard_activations_and_leaves_plain_programs_alone():
    from edgeport.graph.rewrites import for_xnnpack_int8

    torch.manual_seed(0)
    model, example = SEBlock().eval(), torch.zeros(1, 3, 16, 16)
    program = capture(model, example)
    rewritten = for_xnnpack_int8(program, example)
    assert rewritten is not program
    assert not {aten.hardswish.default, aten.hardsigmoid.default} & set(_targets(rewritten.graph_module))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(rewritten.module()(x[:1]), model(x[:1]), rtol=1e-5, atol=1e-6)
    plain = capture(nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU()).eval(), example)
    assert for_xnnpack_int8(plain, example) is plain


def test_scaled_h_swish_through_a_scalar_add_and_an_unfolded_batchnorm_needs_no_multiply():
    """The byo model's tail: h-swish -> x + 1 -> BatchNorm (after an add, so not folded) -> mean -> linear.
    6h + 6 = 6(h + 1), and BN(6y) with mean 6mu, var 36var, eps 36eps is BN(y): no 1/6 multiply remains."""

    class Tail(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.fc = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Linear(8, 4)

        def forward(self, x):
            y = self.bn(nn.functional.hardswish(self.conv(x)) + 1.0)
            return self.fc(y.mean((2, 3)))

    torch.manual_seed(0)
    model = Tail().eval()
    model.bn.running_mean.uniform_(-1, 1)
    model.bn.running_var.uniform_(0.5, 2)
    gm, notes = _rewrite_hard(model)
    assert len(notes) == 1 and _scalar_muls(gm) == []
    x = torch.randn(4, 3, 16, 16) * 4
    assert check_equivalence(model, gm, {"x": x}, batch=1).max_rel_error < 1e-5


class _Pads(nn.Module):
    def forward(self, x):  # EfficientViT's pad of v with ones; a zero pad; a reflect pad
        a = nn.functional.pad(x, (0, 0, 0, 1), value=1.0)[..., 1:, :]
        b = nn.functional.pad(x, (1, 0, 0, 0))[..., 1:]
        c = nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")[..., 2:, 1:-1]
        return a * 2 + b - c


def test_nonzero_constant_pad_becomes_zero_pad_plus_constant_with_equal_outputs():
    from edgeport.graph.rewrites import constant_pad_as_zero_pad

    model, x = _Pads().eval(), torch.randn(1, 3, 4, 5)
    gm = capture(model, x).module()
    assert len(constant_pad_as_zero_pad(gm)) == 1  # only the pad with value 1; zero and reflect pads stay
    values = [n.args[2] if n.target is aten.constant_pad_nd.default else (n.args + (None, None))[2:4]
              for n in gm.graph.nodes if n.target in (aten.constant_pad_nd.default, aten.pad.default)]
    assert sorted(map(str, values)) == ["('reflect', None)", "(None, None)", "0.0"], values
    with torch.no_grad():
        assert torch.equal(gm(x), model(x))


def test_residual_add_of_an_h_swish_and_a_relu_scales_the_relu_source_and_its_readers():
    """h-swish feeding a conv and a residual add whose other side is a ReLU output that another conv also reads
    (tests/fixtures/third_party.HardSwishResidualNet), then units whose sums are both scaled: the ReLU's conv
    takes the 6, its other reader the 1/6, equal factors pass through the add; no multiply is left."""
    from tests.fixtures import third_party as tp

    class Units(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 8, 3, padding=1)
            self.convs = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(4))
            self.head = nn.Linear(8, 4)

        def forward(self, x):
            s = torch.relu(self.stem(x))
            for a, b in zip(self.convs[::2], self.convs[1::2]):
                h = nn.functional.hardswish(a(s))
                s = torch.relu(b(h)) + h + s
            return self.head(s.mean((2, 3)))

    from edgeport.graph.fuse import fuse

    torch.manual_seed(0)
    for model in (tp.build(tp.HardSwishResidualNet), Units().eval()):
        gm, _ = fuse(capture(model, torch.zeros(1, 3, 32, 32)).module())  # BN folded: the convs own a bias
        notes = relu6_hard_activations(gm)
        assert notes and _scalar_muls(gm) == [], (type(model).__name__, _scalar_muls(gm))
        x = torch.randn(4, 3, 32, 32) * 3
        assert check_equivalence(model, gm, {"x": x}, batch=1).max_rel_error < 1e-5


def test_a_relu_read_by_something_other_than_a_conv_keeps_the_multiply():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.conv = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.stem(x))
            return (nn.functional.hardswish(self.conv(s)) + s).mean((2, 3)) + s.amax((2, 3))

    torch.manual_seed(0)
    model = Shared().eval()
    gm, notes = _rewrite_hard(model)
    assert notes and _scalar_muls(gm), "the amax reader sees s unscaled only through a multiply"
    x = torch.randn(4, 3, 16, 16) * 3
    assert check_equivalence(model, gm, {"x": x}, batch=1).max_rel_error < 1e-5


from edgeport.graph.rewrites import channel_shuffle_as_gather  # noqa: E402


class _Shuffle(nn.Module):
    def __init__(self, groups: int):
        super().__init__()
        self.groups, self.conv = groups, nn.Conv2d(12, 12, 1)

    def forward(self, x):
        b, c, h, w = x.shape
        y = self.conv(x).view(b, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous().view(b, c, h, w)
        return y.chunk(2, 1)[1] * 2


def test_channel_shuffle_becomes_one_channel_gather_with_equal_outputs():
    for groups in (2, 3):
        torch.manual_seed(0)
        model, x = _Shuffle(groups).eval(), torch.randn(1, 12, 5, 4)
        gm = capture(model, x).module()
        assert len(channel_shuffle_as_gather(gm)) == 1
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        assert torch.ops.aten.index_select.default in targets and torch.ops.aten.transpose.int not in targets
        assert torch.equal(gm(x), model(x))
        assert channel_shuffle_as_gather(gm) == []  # nothing left to rewrite


class _Splits(nn.Module):
    """ShuffleNetV2's chunk (one piece passed through), an uneven split and a split_with_sizes."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(10, 5, 1)

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        c, d, e = torch.split(x, 4, dim=1)  # 4, 4, 2
        f, g = torch.split(x, [3, 7], dim=1)
        return torch.cat((a, self.conv(torch.cat((b, a), 1))), 1) + torch.cat((e, d, c), 1) + torch.cat((g, f), 1)


def test_splits_become_slices_with_equal_outputs():
    from edgeport.graph.rewrites import SPLIT_OPS, split_as_slices

    torch.manual_seed(0)
    model, x = _Splits().eval(), torch.randn(2, 10, 5, 4)
    gm = capture(model, x).module()
    assert len(split_as_slices(gm)) == 3
    targets = _targets(gm)
    assert not SPLIT_OPS & set(targets) and targets.count(aten.slice.Tensor) == 7
    assert torch.equal(gm(x), model(x))
    assert split_as_slices(gm) == []  # nothing left to rewrite


def test_contiguous_before_a_view_goes_and_the_view_becomes_a_reshape():
    from edgeport.graph.rewrites import reshape_without_contiguous

    torch.manual_seed(0)
    model, x = _Shuffle(2).eval(), torch.randn(1, 12, 5, 4)
    gm = capture(model, x).module()
    assert len(reshape_without_contiguous(gm)) == 1
    targets = _targets(gm)
    assert aten.contiguous.default not in targets and aten.reshape.default in targets
    assert torch.equal(gm(x), model(x))
    assert reshape_without_contiguous(gm) == []


def test_transpose_before_a_reshape_becomes_a_permute_copy():
    """The shuffle's transpose makes its own contiguous copy (ExecuTorch then lowers the reshape as an int8 view,
    not a clone + view in fp32); equal outputs; a transpose with another user is left alone."""
    from edgeport.graph.rewrites import reshape_without_contiguous, transpose_before_reshape_as_copy

    torch.manual_seed(0)
    model, x = _Shuffle(2).eval(), torch.randn(1, 12, 5, 4)
    gm = capture(model, x).module()
    reshape_without_contiguous(gm)
    assert len(transpose_before_reshape_as_copy(gm)) == 1
    targets = _targets(gm)
    assert aten.transpose.int not in targets and aten.permute_copy.default in targets
    assert torch.equal(gm(x), model(x))
    assert transpose_before_reshape_as_copy(gm) == []

    class Both(nn.Module):
        def forward(self, x):
            t = x.transpose(2, 3)
            return t.reshape(1, -1), t * 2

    gm = capture(Both().eval(), x).module()
    assert transpose_before_reshape_as_copy(gm) == [] and aten.transpose.int in _targets(gm)
