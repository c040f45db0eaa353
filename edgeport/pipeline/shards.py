"""``edgeport run --shard K/N``: which recipes the K-th of N CI jobs runs, so N jobs build disjoint parts of one run.

**The work unit is the recipe**, with every one of its targets and bench devices. The issue speaks of
(recipe, target, device) items, and that is what a unit's cost counts, but a finer split costs more than it
saves: a recipe's targets share most of their work. Every target is made from ``torch-fused`` (capture + fuse +
equivalence check) and every ONNX/TFLite target from onnx-fp32; tflite-fp16 and tflite-int8 reuse the SavedModel
onnx2tf made for tflite-fp32 (edgeport.exporters.chain). Measured on recipes/mobilenet_v2.toml (docs/ci.md), the
stages every target needs (load, capture + fuse, onnx-fp32: 23.6 s) are 37 % of a cold export (63.7 s); a shard given
tflite-int8 alone would still build torch-fused, onnx-fp32 and tflite-fp32 (39.5 s) to make its 14.3 s target, and
a shard given one bench device would rebuild the whole export to have files to time. Validation compares each
file with its parent, and parity.json, the cache's export entry and the report are per recipe too. So a recipe
is never split, nothing is built twice, and the stage cache keys are exactly those of an unsharded run: a
shard restores and fills the same entries, and a cache restored from any earlier run (sharded or not) hits.
The cost of this choice: N jobs cannot go faster than the most expensive recipe, and with fewer recipes than
shards some shards are empty (``edgeport ci matrix`` offers no more shards than recipes).

**Balance**: each recipe's cost is the number of steps a cold run of it takes, counted from the code rather than
from a list of timings (``cost``); recipes go, most expensive first, to the least loaded shard (longest
processing time first: no shard ends more than one recipe's cost above the least loaded; ties by recipe name
and shard number, so every job computes the same split from the same recipes, whatever order the shell lists
them in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgeport.errors import BadOption

if TYPE_CHECKING:
    from edgeport.pipeline.recipe import Recipe

SPEC_FORMAT = "K/N with 1 <= K <= N, e.g. 2/4"
# steps of every cold recipe besides its export stages and bench runs: hash inputs, load model + data, summarize
# graphs, write artifacts, validate (the stages edgeport.pipeline.recipe_run times)
RECIPE_STEPS = 5


class BadShardSpec(BadOption):
    """``--shard`` (or ``shard=``) is not K/N with 1 <= K <= N: a usage error, exit 2."""


@dataclass(frozen=True)
class ShardSpec:
    index: int  # 1-based, as CI systems number their parallel jobs (GitLab's CI_NODE_INDEX)
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_spec(spec: str | tuple[int, int] | ShardSpec) -> ShardSpec:
    """``"2/4"``, ``(2, 4)`` or a ShardSpec -> ShardSpec; anything else is a BadShardSpec naming what it got."""
    if isinstance(spec, ShardSpec):
        index, count = spec.index, spec.count
    elif isinstance(spec, str):
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
        if m is None:
            raise BadShardSpec(f"--shard {spec!r} is not {SPEC_FORMAT}", "pass the job's number and the number of jobs")
        index, count = int(m.group(1)), int(m.group(2))
    elif isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in spec):
        index, count = spec
    else:
        raise BadShardSpec(f"shard {spec!r} is not {SPEC_FORMAT}", "pass shard=(K, N) or \"K/N\"")
    check_count(count)
    if not 1 <= index <= count:
        raise BadShardSpec(f"shard {index}/{count} does not exist: K must be between 1 and {count}", f"use {SPEC_FORMAT}")
    return ShardSpec(index, count)


def check_count(count: int) -> int:
    """``count`` as a number of shards (at least 1), else a BadShardSpec."""
    if count < 1:
        raise BadShardSpec(f"{count} shards is impossible: a run needs at least one job", f"use {SPEC_FORMAT}")
    return count


def export_stages(targets: tuple[str, ...]) -> list[str]:
    """Every stage a run of ``targets`` builds: the targets and the stages they are made from (edgeport.exporters.chain),
    torch-fused included, each once, parents first."""
    from edgeport.exporters import chain

    parents = chain()
    out: list[str] = []
    for t in targets:
        line = []
        while t in parents and t not in out and t not in line:
            line.append(t)
            t = parents[t]
        out += [s for s in reversed(line) if s not in out]
    return out


def cost(recipe: Recipe) -> int:
    """Steps of a cold run of ``recipe``: the fixed ones (RECIPE_STEPS), one per export stage including the
    ancestors its targets are made from (``export_stages``), one per bench run (artifact x device x threads)."""
    b = recipe.bench
    return RECIPE_STEPS + len(export_stages(recipe.targets)) + len(recipe.targets) * len(b.devices) * len(b.threads)


def split(recipes: list[Recipe], count: int) -> list[list[Recipe]]:
    """The N shards' recipes (longest processing time first), each in the order ``recipes`` gives them."""
    loads = [0] * count
    owner: dict[str, int] = {}
    for r in sorted(recipes, key=lambda r: (-cost(r), r.name)):
        k = min(range(count), key=lambda i: (loads[i], i))
        owner[r.name] = k
        loads[k] += cost(r)
    return [[r for r in recipes if owner[r.name] == k] for k in range(count)]


def select(recipes: list[Recipe], spec: ShardSpec) -> list[Recipe]:
    """The recipes shard ``spec`` runs."""
    return split(recipes, spec.count)[spec.index - 1]


def record(recipes: list[Recipe], spec: ShardSpec) -> dict:
    """What a shard's manifest says about the split (``shard``), so ``edgeport report merge`` can tell a complete,
    consistent set of shards from a missing shard or shards of different runs: every recipe of the run, in run
    order, with its file's sha256 (a recipe edited between jobs is a different run), and this shard's recipes."""
    from edgeport.pipeline.artifact import sha256_of

    return {"index": spec.index, "count": spec.count,
            "recipes": [{"name": r.name, "sha256": sha256_of(r.path)} for r in recipes],
            "assigned": [r.name for r in select(recipes, spec)]}


def matrix(recipes: list[Recipe], count: int) -> dict:
    """The job matrix of ``count`` shards (fewer when there are fewer recipes, as an empty job helps nobody), as
    GitHub Actions' ``strategy.matrix`` takes it: ``{"include": [{"shard": "1/N", "id": "1-of-N", "recipes": [...],
    "cost": steps}, ...]}``. ``id`` is ``shard`` spelled for artifact and job names, which cannot hold a slash."""
    check_count(count)
    n = max(1, min(count, len(recipes)))
    return {"include": [{"shard": f"{k}/{n}", "id": f"{k}-of-{n}", "recipes": [r.name for r in part],
                         "cost": sum(cost(r) for r in part)}
                        for k, part in enumerate(split(recipes, n), 1)]}
