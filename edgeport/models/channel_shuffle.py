"""Channel shuffle (ShuffleNet, Zhang et al. 2017, Sec. 3.1).

With ``g`` groups of ``n`` channels each, the channels are reshaped to ``(g, n)``, transposed to ``(n, g)``
and flattened, so output channel ``j`` is input channel ``(j % g) * n + j // g``: every group of the next
grouped convolution gets channels from every group of the previous one.

Written with view / transpose / reshape exactly as torchvision's ``shufflenetv2.channel_shuffle``, which is
the pattern exporters (ONNX Reshape-Transpose-Reshape, TFLite) are expected to see.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["channel_shuffle", "ChannelShuffle"]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Shuffle the channels of an ``(N, C, H, W)`` tensor across ``groups`` groups (``C % groups == 0``)."""
    batch, channels, height, width = x.size()
    if groups < 1 or channels % groups:
        raise ValueError(f"channel_shuffle: {channels} channels cannot be split into {groups} groups")
    channels_per_group = channels // groups
    x = x.view(batch, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(batch, channels, height, width)


class ChannelShuffle(nn.Module):
    """Module wrapper around :func:`channel_shuffle`, so a shuffle can sit inside an ``nn.Sequential``."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        if groups < 1:
            raise ValueError(f"ChannelShuffle: groups must be >= 1, got {groups}")
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
