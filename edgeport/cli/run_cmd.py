"""``edgeport run RECIPE... --out DIR``: every recipe through capture -> fuse -> quantize -> export ->
validate -> bench, then manifest.json, report.md, report.html and junit.xml; exit 3 if any threshold failed."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edgeport.cli.console import make as make_console

console = make_console()


def run(
    recipes: list[Path] = typer.Argument(..., help="Recipe TOML files (see `edgeport recipe new`)."),
    out: Path = typer.Option(Path("artifacts"), "--out", "-o", help="Folder for artifacts, sidecars and reports."),
    force: bool = typer.Option(False, "--force", help="Rebuild every stage instead of reusing the stage cache."),
    wait: bool = typer.Option(False, "--wait", help="If another run holds --out, wait for it instead of failing."),
    allow_path: list[Path] = typer.Option([], "--allow-path", help="A folder outside the recipes' own that their data "
                                           "and weights may come from (repeatable)."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Stage cache (default $EDGEPORT_CACHE or ~/.cache/edgeport)."),
    shard: str = typer.Option(None, "--shard", metavar="K/N", help="Run only the K-th of N disjoint, balanced parts of the "
                              "recipes (one CI job each; `edgeport report merge` joins their outputs; docs/ci.md)."),
) -> None:
    """Run recipes end to end; report everything, then exit 3 if any artifact failed its thresholds."""
    from edgeport.pipeline.recipe_run import parse_recipes, run_recipes
    from edgeport.pipeline.shards import parse_spec

    spec = parse_spec(shard) if shard is not None else None
    parsed = parse_recipes(recipes, tuple(allow_path))
    t0 = time.perf_counter()
    progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[recipe]}[/]"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                        disable=not console.is_terminal)
    tasks: dict[str, tuple] = {}

    def start(r):
        n_bench = len(r.targets) * len(r.bench.devices) * len(r.bench.threads)
        cold_stages = 6 + len(r.targets) + n_bench  # hash, load, capture+fuse, exports, summarize, write, validate, benches
        task = progress.add_task("start", total=cold_stages, recipe=r.name)
        seen: list[str] = []
        tasks[r.name] = (task, cold_stages)

        def show(stage: str) -> None:
            if stage not in seen:
                seen.append(stage)
            progress.update(task, description=stage, completed=len(seen) - 1)
            if not console.is_terminal:
                console.print(f"[{time.perf_counter() - t0:7.1f}s] {r.name}: {stage}")

        return show

    def done(res) -> None:
        task, total = tasks[res.recipe.name]
        progress.update(task, completed=total, description="done" if res.passed else "FAILED")
        _summary(res)

    with progress:
        result = run_recipes(parsed, out, cache_dir=cache_dir, force=force, wait=wait, start=start, done=done, shard=spec)
    if spec is not None:
        console.print(f"shard {spec}: {len(result.results)} of {len(parsed)} recipe(s)")
    for path in result.written:
        console.print(f"wrote {path}")
    console.print(f"{len(result.results)} recipe(s) in {result.manifest['wall_s']:.1f} s")
    failure = result.failure(out)
    if failure is not None:
        raise failure


def _summary(res) -> None:
    name = res.recipe.name
    if res.reused:
        console.print(f"{name}: reused from cache: {', '.join(res.reused)}")
    stages = "  ".join(f"{k} {v:.1f}s" for k, v in res.durations.items())
    console.print(f"{name}: {stages}")
    for n in res.nondeterministic:
        console.print(f"[yellow]{name}: {n['target']} not reproducible ({n['tool']} wrote different bytes)[/]")
    for w in res.warnings:
        console.print(f"[yellow]WARNING:[/] {escape(w)}")
    if res.error:
        console.print(f"[bold red]{name}: error:[/] {escape(res.error)}")
    for f in res.failures:
        console.print(f"[bold red]{name}: FAIL[/] {escape(f)}")
    if res.passed:
        console.print(f"[green]{name}: all checks passed[/]")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
