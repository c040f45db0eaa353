"""``edgeport quantize``: int8 targets with one calibration method, or every method compared (--compare-methods).

The body only turns options into calls of edgeport.quantization.method_comparison and prints its result, so further options
(accuracy control) add a step here without touching the flow.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from edgeport.cli import model_options as opt
from edgeport.cli.console import StageReporter
from edgeport.cli.console import make as make_console
from edgeport.errors import ParityFailed, UsageError
from edgeport.quantization.options import CALIBRATION_METHODS, DEFAULT_METHOD, help_list

console = make_console()


def quantize(
    model: str = opt.MODEL,
    weights: Path = opt.WEIGHTS,
    input_shape: str = opt.INPUT_SHAPE,
    num_classes: int = opt.NUM_CLASSES,
    width: float = opt.WIDTH,
    calib: str = opt.CALIB,
    val_data: str = opt.VAL_DATA,
    calib_samples: int = opt.CALIB_SAMPLES,
    val_samples: int = opt.VAL_SAMPLES,
    seed: int = opt.SEED,
    target: str = typer.Option("onnx-int8,tflite-int8", "--target", "-t", help="Comma-separated int8 targets: onnx-int8, tflite-int8."),
    method: str | None = typer.Option(None, "--method", help=f"Calibration method: {help_list(CALIBRATION_METHODS)} "
                                      f"[default: {DEFAULT_METHOD}]."),
    compare_methods: bool = typer.Option(False, "--compare-methods", help="Quantize with every method (artifacts in OUT/<method>/) and "
        "compare them."),
    percentile: float = typer.Option(99.99, "--percentile", help="Mass kept by the percentile method (two-sided)."),
    data: str = typer.Option(None, "--data", "-d", help="Labelled data for top-1 accuracy of the float model and each artifact (as "
        "`edgeport eval --data`)."),
    limit: int = typer.Option(None, "--limit", help="Use only the first N samples of --data."),
    out: Path = typer.Option(Path("artifacts"), "--out", "-o", help="Folder for the artifacts, parity.json and methods.json."),
    io_dtype: str = opt.IO_DTYPE,
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
    max_accuracy_drop: float = typer.Option(None, "--max-accuracy-drop", help="Accuracy control: keep the fewest layers float until the "
        "int8 score is at most this many points below float (exit 3 if impossible)."),
    control_data: str = typer.Option(None, "--control-data", help="Labelled data accuracy control scores on (default: --data; with "
        "neither, top-1 agreement with the float model on the held-out split)."),
    control_samples: int = typer.Option(2000, "--control-samples", help="Samples of the control data used by accuracy control."),
) -> None:
    """Quantize to int8 with a calibration method (or all of them) and validate; exit 3 if no method's artifact of
    a target passes its thresholds (SQNR, top-1 agreement vs PyTorch, every compute op int8)."""
    from edgeport import api
    from edgeport.exporters import QuantOptions, parse_targets
    from edgeport.quantization import method_comparison as mc
    from edgeport.quantization.ranges import METHODS, check_method

    targets = parse_targets(target)
    mc.check_int8_targets(targets)
    methods = list(METHODS) if compare_methods else mc.check_methods([method or DEFAULT_METHOD])
    if compare_methods and method is not None:
        raise UsageError("--method and --compare-methods exclude each other", "--compare-methods runs every method")
    if limit is not None and limit < 1:
        raise UsageError("--limit must be positive")
    check_method("percentile", percentile)
    if max_accuracy_drop is not None and (compare_methods or max_accuracy_drop < 0 or control_samples < 1):
        raise UsageError("--max-accuracy-drop takes one --method, a budget >= 0 points and --control-samples >= 1",
                         "e.g. --method minmax --max-accuracy-drop 0.5")
    quant = QuantOptions(method=methods[0], percentile=percentile, io_dtype=io_dtype, cle=cle, bias_correction=bias_correction,
                         adaround=adaround, range_search=range_search)
    with StageReporter(console, f"loading {model}") as status:
        loaded = opt.load_model(model, weights, input_shape, num_classes, width)
        if calib == "synthetic":
            opt.warn_synthetic(console)
        split = api.load_data(loaded, calib, calib_samples=calib_samples, val_samples=val_samples, seed=seed,
                              preprocess=opt.preprocess_changes(mean, std, scale_127, bgr), val_data=val_data)
        if split is not None:
            opt.warn_data(console, split.warnings(calib_samples, val_samples, int8=True))
        labelled = _labelled(data, limit)
        pre = opt.preprocess_overrides(loaded.data_preprocess(), mean, std, scale_127, bgr)
        step = lambda s: status.update(f"{loaded.name}: {s}")  # noqa: E731
        controlled: list = []
        then = None
        if max_accuracy_drop is not None:
            from edgeport.cli import accuracy_control_view

            then = accuracy_control_view.step(targets, split, quant, max_accuracy_drop, _labelled(control_data, None) or labelled,
                                              control_samples, pre, out, labelled, controlled, step)
        comparison = mc.compare_methods(
            loaded, targets, out, split, methods, quant, opt.threshold_overrides(min_sqnr, min_top1, None),
            labelled=labelled, preprocess=pre, subdirs=compare_methods, on_stage=step, then=then,
        )
    print_comparison(comparison)
    path = mc.write(out, comparison)
    console.print(f"wrote {path}")
    if max_accuracy_drop is not None:
        from edgeport.cli import accuracy_control_view

        accuracy_control_view.finish(console, controlled, out)
    failed = comparison.failed()
    if failed:
        r = failed[0]
        raise ParityFailed(f"{r.target} ({r.method}): {'; '.join(r.failures)}", f"see {path}")


def _labelled(spec: str | None, limit: int | None):
    from edgeport.validation.evaluation import labelled_data

    return None if spec is None else labelled_data(spec, limit)


def print_comparison(c) -> None:
    acc = c.data is not None
    table = Table(box=None, pad_edge=False, title=f"{c.model}: int8 calibration methods", title_justify="left")
    cols = ["method", "target", "SQNR dB", "top-1 agree"] + (["accuracy", "drop"] if acc else []) + ["seconds", "parity"]
    for col in cols:
        table.add_column(col, no_wrap=True, justify="left" if col in ("method", "target", "parity") else "right")
    best = c.best()
    for r in sorted(c.results, key=lambda r: (c.targets.index(r.target), c.methods.index(r.method))):
        star = " *" if best.get(r.target) == r.method and len(c.methods) > 1 else ""
        row = [r.method + star, r.target, "exact" if r.sqnr_db is None else f"{r.sqnr_db:.1f}",
               "—" if r.top1_agreement is None else f"{100 * r.top1_agreement:.1f} %"]
        if acc:
            row += ["—" if r.accuracy is None else f"{100 * r.accuracy:.2f} %",
                    "—" if r.drop is None else f"{100 * r.drop:+.2f}"]
        row += [f"{r.seconds:.1f}", "[green]pass[/]" if r.passed else f"[red]FAIL[/] {r.failures[0]}"]
        table.add_row(*row)
    console.print(table)
    if c.equalization:
        e = c.equalization
        sqnr = "exact" if e.get("float_sqnr_db") is None else f"{e['float_sqnr_db']:.1f} dB"
        console.print(f"equalized first: {len(e.get('pairs') or [])} CLE pairs, {len(e.get('relu6_replaced') or [])} ReLU6 -> ReLU, "
                      f"{len(e.get('bias_corrected') or [])} layers bias-corrected; float model vs original: SQNR {sqnr}, "
                      f"top-1 agreement {100 * (e.get('top1_agreement') or 0):.2f} %")
    if acc:
        console.print(f"float (PyTorch) top-1 on {c.data['source']} ({c.data['samples']} samples): "
                      f"{100 * c.data['float_accuracy']:.2f} %; drop = float - int8, in points")
    if c.validation:
        console.print(f"SQNR and top-1 agreement vs PyTorch on {c.validation['samples']} held-out samples "
                      f"({c.validation['source']}); calibration: {c.calibration['samples']} samples ({c.calibration['source']})")
    console.print(f"shared steps (capture, fuse, fp32 ONNX, onnx2tf, TFLite calibration), once: {c.shared_seconds:.1f} s; "
                  "seconds = one method's ranges + quantization of that target")
    if len(c.methods) > 1:
        basis = "accuracy" if acc else "SQNR vs PyTorch"
        console.print("best by " + basis + ": " + ", ".join(f"{t}: [bold]{m}[/]" for t, m in best.items()))


def register(app: typer.Typer) -> None:
    app.command("quantize")(quantize)
