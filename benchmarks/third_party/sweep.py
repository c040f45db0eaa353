"""The third-party architecture sweep (issue 21): torchvision and timm mobile networks, attention hybrids, a
segmentation model and a detection backbone+head through ``edgeport.export`` as a user would call it.

    bash benchmarks/third_party/setup.sh            # once: torchvision/timm into .cache, photos
    .venv/bin/python -m benchmarks.third_party.sweep [--models a,b] [--quick] [--timeout S]

Each model runs in its own process (run_one.py) with a timeout, one at a time, so a crash, a hang or a
traceback in edgeport is recorded and the sweep goes on. Results: ``benchmarks/results/third_party/sweep.json``
(one record per model, rewritten after each model; artifacts and logs beside it) and the table in
``docs/third-party.md`` (report.py; ``--no-doc`` leaves the doc alone, e.g. with ``--models``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.third_party.models import SPECS

ROOT = Path(__file__).resolve().parents[2]
FULL = "onnx-fp32,onnx-int8,tflite-fp32,tflite-fp16,tflite-int8"
QUICK = "onnx-fp32,tflite-int8"
ORDER = ("hybrid", "segmentation", "detection", "cnn")  # the families most likely to fail first


def run_model(name: str, targets: str, out: Path, photos: Path, timeout: float) -> dict:
    work = out / name
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*"):
        if old.is_file():
            old.unlink()
    result, log = work / "record.json", work / "log.txt"
    cmd = [sys.executable, "-m", "benchmarks.third_party.run_one", name, "--photos", str(photos), "--out", str(work),
           "--targets", targets, "--result", str(result)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    t0 = time.perf_counter()
    with log.open("w") as fh:
        try:
            rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    seconds = round(time.perf_counter() - t0, 1)
    record = json.loads(result.read_text()) if result.is_file() else {"model": name, "targets": targets.split(",")}
    text = log.read_text(errors="replace")
    record.update(seconds=seconds, returncode=rc, traceback_in_log="Traceback (most recent call last)" in text,
                  files=sorted(p.name for p in work.iterdir() if p.suffix in (".onnx", ".tflite")),
                  log=str(log.relative_to(ROOT)))
    if rc is None:
        record.setdefault("status", "timeout")
        record["status"] = "timeout"
    elif "status" not in record or (rc != 0 and record.get("status") == "ok"):
        record["status"] = "crash"
        record["log_tail"] = text.strip().splitlines()[-8:]
    return record


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", help="comma-separated subset (default: all)")
    ap.add_argument("--quick", action="store_true", help=f"targets {QUICK} instead of all five")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds per model (default 1200)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "third_party")
    ap.add_argument("--photos", type=Path, default=ROOT / ".cache" / "sweep-photos")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/third-party.md")
    args = ap.parse_args(argv)
    if not args.photos.is_dir():
        raise SystemExit(f"{args.photos} missing: run `bash benchmarks/third_party/setup.sh`")
    specs = sorted(SPECS, key=lambda s: ORDER.index(s.family))
    if args.models:
        wanted = args.models.split(",")
        unknown = sorted(set(wanted) - {s.name for s in SPECS})
        if unknown:
            raise SystemExit(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(s.name for s in SPECS)}")
        specs = [s for s in specs if s.name in wanted]
    targets = QUICK if args.quick else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / ("sweep-quick.json" if args.quick else "sweep.json")
    previous = json.loads(summary_path.read_text()) if args.models and summary_path.is_file() else {"models": []}
    records = [r for r in previous["models"] if r["model"] not in {s.name for s in specs}]  # --models: merged in
    for i, spec in enumerate(specs, 1):
        print(f"[{i}/{len(specs)}] {spec.name} ...", flush=True)
        rec = run_model(spec.name, targets, args.out, args.photos, args.timeout)
        rec.update(family=spec.family, source=spec.source, note=spec.note, size=spec.size)
        records.append(rec)
        summary_path.write_text(json.dumps({"targets": targets.split(","), "models": records}, indent=1, default=str))
        print(f"    {rec['status']}: {len(rec['files'])} files, {rec['seconds']} s", flush=True)
    if not args.no_doc:
        from benchmarks.third_party import report

        report.write_doc(summary_path, ROOT / "docs" / "third-party.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
