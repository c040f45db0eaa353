"""``edgeport report merge DIR... --out DIR``: one manifest.json, report.md, report.html and junit.xml (and the
artifacts) from the outputs of the N ``edgeport run --shard K/N`` jobs of one run (edgeport.report.merge)."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeport.cli.console import make as make_console

console = make_console()
report_app = typer.Typer(help="Reports of `edgeport run`.", no_args_is_help=True)


@report_app.command("merge")
def merge(
    shards: list[Path] = typer.Argument(..., help="The --out folders of every `edgeport run --shard K/N` job of one run."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the merged artifacts and reports."),
    wait: bool = typer.Option(False, "--wait", help="If another run holds --out, wait for it instead of failing."),
) -> None:
    """Join the shards' outputs into what one unsharded run writes; exit 3 if a recipe failed its thresholds."""
    from edgeport import api
    from edgeport.pipeline.recipe_run import run_failure

    merged = api.merge_reports(shards, out=out, wait=wait, strict=False)
    for path in merged.written:
        console.print(f"wrote {path}")
    console.print(f"{len(merged.manifest['recipes'])} recipe(s) from {len(shards)} shard folder(s)")
    failure = run_failure(merged.manifest["recipes"], out)  # as `edgeport run` exits, after the reports are written
    if failure is not None:
        raise failure


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
