"""edgeport: take efficient PyTorch vision models to edge devices."""

__version__ = "0.1.0"
