"""The README's int8 quality table, in one command, from edgeport's own CLI:

    .venv/bin/python benchmarks/quant_quality.py [--models NAME ...] [--out benchmarks/results/quant_quality]

For every trained Fashion-MNIST reference model (edgeport/weights) it runs

1. ``edgeport quantize --data fashion-mnist --max-accuracy-drop 0.5 --control-data fashion-mnist:train``:
   float and default-PTQ (minmax, per-channel) top-1 of onnx-int8 and tflite-int8 on the 10k test images, then
   accuracy control scored on 2,000 *training* images (so the test set never steers it) and the controlled
   artifacts' test top-1;
2. the same quantization after ``--cle --bias-correction``;
3. ``edgeport export --per-layer`` for the worst layer of each int8 target (largest error/scale).

Each step's JSON is kept under ``--out/<model>/``; the table goes to ``--out/quant_quality.md`` and stdout.
Exit 1 if a step fails to run (a step exiting 3 -- a threshold failed -- is recorded in the table, not fatal).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODELS = ("fmnist_mobilenet_v2_x0_5", "fmnist_shufflenet_v2_x0_5", "fmnist_mobilenet_v3_small",
          "fmnist_shufflenet_v1_g3_x0_5")
TARGETS = ("onnx-int8", "tflite-int8")
BUDGET = 0.5
EDGEPORT = [sys.executable, "-m", "edgeport"]


def run(args: list[str], log: Path) -> int:
    env = {**os.environ, "GOMP_SPINCOUNT": "1000", "COLUMNS": "200"}
    t = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(EDGEPORT + args, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    print(f"  {' '.join(args[:3])} ... exit {code} in {time.perf_counter() - t:.0f} s (log {log})", flush=True)
    if code not in (0, 3):
        sys.exit(f"step failed (exit {code}); see {log}")
    return code


def model_row(model: str, out: Path) -> dict:
    base = ["--model", model, "--calib", "fashion-mnist", "--target", ",".join(TARGETS), "--data", "fashion-mnist"]
    ptq, cle, diag = out / "ptq", out / "cle_bc", out / "per_layer"
    run(["quantize", *base, "--max-accuracy-drop", str(BUDGET), "--control-data", "fashion-mnist:train",
         "--control-samples", "2000", "--out", str(ptq)], out / "ptq.log")
    run(["quantize", *base, "--cle", "--bias-correction", "--out", str(cle)], out / "cle_bc.log")
    run(["export", "--model", model, "--calib", "fashion-mnist", "--target", ",".join(TARGETS), "--per-layer",
         "--out", str(diag)], out / "per_layer.log")
    methods = json.loads((ptq / "methods.json").read_text())
    control = {r["target"]: r for r in json.loads((ptq / "accuracy_control.json").read_text())}
    cle_methods = json.loads((cle / "methods.json").read_text())
    per_layer = json.loads((diag / "per_layer.json").read_text())["targets"]
    acc = lambda m, t: next(r["accuracy"] for r in m["results"] if r["target"] == t)  # noqa: E731
    row = {"model": model, "float": methods["data"]["float_accuracy"], "samples": methods["data"]["samples"]}
    for t in TARGETS:
        row[t] = {
            "ptq": acc(methods, t),
            "cle_bc": acc(cle_methods, t),
            "controlled": control[t]["data_top1"],
            "kept_float": [c["layer"] for c in control[t]["kept_float"]],
            "control_within_budget": control[t]["within_budget"],
            "worst": per_layer[t][0] if per_layer.get(t) else None,
        }
    row["equalization"] = cle_methods.get("equalization")
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| model | float | onnx-int8 PTQ | tflite-int8 PTQ | onnx CLE+BC | tflite CLE+BC | onnx controlled | tflite controlled | worst layer (onnx / tflite, err/scale) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731

    def cell(r, t, key):
        v = r[t][key]
        drop = 100 * (r["float"] - v)
        return f"{pct(v)} ({-drop:+.2f})"

    def controlled(r, t):
        d = r[t]
        kept = f"{len(d['kept_float'])} float" if d["kept_float"] else "0 float"
        return f"{cell(r, t, 'controlled')}, {kept}"

    def worst(d):
        w = d["worst"]
        if not w:
            return "—"
        e = w["error_to_scale"]
        return f"{w['layer'][:40]} {e:.2f}" if e is not None else w["layer"][:40]

    for r in rows:
        lines.append(
            f"| {r['model']} | {pct(r['float'])} | {cell(r, 'onnx-int8', 'ptq')} | {cell(r, 'tflite-int8', 'ptq')} | "
            f"{cell(r, 'onnx-int8', 'cle_bc')} | {cell(r, 'tflite-int8', 'cle_bc')} | {controlled(r, 'onnx-int8')} | "
            f"{controlled(r, 'tflite-int8')} | {worst(r['onnx-int8'])} / {worst(r['tflite-int8'])} |"
        )
    n = rows[0]["samples"] if rows else 0
    lines.append("")
    lines.append(f"Top-1 % on the {n} Fashion-MNIST test images (change vs float in points). PTQ: minmax calibration on "
                 "200 training images, per-channel int8 weights. Controlled: `--max-accuracy-drop 0.5` scored on 2,000 "
                 "training images, then measured on the test set.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/quant_quality"))
    args = ap.parse_args()
    rows = []
    for model in args.models:
        print(f"{model}:", flush=True)
        folder = args.out / model
        folder.mkdir(parents=True, exist_ok=True)
        rows.append(model_row(model, folder))
    text = table(rows)
    (args.out / "quant_quality.json").write_text(json.dumps(rows, indent=2, default=str))
    (args.out / "quant_quality.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
