"""Run .tflite artifacts in ai-edge-litert's Interpreter (the TFLite runtime, XNNPACK delegate by default).

``tflite-runtime`` is dead (2.14 breaks with numpy 2 and in-process with TF 2.21); ai-edge-litert has the
same kernels and gives bit-identical results. Inputs arrive as float NCHW (PyTorch's layout): they are
transposed to NHWC when the file wants NHWC, quantized with the file's own input scale/zero point when its
input is int8/uint8, and the outputs are dequantized with the output's scale/zero point.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.errors import LITERT_HINT, REEXPORT_HINT, RuntimeMissing, UserError
from edgeport.util import native_logs


class LiteRtRunner:
    name = "ai-edge-litert"

    def __init__(self, path: Path, threads: int = 1):
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter
        except ImportError:
            raise RuntimeMissing("ai-edge-litert is not installed", LITERT_HINT) from None
        try:
            with native_logs.silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise UserError(f"LiteRT cannot load {path}: {str(exc).splitlines()[0][:200]}", REEXPORT_HINT) from None
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.version = getattr(ai_edge_litert, "__version__", "?")

    @property
    def input_shape(self) -> list[int]:
        """The file's declared input shape (NHWC for image models from onnx2tf)."""
        return [int(d) for d in self.input["shape"]]

    @property
    def batch(self) -> int:
        return int(self.input["shape"][0])

    def _to_input(self, x: np.ndarray) -> np.ndarray:
        want = tuple(int(d) for d in self.input["shape"])
        if x.ndim == 4 and tuple(x.shape) != want and (x.shape[0], x.shape[2], x.shape[3], x.shape[1]) == want:
            x = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC
        if tuple(x.shape) != want:
            raise UserError(f"input of shape {x.shape} does not fit the .tflite input {want}")
        dtype = self.input["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero, info.min, info.max)
        return np.ascontiguousarray(x.astype(dtype))

    def _from_output(self, y: np.ndarray) -> np.ndarray:
        if self.output["dtype"] in (np.int8, np.uint8):
            scale, zero = self.output["quantization"]
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def invoker(self, batch: np.ndarray | None = None):
        """A no-argument callable running one inference (input converted and set once, outside timing);
        without a batch, seeded noise in the file's own layout and dtype."""
        if batch is None:
            batch = np.random.default_rng(0).standard_normal(self.input["shape"]).astype(np.float32)
        self.interpreter.set_tensor(self.input["index"], self._to_input(np.asarray(batch, dtype=np.float32)[: self.batch]))
        return self.interpreter.invoke

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        outs = []
        for i in range(0, len(batch), self.batch):
            self.interpreter.set_tensor(self.input["index"], self._to_input(batch[i : i + self.batch]))
            self.interpreter.invoke()
            outs.append(self._from_output(self.interpreter.get_tensor(self.output["index"])))
        return np.concatenate(outs)
