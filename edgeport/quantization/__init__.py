"""Quantization stage: activation ranges, equalization and bias correction, accuracy control, method comparison."""
