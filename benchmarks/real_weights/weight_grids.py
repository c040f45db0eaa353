"""onnx-int8's weight grids on real ImageNet-trained weights: every ``--onnx-reduce-range`` setting, each file scored
as this CPU runs it and as ONNX Runtime computes it without fusing (its QDQ graph evaluated op by op in float, where
no int16 pair can saturate):

    python -m benchmarks.real_weights.weight_grids [--networks a,b] [--out benchmarks/results/real_weights/pairs]

Defaults otherwise (mse ranges, bias correction for the grid), calibrated on the 54 images, scored on all 63, as
quality.py's routes (after ``bash benchmarks/real_weights/setup.sh``). On a CPU without VNNI the "fused" and
"unfused" numbers of plain 8-bit weights (``off``) differ by the saturation; on a VNNI CPU they agree for every grid.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from benchmarks.real_weights import models, quality
from edgeport.quantization.options import REDUCE_RANGE_GRIDS

SETTINGS = tuple(REDUCE_RANGE_GRIDS)  # every setting but "auto", which picks one of them


def run_unfused(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i : i + 1]})[0] for i in range(len(x))])


def network(name: str, dirs) -> dict:
    import edgeport
    from edgeport.runtimes import cpu_features, open_runtime

    n = quality.Network(name, dirs)
    rows = {}
    for setting in SETTINGS:
        made = quality.run_export(n, f"grid_{setting}", edgeport.QuantOptions(onnx_reduce_range=setting), targets=("onnx-int8",))
        row = made["onnx-int8"]
        path = quality.ROOT / row["file"]
        unfused = run_unfused(path, n.x).reshape(n.ref.shape)
        row["unfused_sqnr_db"] = round(models.sqnr_db(n.ref, unfused), 2)
        row["fused_vs_unfused_db"] = round(models.sqnr_db(unfused, open_runtime(path).run(n.x).reshape(n.ref.shape)), 2)
        rows[setting] = row
        print(f"[{name}] {setting}: {row['sqnr_db']} dB ({row['agree']}/{row['images']}), unfused {row['unfused_sqnr_db']} dB",
              flush=True)
    return {"network": name, "cpu": cpu_features.describe(), "settings": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=",".join(models.BY_NAME))
    ap.add_argument("--out", type=Path, default=quality.ROOT / "benchmarks" / "results" / "real_weights" / "pairs")
    args = ap.parse_args()
    why = models.missing()
    if why:
        raise SystemExit(why)
    dirs = quality.photo_dirs()
    records = [network(name, dirs) for name in args.networks.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "weight_grids.json").write_text(json.dumps(records, indent=1) + "\n")
    lines = ["| network | setting | SQNR dB (this CPU) | agreeing | SQNR dB computed unfused | fused vs unfused dB |",
             "|---|---|---|---|---|---|"]
    for r in records:
        for s, row in r["settings"].items():
            lines.append(f"| {r['network']} | {s} | {row['sqnr_db']} | {row['agree']}/{row['images']} | {row['unfused_sqnr_db']} | "
                         f"{row['fused_vs_unfused_db']} |")
    text = f"CPU: {records[0]['cpu'] if records else '?'}\n\n" + "\n".join(lines) + "\n"
    (args.out / "weight_grids.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
