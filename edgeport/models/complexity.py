"""Parameter and multiply-add counts, measured with torch.utils.flop_counter (not counted by hand)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int  # multiply-adds per image; FlopCounterMode counts 2 FLOPs per multiply-add


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def measure(model: torch.nn.Module, input_shape: tuple[int, ...]) -> Complexity:
    """Params and MACs of one forward pass in eval mode on a zero input of ``input_shape``."""
    model = model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(torch.zeros(input_shape))
    batch = input_shape[0] or 1
    return Complexity(params=count_params(model), macs=counter.get_total_flops() // (2 * batch))
