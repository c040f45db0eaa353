"""Runtimes that execute artifacts. Each exposes ``run(batch: np.ndarray) -> np.ndarray`` on float inputs."""

from __future__ import annotations

from pathlib import Path

from edgeport.errors import UserError


def open_runtime(path: Path, threads: int = 1):
    """A runner for ``path`` chosen by its format."""
    suffix = Path(path).suffix.lower()
    if suffix == ".onnx":
        from edgeport.runtimes.onnxruntime_runner import OrtRunner

        return OrtRunner(path, threads=threads)
    if suffix == ".tflite":
        from edgeport.runtimes.litert_runner import LiteRtRunner

        return LiteRtRunner(path, threads=threads)
    raise UserError(f"no runtime for {path} (format {suffix or 'unknown'})", "edgeport runs .onnx and .tflite files")
