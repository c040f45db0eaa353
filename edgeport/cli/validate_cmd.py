"""``edgeport validate ARTIFACT...``: parity of existing artifacts against the PyTorch model they came from."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeport.cli import model_options as opt
from edgeport.cli import render
from edgeport.cli.console import StageReporter
from edgeport.cli.console import make as make_console
from edgeport.errors import ParityFailed, UserError

console = make_console()


def target_of(path: Path) -> str:
    """The target a file belongs to, read from its graph: int8 compute ops, fp16 weights, or fp32."""
    from edgeport.formats.graph_summary import summarize
    from edgeport.formats.int8_coverage import coverage_of

    summary = summarize(path)
    fmt = summary.format
    if coverage_of(path).int8_total > 0:
        return f"{fmt}-int8"
    if summary.weight_dtypes.get("float16", 0) > summary.weight_dtypes.get("float32", 0):
        return f"{fmt}-fp16"
    return f"{fmt}-fp32"


def validate(
    artifacts: list[Path] = typer.Argument(..., help=".onnx/.tflite files exported from --model."),
    model: str = opt.MODEL,
    weights: Path = opt.WEIGHTS,
    input_shape: str = opt.INPUT_SHAPE,
    num_classes: int = opt.NUM_CLASSES,
    width: float = opt.WIDTH,
    calib: str = opt.CALIB,
    val_samples: int = opt.VAL_SAMPLES,
    seed: int = opt.SEED,
    mean: str = opt.MEAN,
    std: str = opt.STD,
    scale_127: bool = opt.SCALE_127,
    bgr: bool = opt.BGR,
    min_sqnr: float = opt.MIN_SQNR,
    min_top1: float = opt.MIN_TOP1,
    max_abs: float = opt.MAX_ABS,
    report: Path = typer.Option(None, "--report", help="Where to write parity.json (default: beside the first artifact)."),
) -> None:
    """Run each artifact in its own runtime on held-out data and compare with PyTorch; exit 3 on a failed threshold."""
    from edgeport.exporters import TARGETS, load_all
    from edgeport.pipeline.artifact import Artifact
    from edgeport.pipeline.export_flow import ExportRun, prepare
    from edgeport.validation import parity_file
    from edgeport.validation.checks import validate_artifacts

    load_all()
    for a in artifacts:
        if not a.is_file():
            raise UserError(f"{a} does not exist")
    with StageReporter(console, f"loading {model}") as status:
        loaded = opt.load_model(model, weights, input_shape, num_classes, width)
        status.update("preparing data")
        data = opt.load_data(loaded, calib or "synthetic", 1, val_samples, seed, mean, std, scale_127, bgr, console)
        status.update("capture + fuse")
        prep = prepare(loaded)
        overrides = opt.threshold_overrides(min_sqnr, min_top1, max_abs)
        run = ExportRun(prep)
        pairs = []
        for path in artifacts:
            target = TARGETS.get(target_of(path))
            art = Artifact.from_file(path, target.name, target.format)
            run.artifacts.append(art)
            run.targets.append(target)
            pairs.append((art, overrides.get(target.precision) or target.thresholds))
        status.update("running artifacts")
        val = data.validation
        reference, fused = prep.outputs(val.inputs)
        run.validation = validate_artifacts(reference, fused, val.inputs, pairs, val.labels, val.source)
    render.fusion(console, prep)
    render.artifacts(console, run.artifacts, [])
    render.validation(console, run.validation)
    _warn_left_out_of_fast_path(artifacts)
    path = parity_file.write(report or artifacts[0].parent, parity_file.build(run, data))
    console.print(f"wrote {path}")
    if run.validation.failed:
        c = run.validation.failed[0]
        raise ParityFailed(f"{c.stage} vs {c.against}: {'; '.join(c.failures)}", f"see {path}")


def _warn_left_out_of_fast_path(artifacts: list[Path]) -> None:
    """A warning per artifact with ops outside XNNPACK (TFLite) or left float in ORT (int8 ONNX)."""
    from edgeport.formats.delegation import delegation_of

    for path in artifacts:
        warning = delegation_of(path).warning()
        if warning:
            console.print(f"[bold yellow]WARNING: {warning}[/] (see `edgeport inspect {path}`)")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
