"""MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
arXiv:1801.04381).

Inverted residual blocks with linear bottlenecks (paper Table 1/2): 1x1 expansion (factor t, ReLU6), 3x3
depthwise (ReLU6), 1x1 linear projection, with a residual connection when stride is 1 and the channel count
is unchanged. Channels are scaled by the width multiplier and rounded with :func:`make_divisible` to multiples
of 8; the last conv has ``1280 * max(1.0, width_mult)`` channels, as in the paper and the reference code.

Module and parameter names and shapes are exactly torchvision's ``mobilenet_v2`` (``features.0.0.weight``,
``features.1.conv.0.0.weight``, ..., ``features.18.0.weight``, ``classifier.1.weight``), so torchvision
checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from torch import Tensor, nn

from edgeport.models.layers import ConvBNAct, init_weights, make_divisible
from edgeport.registry import PaperFigure, register_model

__all__ = ["MobileNetV2", "InvertedResidual", "mobilenet_v2"]

# Paper Table 2: expansion t, output channels c, repeats n, first stride s.
_SETTING: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


class InvertedResidual(nn.Module):
    """Expansion 1x1 (skipped when t == 1) -> depthwise 3x3 -> linear 1x1 projection, in ``self.conv``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {stride}")
        hidden = int(round(in_channels * expand_ratio))
        self.stride = stride
        self.use_res_connect = stride == 1 and in_channels == out_channels

        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNAct(in_channels, hidden, kernel_size=1, activation=nn.ReLU6))  # pw
        layers += [
            ConvBNAct(hidden, hidden, kernel_size=3, stride=stride, groups=hidden, activation=nn.ReLU6),  # dw
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),  # pw-linear
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        round_nearest: int = 8,
    ) -> None:
        """
        Args:
            num_classes: outputs of the classifier.
            width_mult: width multiplier applied to every layer (the last conv only grows, never shrinks).
            dropout: dropout probability before the classifier.
            round_nearest: channel counts are rounded to multiples of this (1 turns rounding off).
        """
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        input_channels = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)

        features: list[nn.Module] = [ConvBNAct(3, input_channels, kernel_size=3, stride=2, activation=nn.ReLU6)]
        for t, c, n, s in _SETTING:
            output_channels = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(input_channels, output_channels, s if i == 0 else 1, t))
                input_channels = output_channels
        features.append(ConvBNAct(input_channels, self.last_channel, kernel_size=1, activation=nn.ReLU6))
        self.features = nn.Sequential(*features)

        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.classifier(x)


def mobilenet_v2(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV2:
    """MobileNetV2 with width multiplier ``width_mult``; any input size works (global pooling)."""
    return MobileNetV2(num_classes=num_classes, width_mult=width_mult, dropout=dropout)


_SRC = "Sandler et al. 2018, Table 4"
# exact_params: parameter counts of torchvision's ``mobilenet_v2(width_mult=...)`` (torchvision 0.28.0), which
# builds the same network; we match them exactly. The paper's own parameter figures are rounded differently
# (3.4M for 1.0; 6.9M for 1.4, which no implementation of the published architecture reproduces: torchvision
# has 6.11M and the authors' TF-slim README lists 6.06M), so they are recorded but informative only.

register_model(
    "mobilenet_v2",
    mobilenet_v2,
    family="mobilenet_v2",
    paper_params=PaperFigure(3.4, 1e6, decimals=1, source=_SRC),
    paper_macs=PaperFigure(300, 1e6, decimals=0, source=_SRC),
    exact_params=3_504_872,
    description="MobileNetV2 1.0-224 (inverted residuals, linear bottlenecks, ReLU6)",
    width_mult=1.0,
)
# The paper plots the other widths (Fig. 5) without printing their figures.
for _name, _width, _exact in [
    ("mobilenet_v2_x0_35", 0.35, 1_677_128),
    ("mobilenet_v2_x0_5", 0.5, 1_968_680),
    ("mobilenet_v2_x0_75", 0.75, 2_636_424),
    ("mobilenet_v2_x1_3", 1.3, 5_386_792),
]:
    register_model(
        _name,
        mobilenet_v2,
        family="mobilenet_v2",
        exact_params=_exact,
        description=f"MobileNetV2 {_width}-224",
        width_mult=_width,
    )
register_model(
    "mobilenet_v2_x1_4",
    mobilenet_v2,
    family="mobilenet_v2",
    paper_params=PaperFigure(6.9, 1e6, decimals=1, source=_SRC),
    paper_macs=PaperFigure(585, 1e6, decimals=0, source=_SRC),
    exact_params=6_108_776,
    description="MobileNetV2 1.4-224",
    width_mult=1.4,
)
