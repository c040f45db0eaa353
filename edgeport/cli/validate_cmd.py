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


def validate(
    artifacts: list[Path] = typer.Argument(..., help=".onnx/.tflite files exported from --model."),
    model: str = opt.MODEL,
    weights: Path = opt.WEIGHTS,
    input_shape: str = opt.INPUT_SHAPE,
    num_classes: int = opt.NUM_CLASSES,
    width: float = opt.WIDTH,
    calib: str = opt.CALIB,
    val_data: str = opt.VAL_DATA,
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
    from edgeport import api

    for a in artifacts:
        if not a.is_file():
            raise UserError(f"{a} does not exist")
    if (val_data or calib) in (None, "synthetic"):  # validation then runs on generated images
        opt.warn_synthetic(console)
    with StageReporter(console, f"loading {model}") as status:
        result = api.validate(
            artifacts, model, weights=weights, input_shape=opt.shape(input_shape), num_classes=num_classes, width=width,
            calib=calib, val_data=val_data, val_samples=val_samples, seed=seed,
            preprocess=opt.preprocess_changes(mean, std, scale_127, bgr),
            thresholds=opt.threshold_overrides(min_sqnr, min_top1, max_abs), report=report, strict=False, on_stage=status.update,
        )
    run = result.run
    render.fusion(console, run.prep)
    val = run.validation_data
    console.print(f"data: validation {len(val)} samples ({val.source}{', labelled' if val.labels is not None else ''})")
    render.artifacts(console, run.artifacts, [])
    render.validation(console, run.validation)
    _warn_left_out_of_fast_path(artifacts)
    console.print(f"wrote {result.parity_file}")
    if run.validation.failed:
        c = run.validation.failed[0]
        raise ParityFailed(f"{c.stage} vs {c.against}: {'; '.join(c.failures)}", f"see {result.parity_file}")


def _warn_left_out_of_fast_path(artifacts: list[Path]) -> None:
    """A warning per artifact with ops outside XNNPACK (TFLite) or left float in ORT (int8 ONNX)."""
    from edgeport.formats.delegation import delegation_of

    for path in artifacts:
        warning = delegation_of(path).warning()
        if warning:
            console.print(f"[bold yellow]WARNING: {warning}[/] (see `edgeport inspect {path}`)")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
