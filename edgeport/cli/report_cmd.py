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
    from edgeport.errors import EdgeportError, ParityFailed
    from edgeport.report.merge import merge as merge_shards

    manifest, written = merge_shards(shards, out, wait=wait)
    for path in written:
        console.print(f"wrote {path}")
    recipes = manifest["recipes"]
    console.print(f"{len(recipes)} recipe(s) from {len(shards)} shard folder(s)")
    errors = [r for r in recipes if r["error"]]
    if errors:  # as `edgeport run` exits after its reports: the first recipe error, else the failed thresholds
        raise EdgeportError(f"{errors[0]['name']}: {errors[0]['error']}", f"see {out / 'report.md'}")
    failed = [r for r in recipes if not r["passed"]]
    if failed:
        raise ParityFailed(f"{len(failed)} recipe(s) failed thresholds: "
                           + "; ".join(f"{r['name']}: {r['failures'][0]}" for r in failed), f"see {out / 'report.md'}")


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
