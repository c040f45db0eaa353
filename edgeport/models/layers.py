"""Small building blocks shared by the zoo's model families.

They mirror torchvision's helpers closely enough that models built from them have torchvision's parameter
names and shapes (so torchvision checkpoints load with ``strict=True``):

* :func:`make_divisible` is torchvision's ``_make_divisible`` (itself from the TF-slim MobileNet code).
* :class:`ConvBNAct` is ``Conv2dNormActivation`` for 2-D convs with BatchNorm: an ``nn.Sequential`` of
  ``Conv2d(bias=False)``, ``BatchNorm2d`` and an optional activation, so its entries are named ``0.weight``,
  ``1.weight``, ``1.bias``, ``1.running_mean``, ...
* :class:`SqueezeExcitation` is ``torchvision.ops.SqueezeExcitation`` (``fc1``/``fc2`` 1x1 convs), with the
  MobileNetV3 choice of activations (ReLU, then a hard-sigmoid scale) as the default.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["make_divisible", "ConvBNAct", "SqueezeExcitation", "init_weights"]


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count ``v`` to the nearest multiple of ``divisor``, never going down by more than 10 %.

    Same as torchvision's ``_make_divisible`` and TF-slim's ``_make_divisible``; ``min_value`` defaults to
    ``divisor``.
    """
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    # Make sure that rounding down does not go down by more than 10 %.
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNAct(nn.Sequential):
    """``Conv2d`` (no bias) -> ``BatchNorm2d`` -> activation (omitted when ``activation`` is None).

    ``padding`` defaults to "same" for odd kernels: ``(kernel_size - 1) // 2 * dilation``. The activation is
    constructed with ``inplace=True``, as torchvision does. ``bn_eps``/``bn_momentum`` are passed to the
    BatchNorm (MobileNetV3 uses ``eps=1e-3, momentum=0.01``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        activation: Callable[..., nn.Module] | None = nn.ReLU,
        *,
        dilation: int = 1,
        padding: int | None = None,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding,
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018) as in ``torchvision.ops.SqueezeExcitation``.

    ``x * scale_activation(fc2(activation(fc1(avgpool(x)))))`` with ``fc1``/``fc2`` 1x1 convs with bias.
    Defaults are MobileNetV3's: ReLU and a hard-sigmoid scale.
    """

    def __init__(
        self,
        input_channels: int,
        squeeze_channels: int,
        activation: Callable[..., nn.Module] = nn.ReLU,
        scale_activation: Callable[..., nn.Module] = nn.Hardsigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.avgpool(x)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._scale(x) * x


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation: kaiming-normal (fan_out) convs, BN 1/0, linear N(0, 0.01)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
