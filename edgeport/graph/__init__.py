"""Graph stage: capture with torch.export, fold BatchNorm, exact runtime-friendly rewrites, channel order."""
