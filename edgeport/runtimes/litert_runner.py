"""Run .tflite artifacts in ai-edge-litert's Interpreter (the TFLite runtime, XNNPACK delegate by default).

``tflite-runtime`` is dead (2.14 breaks with numpy 2 and in-process with TF 2.21); ai-edge-litert has the
same kernels and gives bit-identical results. Inputs arrive as float NCHW (PyTorch's layout): they are
transposed to NHWC when the file wants NHWC, quantized with the file's own input scale/zero point when its
input is int8/uint8/int16, and the outputs are dequantized with the output's scale/zero point.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.errors import LITERT_HINT, REEXPORT_HINT, ArtifactFailed, RuntimeMissing, UserError
from edgeport.util import native_logs

_FAILED_NODE = re.compile(r"Node number (\d+) \((\w+)\) failed to (?:invoke|prepare)")


@dataclass(frozen=True)
class FailedNode:
    """The op LiteRT names when a kernel refuses to run: its index, type and output tensor."""

    index: int
    op: str
    tensor: str
    message: str  # the kernel's own words, first line


class LiteRtRunner:
    name = "ai-edge-litert"

    def __init__(self, path: Path, threads: int = 1, output_permutation: list[int] | None = None):
        """``output_permutation``: axes that bring the file's output to the PyTorch model's layout, as recorded in
        the file's metadata at export (onnx2tf writes a dense NCHW output as NHWC); None: as the file gives it."""
        self.output_permutation = tuple(output_permutation) if output_permutation else None
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
        if _quantized(self.input):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero, info.min, info.max)
        return np.ascontiguousarray(x.astype(dtype))

    def _from_output(self, y: np.ndarray) -> np.ndarray:
        if _quantized(self.output):
            scale, zero = self.output["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        y = y.astype(np.float32)
        if self.output_permutation and y.ndim == len(self.output_permutation):
            y = np.ascontiguousarray(y.transpose(self.output_permutation))
        return y

    def invoker(self, batch: np.ndarray | None = None):
        """A no-argument callable running one inference (input converted and set once, outside timing);
        without a batch, seeded noise in the file's own layout and dtype."""
        if batch is None:
            batch = np.random.default_rng(0).standard_normal(self.input["shape"]).astype(np.float32)
        self.interpreter.set_tensor(self.input["index"], self._to_input(np.asarray(batch, dtype=np.float32)[: self.batch]))
        return self._invoke

    def _invoke(self) -> None:
        try:
            self.interpreter.invoke()
        except RuntimeError as exc:
            raise self.failure(exc) from None

    def failed_node(self, exc: RuntimeError) -> FailedNode | None:
        """The op a LiteRT kernel error names ("Node number 65 (DIV) failed to invoke"), or None."""
        text = str(exc)
        found = _FAILED_NODE.search(text)
        if not found:
            return None
        index, op = int(found.group(1)), found.group(2)
        ops = self.interpreter._get_ops_details()  # noqa: SLF001 - LiteRT's only op table; the error gives its index
        tensor = ""
        if 0 <= index < len(ops) and len(ops[index]["outputs"]):
            tensor = self.interpreter.get_tensor_details()[int(ops[index]["outputs"][0])]["name"]
        return FailedNode(index, op, tensor, text[: found.start()].strip().splitlines()[0][:200] if found.start() else op)

    def failure(self, exc: RuntimeError) -> ArtifactFailed:
        """A kernel error as a one-line typed error naming the op; the full text is kept in a log file."""
        with tempfile.NamedTemporaryFile("w", prefix="edgeport-litert-", suffix=".log", delete=False) as log:
            log.write(str(exc))
        node = self.failed_node(exc)
        if node is None:
            err = ArtifactFailed(f"LiteRT failed to run the model: {str(exc).splitlines()[0][:200]}", f"log: {log.name}")
        else:
            err = ArtifactFailed(
                f"LiteRT cannot run op {node.index} ({node.op}, output tensor {node.tensor!r}): {node.message}",
                f"keep that layer float (--allow-float) or re-export with edgeport, which does so automatically; log: {log.name}",
            )
        err.node = node  # the exporter keeps that op float and re-quantizes (edgeport.exporters.tflite)
        return err

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, dtype=np.float32)
        outs = []
        for i in range(0, len(batch), self.batch):
            self.interpreter.set_tensor(self.input["index"], self._to_input(batch[i : i + self.batch]))
            self._invoke()
            outs.append(self._from_output(self.interpreter.get_tensor(self.output["index"])))
        return np.concatenate(outs)


def _quantized(detail: dict) -> bool:
    """An integer I/O tensor with a scale: int8/uint8, and int16 (16-bit activation files, e.g. ai-edge-quantizer's
    wi8_ai16), are read and written through their scale and zero point; a plain integer input (ids) is not."""
    return np.issubdtype(detail["dtype"], np.integer) and bool(detail["quantization"][0])
