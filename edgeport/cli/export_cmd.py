"""``edgeport export``: model -> fused graph -> artifacts, int8 graphs verified, each validated in its runtime."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeport.cli import model_options as opt
from edgeport.cli import render
from edgeport.cli.console import StageReporter
from edgeport.cli.console import make as make_console
from edgeport.errors import ParityFailed

console = make_console()


def export(
    model: str = opt.MODEL,
    target: str = typer.Option("onnx-fp32", "--target", "-t", help="Comma-separated: onnx-fp32, onnx-int8, tflite-fp32, tflite-fp16, tflite-int8."),
    out: Path = typer.Option(Path("artifacts"), "--out", "-o", help="Folder for the artifacts and parity.json."),
    weights: Path = opt.WEIGHTS,
    input_shape: str = opt.INPUT_SHAPE,
    num_classes: int = opt.NUM_CLASSES,
    width: float = opt.WIDTH,
    calib: str = opt.CALIB,
    calib_samples: int = opt.CALIB_SAMPLES,
    val_samples: int = opt.VAL_SAMPLES,
    seed: int = opt.SEED,
    calib_method: str = typer.Option("minmax", "--calib-method", help="int8 activation ranges (onnx-int8 and tflite-int8): minmax, percentile (99.99), entropy (KL) or mse; compare them with `edgeport quantize --compare-methods`."),
    io_dtype: str = opt.IO_DTYPE,
    allow_float: list[str] = typer.Option([], "--allow-float", help="Layer allowed to stay float in int8 targets (repeatable)."),
    deploy: str = typer.Option(None, "--deploy", help="onnx-int8 settings measured best on that architecture: x86 (default behaviour), arm64 (dot-product cores: Pi 5) or arm64-nodot (Pi 4); README: ONNX int8 on arm64."),
    onnx_format: str = typer.Option(None, "--onnx-format", help="onnx-int8 format: qdq (default) or qoperator (QLinearConv...); overrides --deploy."),
    onnx_activations: str = typer.Option(None, "--onnx-activations", help="onnx-int8 activations: s8 (default) or u8; weights stay int8; overrides --deploy."),
    onnx_reduce_range: str = typer.Option(None, "--onnx-reduce-range", help="onnx-int8 7-bit weights: auto (from this CPU, default), on or off; overrides --deploy."),
    cle: bool = opt.CLE,
    bias_correction: bool = opt.BIAS_CORRECTION,
    mean: str = opt.MEAN,
    std: str = opt.STD,
    scale_127: bool = opt.SCALE_127,
    bgr: bool = opt.BGR,
    min_sqnr: float = opt.MIN_SQNR,
    min_top1: float = opt.MIN_TOP1,
    max_abs: float = opt.MAX_ABS,
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Make the batch dimension dynamic (ONNX targets)."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Run each artifact in its runtime and check parity."),
    per_layer: bool = typer.Option(False, "--per-layer", help="Diagnose int8 targets layer by layer on the validation data: print the 10 worst layers, write per_layer.json."),
) -> None:
    """Export a model to edge formats; exit 3 if an artifact does not match PyTorch or an int8 graph is not int8."""
    from edgeport.errors import UsageError, UserError
    from edgeport.exporters import QuantOptions, parse_targets
    from edgeport.pipeline.export_flow import run_export
    from edgeport.validation import parity_file

    targets = parse_targets(target)
    from edgeport.quantization.ranges import METHODS

    if calib_method not in METHODS:
        raise UsageError(f"unknown --calib-method {calib_method!r}", f"choose {', '.join(METHODS)}")
    from edgeport.exporters.onnx_int8 import deploy_options

    if bias_correction and not calib:
        raise UserError("--bias-correction needs calibration data", "add --calib (an image folder, fashion-mnist, ...)")
    quant = QuantOptions(method=calib_method, io_dtype=io_dtype, float_fallback=tuple(allow_float), cle=cle,
                         bias_correction=bias_correction)
    quant = deploy_options(quant, deploy, onnx_format=onnx_format, onnx_activations=onnx_activations,
                           onnx_reduce_range=onnx_reduce_range)
    for flag, value, allowed in (("--onnx-format", quant.onnx_format, ("qdq", "qoperator")), ("--onnx-activations", quant.onnx_activations, ("s8", "u8")),
                                 ("--onnx-reduce-range", quant.onnx_reduce_range, ("auto", "on", "off"))):
        if value not in allowed:
            raise UsageError(f"unknown {flag} {value!r}", f"choose {', '.join(allowed)}")
    if per_layer:
        _check_per_layer(targets, quant, calib)
    diag_cache: dict | None = {} if per_layer else None  # keeps the fp32 ONNX / onnx2tf models for the diagnosis
    with StageReporter(console, f"loading {model}") as status:
        loaded = opt.load_model(model, weights, input_shape, num_classes, width)
        if calib:
            status.update(f"{loaded.name}: reading calibration data ({calib})")
        data = opt.load_data(loaded, calib, calib_samples, val_samples, seed, mean, std, scale_127, bgr, console)
        run = run_export(
            loaded, targets, out, data=data, quant=quant, dynamic_batch=dynamic_batch, validate=validate,
            thresholds=opt.threshold_overrides(min_sqnr, min_top1, max_abs),
            on_stage=lambda s: status.update(f"{loaded.name}: {s}"), cache=diag_cache,
        )
        diagnosis = None
        if per_layer:
            from edgeport.diagnose.per_layer import diagnose_run

            status.update(f"{loaded.name}: per-layer diagnosis")
            val = run.validation_data or data.validation
            try:
                diagnosis = diagnose_run(run, val.inputs, val.source)
            finally:
                diag_cache.clear()
    render.fusion(console, run.prep)
    render.artifacts(console, run.artifacts, run.int8_problems)
    render.validation(console, run.validation)
    for w in run.warnings:
        console.print(f"[bold yellow]WARNING:[/] {w}")
    if data is None and validate:
        console.print("[yellow]no --calib: validated on synthetic inputs only[/]")
    path = parity_file.write(out, parity_file.build(run, data, quant))
    console.print(f"wrote {path}")
    if diagnosis is not None:
        from edgeport.cli import per_layer_view
        from edgeport.diagnose import per_layer as layer_diagnosis

        per_layer_view.show(console, diagnosis)
        console.print(f"wrote {layer_diagnosis.write(out, diagnosis)}")
    if run.int8_problems:
        raise ParityFailed(run.int8_problems[0], "allow named layers with --allow-float, or see `edgeport inspect`")
    if run.validation is not None and run.validation.failed:
        c = run.validation.failed[0]
        raise ParityFailed(f"{c.stage} vs {c.against}: {'; '.join(c.failures)}", f"see {path}")


def _check_per_layer(targets, quant, calib) -> None:
    from edgeport.errors import UsageError, UserError

    if not any(t.precision == "int8" for t in targets):
        raise UsageError("--per-layer diagnoses int8 targets, and none is asked for", "add onnx-int8 or tflite-int8 to --target")
    if not calib:
        raise UserError("--per-layer needs calibration data (int8 targets do)", "add --calib (an image folder, fashion-mnist, ...)")
    if any(t.name == "onnx-int8" for t in targets) and quant.onnx_format != "qdq":
        raise UsageError("--per-layer reads QDQ onnx-int8 models only", "use --onnx-format qdq (QOperator has no float tensor between layers)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
