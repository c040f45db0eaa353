"""Capture what native libraries (TensorFlow, LiteRT, onnx2tf) print straight to file descriptors 1 and 2.

Python's redirect_stdout cannot catch C++ logging, so we swap the descriptors themselves. The log is kept
in a file; callers put its tail in an error message when a conversion fails.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def captured() -> Iterator[Path]:
    """Send fd 1 and 2 to a temporary log file for the duration; yield the log's path."""
    fd, name = tempfile.mkstemp(prefix="edgeport-native-", suffix=".log")
    log = Path(name)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield log
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Like :func:`captured` but the log is thrown away."""
    with captured() as log:
        try:
            yield
        finally:
            log.unlink(missing_ok=True)


def tail(log: Path, lines: int = 3) -> str:
    """The last error-looking lines of a captured log, joined on one line."""
    text = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
    useful = [line for line in text if "rror" in line] or text
    return " | ".join(line.strip()[:200] for line in useful[-lines:])
