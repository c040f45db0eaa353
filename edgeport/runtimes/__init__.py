"""Runtimes that execute artifacts. Each exposes ``run(batch: np.ndarray) -> np.ndarray`` on float inputs."""

from __future__ import annotations

from pathlib import Path


def open_runtime(path: Path, threads: int = 1):
    """A runner for ``path`` chosen by its format (edgeport.formats)."""
    from edgeport.formats import format_of

    return format_of(path).open_runner(Path(path), threads=threads)
