"""Per-layer int8 error metrics shared by every format's diagnosis (edgeport.diagnose.onnx_layers,
tflite_layers): one LayerError row per quantized tensor, and the running sums they are computed from.
The columns are described in edgeport.diagnose.per_layer."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

FLAG_ERROR_TO_SCALE = 0.7  # tensorflow/lite/tools/optimize/debugging: QuantizationDebugger docs' layer filter


@dataclass(frozen=True)
class LayerError:
    tensor: str  # the quantized tensor's name in the artifact
    layer: str  # short readable name (module path like features.3.conv.1 when derivable, else the tensor/node)
    op: str  # op that produces it (Conv, DEPTHWISE_CONV_2D, ADD, ...)
    fallback: str  # what this backend's float fallback takes to keep that op float (see module doc)
    scale: float
    zero_point: int
    sqnr_db: float  # int8 (dequantized) vs float model, end to end to this tensor
    rel_rmse: float  # rmse / rms(float)
    error_to_scale: float  # layer-local rmse / scale; ~0.29 = pure rounding; > 0.7 flagged
    position: int  # topological index among the diagnosed tensors

    @property
    def flagged(self) -> bool:
        return self.error_to_scale > FLAG_ERROR_TO_SCALE

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("sqnr_db", "rel_rmse", "error_to_scale"):  # JSON has no inf/nan: an exact match is null
            if not math.isfinite(d[k]):
                d[k] = None
        d["flagged"] = self.flagged
        return d


def worst_first(rows: list[LayerError]) -> list[LayerError]:
    """Where error *enters* first: the largest layer-local error in quantization steps (``error_to_scale``, the
    QuantizationDebugger's flag), then the lowest end-to-end SQNR, then graph order; unknown local errors last.

    Not by end-to-end SQNR alone: that only falls along the network (every later tensor inherits an early
    layer's error), so it points at the last layers, not at the one to keep float."""
    return sorted(rows, key=lambda r: (math.isnan(r.error_to_scale), -r.error_to_scale if not math.isnan(r.error_to_scale) else 0.0,
                                       r.sqnr_db, r.position))


class ErrorSums:
    """Streaming sums for one tensor: sum f^2, sum (q - f)^2, sum (local error)^2 and the element count, so
    batches can be diagnosed one chunk at a time (all activations of 500 samples do not fit in memory)."""

    __slots__ = ("signal", "error", "local", "count")

    def __init__(self):
        self.signal = self.error = self.local = 0.0
        self.count = 0

    def add(self, reference: np.ndarray, quantized: np.ndarray, local: np.ndarray | None = None) -> None:
        f = np.asarray(reference, dtype=np.float64).ravel()
        e = np.asarray(quantized, dtype=np.float64).ravel() - f
        self.signal += float(f @ f)
        self.error += float(e @ e)
        if local is not None:
            loc = np.asarray(local, dtype=np.float64).ravel()
            self.local += float(loc @ loc)
        self.count += f.size

    def sqnr_db(self) -> float:
        if self.error == 0.0:
            return math.inf
        if self.signal == 0.0:
            return -math.inf
        return 10.0 * math.log10(self.signal / self.error)

    def rel_rmse(self) -> float:
        return math.sqrt(self.error / self.signal) if self.signal else (0.0 if self.error == 0.0 else math.inf)

    def error_to_scale(self, scale: float) -> float:
        return math.sqrt(self.local / max(self.count, 1)) / scale if scale > 0 else math.inf


def short_name(name: str, limit: int = 48) -> str:
    """A tensor name short enough for a table cell (TFLite names carry the whole op path)."""
    return name if len(name) <= limit else "…" + name[-(limit - 1):]
