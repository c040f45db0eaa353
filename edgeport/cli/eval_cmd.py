"""``edgeport eval ARTIFACT... --data SOURCE``: top-1/top-5 accuracy on labelled data, each artifact in its runtime."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from edgeport.cli import model_options as opt
from edgeport.cli.console import make as make_console
from edgeport.errors import UsageError

console = make_console()

DATA = typer.Option(..., "--data", "-d", help="Labelled data: fashion-mnist[:train|:DIR], digits, an ImageFolder directory (one "
    "sub-folder per class) or an .npz with x and y.")


def eval_(
    artifacts: list[Path] = typer.Argument(None, help=".onnx/.tflite artifacts (run in onnxruntime / LiteRT) or .pt checkpoints (run in "
        "PyTorch)."),
    data: str = DATA,
    model: str = typer.Option(None, "--model", "-m", help="Also evaluate this PyTorch model (the float reference), and take the "
        "artifacts' preprocessing from it."),
    weights: Path = opt.WEIGHTS,
    input_shape: str = opt.INPUT_SHAPE,
    num_classes: int = opt.NUM_CLASSES,
    width: float = opt.WIDTH,
    mean: str = opt.MEAN,
    std: str = opt.STD,
    scale_127: bool = opt.SCALE_127,
    bgr: bool = opt.BGR,
    batch: int = typer.Option(256, "--batch", help="Samples preprocessed and fed per step (a fixed-batch file runs them one by one)."),
    threads: int = typer.Option(1, "--threads", help="Runtime threads."),
    limit: int = typer.Option(None, "--limit", help="Evaluate the first N samples only."),
    out: Path = typer.Option(None, "--json", help="Write the results to this JSON file."),
    min_top1: float = typer.Option(None, "--min-top1", help="Exit 3 if any artifact's top-1 is below this many percent."),
    max_drop: float = typer.Option(None, "--max-drop", help="Exit 3 if any artifact's top-1 is more than this many points below the "
        "--model (float) result."),
) -> None:
    """Top-1/top-5 accuracy of each artifact, in its own runtime, with the model's preprocessing."""
    from edgeport.validation import evaluation

    artifacts = list(artifacts or [])
    if not artifacts and model is None:
        raise UsageError("nothing to evaluate", "pass .onnx/.tflite/.pt files and/or --model NAME")
    if batch < 1 or threads < 1 or (limit is not None and limit < 1):
        raise UsageError("--batch, --threads and --limit must be positive")
    if max_drop is not None and model is None:
        raise UsageError("--max-drop compares with the float model", "pass --model NAME (and --weights) as well")
    if (min_top1 is not None and not 0 <= min_top1 <= 100) or (max_drop is not None and max_drop < 0):
        raise UsageError("--min-top1 is a percentage (0-100) and --max-drop a number of points >= 0")
    overrides = lambda pre: opt.preprocess_overrides(pre, mean, std, scale_127, bgr)  # noqa: E731

    dataset = evaluation.labelled_data(data, limit)
    console.print(f"data: {dataset.source}, {len(dataset)} labelled samples"
                  + (f", {len(dataset.classes)} classes" if dataset.classes else ""))
    loaded = opt.load_model(model, weights, input_shape, num_classes, width) if model is not None else None
    subjects = evaluation.open_subjects(artifacts, loaded, threads, overrides, model_ref=model)

    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), console=console, transient=console.is_terminal) as progress:
        for s in subjects:
            task = progress.add_task(Path(s.name).name, total=len(dataset))
            results.append(evaluation.evaluate(s, dataset, batch, lambda n, t=task: progress.advance(t, n)))
    _print(results)
    if out is not None:
        from edgeport.util.atomic_file import write_text

        write_text(out, json.dumps({"data": dataset.source, "samples": len(dataset),
                                    "classes": list(dataset.classes) if dataset.classes else None,
                                    "results": [r.to_dict() for r in results]}, indent=2))
        console.print(f"wrote {out}")
    failures = threshold_failures(results, min_top1, max_drop)
    if failures:
        from edgeport.errors import ParityFailed

        raise ParityFailed("; ".join(failures), "the artifact loses too much accuracy: see `edgeport quantize --help` "
                           "(--max-accuracy-drop, calibration methods, --cle/--bias-correction)")


def threshold_failures(results, min_top1: float | None, max_drop: float | None) -> list[str]:
    """One line per evaluated artifact below ``min_top1`` % or more than ``max_drop`` points below the float model."""
    float_top1 = next((r.top1 for r in results if r.format == "torch" and r.name.endswith("(torch)")), None)
    out = []
    for r in results:
        if r.format == "torch" and r.name.endswith("(torch)"):
            continue
        if min_top1 is not None and 100 * r.top1 < min_top1:
            out.append(f"{_label(r)}: top-1 {100 * r.top1:.2f} % < --min-top1 {min_top1:g} %")
        if max_drop is not None and float_top1 is not None and 100 * (float_top1 - r.top1) > max_drop:
            out.append(f"{_label(r)}: top-1 {100 * r.top1:.2f} % is {100 * (float_top1 - r.top1):.2f} points below float "
                       f"({100 * float_top1:.2f} %), more than --max-drop {max_drop:g}")
    return out


def _print(results) -> None:
    table = Table(box=None, pad_edge=False)
    for col in ("artifact", "runtime", "samples", "top-1", "top-5", "time s"):
        table.add_column(col, no_wrap=True, justify="left" if col in ("artifact", "runtime") else "right")
    for r in results:
        table.add_row(_label(r), r.runtime, str(r.samples), f"{100 * r.top1:.2f} %",
                      f"{100 * r.top5:.2f} %" if r.top5 is not None else "—", f"{r.seconds:.1f}")
    console.print(table)
    for r in results:
        console.print(f"[dim]{_label(r)}: preprocessing from {r.preprocess_from}[/]")
    if any(r.preprocess_from.startswith("ImageNet default") for r in results):
        console.print("[yellow]preprocessing guessed (ImageNet mean/std): pass --model NAME, or --mean/--std/--scale-127, "
                      "if the model was trained otherwise[/]")


def _label(r) -> str:
    return r.name if r.format == "torch" else Path(r.name).name


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_)
