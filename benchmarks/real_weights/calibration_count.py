"""How many calibration images int8 needs on real ImageNet-trained weights (issue 20), with edgeport's defaults:

    python -m benchmarks.real_weights.calibration_count [--networks a,b] [--counts 4,8,16,32,54]

For each count K, ``edgeport.export(model, "tflite-int8,onnx-int8", calib=<the 54 calibration images>,
calib_samples=K, val_data=<the 9 held-out images>)``: edgeport draws K of the 54 (its seeded permutation), and
each file is scored in its own runtime against PyTorch fp32 on the 9 images of the 3 photos never calibrated on
(quality.HELD_OUT) and on all 63. Writes ``<out>/calibration_count.json`` and ``.md``; docs/real-weights.md
("How many calibration images") quotes it. Each export repeats capture, bias correction and conversion (about
1.5 minutes per network and count on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.real_weights import quality

OUT = quality.ROOT / "benchmarks" / "results" / "real_weights" / "calibration_count"
COUNTS = (4, 8, 16, 32, 54)


def held_out_dir(files: list[Path]) -> Path:
    d = quality.RUNS / "photos" / "held_out"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for f in files:
        if quality.is_held_out(f):
            (d / f.name).symlink_to(f)
    return d


def run_count(n: quality.Network, held_dir: Path, k: int) -> dict:
    import edgeport

    t = time.perf_counter()
    r = edgeport.export(n.model, list(quality.INT8), input_shape=n.shape, calib=n.calib_dir, calib_samples=k,
                        val_data=held_dir, preprocess=n.pre, out=n.work / f"k{k}", strict=False, name=n.net.name)
    secs = round(time.perf_counter() - t, 1)
    rows = {}
    for a in r.artifacts:
        whole = n.score(a.path)
        held = quality.score(a.path, n.x[n.held], n.ref[n.held], n.net, np.ones(int(n.held.sum()), bool))
        rows[a.target] = {"held_out_sqnr_db": held["sqnr_db"], "held_out_agree": held["agree"], "held_out_images": held["images"],
                          "all_sqnr_db": whole["sqnr_db"], "all_agree": whole["agree"], "images": whole["images"],
                          "edgeport_passed": bool(a.parity.passed) if a.parity else False, "seconds": secs}
    return rows


def markdown(records: dict, counts: list[int]) -> str:
    lines = ["Held-out SQNR (dB) of the int8 file vs PyTorch fp32 on the 9 images never calibrated on (all 63 in brackets), "
             "edgeport defaults, K calibration images drawn from 54:", "",
             "| network | target | " + " | ".join(f"K={k}" for k in counts) + " |", "|---|---|" + "---|" * len(counts)]
    for name, by_k in records.items():
        for target in quality.INT8:
            cells = [f"{c['held_out_sqnr_db']:.1f} ({c['all_sqnr_db']:.1f})" if (c := by_k.get(str(k), {}).get(target)) else "-"
                     for k in counts]
            lines.append(f"| {name} | {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--networks", default="efficientnet_lite0,mobilenet_v2_backbone")
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    dirs = quality.photo_dirs()
    held_dir = held_out_dir(dirs[2])
    records: dict = {}
    for name in args.networks.split(","):
        n = quality.Network(name, dirs)
        records[name] = {}
        for k in counts:
            records[name][str(k)] = run_count(n, held_dir, k)
            print(name, k, json.dumps(records[name][str(k)]), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "calibration_count.json").write_text(json.dumps({"counts": counts, "networks": records}, indent=1) + "\n")
    (args.out / "calibration_count.md").write_text(markdown(records, counts))
    print(markdown(records, counts))


if __name__ == "__main__":
    main()
