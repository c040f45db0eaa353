"""16-bit activations on real weights: Google's ai-edge-quantizer (the LiteRT quantizer with int8/int16 recipes)
evaluated before edgeport writes one (issue 20):

    python -m benchmarks.real_weights.int16 [--networks efficientnet_lite0,mobilenet_v2_backbone]

For each network: the PyTorch module converted to float TFLite by litert-torch 0.10 (ai-edge-quantizer needs a
SignatureDef, which edgeport's own tflite-fp32 does not carry), quantized by ai-edge-quantizer 0.10 with its
``static_wi8_ai8`` and ``static_wi8_ai16`` recipes (per-channel int8 weights; int8 or int16
activations, min/max ranges), calibrated on the 54 calibration images; beside them edgeport's own tflite-int8
with its defaults on the same 54 images. Each file: SQNR vs PyTorch fp32 on all 63 images and images agreeing
(quality.score), int8/int16 op coverage, XNNPACK delegation, and this machine's p50 (1 thread, LiteRT with
XNNPACK where it takes the ops). ai-edge-quantizer comes from .cache/litert-torch-site (setup.sh); it is put on
sys.path here only. Writes benchmarks/results/real_weights/int16/int16.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.real_weights import quality

OUT = quality.ROOT / "benchmarks" / "results" / "real_weights" / "int16"


def aeq_quantize(fp32: Path, calib: np.ndarray, recipe_name: str, out: Path) -> float:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    sigs = Interpreter(model_path=str(fp32)).get_signature_list()
    key, sig = next(iter(sigs.items()))
    (name,) = sig["inputs"]
    shape = Interpreter(model_path=str(fp32)).get_signature_runner(key).get_input_details()[name]["shape"]
    x = calib if tuple(shape[1:]) == calib.shape[1:] else calib.transpose(0, 2, 3, 1)  # the file's layout
    t = time.perf_counter()
    qt = quantizer.Quantizer(str(fp32))
    qt.load_quantization_recipe(getattr(recipe, recipe_name)())
    cal = qt.calibrate({key: [{name: x[i : i + 1].astype(np.float32)} for i in range(len(x))]}, num_threads=1)
    qt.quantize(cal).export_model(str(out), overwrite=True)
    return round(time.perf_counter() - t, 1)


def describe(path: Path) -> dict:
    import edgeport
    from edgeport.formats.delegation import tflite_delegation
    from edgeport.formats.int8_coverage import coverage_of

    d = tflite_delegation(path)
    return {"coverage": coverage_of(path).line(), "partitions": d.partitions, "builtin": dict(d.slow),
            "p50_ms": round(edgeport.bench(path, budget_s=3.0)[0].p50_ms, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default="efficientnet_lite0,mobilenet_v2_backbone")
    args = ap.parse_args()
    sys.path.insert(0, str(quality.LITERT_TORCH_SITE))
    import edgeport

    dirs = quality.photo_dirs()
    rows = []
    for name in args.networks.split(","):
        n = quality.Network(name, dirs)
        import litert_torch
        import torch

        r = edgeport.export(n.model, ["tflite-int8"], input_shape=n.shape, calib=n.calib_dir,
                            val_data=n.all_dir, preprocess=n.pre, out=n.work / "int16", strict=False, name=n.net.name)
        float_file = n.work / "int16" / f"{name}.litert_torch_fp32.tflite"
        litert_torch.convert(n.model.eval(), (torch.from_numpy(n.x_calib[:1]),)).export(str(float_file))
        files = {"litert-torch float": (float_file, None), "edgeport tflite-int8 (defaults)": (r.artifact("tflite-int8").path, None)}
        for rec in ("static_wi8_ai8", "static_wi8_ai16"):
            out = n.work / "int16" / f"{name}.aeq_{rec}.tflite"
            files[f"ai-edge-quantizer {rec}"] = (out, aeq_quantize(float_file, n.x_calib, rec, out))
        for label, (path, secs) in files.items():
            row = {"network": name, "file": label, **n.score(Path(path)), "quantize_s": secs, **describe(Path(path))}
            rows.append(row)
            print(json.dumps(row, default=str), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "int16.json").write_text(json.dumps({"rows": rows}, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
