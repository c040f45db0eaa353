"""Terminal output shared by export and validate: fusion line, artifacts with int8 coverage, parity table."""

from __future__ import annotations

import math

from rich.console import Console
from rich.panel import Panel
from rich.table import Table


def fusion(console: Console, prep) -> None:
    console.print(f"[bold]{prep.loaded.name}[/] input {tuple(prep.loaded.input_shape)} — {prep.report.summary()}")
    for bn, why in prep.report.unfused_bn:
        console.print(f"  [yellow]BatchNorm {bn} not folded:[/] {why}")
    console.print(f"  fusion equivalence: {prep.equivalence.describe()}")


def artifacts(console: Console, arts, problems: list[str]) -> None:
    fp32_size = {a.format: a.size for a in arts if a.target.endswith("fp32")}
    for a in arts:
        ratio = f" ({a.size / fp32_size[a.format]:.2f}× fp32)" if a.format in fp32_size and not a.target.endswith("fp32") else ""
        cov = f"  compute ops: {a.dtypes.get('int8', 0)} int8, {a.dtypes.get('float', 0)} float" if a.dtypes else ""
        console.print(f"  {a.target:12} {a.path}  {a.size / 1e6:.2f} MB{ratio}{cov}")
    for p in problems:
        console.print(f"  [red]int8 check failed:[/] {p}")


def delegation(console: Console, results) -> None:
    """What each file's runtime runs on its fast path (api.ArtifactResult.delegation), and a warning for the
    ops left out of it: a model whose int8 file falls out of XNNPACK is slower than its float file."""
    for r in results:
        d = r.delegation
        if not d:
            continue
        console.print(f"  {r.target:12} {d['summary']}")
        if d.get("warning"):
            console.print(f"  [bold yellow]WARNING:[/] {d['warning']}")


def _num(v: float, fmt: str) -> str:
    return "exact" if isinstance(v, float) and math.isinf(v) else format(v, fmt)


def validation(console: Console, report) -> None:
    if report is None:
        return
    acc = f"; top-1 accuracy torch {report.reference_accuracy:.4f}" if report.reference_accuracy is not None else ""
    kind = "held-out" if report.held_out else "in-sample (calibration)"
    console.print(f"parity on {report.samples} {kind} samples from {report.source}{acc}")
    table = Table(box=None, pad_edge=False, show_header=True)
    for col in ("stage", "vs", "max|Δ|", "mean|Δ|", "cosine", "SQNR dB", "top-1", "top-5", "accuracy", ""):
        table.add_column(col, no_wrap=True, justify="left" if col in ("stage", "vs", "") else "right")
    for c in report.checks:
        p = c.parity
        if c.judged:
            verdict = "[green]pass[/]" if c.passed else "[red]FAIL[/]"
        else:
            verdict = "[bold yellow]NOT JUDGED[/]" if c.against == "torch" else "[dim]info[/]"
        table.add_row(
            c.stage, c.against, f"{p.max_abs:.2e}", f"{p.mean_abs:.2e}", f"{p.cosine:.6f}", _num(p.sqnr_db, ".1f"),
            f"{p.top1_agreement:.3f}", f"{p.top5_overlap:.3f}", f"{c.accuracy:.4f}" if c.accuracy is not None else "—", verdict,
        )
    console.print(table)
    for c in report.failed:
        console.print(f"  [red]{c.stage} vs {c.against}:[/] " + "; ".join(c.failures))
    unjudged = report.unjudged
    if unjudged:
        why = unjudged[0].not_judged_because or "no thresholds"
        console.print(Panel(f"[bold]{', '.join(c.stage for c in unjudged)}: compared with PyTorch but NOT JUDGED.[/]\n{why}.\n"
                            "These files are not known to be correct; `edgeport bench` will not recommend them.",
                            title="not judged", border_style="yellow", expand=False))
