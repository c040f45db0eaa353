"""Exporters: one module per target family; each registers its targets in ``TARGETS``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgeport.errors import UsageError
from edgeport.registry import Registry
from edgeport.validation.checks import Thresholds


@dataclass(frozen=True)
class QuantOptions:
    """How int8 targets quantize. Weights are always per-channel int8."""

    method: str = "minmax"  # calibration: minmax | percentile | entropy (| mse where the backend has it)
    percentile: float = 99.99
    io_dtype: str = "int8"  # tflite-int8 input/output: int8 | uint8 | float32 (int8 inside)
    float_fallback: tuple[str, ...] = ()  # layer names the user allows to stay float
    # onnx-int8 only (edgeport.exporters.onnx_int8; ONNX_DEPLOY there names the measured best per architecture)
    onnx_format: str = "qdq"  # qdq (QuantizeLinear/DequantizeLinear around float ops) | qoperator (QLinearConv...)
    onnx_activations: str = "s8"  # s8 (int8) | u8 (uint8); weights are always int8
    onnx_reduce_range: str = "auto"  # auto (from this CPU, see cpu_features.choose_reduce_range) | on | off
    # edgeport.quantization.equalization on the fused graph before export (all int8 targets): DFQ cross-layer equalization,
    # empirical bias correction (needs calibration data)
    cle: bool = False
    bias_correction: bool = False


@dataclass(frozen=True)
class ExportRequest:
    name: str  # artifact base name, e.g. "mobilenet_v2"
    program: torch.export.ExportedProgram  # the fused graph, captured with the requested batch semantics
    example: torch.Tensor
    out_dir: Path
    dynamic_batch: bool = False
    # Preprocessed calibration inputs, float32 NCHW (N, C, H, W), for int8 targets; None for float targets.
    calibration: np.ndarray | None = None
    quant: QuantOptions = QuantOptions()
    # Intermediate results shared by the targets of one export run (the fp32 ONNX model, onnx2tf's output).
    cache: dict = field(default_factory=dict, compare=False, repr=False)


# max|Δ| alone passes any net with tiny logits (random init: ~1e-8), so a scale-free SQNR floor joins it.
# Measured: fp32 artifacts 110-130 dB, fp16-weight artifacts 62-75 dB.
FP32 = Thresholds(max_abs=1e-4, max_rel=1e-4, min_sqnr_db=60.0)
FP16 = Thresholds(max_abs=1e-2, max_rel=1e-2, min_sqnr_db=30.0)
INT8 = Thresholds(min_sqnr_db=15.0, min_top1=0.9)  # top-1 is meaningful only on a trained model


@dataclass(frozen=True)
class Target:
    name: str  # "onnx-fp32"
    format: str  # "onnx" | "tflite"
    precision: str  # "fp32" | "fp16" | "int8"
    export: Callable[[ExportRequest], Path]
    thresholds: Thresholds  # default parity thresholds against the PyTorch reference

    def filename(self, base: str) -> str:
        return f"{base}.{self.precision}.{self.format}"


TARGETS: Registry[Target] = Registry("target")


def load_all() -> None:
    """Import every exporter module so each registers its targets."""
    from edgeport.exporters import onnx_fp32, tflite  # noqa: F401

    try:
        from edgeport.exporters import onnx_int8  # noqa: F401
    except ImportError:
        pass


def parse_targets(text: str) -> list[Target]:
    """``"onnx-fp32,tflite-int8"`` -> targets, in order, without duplicates."""
    load_all()

    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise UsageError("no target given", f"choose from {', '.join(TARGETS.names())}")
    out: list[Target] = []
    for n in dict.fromkeys(names):
        try:
            out.append(TARGETS.get(n))
        except Exception as exc:
            raise UsageError(str(exc)) from None
    return out
