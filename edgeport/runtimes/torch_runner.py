"""Run a PyTorch module (eager or a captured graph) over many samples."""

from __future__ import annotations

import torch


def run_module(module: torch.nn.Module, inputs: torch.Tensor, batch: int | None = None) -> torch.Tensor:
    """``module(inputs)`` in chunks of ``batch`` samples (a captured static graph only takes its traced batch)."""
    with torch.no_grad():
        if batch is None or batch >= len(inputs):
            return module(inputs)
        return torch.cat([module(inputs[i : i + batch]) for i in range(0, len(inputs), batch)])
