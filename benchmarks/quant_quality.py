"""The README's int8 quality table, in one command, from edgeport's own CLI:

    .venv/bin/python benchmarks/quant_quality.py [--models NAME ...] [--out benchmarks/results/quant_quality]

For every trained Fashion-MNIST reference model (edgeport/weights) it runs

1. ``edgeport quantize --data fashion-mnist --max-accuracy-drop 0.5 --control-data fashion-mnist:train``:
   float and default-PTQ (minmax, per-channel) top-1 of onnx-int8 and tflite-int8 on the 10k test images, then
   accuracy control scored on 2,000 *training* images (so the test set never steers it) and the controlled
   artifacts' test top-1;
2. the same quantization after ``--cle --bias-correction``;
3. ``edgeport export --per-layer``, without and with ``--cle --bias-correction``: the worst layer of each int8
   target (largest error/scale) and what CLE+BC does to the per-layer numbers (median SQNR over the quantized
   tensors, the worst error/scale).

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
TIGHT_BUDGET = 0.1  # a budget the default PTQ misses on some models, to show what control keeps float and what it costs
EDGEPORT = [sys.executable, "-m", "edgeport"]


REUSE = False  # --reuse: keep a step's earlier output when its JSON exists (to add a column without redoing all)


def run(args: list[str], log: Path, produces: Path | None = None) -> int:
    if REUSE and produces is not None and produces.exists():
        print(f"  {' '.join(args[:3])} ... reused {produces}", flush=True)
        return 0
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
    ptq, cle, diag, diag_cle = out / "ptq", out / "cle_bc", out / "per_layer", out / "per_layer_cle_bc"
    tight = out / "tight"
    control = ["--control-data", "fashion-mnist:train", "--control-samples", "2000"]
    run(["quantize", *base, "--max-accuracy-drop", str(BUDGET), *control, "--out", str(ptq)], out / "ptq.log",
        ptq / "accuracy_control.json")
    run(["quantize", *base, "--cle", "--bias-correction", "--out", str(cle)], out / "cle_bc.log", cle / "methods.json")
    run(["export", "--model", model, "--calib", "fashion-mnist", "--target", ",".join(TARGETS), "--per-layer",
         "--out", str(diag)], out / "per_layer.log", diag / "per_layer.json")
    run(["export", "--model", model, "--calib", "fashion-mnist", "--target", ",".join(TARGETS), "--per-layer",
         "--cle", "--bias-correction", "--out", str(diag_cle)], out / "per_layer_cle_bc.log", diag_cle / "per_layer.json")
    run(["quantize", *base, "--max-accuracy-drop", str(TIGHT_BUDGET), *control, "--out", str(tight)], out / "tight.log",
        tight / "accuracy_control.json")
    methods = json.loads((ptq / "methods.json").read_text())
    control = {r["target"]: r for r in json.loads((ptq / "accuracy_control.json").read_text())}
    cle_methods = json.loads((cle / "methods.json").read_text())
    tight_control = {r["target"]: r for r in json.loads((tight / "accuracy_control.json").read_text())}
    per_layer = json.loads((diag / "per_layer.json").read_text())["targets"]
    per_layer_cle = json.loads((diag_cle / "per_layer.json").read_text())["targets"]
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
            "layers": layer_summary(per_layer.get(t) or []),
            "layers_cle_bc": layer_summary(per_layer_cle.get(t) or []),
            "tight": {k: tight_control[t][k] for k in ("float_score", "int8_score", "final_score", "within_budget",
                                                       "size_bytes", "latency_ms", "float_ops", "seconds", "unreachable")}
                     | {"kept_float": [c["layer"] for c in tight_control[t]["kept_float"]],
                        "test_top1": tight_control[t]["data_top1"]},
        }
    row["equalization"] = cle_methods.get("equalization")
    return row


def layer_summary(rows: list[dict]) -> dict:
    """Median per-layer SQNR (dB) and the largest error/scale over a per_layer.json target's rows."""
    import statistics

    sqnr = [r["sqnr_db"] for r in rows if r["sqnr_db"] is not None]
    e2s = [r["error_to_scale"] for r in rows if r["error_to_scale"] is not None]
    return {"layers": len(rows), "median_sqnr_db": statistics.median(sqnr) if sqnr else None,
            "max_error_to_scale": max(e2s) if e2s else None,
            "flagged": sum(1 for r in rows if r.get("flagged"))}


def layer_table(rows: list[dict]) -> str:
    lines = ["| model | target | median layer SQNR dB: PTQ → CLE+BC | worst err/scale: PTQ → CLE+BC | layers flagged > 0.7 |",
             "|---|---|---|---|---|"]
    f = lambda v, fmt: "—" if v is None else format(v, fmt)  # noqa: E731
    for r in rows:
        for t in TARGETS:
            a, b = r[t]["layers"], r[t]["layers_cle_bc"]
            lines.append(f"| {r['model']} | {t} | {f(a['median_sqnr_db'], '.1f')} → {f(b['median_sqnr_db'], '.1f')} | "
                         f"{f(a['max_error_to_scale'], '.2f')} → {f(b['max_error_to_scale'], '.2f')} | "
                         f"{a['flagged']} → {b['flagged']} |")
    return "\n".join(lines)


def tight_table(rows: list[dict]) -> str:
    lines = [f"| model | target | control set: float / int8 → controlled (budget {TIGHT_BUDGET}) | layers kept float | "
             "test top-1 | size KB | p50 ms (this machine) | search s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for t in TARGETS:
            d = r[t]["tight"]
            kept = ", ".join(d["kept_float"]) or "none"
            ok = "" if d["within_budget"] else " (not reached)"
            lat = "—" if not d["latency_ms"] else f"{d['latency_ms'][0]:.2f} → {d['latency_ms'][1]:.2f}"
            lines.append(f"| {r['model']} | {t} | {d['float_score']:.2f} / {d['int8_score']:.2f} → {d['final_score']:.2f}{ok} | "
                         f"{kept} | {100 * d['test_top1']:.2f} | {d['size_bytes'][0] / 1024:.0f} → {d['size_bytes'][1] / 1024:.0f} | "
                         f"{lat} | {d['seconds']:.0f} |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    lines = [
        "| model | float | onnx-int8 PTQ | tflite-int8 PTQ | onnx CLE+BC | tflite CLE+BC | onnx controlled | tflite controlled "
        "| worst layer (onnx / tflite, err/scale) |",
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
    ap.add_argument("--reuse", action="store_true", help="keep steps whose output JSON already exists in --out")
    args = ap.parse_args()
    global REUSE
    REUSE = args.reuse
    rows = []
    for model in args.models:
        print(f"{model}:", flush=True)
        folder = args.out / model
        folder.mkdir(parents=True, exist_ok=True)
        rows.append(model_row(model, folder))
    text = table(rows) + "\n\n" + layer_table(rows) + "\n\n" + tight_table(rows)
    (args.out / "quant_quality.json").write_text(json.dumps(rows, indent=2, default=str))
    (args.out / "quant_quality.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
