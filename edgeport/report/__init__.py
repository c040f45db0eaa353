"""Reports of an ``edgeport run``: manifest.json (the record), report.md, report.html and junit.xml (views of it)."""

from __future__ import annotations

import json
from pathlib import Path

from edgeport.util.atomic_file import write_text

FILES = ("manifest.json", "report.md", "report.html", "junit.xml")


def write_all(out: Path, manifest: dict) -> list[Path]:
    from edgeport.report import html, junit, markdown

    out = Path(out)
    texts = {
        "manifest.json": json.dumps(manifest, indent=2, default=str) + "\n",  # insertion order: stages in run order
        "report.md": markdown.build(manifest),
        "report.html": html.build(manifest),
        "junit.xml": junit.build(manifest),
    }
    for name, text in texts.items():
        write_text(out / name, text)
    return [out / n for n in FILES]
