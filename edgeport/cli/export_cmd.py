"""``edgeport export``: model -> fused graph -> artifacts, int8 graphs verified, each validated in its runtime."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from edgeport.cli import model_options as opt
from edgeport.cli import render
from edgeport.cli.console import StageReporter
from edgeport.cli.console import make as make_console
from edgeport.errors import ParityFailed, UsageError, UserError
from edgeport.quantization.options import CALIBRATION_METHODS, DEFAULT_METHOD, help_list

console = make_console()


def export(
    model: str = opt.MODEL,
    target: str = opt.TARGET,
    out: Path = typer.Option(Path("artifacts"), "--out", "-o", help="Folder for the artifacts and parity.json."),
    weights: Path = opt.WEIGHTS,
    input_shape: str = opt.INPUT_SHAPE,
    num_classes: int = opt.NUM_CLASSES,
    width: float = opt.WIDTH,
    calib: str = opt.CALIB,
    val_data: str = opt.VAL_DATA,
    calib_samples: int = opt.CALIB_SAMPLES,
    val_samples: int = opt.VAL_SAMPLES,
    seed: int = opt.SEED,
    calib_method: str = typer.Option(DEFAULT_METHOD, "--calib-method", help=f"int8 activation ranges (every int8 target): "
        f"{help_list(CALIBRATION_METHODS)}; compare them with `edgeport quantize --compare-methods`.", rich_help_panel=opt.QUANT_PANEL),
    io_dtype: str = opt.IO_DTYPE,
    allow_float: list[str] = opt.ALLOW_FLOAT,
    no_float: bool = opt.NO_FLOAT,
    deploy: str = opt.DEPLOY,
    onnx_format: str = opt.ONNX_FORMAT,
    onnx_activations: str = opt.ONNX_ACTIVATIONS,
    onnx_reduce_range: str = opt.ONNX_REDUCE_RANGE,
    onnx_hard_activations: str = opt.ONNX_HARD_ACTIVATIONS_OPT,
    cle: bool = opt.CLE,
    bias_correction: bool = opt.BIAS_CORRECTION,
    adaround: bool = opt.ADAROUND,
    range_search: bool = opt.RANGE_SEARCH,
    mean: str = opt.MEAN,
    std: str = opt.STD,
    scale_127: bool = opt.SCALE_127,
    bgr: bool = opt.BGR,
    min_sqnr: float = opt.MIN_SQNR,
    min_top1: float = opt.MIN_TOP1,
    max_abs: float = opt.MAX_ABS,
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Make the batch dimension dynamic (ONNX targets)."),
    pte_layout: str = opt.PTE_LAYOUT,
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Run each artifact in its runtime and check parity."),
    require_judged: bool = typer.Option(False, "--require-judged", help="Exit 3 if an artifact is compared with PyTorch "
                                        "but not judged (int8 of random weights): for release pipelines.",
                                        rich_help_panel=opt.CHECK_PANEL),
    per_layer: bool = typer.Option(False, "--per-layer", help="Diagnose int8 targets layer by layer on the validation data: print the 10 "
        "worst layers, write per_layer.json."),
) -> None:
    """Export a model to edge formats; exit 3 if an artifact does not match PyTorch or an int8 graph is not int8."""
    from edgeport import api
    from edgeport.exporters import parse_targets
    from edgeport.quantization.options import HOST_DEPLOY, QuantOptions, check_choice, deploy_options, resolve_deploy
    from edgeport.runtimes import cpu_features

    targets = parse_targets(target)
    check_choice(calib_method, CALIBRATION_METHODS, "--calib-method", "calibration method")
    if (bias_correction or adaround or range_search) and not calib:
        flag = "--bias-correction" if bias_correction else "--adaround" if adaround else "--range-search"
        raise UserError(f"{flag} needs calibration data", "add --calib (an image folder, fashion-mnist, ...)")
    quant = QuantOptions(method=calib_method, io_dtype=io_dtype, float_fallback=tuple(allow_float), no_float=no_float, cle=cle,
                         bias_correction=bias_correction, adaround=adaround,
                         range_search=range_search)
    quant = deploy_options(quant, deploy, onnx_format=onnx_format, onnx_activations=onnx_activations,
                           onnx_reduce_range=onnx_reduce_range, onnx_hard_activations=onnx_hard_activations)
    if deploy == HOST_DEPLOY:
        console.print(f"--deploy x86: this CPU is {cpu_features.describe()}: {resolve_deploy(deploy)} "
                      f"({quant.onnx_format}, {quant.onnx_activations} activations, reduce-range {quant.onnx_reduce_range}, "
                      f"h-swish {quant.onnx_hard_activations})")
    if per_layer:
        _check_per_layer(targets, quant, calib)
    diag_cache: dict | None = {} if per_layer else None  # keeps the fp32 ONNX / onnx2tf models for the diagnosis
    started = time.perf_counter()
    if calib == "synthetic":
        opt.warn_synthetic(console)
    with StageReporter(console, f"export {model}") as status:
        try:
            result = api.export(
                model, [t.name for t in targets], out=out, weights=weights, input_shape=opt.shape(input_shape),
                num_classes=num_classes, width=width, calib=calib, val_data=val_data, calib_samples=calib_samples, val_samples=val_samples,
                seed=seed, preprocess=opt.preprocess_changes(mean, std, scale_127, bgr), quant=quant,
                dynamic_batch=dynamic_batch, pte_layout=pte_layout, validate=validate,
                thresholds=opt.threshold_overrides(min_sqnr, min_top1, max_abs), strict=False,
                require_judged=require_judged, delegation=True, on_stage=status.update, cache=diag_cache,
            )
            run = result.run
            diagnosis = None
            if per_layer:
                from edgeport.diagnose.per_layer import diagnose_run

                status.update(f"{result.model}: per-layer diagnosis")
                val = run.validation_data
                diagnosis = diagnose_run(run, val.inputs, val.source)
        finally:
            if diag_cache is not None:
                diag_cache.clear()
    render.fusion(console, run.prep)
    if result.split is not None:
        console.print(f"data: {result.split.describe()}")
    render.artifacts(console, run.artifacts, run.int8_problems)
    render.delegation(console, result.artifacts)
    render.validation(console, run.validation)
    for w in run.warnings:
        console.print(f"[bold yellow]WARNING:[/] {w}")
    if calib is None and validate:
        console.print("[yellow]no --calib: validated on synthetic inputs only[/]")
    console.print(f"wrote {result.parity_file}")
    if diagnosis is not None:
        from edgeport.cli import per_layer_view
        from edgeport.diagnose import per_layer as layer_diagnosis

        per_layer_view.show(console, diagnosis)
        console.print(f"wrote {layer_diagnosis.write(out, diagnosis)}")
    console.print(f"{result.model}: {len(result.artifacts)} artifact(s) in {time.perf_counter() - started:.1f} s")
    if run.int8_problems:
        raise ParityFailed(run.int8_problems[0], "allow named layers with --allow-float, or see `edgeport inspect`")
    if run.validation is not None and run.validation.failed:
        c = run.validation.failed[0]
        raise ParityFailed(f"{c.stage} vs {c.against}: {'; '.join(c.failures)}", f"see {result.parity_file}")
    if not result.passed:  # --require-judged
        raise ParityFailed(result.problems[0], "pass --weights so int8 can be judged, or set --min-sqnr/--min-top1")


def _check_per_layer(targets, quant, calib) -> None:
    if not any(t.precision == "int8" for t in targets):
        raise UsageError("--per-layer diagnoses int8 targets, and none is asked for", "add onnx-int8 or tflite-int8 to --target")
    if not calib:
        raise UserError("--per-layer needs calibration data (int8 targets do)", "add --calib (an image folder, fashion-mnist, ...)")
    from edgeport.diagnose.per_layer import NOT_DIAGNOSED

    for t in targets:
        if t.precision == "int8" and t.format in NOT_DIAGNOSED:
            raise UsageError(*NOT_DIAGNOSED[t.format])
    if any(t.name == "onnx-int8" for t in targets) and quant.onnx_format != "qdq":
        raise UsageError("--per-layer reads QDQ onnx-int8 models only",
                         "use --onnx-format qdq (QOperator has no float tensor between layers)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
