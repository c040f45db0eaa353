"""The export command's flow: capture -> fuse (equivalence-checked) -> export each target -> parity in the
artifact's own runtime against the PyTorch model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import fx

from edgeport import sample_inputs
from edgeport.artifact import Artifact, tool_versions
from edgeport.capture import capture
from edgeport.exporters import ExportRequest, Target
from edgeport.fuse import Equivalence, FusionReport, check_equivalence, fuse
from edgeport.model_source import LoadedModel
from edgeport.parity import Parity, compare
from edgeport.runtimes import open_runtime
from edgeport.runtimes.torch_runner import run_module

FUSION_TOLERANCE = 1e-5  # relative to the largest output magnitude, eval mode


@dataclass
class Prepared:
    loaded: LoadedModel
    fused: fx.GraphModule
    report: FusionReport
    equivalence: Equivalence
    program: torch.export.ExportedProgram  # fused graph, ready for the exporters
    example: torch.Tensor


@dataclass
class StageCheck:
    stage: str  # e.g. "torch -> onnx-fp32"
    parity: Parity
    max_abs: float
    max_rel: float

    @property
    def passed(self) -> bool:
        return self.parity.max_abs <= self.max_abs or self.parity.max_rel <= self.max_rel

    def to_dict(self) -> dict:
        return {"stage": self.stage, "passed": self.passed, "max_abs_tolerance": self.max_abs,
                "max_rel_tolerance": self.max_rel, **self.parity.to_dict()}


@dataclass
class ExportResult:
    artifact: Artifact
    checks: list[StageCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)


def prepare(loaded: LoadedModel, dynamic_batch: bool = False) -> Prepared:
    """Capture and fuse the model, and prove the fused graph computes what the model computes."""
    example = torch.zeros(loaded.input_shape)
    program = capture(loaded.module, example, dynamic_batch=dynamic_batch)
    fused, report = fuse(program.module())
    batch = None if dynamic_batch else loaded.input_shape[0]
    equivalence = check_equivalence(loaded.module, fused, sample_inputs.check_set(loaded.input_shape), batch)
    if not equivalence.ok(FUSION_TOLERANCE):
        raise AssertionError(  # a bug in edgeport, not a user mistake: let it surface with a trace
            f"fusion changed the outputs of {loaded.name}: {equivalence.describe(FUSION_TOLERANCE)}"
        )
    fused_program = capture(fused, example, dynamic_batch=dynamic_batch)
    return Prepared(loaded, fused, report, equivalence, fused_program, example)


def export_target(prep: Prepared, target: Target, out_dir: Path, dynamic_batch: bool = False) -> Artifact:
    req = ExportRequest(prep.loaded.name, prep.program, prep.example, Path(out_dir), dynamic_batch)
    path = target.export(req)
    return Artifact.from_file(path, target.name, target.format, parent="torch-fused", tools=tool_versions())


def validate(prep: Prepared, artifact: Artifact, target: Target, samples: int = 8) -> list[StageCheck]:
    """Run the artifact in its runtime; compare with the original model and with the fused model."""
    inputs = torch.cat(list(sample_inputs.check_set(prep.loaded.input_shape, samples).values()))
    with torch.no_grad():
        reference = prep.loaded.module(inputs).numpy()
        fused = run_module(prep.fused, inputs, prep.example.shape[0]).numpy()
    out = open_runtime(artifact.path).run(inputs.numpy())
    return [
        StageCheck(f"torch -> {target.name}", compare(reference, out), target.max_abs, target.max_rel),
        StageCheck(f"torch-fused -> {target.name}", compare(fused, out), target.max_abs, target.max_rel),
    ]


def run_export(
    loaded: LoadedModel,
    targets: list[Target],
    out_dir: Path,
    dynamic_batch: bool = False,
    validate_artifacts: bool = True,
    on_stage: Callable[[str], None] = lambda s: None,
) -> tuple[Prepared, list[ExportResult]]:
    on_stage("capture + fuse")
    prep = prepare(loaded, dynamic_batch)
    results = []
    for target in targets:
        on_stage(f"export {target.name}")
        artifact = export_target(prep, target, out_dir, dynamic_batch)
        result = ExportResult(artifact)
        if validate_artifacts:
            on_stage(f"validate {target.name}")
            result.checks = validate(prep, artifact, target)
        results.append(result)
    return prep, results
