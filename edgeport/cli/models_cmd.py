"""``edgeport models``: the zoo with measured params/MACs next to the papers' figures."""

from __future__ import annotations

import typer
from rich.table import Table

from edgeport.cli.console import make as make_console
from edgeport.models.complexity import measure
from edgeport.registry import ModelSpec, PaperFigure


def _delta(measured: int, paper: PaperFigure | None) -> str:
    if paper is None:
        return "—"
    return f"{100 * (measured - paper.value * paper.unit) / (paper.value * paper.unit):+.1f}%"


def _verdict(spec: ModelSpec, params: int, macs: int) -> str:
    checks = []
    if spec.exact_params is not None:
        checks.append(params == spec.exact_params)
    elif spec.paper_params is not None:
        checks.append(spec.paper_params.matches(params))
    if spec.paper_macs is not None:
        checks.append(spec.paper_macs.matches(macs))
    if not checks:
        return "[dim]no paper figure[/]"
    return "[green]ok[/]" if all(checks) else "[red]off[/]"


def models(
    family: str = typer.Option(None, "--family", help="Only this family, e.g. mobilenet_v2."),
    names_only: bool = typer.Option(False, "--names", help="Print the names only, one per line (fast)."),
) -> None:
    """List the reference zoo: parameters and multiply-adds measured at the model's input size vs the papers."""
    from edgeport.models import MODELS

    specs = [MODELS.get(n) for n in MODELS.names()]
    specs = [s for s in specs if family is None or s.family == family]
    if names_only:
        for s in specs:
            typer.echo(s.name)
        return
    table = Table(title="edgeport zoo (MACs = multiply-adds per image, torch.utils.flop_counter)")
    for col in ("model", "input", "params", "paper", "Δ", "MACs", "paper", "Δ", "check"):
        table.add_column(col, justify="left" if col in ("model", "check") else "right")
    for s in specs:
        c = measure(s.build(), s.input_shape)
        paper_p = f"{s.exact_params:,}" if s.exact_params else (str(s.paper_params) if s.paper_params else "—")
        exact = PaperFigure(s.exact_params, 1) if s.exact_params else None
        dp = _delta(c.params, exact or s.paper_params)
        table.add_row(
            s.name, str(s.input_size), f"{c.params / 1e6:.3f}M", paper_p, dp,
            f"{c.macs / 1e6:.1f}M", str(s.paper_macs) if s.paper_macs else "—", _delta(c.macs, s.paper_macs),
            _verdict(s, c.params, c.macs),
        )
    make_console().print(table)


def register(app: typer.Typer) -> None:
    app.command("models")(models)
