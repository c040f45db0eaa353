"""Running ``edgeport run`` in a subprocess (module-scoped fixtures share one export) and checking its outputs."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPORTS = ("manifest.json", "report.md", "report.html", "junit.xml")


def edgeport_run(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GOMP_SPINCOUNT": "1000", "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "edgeport", "run", *map(str, args)], capture_output=True, text=True,
                           env=env, cwd=cwd, timeout=1800)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_outputs(out: Path, recipe_name: str, targets: set[str]) -> dict:
    """Every report exists and agrees with the files on disk; returns the manifest."""
    for name in REPORTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 100, name
    m = json.loads((out / "manifest.json").read_text())
    (r,) = [x for x in m["recipes"] if x["name"] == recipe_name]
    assert {a["target"] for a in r["artifacts"]} == targets
    for a in r["artifacts"]:
        f = out / a["path"]
        side = json.loads((out / a["sidecar"]).read_text())
        assert side["sha256"] == sha256(f) == a["sha256"] and side["size"] == f.stat().st_size
        assert side["parent"] and side["tools"]["onnxruntime"] and side["dtype_summary"]["compute_ops"]
    assert {c["stage"] for c in r["validation"]["checks"]} == targets
    assert {t["target"] for t in r["latency"]} == targets and all(t["p50_ms"] > 0 for t in r["latency"])
    assert m["environment"]["tools"]["torch"] and r["durations_s"]
    cases = ET.parse(out / "junit.xml").getroot().iter("testcase")
    seen = {(c.get("classname").rsplit(".", 1)[1], c.get("name")) for c in cases}
    for t in targets:
        assert (t, "parity") in seen and any(name.startswith("bench[") for tt, name in seen if tt == t)
    html = (out / "report.html").read_text()
    assert "<svg" in html and "<script" not in html and "<link" not in html  # self-contained
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", html)
    md = (out / "report.md").read_text()
    assert all(t in md for t in targets)
    return m


def screenshot(html: Path, png: Path) -> Path:
    """Render ``html`` in headless chromium (Debian's package, installed by scripts/setup.sh)."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    assert exe, "chromium is not installed: run scripts/setup.sh (apt-get install chromium)"
    proc = subprocess.run(
        [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={png}",
         "--window-size=1200,1400", html.resolve().as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert png.is_file(), proc.stderr[-2000:]
    return png


def png_is_nontrivial(png: Path) -> None:
    """A real page: large, decodable, and not one flat colour (charts and tables drawn)."""
    import numpy as np
    from PIL import Image

    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    pixels = np.asarray(Image.open(png).convert("L"))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    dark = (pixels < 128).mean()
    assert 0.002 < dark < 0.5, dark  # text and bars, on a white page
    assert len(np.unique(pixels)) > 16
