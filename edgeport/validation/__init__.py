"""Validation stage: thresholds, parity against PyTorch, parity records, accuracy evaluation."""
