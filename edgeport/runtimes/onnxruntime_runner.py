"""Run .onnx artifacts in onnxruntime's CPU execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.errors import REEXPORT_HINT, RuntimeMissing, UserError


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
            return self.session.run(None, {self.input_name: batch})[0]
        step = self.fixed_batch
        outs = [self.session.run(None, {self.input_name: batch[i : i + step]})[0] for i in range(0, len(batch), step)]
        return np.concatenate(outs)
