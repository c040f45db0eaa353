"""How many calibration samples int8 needs: test accuracy of onnx-int8 and tflite-int8 against the number of
calibration samples, on the trained Fashion-MNIST reference models, in one command:

    .venv/bin/python benchmarks/calibration_samples.py [--models NAME ...] [--counts 1,2,4,...] [--seeds 0,1]
        [--test-samples 2000] [--out benchmarks/results/calibration_samples.json] [--resume]

For each model it captures and fuses once, converts to fp32 ONNX and runs onnx2tf once, then for every sample
count and seed exports the two int8 targets with the default calibration (minmax; the shared fp32 ONNX model and
SavedModel are reused, everything that depends on the calibration data is redone), and measures top-1 on the
first ``--test-samples`` Fashion-MNIST test images, each file in its own runtime (onnxruntime, ai-edge-litert).
Calibration samples come from the train split (seeded), so the test set never takes part in calibration.

Results: one JSON (every measurement, with the float model's accuracy) and a Markdown table on stdout (mean over
seeds, and the worst seed), the one in docs/quantization.md. ``edgeport.data.calibration.MIN_CALIBRATION`` is the
smallest count from which every model's mean stays within ``--tolerance`` points of its accuracy with the most
samples; the script prints that count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

MODELS = ("fmnist_mobilenet_v2_x0_5", "fmnist_shufflenet_v2_x0_5", "fmnist_mobilenet_v3_small", "fmnist_shufflenet_v1_g3_x0_5")
TARGETS = ("onnx-int8", "tflite-int8")
COUNTS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
SHARED = ("onnx-fp32", "onnx2tf")  # ExportRequest cache entries that do not depend on the calibration data
TOLERANCE = 0.2  # points of top-1: "stopped improving" = within this of the accuracy with the most samples


def measure_model(name: str, counts, seeds, test_samples: int, log=print) -> dict:
    import edgeport
    from edgeport.data import calibration
    from edgeport.exporters import TARGETS as ALL_TARGETS
    from edgeport.exporters import QuantOptions, load_all
    from edgeport.pipeline.export_flow import prepare, run_export
    from edgeport.validation import evaluation

    load_all()
    targets = [ALL_TARGETS.get(t) for t in TARGETS]
    loaded = edgeport.api.load_model(name)
    pre = loaded.data_preprocess()
    data = evaluation.labelled_data("fashion-mnist:test", test_samples)
    t0 = time.perf_counter()
    prep = prepare(loaded)
    torch_subject = evaluation.open_subjects([], loaded, 1, lambda p: p)[0]
    row = {"model": name, "float_top1": evaluation.evaluate(torch_subject, data).top1, "test_samples": len(data), "runs": []}
    cache: dict = {}
    try:
        with tempfile.TemporaryDirectory(prefix="edgeport-calib-n-") as tmp:
            for n in counts:
                for seed in seeds:
                    split = calibration.load("fashion-mnist", pre, loaded.input_shape, n_calib=n, n_val=1, seed=seed)
                    t = time.perf_counter()
                    run = run_export(loaded, targets, Path(tmp), data=split, quant=QuantOptions(), validate=False,
                                     prepared=prep, cache=cache)
                    for key in [k for k in cache if k not in SHARED]:  # calibration-dependent: redone for the next count
                        del cache[key]
                    accs = {}
                    for art in run.artifacts:
                        subject = evaluation.open_subjects([art.path], None, 1, lambda p: p)[0]
                        accs[art.target] = evaluation.evaluate(subject, data).top1
                    row["runs"].append({"samples": n, "seed": seed, **accs, "seconds": round(time.perf_counter() - t, 1)})
                    log(f"  {name} n={n} seed={seed}: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in accs.items())
                        + f" ({time.perf_counter() - t:.0f} s)")
    finally:
        cache.clear()
    row["seconds"] = round(time.perf_counter() - t0, 1)
    return row


def summary(row: dict) -> dict:
    """target -> samples -> {"mean", "min"} top-1 over seeds."""
    out: dict = {}
    for t in TARGETS:
        by_n: dict = {}
        for r in row["runs"]:
            by_n.setdefault(r["samples"], []).append(r[t])
        out[t] = {n: {"mean": statistics.mean(v), "min": min(v)} for n, v in sorted(by_n.items())}
    return out


def enough(rows: list[dict], tolerance: float) -> int | None:
    """The smallest count from which every model's and target's mean top-1 stays within ``tolerance`` points of
    its mean with the most samples (and every seed's within 2x that)."""
    counts = sorted({r["samples"] for row in rows for r in row["runs"]})
    for i, n in enumerate(counts):
        ok = True
        for row in rows:
            s = summary(row)
            for t in TARGETS:
                best = s[t][counts[-1]]["mean"]
                ok &= all(100 * (best - s[t][m]["mean"]) <= tolerance and 100 * (best - s[t][m]["min"]) <= 2 * tolerance
                          for m in counts[i:])
        if ok:
            return n
    return None


def table(rows: list[dict]) -> str:
    counts = sorted({r["samples"] for row in rows for r in row["runs"]})
    seeds = sorted({r["seed"] for row in rows for r in row["runs"]})
    head = "| model (float top-1) | target | " + " | ".join(str(n) for n in counts) + " |"
    lines = [head, "|---|---|" + "---|" * len(counts)]
    for row in rows:
        s = summary(row)
        for t in TARGETS:
            cells = []
            for n in counts:
                d = s[t][n]
                cells.append(f"{100 * d['mean']:.2f}" + (f" ({100 * d['min']:.2f})" if len(seeds) > 1 else ""))
            lines.append(f"| {row['model']} ({100 * row['float_top1']:.2f}) | {t} | " + " | ".join(cells) + " |")
    note = (f"top-1 % on {rows[0]['test_samples']} Fashion-MNIST test images by number of calibration samples "
            f"(train split, minmax); mean over seeds {', '.join(map(str, seeds))}" + (" (worst seed)" if len(seeds) > 1 else ""))
    return note + "\n\n" + "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--counts", default=",".join(map(str, COUNTS)))
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--test-samples", type=int, default=2000)
    p.add_argument("--tolerance", type=float, default=TOLERANCE)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "calibration_samples.json")
    p.add_argument("--resume", action="store_true", help="keep the models --out already holds (same counts, seeds and "
                   "test samples) and measure only the others")
    a = p.parse_args(argv)
    counts = [int(v) for v in a.counts.split(",")]
    seeds = [int(v) for v in a.seeds.split(",")]
    done: dict = {}
    if a.resume and a.out.is_file():
        old = json.loads(a.out.read_text())
        if old["counts"] == counts and old["seeds"] == seeds:
            done = {r["model"]: r for r in old["models"] if r["test_samples"] == a.test_samples}
    rows = []
    for m in a.models:
        print(f"{m}:" + (" kept from " + str(a.out) if m in done else ""), flush=True)
        rows.append(done.get(m) or measure_model(m, counts, seeds, a.test_samples, log=lambda s: print(s, flush=True)))
        a.out.parent.mkdir(parents=True, exist_ok=True)  # written after each model: a long run keeps what it measured
        n = enough(rows, a.tolerance)
        a.out.write_text(json.dumps({"counts": counts, "seeds": seeds, "tolerance_points": a.tolerance, "enough": n,
                                     "models": rows}, indent=2))
    print()
    print(table(rows))
    print(f"\nfewest samples within {a.tolerance} points of the most (every model and target): {n}")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
