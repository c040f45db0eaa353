"""``edgeport run RECIPE... --out DIR``: every recipe through capture -> fuse -> quantize -> export ->
validate -> bench, then manifest.json, report.md, report.html and junit.xml; exit 3 if any threshold failed."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from edgeport.cli.console import make as make_console
from edgeport.errors import EdgeportError, ParityFailed, UserError

console = make_console()


def run(
    recipes: list[Path] = typer.Argument(..., help="Recipe TOML files (see `edgeport recipe new`)."),
    out: Path = typer.Option(Path("artifacts"), "--out", "-o", help="Folder for artifacts, sidecars and reports."),
    force: bool = typer.Option(False, "--force", help="Rebuild every stage instead of reusing the stage cache."),
    wait: bool = typer.Option(False, "--wait", help="If another run holds --out, wait for it instead of failing."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Stage cache (default $EDGEPORT_CACHE or ~/.cache/edgeport)."),
) -> None:
    """Run recipes end to end; report everything, then exit 3 if any artifact failed its thresholds."""
    from edgeport import report
    from edgeport.pipeline import recipe as recipe_mod
    from edgeport.pipeline.out_lock import locked
    from edgeport.pipeline.recipe_run import run_recipe
    from edgeport.pipeline.stage_cache import StageCache
    from edgeport.report import manifest

    parsed = [recipe_mod.parse(p) for p in recipes]  # every recipe is checked before anything runs
    names = [r.name for r in parsed]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(f"two recipes are both named {dup!r}: their artifacts would overwrite each other",
                        "give one of them a different file name or a top-level name = \"...\"")
    cache = StageCache(cache_dir, force=force)
    started, t0 = time.time(), time.perf_counter()
    results = []
    with locked(out, wait=wait):
        progress = Progress(SpinnerColumn(), TextColumn("[bold]{task.fields[recipe]}[/]"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                            disable=not console.is_terminal)
        with progress:
            for r in parsed:
                n_bench = len(r.targets) * len(r.bench.devices) * len(r.bench.threads)
                cold_stages = 6 + len(r.targets) + n_bench  # hash, load, capture+fuse, exports, summarize, write, validate, benches
                task = progress.add_task("start", total=cold_stages, recipe=r.name)
                seen: list[str] = []

                def show(stage: str, r=r, task=task, seen=seen) -> None:
                    if stage not in seen:
                        seen.append(stage)
                    progress.update(task, description=stage, completed=len(seen) - 1)
                    if not console.is_terminal:
                        console.print(f"[{time.perf_counter() - t0:7.1f}s] {r.name}: {stage}")

                res = run_recipe(r, out, cache, show)
                progress.update(task, completed=cold_stages, description="done" if res.passed else "FAILED")
                results.append(res)
                _summary(res)
        m = manifest.build(results, started, time.perf_counter() - t0, force, cache.root)
        for path in report.write_all(out, m):
            console.print(f"wrote {path}")
    console.print(f"{len(results)} recipe(s) in {m['wall_s']:.1f} s")
    errors = [r for r in results if r.error]
    if errors:
        e = EdgeportError(f"{errors[0].recipe.name}: {errors[0].error}", f"see {out / 'report.md'}")
        e.exit_code = errors[0].error_code or 1
        raise e
    failed = [r for r in results if not r.passed]
    if failed:
        raise ParityFailed(f"{len(failed)} recipe(s) failed thresholds: " + "; ".join(f"{r.recipe.name}: {r.failures[0]}" for r in failed),
                           f"see {out / 'report.md'}")


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
