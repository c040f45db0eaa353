"""``edgeport report merge DIR... --out DIR``: the outputs of N ``edgeport run --shard K/N`` jobs as one run.

Each shard's manifest.json records the split (edgeport.pipeline.shards.record): every recipe of the run in run
order with its file's sha256, N, and the recipes this shard ran. The merge checks that the folders are the N
shards of one run before it writes anything, because a report that silently lacks a shard, or mixes two runs,
would pass a release that was never checked:

* a folder that is not a shard's output, shards of different runs (another N, other recipes or recipe files,
  other tool versions): ShardMismatch, naming both folders;
* a shard K of N that no folder holds: ShardMissing, naming K/N;
* one recipe in two folders with different artifacts (sha256): ShardConflict, naming both (the same shard
  downloaded twice, byte-identical, is fine: one copy is used).

Then each recipe's folder (artifacts, sidecars, parity.json) is copied into ``--out`` with every artifact's
sha256 checked, and the reports are written by the writers ``edgeport run`` uses (edgeport.report.write_all)
from a manifest holding the recipes in run order: the same files one unsharded run writes, apart from what
describes the jobs rather than the work: ``started`` (the earliest shard's), ``wall_s`` (the longest shard's,
as the jobs ran side by side), the host and the cache folder (the first shard's), and the timings in each recipe.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edgeport.errors import UsageError, UserError

SHARD_KEY = "shard"  # the manifest key edgeport.pipeline.recipe_run.run_recipes writes the split under


class ShardMergeError(UserError):
    """The folders given to ``edgeport report merge`` are not the complete, consistent shards of one run."""


class ShardMismatch(ShardMergeError):
    """A folder is not a shard's output, or shards come from different runs."""


class ShardMissing(ShardMergeError):
    """A shard K of N (or a recipe it was given) is in none of the folders."""


class ShardConflict(ShardMergeError):
    """One recipe was built by two shards with different bytes."""


class _Shard:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        path = self.folder / "manifest.json"
        try:
            self.manifest = json.loads(path.read_text())
        except FileNotFoundError:
            raise ShardMismatch(f"{self.folder} has no manifest.json: it is not the output of `edgeport run --shard K/N`",
                                "pass the folders the shard jobs wrote (--out), as downloaded") from None
        except (OSError, ValueError) as exc:
            raise ShardMismatch(f"{path} cannot be read: {exc}", "download that shard's artifacts again") from None
        self.split = self.manifest.get(SHARD_KEY)
        if not isinstance(self.split, dict):
            raise ShardMismatch(f"{self.folder} is the output of an unsharded `edgeport run` (no shard record in its "
                                "manifest.json)", "merge only the outputs of `edgeport run --shard K/N`")
        self.name = f"shard {self.split['index']}/{self.split['count']} ({self.folder})"

    def run_identity(self) -> tuple:
        return (self.split["count"], self.split["recipes"], self.manifest.get("edgeport"),
                self.manifest.get("environment", {}).get("tools"))


def _check_same_run(shards: list[_Shard]) -> None:
    first = shards[0]
    for s in shards[1:]:
        a, b = first.run_identity(), s.run_identity()
        if a == b:
            continue
        what = ("a different number of shards" if a[0] != b[0]
                else "a different set of recipes (or edited recipe files)" if a[1] != b[1] else "different tool versions")
        raise ShardMismatch(f"{s.name} and {first.name} are parts of different runs: {what}",
                            "merge the shards of one workflow run, all made with the same recipes and N")


def _by_recipe(shards: list[_Shard]) -> dict[str, tuple[_Shard, dict]]:
    """recipe name -> (shard, manifest entry); a recipe in two shards must have byte-identical artifacts."""
    found: dict[str, tuple[_Shard, dict]] = {}
    for s in shards:
        for entry in s.manifest["recipes"]:
            name = entry["name"]
            if name not in found:
                found[name] = (s, entry)
                continue
            other, before = found[name]
            mine = {a["target"]: a["sha256"] for a in entry["artifacts"]}
            theirs = {a["target"]: a["sha256"] for a in before["artifacts"]}
            if mine != theirs:
                diff = sorted(t for t in mine.keys() | theirs.keys() if mine.get(t) != theirs.get(t))
                raise ShardConflict(f"recipe {name!r} was built by {other.name} and {s.name} with different artifacts "
                                    f"({', '.join(diff)}: sha256 {str(theirs.get(diff[0]))[:12]} vs {str(mine.get(diff[0]))[:12]})",
                                    "merge one output per shard, from one workflow run")
    return found


def check(folders: list[Path]) -> tuple[list[_Shard], dict[str, tuple[_Shard, dict]]]:
    """The shards in ``folders``, checked to be every shard of one run (the typed errors above), and each recipe's
    entry with the shard it comes from."""
    if not folders:
        raise UsageError("no shard folder given", "pass the folders the `edgeport run --shard K/N` jobs wrote")
    shards = [_Shard(f) for f in folders]
    _check_same_run(shards)
    count = shards[0].split["count"]
    present = {s.split["index"] for s in shards}
    missing = [k for k in range(1, count + 1) if k not in present]
    if missing:
        raise ShardMissing(f"shard {missing[0]}/{count} is missing" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                           + f": got {', '.join(s.name for s in shards)}",
                           "download every shard's artifacts (a shard job that failed before uploading must be rerun)")
    found = _by_recipe(shards)
    for s in shards:
        for name in s.split["assigned"]:
            if name not in found:
                raise ShardMissing(f"recipe {name!r} of {s.name} is not in its manifest.json",
                                   "rerun that shard: its output is incomplete")
    return shards, found


def merged_manifest(shards: list[_Shard], found: dict[str, tuple[_Shard, dict]]) -> dict:
    """The manifest one unsharded run would write: the first shard's, recipes from all shards in run order."""
    first = shards[0].manifest
    recipes = [found[r["name"]][1] for r in shards[0].split["recipes"]]
    manifest = {k: v for k, v in first.items() if k != SHARD_KEY}
    manifest.update(started=min(s.manifest["started"] for s in shards), wall_s=max(s.manifest["wall_s"] for s in shards),
                    force=any(s.manifest["force"] for s in shards), passed=all(r["passed"] for r in recipes), recipes=recipes)
    return manifest


def _copy_recipe(shard: _Shard, entry: dict, out: Path) -> None:
    """The recipe's folder from ``shard`` into ``out``, every artifact checked against the sha256 its manifest holds."""
    from edgeport.pipeline.artifact import sha256_of
    from edgeport.util.atomic_file import atomic_path

    src = shard.folder / entry["name"]
    if not src.is_dir():
        if entry["artifacts"]:
            raise ShardMissing(f"{shard.name} has no folder {entry['name']}/ for its artifacts", "download that shard's artifacts again")
        return
    for f in sorted(p for p in src.rglob("*") if p.is_file()):
        with atomic_path(out / f.relative_to(shard.folder)) as tmp:
            shutil.copyfile(f, tmp)
    for a in entry["artifacts"]:
        path = out / a["path"]
        if not path.is_file() or sha256_of(path) != a["sha256"]:
            raise ShardConflict(f"{a['path']} in {shard.name} is missing or not the file its manifest.json describes",
                                "download that shard's artifacts again")


def merge(folders: list[Path], out: Path, wait: bool = False) -> tuple[dict, list[Path]]:
    """Check ``folders`` (``check``), copy each recipe's folder into ``out`` and write the reports there (locked, as
    ``edgeport run`` locks its --out). Returns the merged manifest and the report files written."""
    from edgeport import report
    from edgeport.pipeline.out_lock import locked

    out = Path(out)
    shards, found = check(folders)
    if any(s.folder.resolve() == out.resolve() for s in shards):
        raise UsageError(f"--out {out} is one of the shard folders", "merge into a folder of its own")
    manifest = merged_manifest(shards, found)
    with locked(out, wait=wait):
        for shard, entry in found.values():
            _copy_recipe(shard, entry, out)
        written = report.write_all(out, manifest)
    return manifest, written
