"""ShuffleNet (V1) (Zhang et al. 2017, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
Mobile Devices").

Table 1 of the paper: conv1 3x3/2 (24 channels) -> maxpool 3x3/2 -> stages 2/3/4 of 4/8/4 units (the first
unit of each stage has stride 2) -> global average pool -> FC. The stage widths depend on the number of groups
``g`` of the pointwise convolutions:

    g = 1: 144 / 288 / 576     g = 2: 200 / 400 / 800     g = 3: 240 / 480 / 960
    g = 4: 272 / 544 / 1088    g = 8: 384 / 768 / 1536

A unit (Fig. 2 b/c) is 1x1 group conv -> BN -> ReLU -> channel shuffle -> 3x3 depthwise conv -> BN (no ReLU)
-> 1x1 group conv -> BN, added to the input (stride 1) or concatenated with a 3x3/2 average pool of the input
(stride 2, so the branch produces ``out_channels - in_channels`` channels), then ReLU. The bottleneck width is
a quarter of the unit's output channels. The first pointwise conv of stage 2 is not grouped: its input has only
24 channels. There is no shuffle after that dense conv either: a permutation of a dense conv's output channels
is just another dense conv, so it would change nothing (the official code shuffles there; same function class).

``ShuffleNet s x`` scales every layer's filters by ``s`` (paper Sec. 4.1.1), conv1 included. Channel counts of
scaled models are rounded with :func:`make_divisible` to multiples of ``g`` (nearest multiple, never more than
10 % down), the bottleneck to a multiple of ``g`` as well, so every grouped conv splits evenly. At ``g = 3``
with ``s`` in {1, 0.5, 0.25} no rounding happens: 24/240/480/960, 12/120/240/480 and 6/60/120/240 with
bottlenecks 60/120/240, 30/60/120 and 15/30/60 (0.5x is also what the official Megvii code uses). At 1x no
rounding happens for any ``g``.

The paper's "FLOPs" are multiply-adds; compare them with :func:`edgeport.models.complexity.measure`'s ``macs``.
Measured at 224x224 the 1x models are within 1.1 % of Table 1 and 0.5x g=3 within 1.1 % of Table 2 (38M);
0.25x g=3 has 11.0M MACs where Table 2 prints 13M, so it is registered without that figure (see below).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgeport.models.channel_shuffle import ChannelShuffle
from edgeport.models.layers import ConvBNAct, init_weights, make_divisible
from edgeport.registry import PaperFigure, register_model

__all__ = ["ShuffleNetV1", "ShuffleV1Block", "shufflenet_v1", "STAGE_OUT_CHANNELS"]

STAGE_REPEATS = (4, 8, 4)
STEM_CHANNELS = 24
# Output channels of stages 2, 3, 4 at 1x, per number of groups (paper Table 1).
STAGE_OUT_CHANNELS = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


class ShuffleV1Block(nn.Module):
    """The ShuffleNet unit (paper Fig. 2 b for stride 1, Fig. 2 c for stride 2)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mid_channels: int,
        stride: int,
        groups: int,
        *,
        group_first_conv: bool = True,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV1Block: stride must be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(
                f"ShuffleV1Block: a stride-1 unit needs in == out channels, got {in_channels} -> {out_channels}"
            )
        self.stride = stride
        # Stride 2 concatenates the pooled input, so the branch only adds the missing channels.
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        first_groups = groups if group_first_conv else 1
        grouped = {"bottleneck": mid_channels, "branch output": branch_channels}
        if group_first_conv:
            grouped["input"] = in_channels
        for what, channels in grouped.items():
            if channels <= 0 or channels % groups:
                raise ValueError(
                    f"ShuffleV1Block: {what} channels ({channels}) must be a positive multiple of groups={groups}"
                )

        self.branch = nn.Sequential(
            ConvBNAct(in_channels, mid_channels, 1, groups=first_groups),  # 1x1 GConv -> BN -> ReLU
            ChannelShuffle(groups) if first_groups > 1 else nn.Identity(),
            ConvBNAct(mid_channels, mid_channels, 3, stride, groups=mid_channels, activation=None),  # 3x3 DWConv -> BN
            ConvBNAct(mid_channels, branch_channels, 1, groups=groups, activation=None),  # 1x1 GConv -> BN
        )
        # Stride 2: 3x3 average pool of the input, concatenated with the branch (paper Fig. 2 c).
        self.shortcut = nn.AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            out = x + self.branch(x)
        else:
            out = torch.cat((self.shortcut(x), self.branch(x)), dim=1)
        return self.relu(out)


class ShuffleNetV1(nn.Module):
    def __init__(self, groups: int = 3, scale: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        if groups not in STAGE_OUT_CHANNELS:
            raise ValueError(f"ShuffleNetV1: groups must be one of {sorted(STAGE_OUT_CHANNELS)}, got {groups}")
        if scale <= 0:
            raise ValueError(f"ShuffleNetV1: scale must be positive, got {scale}")
        self.groups = groups
        self.scale = scale

        stem_channels = make_divisible(STEM_CHANNELS * scale, groups)
        stage_channels = [make_divisible(c * scale, groups) for c in STAGE_OUT_CHANNELS[groups]]
        self.stage_channels = (stem_channels, *stage_channels)

        self.conv1 = ConvBNAct(3, stem_channels, 3, 2)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        in_channels = stem_channels
        for index, (repeats, out_channels) in enumerate(zip(STAGE_REPEATS, stage_channels)):
            mid_channels = make_divisible(out_channels / 4, groups)
            units = []
            for i in range(repeats):
                units.append(
                    ShuffleV1Block(
                        in_channels,
                        out_channels,
                        mid_channels,
                        stride=2 if i == 0 else 1,
                        groups=groups,
                        group_first_conv=not (index == 0 and i == 0),
                    )
                )
                in_channels = out_channels
            setattr(self, f"stage{index + 2}", nn.Sequential(*units))

        self.fc = nn.Linear(in_channels, num_classes)
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = x.mean([2, 3])  # global average pool
        return self.fc(x)


def shufflenet_v1(*, groups: int = 3, scale: float = 1.0, num_classes: int = 1000) -> ShuffleNetV1:
    """ShuffleNet ``scale`` x with ``groups`` groups in its pointwise convolutions."""
    return ShuffleNetV1(groups=groups, scale=scale, num_classes=num_classes)


# The paper's complexity figures, in MFLOPs (= multiply-adds): Table 1 for the 1x models, Table 2 for the
# scaled models. The paper prints no parameter counts for these variants.
for _name, _groups, _scale, _mflops, _source in (
    ("shufflenet_v1_g1", 1, 1.0, 143, "Zhang et al. 2017, Table 1"),
    ("shufflenet_v1_g2", 2, 1.0, 140, "Zhang et al. 2017, Table 1"),
    ("shufflenet_v1_g3", 3, 1.0, 137, "Zhang et al. 2017, Table 1"),
    ("shufflenet_v1_g4", 4, 1.0, 133, "Zhang et al. 2017, Table 1"),
    ("shufflenet_v1_g8", 8, 1.0, 137, "Zhang et al. 2017, Table 1"),
    ("shufflenet_v1_g3_x0_5", 3, 0.5, 38, "Zhang et al. 2017, Table 2"),
):
    register_model(
        _name,
        shufflenet_v1,
        family="shufflenet_v1",
        paper_macs=PaperFigure(_mflops, 1e6, decimals=0, source=_source),
        description=f"ShuffleNet {_scale:g}x, g={_groups}",
        groups=_groups,
        scale=_scale,
    )

# Table 2 gives "13 MFLOPs" for ShuffleNet 0.25x. Scaling every layer (conv1 included) by 0.25 as Sec. 4.1.1
# describes gives 6/60/120/240 channels and 11.0M multiply-adds (-15 %), and no rounding rule we could justify
# from the paper reaches 13M (keeping conv1 at 12 channels would, but the paper does not say so). We register
# the faithful model without claiming the paper's figure.
register_model(
    "shufflenet_v1_g3_x0_25",
    shufflenet_v1,
    family="shufflenet_v1",
    description="ShuffleNet 0.25x, g=3 (paper Table 2 says 13 MFLOPs; this model has 11.0M MACs)",
    groups=3,
    scale=0.25,
)
