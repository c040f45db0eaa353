"""Capture a model as a graph with torch.export, in eval mode, mapping failures to typed errors."""

from __future__ import annotations

import torch

from edgeport.errors import UnsupportedOp


def capture(model: torch.nn.Module, example: torch.Tensor, dynamic_batch: bool = False) -> torch.export.ExportedProgram:
    """torch.export the model on ``example``; with ``dynamic_batch`` the first dimension is symbolic.

    Call :func:`edgeport.models.source.check_runs` first: an input the model rejects is the user's mistake
    (exit 1), whereas a model that runs eagerly but cannot be captured is an unsupported construct.
    """
    if not isinstance(model, torch.fx.GraphModule):  # an exported graph is already inference-only
        model = model.eval()
    dynamic_shapes = None
    if dynamic_batch:
        # torch.export specializes a size-1 dimension to the constant 1, so trace with a batch of 2.
        example = example[:1].expand(2, *example.shape[1:]).contiguous()
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    try:
        with torch.no_grad():
            return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes)
    except Exception as exc:  # torch.export raises many internal types; all mean "cannot capture"
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else type(exc).__name__
        raise UnsupportedOp(
            f"torch.export could not capture the model: {first}",
            "edgeport needs a model torch.export can trace: no data-dependent Python control flow",
        ) from None
