"""MobileNetV3-Large and -Small (Howard et al. 2019, "Searching for MobileNetV3", arXiv:1905.02244).

The bodies are the paper's Tables 1 (Large) and 2 (Small): MobileNetV2-style inverted residual blocks
("bneck") with 3x3 or 5x5 depthwise convs, optional squeeze-and-excitation (squeeze channels
``make_divisible(expanded // 4, 8)``, hard-sigmoid gate) and ReLU or h-swish. The stem is a 3x3 stride-2
conv with 16 channels and h-swish; the efficient last stage (Section 5.1) is a 1x1 conv to 6x the last
bottleneck width, global average pooling, a 1x1 "conv" (a Linear here) to 1280 / 1024 channels with h-swish,
dropout and the classifier. BatchNorm uses ``eps=1e-3, momentum=0.01`` as in the reference implementations.

Module and parameter names and shapes are exactly torchvision's ``mobilenet_v3_large``/``mobilenet_v3_small``
(``features.N.block.M...``, SE in ``block.2.fc1``/``fc2`` or ``block.1.fc1``/``fc2``, ``classifier.0``,
``classifier.3``), so torchvision checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from edgeport.models.layers import ConvBNAct, SqueezeExcitation, init_weights, make_divisible
from edgeport.registry import PaperFigure, register_model

__all__ = ["MobileNetV3", "InvertedResidual", "BlockConfig", "mobilenet_v3_large", "mobilenet_v3_small"]

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


class BlockConfig(NamedTuple):
    """One row of the paper's table: input, kernel, expansion ("exp size"), output, SE, h-swish, stride."""

    in_channels: int
    kernel: int
    expanded: int
    out_channels: int
    use_se: bool
    use_hs: bool
    stride: int

    def scaled(self, width_mult: float) -> BlockConfig:
        return self._replace(
            in_channels=make_divisible(self.in_channels * width_mult, 8),
            expanded=make_divisible(self.expanded * width_mult, 8),
            out_channels=make_divisible(self.out_channels * width_mult, 8),
        )


RE, HS = False, True
# Paper Table 1 (MobileNetV3-Large), after the 16-channel stem.
LARGE: list[BlockConfig] = [
    BlockConfig(16, 3, 16, 16, False, RE, 1),
    BlockConfig(16, 3, 64, 24, False, RE, 2),
    BlockConfig(24, 3, 72, 24, False, RE, 1),
    BlockConfig(24, 5, 72, 40, True, RE, 2),
    BlockConfig(40, 5, 120, 40, True, RE, 1),
    BlockConfig(40, 5, 120, 40, True, RE, 1),
    BlockConfig(40, 3, 240, 80, False, HS, 2),
    BlockConfig(80, 3, 200, 80, False, HS, 1),
    BlockConfig(80, 3, 184, 80, False, HS, 1),
    BlockConfig(80, 3, 184, 80, False, HS, 1),
    BlockConfig(80, 3, 480, 112, True, HS, 1),
    BlockConfig(112, 3, 672, 112, True, HS, 1),
    BlockConfig(112, 5, 672, 160, True, HS, 2),
    BlockConfig(160, 5, 960, 160, True, HS, 1),
    BlockConfig(160, 5, 960, 160, True, HS, 1),
]
# Paper Table 2 (MobileNetV3-Small).
SMALL: list[BlockConfig] = [
    BlockConfig(16, 3, 16, 16, True, RE, 2),
    BlockConfig(16, 3, 72, 24, False, RE, 2),
    BlockConfig(24, 3, 88, 24, False, RE, 1),
    BlockConfig(24, 5, 96, 40, True, HS, 2),
    BlockConfig(40, 5, 240, 40, True, HS, 1),
    BlockConfig(40, 5, 240, 40, True, HS, 1),
    BlockConfig(40, 5, 120, 48, True, HS, 1),
    BlockConfig(48, 5, 144, 48, True, HS, 1),
    BlockConfig(48, 5, 288, 96, True, HS, 2),
    BlockConfig(96, 5, 576, 96, True, HS, 1),
    BlockConfig(96, 5, 576, 96, True, HS, 1),
]


class InvertedResidual(nn.Module):
    """Expand 1x1 (skipped when expanded == in) -> depthwise kxk -> optional SE -> linear 1x1, in ``self.block``."""

    def __init__(self, cfg: BlockConfig) -> None:
        super().__init__()
        if cfg.stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2, got {cfg.stride}")
        self.use_res_connect = cfg.stride == 1 and cfg.in_channels == cfg.out_channels
        act = nn.Hardswish if cfg.use_hs else nn.ReLU
        bn = {"bn_eps": _BN_EPS, "bn_momentum": _BN_MOMENTUM}

        layers: list[nn.Module] = []
        if cfg.expanded != cfg.in_channels:
            layers.append(ConvBNAct(cfg.in_channels, cfg.expanded, kernel_size=1, activation=act, **bn))
        layers.append(
            ConvBNAct(
                cfg.expanded,
                cfg.expanded,
                kernel_size=cfg.kernel,
                stride=cfg.stride,
                groups=cfg.expanded,
                activation=act,
                **bn,
            )
        )
        if cfg.use_se:
            layers.append(SqueezeExcitation(cfg.expanded, make_divisible(cfg.expanded // 4, 8)))
        layers.append(ConvBNAct(cfg.expanded, cfg.out_channels, kernel_size=1, activation=None, **bn))
        self.block = nn.Sequential(*layers)
        self.out_channels = cfg.out_channels

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = out + x
        return out


class MobileNetV3(nn.Module):
    def __init__(
        self,
        setting: list[BlockConfig],
        last_channel: int,
        num_classes: int = 1000,
        dropout: float = 0.2,
    ) -> None:
        """
        Args:
            setting: the bottleneck blocks (already scaled by the width multiplier).
            last_channel: width of the penultimate (pooled) layer, 1280 for Large, 1024 for Small.
            num_classes: outputs of the classifier.
            dropout: dropout probability before the classifier.
        """
        super().__init__()
        if not setting:
            raise ValueError("setting must list at least one block")
        bn = {"bn_eps": _BN_EPS, "bn_momentum": _BN_MOMENTUM}

        layers: list[nn.Module] = [
            ConvBNAct(3, setting[0].in_channels, kernel_size=3, stride=2, activation=nn.Hardswish, **bn)
        ]
        layers += [InvertedResidual(cfg) for cfg in setting]
        lastconv_in = setting[-1].out_channels
        lastconv_out = 6 * lastconv_in
        layers.append(ConvBNAct(lastconv_in, lastconv_out, kernel_size=1, activation=nn.Hardswish, **bn))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x)
        x = self.avgpool(x).flatten(1)
        return self.classifier(x)


def mobilenet_v3_large(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV3:
    """MobileNetV3-Large (paper Table 1) with width multiplier ``width_mult``."""
    setting = [cfg.scaled(width_mult) for cfg in LARGE]
    return MobileNetV3(setting, make_divisible(1280 * width_mult, 8), num_classes=num_classes, dropout=dropout)


def mobilenet_v3_small(*, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2) -> MobileNetV3:
    """MobileNetV3-Small (paper Table 2) with width multiplier ``width_mult``."""
    setting = [cfg.scaled(width_mult) for cfg in SMALL]
    return MobileNetV3(setting, make_divisible(1024 * width_mult, 8), num_classes=num_classes, dropout=dropout)


_SRC = "Howard et al. 2019, Table 3"

register_model(
    "mobilenet_v3_large",
    mobilenet_v3_large,
    family="mobilenet_v3",
    paper_params=PaperFigure(5.4, 1e6, decimals=1, source=_SRC),
    paper_macs=PaperFigure(219, 1e6, decimals=0, source=_SRC),
    exact_params=5_483_032,  # torchvision 0.28.0 mobilenet_v3_large
    description="MobileNetV3-Large 1.0-224 (SE, h-swish, efficient last stage)",
    width_mult=1.0,
)
register_model(
    "mobilenet_v3_small",
    mobilenet_v3_small,
    family="mobilenet_v3",
    paper_params=PaperFigure(2.5, 1e6, decimals=1, source=_SRC),
    paper_macs=PaperFigure(56, 1e6, decimals=0, source=_SRC),
    exact_params=2_542_856,  # torchvision 0.28.0 mobilenet_v3_small
    description="MobileNetV3-Small 1.0-224 (SE, h-swish, efficient last stage)",
    width_mult=1.0,
)
