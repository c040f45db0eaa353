"""Exporters: one module per target family; each registers its targets in ``TARGETS``.

A target is a ``Target`` record added with ``register_target``: its name, file format (an entry of
edgeport.formats.FORMATS), precision, the function that writes the file from an ExportRequest, its default
parity thresholds, the stage it is made from and the tool that writes its bytes. Every list of target names
(CLI help, recipe checks, validation chain, report) is read from ``TARGETS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from edgeport.errors import UsageError
from edgeport.quantization.options import QuantOptions
from edgeport.registry import Registry
from edgeport.validation.thresholds import Thresholds

if TYPE_CHECKING:  # the registry stays importable without torch: `edgeport --help` lists targets fast
    import numpy as np
    import torch


# Memory layout of a .pte's image input (edgeport.exporters.executorch): PyTorch's NCHW, or NHWC (channels-last dim
# order, what cameras and image decoders give; XNNPACK then needs no input transpose). Shapes stay NCHW either way.
PTE_LAYOUTS = ("nchw", "nhwc")


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
    # What each file says about itself (edgeport.exporters.metadata.describe); {} writes no entry
    metadata: dict = field(default_factory=dict, compare=False)
    pte_layout: str = "nchw"  # one of PTE_LAYOUTS: the executorch targets' input memory layout


# req.cache key: target -> ops an exporter kept float on its own because the converter or runtime cannot run
# them in int8 ([{"layer", "op", "tensor", "why"}]); export_flow reports them and does not count them as stuck.
AUTO_FLOAT = "auto-float"
# req.cache key: target -> int8 inputs whose calibrated range an exporter widened so the runtime's fast kernel
# takes their op, the op itself staying int8 ([{"layer", "tensor", "range"}]; see exporters.tflite_add_ranges).
WIDENED_RANGES = "widened-ranges"
# req.cache key: AdaRound's int8 weights (fused-graph weight name -> q), which the int8 exporters find in their file
ROUNDED = "adaround-weights"
# req.cache key: target -> what its file kept of them (edgeport.quantization.adaround_check.compare)
ROUNDED_CHECK = "adaround-check"
# req.cache key: the output-aware range search's report (edgeport.quantization.range_search), whose chosen shrinks
# the tflite-int8 and onnx-int8 exporters apply to their own tensors' ranges
RANGE_SEARCH = "range-search"
# req.cache key: target -> {"narrowed": [fused-graph tensors], "unmatched": [...]} as that exporter applied them
RANGE_SEARCH_APPLIED = "range-search-applied"

# max|Δ| alone passes any net with tiny logits (random init: ~1e-8), so a scale-free SQNR floor joins it.
# Measured: fp32 artifacts 110-130 dB, fp16-weight artifacts 62-75 dB.
FP32 = Thresholds(max_abs=1e-4, max_rel=1e-4, min_sqnr_db=60.0)
FP16 = Thresholds(max_abs=1e-2, max_rel=1e-2, min_sqnr_db=30.0)
# int8 is judged by top-1 agreement (what users ship on; meaningful only on a trained model), SQNR a floor under it,
# set from real networks (docs/real-weights.md, "Thresholds"): ImageNet-trained networks whose int8 top-1 agreed with
# PyTorch on every photo measured 14.3-15.8 dB; broken int8 (7-bit weights saturating, DFQ's ReLU6 -> ReLU) 3-9 dB
INT8 = Thresholds(min_sqnr_db=12.0, min_top1=0.9)


@dataclass(frozen=True)
class Target:
    name: str  # "onnx-fp32"
    format: str  # "onnx" | "tflite" | "executorch"
    precision: str  # "fp32" | "fp16" | "int8"
    export: Callable[[ExportRequest], Path]
    thresholds: Thresholds  # default parity thresholds against the PyTorch reference
    parent: str = "torch-fused"  # the stage its file is made from: validation compares it with that stage too
    writer: str = ""  # the tool that writes its bytes (named in reports when a rebuild differs)
    requires: tuple[str, ...] = ()  # modules its export needs: checked before any work (an optional extra)
    install_hint: str = ""  # the pip line that provides them

    def check_installed(self) -> None:
        """A RuntimeMissing (exit 4) naming the pip line when a module this target needs is not installed."""
        import importlib.util

        from edgeport.errors import RuntimeMissing

        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeMissing(f"{self.name} needs {', '.join(missing)}, which is not installed", self.install_hint or None)

    def filename(self, base: str) -> str:
        from edgeport.formats import FORMATS

        return f"{base}.{self.precision}{FORMATS.get(self.format).suffix}"


TARGETS: Registry[Target] = Registry("target")


def register_target(target: Target) -> Target:
    """Add ``target`` under its name; its format must be a registered file format (edgeport.formats)."""
    from edgeport.formats import FORMATS

    FORMATS.get(target.format)  # a typed error naming the known formats
    TARGETS.add(target.name, target)
    return target


def load_all() -> None:
    """Import every exporter module so each registers its targets (in chain order: parents first)."""
    from edgeport.exporters import onnx_fp32  # noqa: F401

    try:
        from edgeport.exporters import onnx_int8  # noqa: F401
    except ImportError:
        pass
    from edgeport.exporters import executorch, tflite  # noqa: F401


def target_names() -> list[str]:
    load_all()
    return TARGETS.names()


def chain() -> dict[str, str]:
    """stage -> the stage it is made from, for every registered target (torch-fused comes from torch)."""
    load_all()
    return {"torch-fused": "torch", **{n: TARGETS.get(n).parent for n in TARGETS.names()}}


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
