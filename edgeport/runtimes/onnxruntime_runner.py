"""Run .onnx artifacts in onnxruntime's CPU execution provider."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

from edgeport.errors import REEXPORT_HINT, ArtifactFailed, RuntimeMissing, UserError

_FAILED_NODE = re.compile(r"while running (\w+) node\. Name:'([^']*)'")


class OrtRunner:
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise RuntimeMissing("onnxruntime is not installed", "pip install 'onnxruntime>=1.32,<1.33'") from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types
            raise UserError(
                f"onnxruntime cannot load {path}: {str(exc).splitlines()[0][:200]}",
                REEXPORT_HINT,
            ) from None
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = inp.shape
        self.version = ort.__version__

    @property
    def fixed_batch(self) -> int | None:
        first = self.input_shape[0] if self.input_shape else None
        return first if isinstance(first, int) else None

    def invoker(self, batch: np.ndarray | None = None):
        """A no-argument callable running one inference on ``batch`` (inputs prepared once, outside timing);
        without a batch, seeded noise shaped like the file's input (symbolic dims taken as 1)."""
        if batch is None:
            shape = [d if isinstance(d, int) else 1 for d in self.input_shape]
            batch = np.random.default_rng(0).standard_normal(shape)
        feed = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        run, names = self.session.run, None
        return lambda: run(names, feed)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Outputs of the first graph output for ``batch`` (N, ...), run one sample at a time if the batch is fixed."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        want = [d if isinstance(d, int) else None for d in self.input_shape]
        if len(want) != batch.ndim or any(w is not None and w != g for w, g in zip(want[1:], batch.shape[1:])):
            raise UserError(
                f"inputs of shape {tuple(batch.shape)} do not fit the .onnx input {tuple(d or '?' for d in want)}",
                "pass the --input-shape the artifact was exported with (or the model it came from)",
            )
        if self.fixed_batch is None or self.fixed_batch == batch.shape[0]:
            return self._run(batch)
        step = self.fixed_batch
        return np.concatenate([self._run(batch[i : i + step]) for i in range(0, len(batch), step)])

    def _run(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run(None, {self.input_name: batch})[0]
        except Exception as exc:  # ORT raises its own Fail/RuntimeException types from native kernels
            raise failure(exc) from None


def failure(exc: Exception) -> ArtifactFailed:
    """An ORT kernel error as a one-line typed error naming the node; the full text is kept in a log file."""
    text = str(exc)
    with tempfile.NamedTemporaryFile("w", prefix="edgeport-ort-", suffix=".log", delete=False) as log:
        log.write(text)
    found = _FAILED_NODE.search(text)
    where = f"node {found.group(2)!r} ({found.group(1)})" if found else "the model"
    detail = text.split("Status Message:")[-1].strip().splitlines()[0][:200] if text else type(exc).__name__
    return ArtifactFailed(f"onnxruntime cannot run {where}: {detail}",
                          f"keep that layer float (--allow-float) and re-export; log: {log.name}")
