"""ShuffleNetV2 (Ma et al. 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN Architecture Design").

Table 5 of the paper (which also prints each width's FLOPs and number of weights): conv1 3x3/2 (24) ->
maxpool 3x3/2 -> stages 2/3/4 of 4/8/4 units -> conv5 1x1 -> global pool -> FC. A stride-1 unit splits the
channels in half, keeps one half and runs the other through 1x1 conv -> 3x3 depthwise -> 1x1 conv,
concatenates and shuffles (2 groups); a stride-2 unit runs the whole input through two branches
(3x3 dw/2 -> 1x1, and 1x1 -> 3x3 dw/2 -> 1x1), doubling the channels.

Module and parameter names and shapes are exactly torchvision's ``shufflenet_v2_x*`` (``conv1.0.weight``,
``stage2.0.branch1.0.weight``, ..., ``conv5.0.weight``, ``fc.weight``), so torchvision checkpoints load with
``strict=True``. Unlike torchvision (which keeps PyTorch's default init) we initialise convs with
Kaiming-normal (fan-out), BatchNorm with ones/zeros and the classifier with N(0, 0.01).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from edgeport.models.channel_shuffle import channel_shuffle
from edgeport.models.layers import init_weights
from edgeport.registry import PaperFigure, register_model

__all__ = [
    "ShuffleNetV2",
    "ShuffleV2Block",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]

STAGE_REPEATS = (4, 8, 4)
# [conv1, stage2, stage3, stage4, conv5] output channels per width multiplier (paper Table 5 / torchvision).
STAGE_OUT_CHANNELS = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}


def _depthwise_conv(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


def _pointwise_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 1, 1, 0, bias=False)


class ShuffleV2Block(nn.Module):
    """The ShuffleNetV2 unit (paper Fig. 3 c/d); torchvision calls it ``InvertedResidual``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV2Block: stride must be 1 or 2, got {stride}")
        branch_channels = out_channels // 2
        if stride == 1 and in_channels != 2 * branch_channels:
            raise ValueError(
                f"ShuffleV2Block: a stride-1 unit needs in_channels == out_channels (even), "
                f"got {in_channels} -> {out_channels}"
            )
        self.stride = stride

        if stride == 2:
            # Left branch of the downsampling unit: 3x3 dw/2 -> BN -> 1x1 -> BN -> ReLU.
            self.branch1 = nn.Sequential(
                _depthwise_conv(in_channels, stride),
                nn.BatchNorm2d(in_channels),
                _pointwise_conv(in_channels, branch_channels),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(inplace=True),
            )
        else:
            # Kept (empty) so the module tree matches torchvision's.
            self.branch1 = nn.Sequential()

        self.branch2 = nn.Sequential(
            _pointwise_conv(in_channels if stride == 2 else branch_channels, branch_channels),
            nn.BatchNorm2d(branch_channels),
            nn.ReLU(inplace=True),
            _depthwise_conv(branch_channels, stride),
            nn.BatchNorm2d(branch_channels),
            _pointwise_conv(branch_channels, branch_channels),
            nn.BatchNorm2d(branch_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)  # channel split
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    def __init__(
        self,
        stages_repeats: tuple[int, ...] | list[int] = STAGE_REPEATS,
        stages_out_channels: tuple[int, ...] | list[int] = STAGE_OUT_CHANNELS[1.0],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError(f"stages_repeats must have 3 entries, got {list(stages_repeats)}")
        if len(stages_out_channels) != 5:
            raise ValueError(f"stages_out_channels must have 5 entries, got {list(stages_out_channels)}")
        self.stages_out_channels = tuple(stages_out_channels)

        in_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, in_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.ReLU(inplace=True),
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self.stage2: nn.Sequential
        self.stage3: nn.Sequential
        self.stage4: nn.Sequential
        stage_names = ("stage2", "stage3", "stage4")
        for name, repeats, out_channels in zip(stage_names, stages_repeats, stages_out_channels[1:4]):
            units = [ShuffleV2Block(in_channels, out_channels, 2)]
            units += [ShuffleV2Block(out_channels, out_channels, 1) for _ in range(repeats - 1)]
            setattr(self, name, nn.Sequential(*units))
            in_channels = out_channels

        last_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(in_channels, last_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(last_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(last_channels, num_classes)

        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # global average pool
        return self.fc(x)


def _shufflenet_v2(width: float, num_classes: int) -> ShuffleNetV2:
    return ShuffleNetV2(STAGE_REPEATS, STAGE_OUT_CHANNELS[width], num_classes=num_classes)


def shufflenet_v2_x0_5(*, num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 0.5x: channels 24/48/96/192/1024."""
    return _shufflenet_v2(0.5, num_classes)


def shufflenet_v2_x1_0(*, num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 1.0x: channels 24/116/232/464/1024."""
    return _shufflenet_v2(1.0, num_classes)


def shufflenet_v2_x1_5(*, num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 1.5x: channels 24/176/352/704/1024."""
    return _shufflenet_v2(1.5, num_classes)


def shufflenet_v2_x2_0(*, num_classes: int = 1000) -> ShuffleNetV2:
    """ShuffleNetV2 2.0x: channels 24/244/488/976/2048."""
    return _shufflenet_v2(2.0, num_classes)


_PAPER = "Ma et al. 2018, Table 5"
# name, builder, paper params (M), paper MFLOPs (= multiply-adds), torchvision's exact parameter count
for _name, _factory, _params, _macs, _exact in (
    ("shufflenet_v2_x0_5", shufflenet_v2_x0_5, 1.4, 41, 1_366_792),
    ("shufflenet_v2_x1_0", shufflenet_v2_x1_0, 2.3, 146, 2_278_604),
    ("shufflenet_v2_x1_5", shufflenet_v2_x1_5, 3.5, 299, 3_503_624),
    ("shufflenet_v2_x2_0", shufflenet_v2_x2_0, 7.4, 591, 7_393_996),
):
    register_model(
        _name,
        _factory,
        family="shufflenet_v2",
        paper_params=PaperFigure(_params, 1e6, decimals=1, source=_PAPER),
        paper_macs=PaperFigure(_macs, 1e6, decimals=0, source=_PAPER),
        exact_params=_exact,
        description=f"ShuffleNetV2 {_name[-3:].replace('_', '.')}x (torchvision-compatible state_dict)",
    )
