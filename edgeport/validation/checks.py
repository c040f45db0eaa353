"""Parity validation: run every artifact in its own runtime on held-out inputs, compare with the PyTorch
reference and with the stage it was made from, so a user sees where error enters.

Stages form a chain: torch -> torch-fused -> onnx-fp32 -> {onnx-int8, tflite-fp32 -> {tflite-fp16, tflite-int8}}.
Each artifact is judged against the torch reference with its target's thresholds; the comparison with its
parent stage is shown beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgeport.pipeline.artifact import Artifact
from edgeport.runtimes import open_runtime
from edgeport.validation.parity import Parity, compare
from edgeport.validation.thresholds import Thresholds  # noqa: F401  (re-exported)


@dataclass
class StageCheck:
    stage: str  # the artifact's stage name (its target)
    against: str  # "torch" (judged) or the parent stage (informational)
    parity: Parity
    thresholds: Thresholds | None = None  # None: informational
    accuracy: float | None = None  # top-1 on labelled held-out data, of this stage
    not_judged_because: str | None = None  # vs torch without thresholds: why (e.g. random weights)

    @property
    def judged(self) -> bool:
        return self.thresholds is not None

    @property
    def failures(self) -> list[str]:
        return self.thresholds.failures(self.parity) if self.thresholds else []

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        # a result nobody judged is never a pass: "passed" is null for it, and the record says why
        unjudged = self.against == "torch" and not self.judged
        d = {"stage": self.stage, "against": self.against, "judged": self.judged, "passed": None if unjudged else self.passed,
             "failures": self.failures, "accuracy": self.accuracy, **_finite(self.parity.to_dict())}
        if unjudged:
            d["not_judged_because"] = self.not_judged_because or "no thresholds"
        if self.thresholds:
            d["thresholds"] = self.thresholds.to_dict()
        return d


@dataclass
class ValidationReport:
    samples: int
    source: str
    reference_accuracy: float | None
    fused_accuracy: float | None
    checks: list[StageCheck] = field(default_factory=list)
    held_out: bool = True  # False: validated on the calibration samples themselves (a set too small to split)

    @property
    def failed(self) -> list[StageCheck]:
        return [c for c in self.checks if c.judged and not c.passed]

    @property
    def unjudged(self) -> list[StageCheck]:
        """Artifacts compared with PyTorch but not judged (reported only): never shown as passing."""
        return [c for c in self.checks if c.against == "torch" and not c.judged]

    def for_stage(self, stage: str) -> list[StageCheck]:
        return [c for c in self.checks if c.stage == stage]

    def to_dict(self) -> dict:
        return {
            "samples": self.samples,
            "source": self.source,
            "held_out": self.held_out,
            "accuracy": {"torch": self.reference_accuracy, "torch-fused": self.fused_accuracy},
            "checks": [c.to_dict() for c in self.checks],
            "passed": not self.failed,  # no judged check failed
            "not_judged": [c.stage for c in self.unjudged],
        }


def _finite(d: dict) -> dict:
    """JSON has no inf: an exact match's SQNR is written as null."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def top1_accuracy(outputs: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None or outputs.ndim == 4:  # one label per image says nothing about a dense (per-pixel) output
        return None
    return float(np.mean(np.argmax(outputs.reshape(len(outputs), -1), axis=1) == labels))


def parent_stage(stage: str, available: set[str]) -> str:
    """The stage ``stage`` is made from (each Target's ``parent``); a missing parent falls back to its own parent."""
    from edgeport.exporters import chain

    parents = chain()
    parent = parents.get(stage, "torch-fused")
    while parent not in available and parent != "torch":
        parent = parents.get(parent, "torch")
    return parent


def target_of_file(path):
    """The registered target a file belongs to, read from its graph: int8 compute ops, fp16 weights, or fp32."""
    from edgeport.exporters import TARGETS, load_all
    from edgeport.formats import format_of

    load_all()
    fmt = format_of(path)
    summary = fmt.summarize(path)
    if fmt.coverage(path).int8_total > 0:
        precision = "int8"
    elif summary.weight_dtypes.get("float16", 0) > summary.weight_dtypes.get("float32", 0):
        precision = "fp16"
    else:
        precision = "fp32"
    return TARGETS.get(f"{fmt.name}-{precision}")


def validate_artifacts(
    reference: np.ndarray,
    fused: np.ndarray,
    inputs: np.ndarray,
    artifacts: list[tuple[Artifact, Thresholds]],
    labels: np.ndarray | None = None,
    source: str = "",
    threads: int = 1,
    held_out: bool = True,
) -> ValidationReport:
    """``reference``/``fused``: torch outputs on ``inputs``; each artifact is run on the same inputs. ``held_out``
    False: ``inputs`` are the calibration samples (recorded, and said wherever the report is shown)."""
    outputs = {"torch": reference, "torch-fused": fused}
    report = ValidationReport(len(inputs), source, top1_accuracy(reference, labels), top1_accuracy(fused, labels),
                              held_out=held_out)
    for artifact, _ in artifacts:
        outputs[artifact.target] = open_runtime(artifact.path, threads=threads).run(inputs)
    for artifact, thresholds in artifacts:
        out = outputs[artifact.target]
        acc = top1_accuracy(out, labels)
        report.checks.append(StageCheck(artifact.target, "torch", compare(reference, out), thresholds, acc))
        parent = parent_stage(artifact.target, set(outputs))
        if parent != "torch":
            report.checks.append(StageCheck(artifact.target, parent, compare(outputs[parent], out), None, acc))
    return report
