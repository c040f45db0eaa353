"""ShuffleNet V1 / V2: paper complexity figures, torchvision state_dict compatibility, channel shuffle.

The fixtures ``fixtures/torchvision_shufflenet_v2_x*.json`` are ``{name: list(shape)}`` of
``torchvision.models.shufflenet_v2_x*().state_dict()``, in state_dict order, dumped from torchvision 0.28.0
(torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl) with torch 2.13.0+cpu. torchvision is not a
dependency and its wheel does not import on the CPU torch build ("operator torchvision::nms does not exist"),
so the wheel was unzipped to a temp dir and its real ``torchvision/models/shufflenetv2.py`` imported with the
packages around it stubbed out:

    import json, sys, types
    ROOT = "/tmp/tv_shuffle/torchvision"   # the unzipped wheel

    def stub(name, path=None, **attrs):
        m = types.ModuleType(name)
        if path:
            m.__path__ = [path]   # a package whose __init__.py is skipped
        m.__dict__.update(attrs)
        sys.modules[name] = m

    stub("torchvision", ROOT, _is_tracing=lambda: False)
    stub("torchvision.models", ROOT + "/models")
    stub("torchvision.transforms", ROOT + "/transforms")
    for n in ("extension", "_meta_registrations", "_autograd_registrations"):
        stub("torchvision." + n)
    stub("torchvision.transforms._presets", ImageClassification=type("ImageClassification", (), {}))
    stub("torchvision.utils", _log_api_usage_once=lambda obj: None)   # the real one needs PIL
    from torchvision.models import shufflenetv2 as tv

    for w in ("x0_5", "x1_0", "x1_5", "x2_0"):
        sd = getattr(tv, f"shufflenet_v2_{w}")().state_dict()
        shapes = {k: list(v.shape) for k, v in sd.items()}
        with open(f"tests/models/fixtures/torchvision_shufflenet_v2_{w}.json", "w") as f:
            f.write("{\\n" + ",\\n".join(f" {json.dumps(k)}: {json.dumps(v)}" for k, v in shapes.items()) + "\\n}\\n")

With the same import, torchvision's models (BatchNorm statistics randomised) were copied into ours with
``load_state_dict(strict=True)``: the outputs were bit-identical (max |diff| 0.0) on 2x3x224x224 and 2x3x64x64
inputs for all four widths. That check needs the wheel, so it is not part of this suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import edgeport.models.shufflenet_v1 as v1
import edgeport.models.shufflenet_v2 as v2
from edgeport.models.channel_shuffle import ChannelShuffle, channel_shuffle
from edgeport.models.complexity import count_params, measure
from edgeport.registry import MODELS

FIXTURES = Path(__file__).parent / "fixtures"

V2_BUILDERS = {
    "x0_5": v2.shufflenet_v2_x0_5,
    "x1_0": v2.shufflenet_v2_x1_0,
    "x1_5": v2.shufflenet_v2_x1_5,
    "x2_0": v2.shufflenet_v2_x2_0,
}

# What we build, measured once with edgeport.models.complexity.measure at 1x3x224x224 (params, MACs). Pinned so that
# a change to the architecture shows up here even when it stays inside the paper's rounding.
MEASURED = {
    "shufflenet_v1_g1": (1_531_936, 143_078_976),
    "shufflenet_v1_g2": (1_733_848, 140_836_512),
    "shufflenet_v1_g3": (1_865_728, 137_460_672),
    "shufflenet_v1_g4": (1_968_344, 134_339_776),
    "shufflenet_v1_g8": (2_434_768, 138_365_952),
    "shufflenet_v1_g3_x0_5": (718_324, 37_589_856),
    # Paper Table 2 says 13 MFLOPs; the faithfully scaled model has 11.0M (registered without the figure).
    "shufflenet_v1_g3_x0_25": (305_902, 11_009_808),
    "shufflenet_v2_x0_5": (1_366_792, 40_476_448),
    "shufflenet_v2_x1_0": (2_278_604, 144_907_992),
    "shufflenet_v2_x1_5": (3_503_624, 295_759_392),
    "shufflenet_v2_x2_0": (7_393_996, 583_253_464),
}

SHUFFLENET_NAMES = [n for n in MODELS.names() if MODELS.get(n).family in ("shufflenet_v1", "shufflenet_v2")]


@pytest.fixture(scope="module")
def complexity():
    """Measure every registered ShuffleNet once (1x3x224x224); ~1 s in total."""
    torch.manual_seed(0)
    return {name: measure(MODELS.get(name).build(), MODELS.get(name).input_shape) for name in SHUFFLENET_NAMES}


# ---------------------------------------------------------------------------------------------- registry


def test_registered_names():
    assert sorted(SHUFFLENET_NAMES) == sorted(MEASURED)
    assert MODELS.get("shufflenet_v1_g3").kwargs == {"groups": 3, "scale": 1.0}
    assert MODELS.get("shufflenet_v1_g3_x0_25").paper_macs is None


@pytest.mark.parametrize("name", list(MEASURED))
def test_measured_complexity_is_pinned(name, complexity):
    assert (complexity[name].params, complexity[name].macs) == MEASURED[name]


@pytest.mark.parametrize("name", list(MEASURED))
def test_matches_paper(name, complexity):
    spec = MODELS.get(name)
    measured = complexity[name]
    if spec.paper_macs is not None:
        assert spec.paper_macs.matches(measured.macs), (name, measured.macs, spec.paper_macs)
    if spec.paper_params is not None:
        assert spec.paper_params.matches(measured.params), (name, measured.params, spec.paper_params)
    if spec.exact_params is not None:
        assert measured.params == spec.exact_params


def test_every_paper_figure_is_checked():
    """Every 1x ShuffleNet V1 and every V2 carries the paper's MACs; V2 also params and torchvision's count."""
    for name in SHUFFLENET_NAMES:
        spec = MODELS.get(name)
        if name != "shufflenet_v1_g3_x0_25":
            assert spec.paper_macs is not None, name
        if spec.family == "shufflenet_v2":
            assert spec.paper_params is not None and spec.exact_params is not None, name


def test_paper_figure_rejects_the_025x_model(complexity):
    """Documents the one figure we could not match: Table 2's 13 MFLOPs for ShuffleNet 0.25x."""
    from edgeport.registry import PaperFigure

    assert not PaperFigure(13, 1e6, decimals=0).matches(complexity["shufflenet_v1_g3_x0_25"].macs)


# ---------------------------------------------------------------------------------- torchvision fixtures


def _fixture(width: str) -> dict[str, list[int]]:
    with open(FIXTURES / f"torchvision_shufflenet_v2_{width}.json") as f:
        return json.load(f)  # json keeps the file's (state_dict) order


@pytest.mark.parametrize("width", list(V2_BUILDERS))
def test_v2_state_dict_matches_torchvision(width):
    expected = _fixture(width)
    ours = V2_BUILDERS[width]().state_dict()
    assert [(k, list(v.shape)) for k, v in ours.items()] == list(expected.items())


@pytest.mark.parametrize("width", list(V2_BUILDERS))
def test_v2_loads_torchvision_shaped_checkpoint_strict(width):
    gen = torch.Generator().manual_seed(0)
    checkpoint = {}
    for key, shape in _fixture(width).items():
        if key.endswith("num_batches_tracked"):
            checkpoint[key] = torch.tensor(7)
        else:
            checkpoint[key] = torch.rand(shape, generator=gen) + 0.5
    model = V2_BUILDERS[width]()
    model.load_state_dict(checkpoint, strict=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, checkpoint[key]), key


@pytest.mark.parametrize("width", list(V2_BUILDERS))
def test_v2_exact_params_equal_torchvision_fixture(width):
    fixture_params = sum(
        torch.Size(shape).numel()
        for key, shape in _fixture(width).items()
        if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    assert MODELS.get(f"shufflenet_v2_{width}").exact_params == fixture_params
    assert count_params(V2_BUILDERS[width]()) == fixture_params


# --------------------------------------------------------------------------------------- channel shuffle


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 6, 12])
def test_channel_shuffle_is_the_expected_permutation(groups):
    channels = 12
    per_group = channels // groups
    x = torch.randn(2, channels, 3, 5)
    out = channel_shuffle(x, groups)
    # Output channel j comes from group j % g, position j // g inside that group.
    source = [(j % groups) * per_group + j // groups for j in range(channels)]
    assert sorted(source) == list(range(channels))  # a permutation
    assert torch.equal(out, x[:, source])
    assert torch.equal(ChannelShuffle(groups)(x), out)


def test_channel_shuffle_known_order_and_inverse():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]
    # Shuffling with g groups and then with C/g groups undoes it.
    y = torch.randn(2, 24, 4, 4)
    assert torch.equal(channel_shuffle(channel_shuffle(y, 3), 8), y)
    assert not torch.equal(channel_shuffle(y, 3), y)


def test_channel_shuffle_rejects_uneven_groups():
    with pytest.raises(ValueError, match="cannot be split"):
        channel_shuffle(torch.zeros(1, 10, 2, 2), 3)
    with pytest.raises(ValueError):
        ChannelShuffle(0)


# ------------------------------------------------------------------------------------------------ forward


@pytest.mark.parametrize("name", list(MEASURED))
def test_forward_ten_classes_on_64x64(name):
    torch.manual_seed(0)
    model = MODELS.get(name).build(num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["shufflenet_v1_g3", "shufflenet_v2_x0_5"])
def test_forward_imagenet_shape(name):
    model = MODELS.get(name).build().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_v2_x0_5_trains_on_small_inputs():
    """One SGD step of the Fashion-MNIST setup (10 classes, 64x64): every parameter gets a gradient."""
    torch.manual_seed(0)
    model = v2.shufflenet_v2_x0_5(num_classes=10).train()
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    before = model.fc.weight.detach().clone()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    assert not torch.equal(before, model.fc.weight)


# ------------------------------------------------------------------------------------------ architecture


@pytest.mark.parametrize(
    ("groups", "scale", "channels"),
    [
        (1, 1.0, (24, 144, 288, 576)),
        (3, 1.0, (24, 240, 480, 960)),
        (8, 1.0, (24, 384, 768, 1536)),
        (3, 0.5, (12, 120, 240, 480)),
        (3, 0.25, (6, 60, 120, 240)),
        (8, 0.5, (16, 192, 384, 768)),  # conv1: 12 rounded up to a multiple of 8
    ],
)
def test_v1_stage_channels(groups, scale, channels):
    assert v1.shufflenet_v1(groups=groups, scale=scale).stage_channels == channels


def test_v1_g3_unit_structure():
    model = v1.shufflenet_v1(groups=3)
    assert [len(model.stage2), len(model.stage3), len(model.stage4)] == [4, 8, 4]
    first = model.stage2[0]
    # Stage 2's first pointwise conv is dense (24 input channels), and has no shuffle after it.
    assert first.branch[0][0].groups == 1 and first.branch[0][0].in_channels == 24
    assert isinstance(first.branch[1], nn.Identity)
    assert first.branch[3][0].out_channels == 240 - 24 and first.branch[3][0].groups == 3
    assert isinstance(first.shortcut, nn.AvgPool2d)
    unit = model.stage3[1]
    pw1, shuffle, dw, pw2 = unit.branch[0][0], unit.branch[1], unit.branch[2][0], unit.branch[3][0]
    assert (pw1.in_channels, pw1.out_channels, pw1.groups) == (480, 120, 3)
    assert isinstance(shuffle, ChannelShuffle) and shuffle.groups == 3
    assert (dw.groups, dw.kernel_size, dw.stride) == (120, (3, 3), (1, 1))
    assert len(unit.branch[2]) == 2  # BN, no ReLU after the depthwise conv
    assert (pw2.in_channels, pw2.out_channels, pw2.groups) == (120, 480, 3)


def test_v1_scaled_bottleneck_rounded_to_groups():
    # g=4, 0.5x: 136 output channels -> bottleneck 34 is rounded to 36 so the 1x1 group convs split evenly.
    unit = v1.shufflenet_v1(groups=4, scale=0.5).stage2[1]
    assert unit.branch[0][0].out_channels == 36


def test_invalid_configurations_raise():
    with pytest.raises(ValueError):
        v1.shufflenet_v1(groups=5)
    with pytest.raises(ValueError):
        v1.ShuffleV1Block(24, 48, 12, stride=1, groups=3)
    with pytest.raises(ValueError):
        v2.ShuffleV2Block(24, 48, stride=1)
