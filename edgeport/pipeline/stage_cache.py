"""A content-addressed cache of pipeline stages: the same inputs give the same key, and a hit restores the
stage's files and record instead of recomputing them.

A key is the sha256 of a canonical JSON of everything that decides a stage's result: the model's code
(source files), its weights (bytes), the recipe's sections, the calibration data (bytes) and the tools
(package versions and the source of edgeport's own modules that produce the result). An entry is a folder
``<root>/<stage>/<key>/`` holding the files and ``record.json``; it is written in a temporary folder and
renamed into place, so a reader never sees half an entry and two concurrent writers cannot mix theirs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from edgeport.errors import UserError
from edgeport.pipeline.artifact import sha256_of

FORMAT = 1  # bump when an entry's layout changes
EDGEPORT_DIR = Path(__file__).resolve().parents[1]  # the edgeport package
CODE_SUFFIXES = (".py", ".c")  # source only: __pycache__ changes whenever Python rewrites it
# Packages that only present results (console, reports): editing them never invalidates a stage.
PRESENTATION = ("cli", "report")


def default_root() -> Path:
    base = os.environ.get("EDGEPORT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeport"
    return Path(base) / "stages"


def hash_files(paths: list[Path], suffixes: tuple[str, ...] | None = None) -> dict[str, str]:
    """name -> sha256 of each file (a folder: every file in it, recursively, sorted; only ``suffixes`` if given).

    A path that does not exist is an error, never skipped: a key that silently lost an input would let a
    stale entry be reused."""
    out = {}
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file() and (suffixes is None or x.suffix in suffixes)):
                out[str(f.relative_to(p.parent))] = sha256_of(f)
        elif p.is_file():
            out[p.name] = sha256_of(p)
        else:
            raise UserError(f"{p} does not exist (needed for a stage cache key)", "check the recipe's paths")
    return out


def producer_sources(root: Path = EDGEPORT_DIR) -> dict[str, str]:
    """sha256 of every source file of edgeport that can change an artifact's bytes or a measured number:
    the whole package except the packages that only present results (``PRESENTATION``).

    Derived from the tree, not from a list of modules, so a new, moved or renamed module is in the key the
    moment it exists (names are part of the key: renaming a module changes it)."""
    out = {}
    for f in sorted(x for x in root.rglob("*") if x.is_file() and x.suffix in CODE_SUFFIXES):
        rel = f.relative_to(root)
        if rel.parts[0] not in PRESENTATION:
            out[rel.as_posix()] = sha256_of(f)
    return out


def key_of(parts: dict) -> str:
    blob = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


class StageCache:
    def __init__(self, root: Path | None = None, force: bool = False):
        self.root = Path(root) if root is not None else default_root()
        self.force = force

    def entry(self, stage: str, key: str) -> Path:
        return self.root / stage / key

    def load(self, stage: str, key: str) -> tuple[dict, Path] | None:
        """(record, folder) of a complete entry, or None (also with ``force``: the caller rebuilds)."""
        if self.force:
            return None
        return self.peek(stage, key)

    def peek(self, stage: str, key: str) -> tuple[dict, Path] | None:
        """Like load, ignoring ``force``: to compare a rebuild with what was cached before."""
        folder = self.entry(stage, key)
        try:
            record = json.loads((folder / "record.json").read_text())
        except (OSError, ValueError):
            return None
        if any(not (folder / name).is_file() for name in record.get("files", [])):
            return None
        return record, folder

    def staging(self, stage: str) -> Path:
        """A fresh folder to build an entry in (pass it to ``store``)."""
        (self.root / stage).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".building-", dir=self.root / stage))

    def store(self, stage: str, key: str, record: dict, staging: Path | None = None) -> Path:
        """Move ``staging`` (files named in record["files"]) into place as the entry for ``key``."""
        folder = staging or self.staging(stage)
        (folder / "record.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        dest = self.entry(stage, key)
        if dest.exists():  # --force rebuild, or another run stored it first: replace it whole
            old = dest.with_name(f".old-{key}-{os.getpid()}")
            try:
                os.replace(dest, old)
            except OSError:
                pass
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(folder, dest)
        except OSError:  # a concurrent run won the rename; its entry has the same content key
            shutil.rmtree(folder, ignore_errors=True)
        return dest
