"""``edgeport export``: model -> fused graph -> artifacts, each validated in its own runtime."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from edgeport.atomic_file import write_text
from edgeport.errors import ParityFailed

console = Console(highlight=False)


def export(
    model: str = typer.Option(..., "--model", "-m", help="Zoo name (see `edgeport models`), pkg.module:factory or path/file.py:factory."),
    target: str = typer.Option("onnx-fp32", "--target", "-t", help="Comma-separated targets, e.g. onnx-fp32."),
    out: Path = typer.Option(Path("artifacts"), "--out", "-o", help="Folder for the artifacts and parity.json."),
    weights: Path = typer.Option(None, "--weights", "-w", help="Checkpoint (state dict, or dict with state_dict/model), loaded with weights_only=True."),
    input_shape: str = typer.Option(None, "--input-shape", help="N,C,H,W (default: the zoo model's own)."),
    num_classes: int = typer.Option(None, "--num-classes", help="Build a zoo model with this many classes."),
    width: float = typer.Option(None, "--width", help="Width multiplier for a zoo model (its builder's width_mult)."),
    dynamic_batch: bool = typer.Option(False, "--dynamic-batch", help="Make the batch dimension dynamic."),
    validate: bool = typer.Option(True, "--validate/--no-validate", help="Run each artifact in its runtime and check parity."),
) -> None:
    """Export a model to edge formats; fail (exit 3) if an artifact does not match PyTorch."""
    from edgeport import model_source
    from edgeport.exporters import parse_targets
    from edgeport.export_flow import run_export

    targets = parse_targets(target)
    shape = model_source.parse_shape(input_shape) if input_shape else None
    kwargs = {k: v for k, v in {"num_classes": num_classes, "width_mult": width}.items() if v is not None}
    with console.status(f"loading {model}") as status:
        loaded = model_source.load(model, weights=weights, input_shape=shape, **kwargs)
        prep, results = run_export(
            loaded, targets, out, dynamic_batch=dynamic_batch, validate_artifacts=validate,
            on_stage=lambda s: status.update(f"{loaded.name}: {s}"),
        )
    console.print(f"[bold]{loaded.name}[/] input {tuple(loaded.input_shape)} — {prep.report.summary()}")
    for bn, why in prep.report.unfused_bn:
        console.print(f"  [yellow]BatchNorm {bn} not folded:[/] {why}")
    console.print(f"  fusion equivalence: {prep.equivalence.describe()}")
    table = Table(show_header=True, box=None, pad_edge=False)
    for col in ("file", "size", "compared with", "max|Δ|", "cosine", "SQNR dB", "top-1", ""):
        table.add_column(col, no_wrap=True)
    for r in results:
        a = r.artifact
        size = f"{a.size / 1e6:.2f} MB"
        if not r.checks:
            table.add_row(a.path.name, size, "not validated (--no-validate)", "", "", "", "", "")
        for c in r.checks:
            p = c.parity
            table.add_row(
                a.path.name, size, c.stage.split(" -> ")[0], f"{p.max_abs:.2e}", f"{p.cosine:.6f}",
                f"{p.sqnr_db:.1f}", f"{p.top1_agreement:.2f}", "[green]pass[/]" if c.passed else "[red]FAIL[/]",
            )
    console.print(table)
    console.print(f"artifacts in {out}/" + (" (parity.json beside them)" if validate else ""))
    if validate:
        parity = {
            "model": loaded.name, "input_shape": list(loaded.input_shape),
            "fusion": {**prep.report.to_dict(), "max_rel_error": prep.equivalence.max_rel_error},
            "artifacts": [{**r.artifact.to_dict(), "checks": [c.to_dict() for c in r.checks]} for r in results],
        }
        write_text(Path(out) / "parity.json", json.dumps(parity, indent=2))
    failed = [c for r in results for c in r.checks if not c.passed]
    if failed:
        worst = failed[0]
        raise ParityFailed(
            f"{worst.stage}: max abs error {worst.parity.max_abs:.2e} > {worst.max_abs:.0e} "
            f"(relative {worst.parity.max_rel:.2e} > {worst.max_rel:.0e})",
            f"see {Path(out) / 'parity.json'}",
        )


def register(app: typer.Typer) -> None:
    app.command("export")(export)
