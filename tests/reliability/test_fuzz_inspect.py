"""Fuzz `edgeport inspect` with random bytes and with mutated real artifacts: every outcome is a summary
(exit 0) or one typed error line (exit 1), never a traceback or a crash of the process."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

HARNESS = r'''
import io, json, sys, contextlib, traceback
from edgeport.cli.app import main
listing, report = sys.argv[1:3]
results = []
for path in json.load(open(listing)):
    sys.argv = ["edgeport", "inspect", path]
    err = io.StringIO()
    code, crash = 0, None
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            code, crash = -1, traceback.format_exc()
    results.append({"path": path, "code": code, "crash": crash, "err": err.getvalue()})
json.dump(results, open(report, "w"))
'''


def _cases(byo_onnx, tmp_path, n_each: int = 60) -> list[str]:
    rng = np.random.default_rng(2026)
    paths = []
    sources = [next(byo_onnx.glob("*.onnx")), next(byo_onnx.glob("*.tflite"))]
    for i in range(n_each):
        for src in sources:
            data = bytearray(src.read_bytes())
            kind = i % 4
            if kind == 0:  # random bytes, with the right identifier for flatbuffers half of the time
                data = bytearray(rng.integers(0, 256, size=int(rng.integers(0, 4096)), dtype=np.uint8).tobytes())
                if src.suffix == ".tflite" and i % 8 == 0 and len(data) >= 8:
                    data[4:8] = b"TFL3"
            elif kind == 1:  # truncated anywhere
                data = data[: int(rng.integers(0, len(data)))]
            elif kind == 2:  # a few bytes flipped
                for pos in rng.integers(0, len(data), size=int(rng.integers(1, 16))):
                    data[pos] = int(rng.integers(0, 256))
            else:  # a block overwritten with random bytes
                start = int(rng.integers(0, len(data)))
                block = rng.integers(0, 256, size=min(len(data) - start, 256), dtype=np.uint8).tobytes()
                data[start : start + len(block)] = block
            p = tmp_path / f"case{i:03d}{src.suffix}"
            p.write_bytes(bytes(data))
            paths.append(str(p))
    return paths


def test_inspect_never_crashes_on_damaged_files(byo_onnx, tmp_path):
    listing, results = tmp_path / "cases.json", tmp_path / "results.json"
    listing.write_text(json.dumps(_cases(byo_onnx, tmp_path)))
    proc = subprocess.run([sys.executable, "-c", HARNESS, str(listing), str(results)], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"the fuzz process died (exit {proc.returncode}): {proc.stderr[-2000:]}"
    outcome = json.loads(results.read_text())
    assert len(outcome) == 120  # 60 per format
    crashes = [r for r in outcome if r["crash"]]
    assert not crashes, crashes[0]["crash"]
    for r in outcome:
        assert r["code"] in (0, 1), r
        if r["code"] == 1:
            lines = [line for line in r["err"].splitlines() if line.startswith("error:")]
            assert len(lines) == 1 and "Traceback" not in r["err"], r
    assert sum(r["code"] == 1 for r in outcome) >= 40  # the random and truncated files at least are refused
