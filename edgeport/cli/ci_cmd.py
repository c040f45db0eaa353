"""``edgeport ci matrix RECIPE... --shards N``: the job matrix of a sharded run, as JSON a CI workflow reads
(GitHub Actions: ``strategy.matrix: ${{ fromJSON(...) }}``; docs/ci.md)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

ci_app = typer.Typer(help="Helpers for running edgeport in CI (docs/ci.md).", no_args_is_help=True)


@ci_app.command("matrix")
def matrix(
    recipes: list[Path] = typer.Argument(..., help="Recipe TOML files, as the shard jobs will pass them to `edgeport run`."),
    shards: int = typer.Option(..., "--shards", "-n", help="Number of parallel jobs (at most one per recipe is offered)."),
    allow_path: list[Path] = typer.Option([], "--allow-path", help="As `edgeport run --allow-path` (repeatable)."),
) -> None:
    """Print {"include": [{"shard": "1/N", "id": "1-of-N", "recipes": [...], "cost": steps}, ...]} on one line."""
    from edgeport.pipeline import shards as sharding
    from edgeport.pipeline.recipe_run import parse_recipes

    sharding.check_count(shards)  # exit 2 before parsing recipes
    plan = sharding.matrix(parse_recipes(recipes, tuple(allow_path)), shards)
    typer.echo(json.dumps(plan, separators=(",", ":")))
    if len(plan["include"]) < shards:
        typer.echo(f"{len(plan['include'])} shard(s), not {shards}: there are only {len(plan['include'])} recipe(s) "
                   "and a recipe is never split (edgeport.pipeline.shards)", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ci_app, name="ci")
