"""MobileNetV1 (Howard et al. 2017, "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
Applications", arXiv:1704.04861).

The body is the paper's Table 1: a full 3x3 stride-2 convolution with 32 filters, then 13 depthwise-separable
blocks (3x3 depthwise conv + 1x1 pointwise conv, each followed by BatchNorm and ReLU), global average pooling
and a fully connected classifier. The width multiplier alpha scales every layer's channels; as in the
authors' TF-slim code, a scaled count is ``max(int(c * alpha), 8)`` (exact for alpha in {0.25, 0.5, 0.75, 1}).
The resolution multiplier is just the input size, since the network ends in global pooling.

No torchvision counterpart exists; parameters are named ``features.0`` (stem), ``features.1..13.dw``/``.pw``
(each a :class:`ConvBNAct`) and ``classifier.1`` (the Linear after dropout).
"""

from __future__ import annotations

from torch import Tensor, nn

from edgeport.models.layers import ConvBNAct, init_weights
from edgeport.registry import PaperFigure, register_model

__all__ = ["MobileNetV1", "DepthwiseSeparable", "mobilenet_v1"]

# Table 1 after the stem: (pointwise output channels, depthwise stride) of the 13 dw/pw pairs.
_BODY: list[tuple[int, int]] = [
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
]


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv-BN-ReLU (``dw``) followed by 1x1 pointwise conv-BN-ReLU (``pw``) (paper Fig. 3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.dw = ConvBNAct(in_channels, in_channels, kernel_size=3, stride=stride, groups=in_channels)
        self.pw = ConvBNAct(in_channels, out_channels, kernel_size=1)
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.pw(self.dw(x))


class MobileNetV1(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        dropout: float = 0.2,
        min_channels: int = 8,
    ) -> None:
        """
        Args:
            num_classes: outputs of the classifier.
            width_mult: the paper's width multiplier alpha.
            dropout: dropout probability before the classifier.
            min_channels: lower bound of a scaled channel count (TF-slim's ``min_depth``).
        """
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")

        def scaled(c: int) -> int:
            return max(int(c * width_mult), min_channels)

        input_channels = scaled(32)
        features: list[nn.Module] = [ConvBNAct(3, input_channels, kernel_size=3, stride=2)]
        for c, s in _BODY:
            output_channels = scaled(c)
            features.append(DepthwiseSeparable(input_channels, output_channels, s))
            input_channels = output_channels
        self.features = nn.Sequential(*features)
        self.last_channel = input_channels
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(self.last_channel, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x).flatten(1)
        return self.classifier(x)


def mobilenet_v1(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV1:
    """MobileNetV1 with width multiplier ``width_mult`` (alpha); any input size works (global pooling)."""
    return MobileNetV1(num_classes=num_classes, width_mult=width_mult, dropout=dropout)


# Paper Table 6 (width multiplier, 224x224) and Table 7 (resolution, alpha = 1.0): million mult-adds and
# million parameters as printed.
_SRC6 = "Howard et al. 2017, Table 6"
_SRC7 = "Howard et al. 2017, Table 7"
_VARIANTS = [
    # name, width, input size, params (M, decimals), MACs (M), source
    ("mobilenet_v1", 1.0, 224, 4.2, 569, _SRC6),
    ("mobilenet_v1_x0_75", 0.75, 224, 2.6, 325, _SRC6),
    ("mobilenet_v1_x0_5", 0.5, 224, 1.3, 149, _SRC6),
    ("mobilenet_v1_x0_25", 0.25, 224, 0.5, 41, _SRC6),
    ("mobilenet_v1_192", 1.0, 192, 4.2, 418, _SRC7),
    ("mobilenet_v1_160", 1.0, 160, 4.2, 290, _SRC7),
    ("mobilenet_v1_128", 1.0, 128, 4.2, 186, _SRC7),
]

for _name, _width, _size, _params, _macs, _src in _VARIANTS:
    register_model(
        _name,
        mobilenet_v1,
        family="mobilenet_v1",
        input_size=_size,
        paper_params=PaperFigure(_params, 1e6, decimals=1, source=_src),
        paper_macs=PaperFigure(_macs, 1e6, decimals=0, source=_src),
        description=f"MobileNetV1 {_width}-{_size} (depthwise-separable convs, ReLU)",
        width_mult=_width,
    )
