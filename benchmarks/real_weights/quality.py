"""Int8 quality on real ImageNet-trained weights, per network and route, in one command:

    python -m benchmarks.real_weights.quality [--networks a,b] [--routes r,s] [--out benchmarks/results/real_weights]

(after ``bash benchmarks/real_weights/setup.sh``; the networks are models.py's). Every route quantizes the same
PyTorch weights with the same photos: the 63 images of ``.cache/sweep-photos`` (21 photos, each whole and as two
square crops). Calibration takes the 54 images of 18 photos; the 9 images of the 3 HELD_OUT photos are never
calibrated on. Each int8 file is then run in its own runtime (LiteRT for .tflite, onnxruntime for .onnx, through
edgeport's runners) on all 63 images and compared with PyTorch fp32 outputs of the original module: SQNR (dB)
over all outputs, and agreement: images whose top-1 class equals PyTorch's (for a backbone without head: images
whose nearest other image, by cosine of the embeddings, is the one PyTorch's embeddings pick).

Routes (``--routes``; all by default):
- ``defaults``: ``edgeport.export(model, "tflite-int8,onnx-int8", calib=<all 63 images>)`` and nothing else, as a
  user passing one folder gets: 63 images are too few to halve (half would be under edgeport's MIN_CALIBRATION),
  so edgeport calibrates on all of them and validates on the same images, in-sample.
- ``minmax``, ``percentile``, ``entropy``, ``mse``, each also ``+bc`` (``--bias-correction``): ``edgeport.quantize``
  with ``calib=<54 images>``, ``val_data=<all 63>`` (one capture and onnx2tf conversion per group of methods).
- ``cle`` (minmax + ``--cle``) and ``mse+cle+bc``: ``edgeport.export`` with that calibration/validation.
- ``adaround``, ``mse+adaround``, ``mse+adaround+bc``: ``edgeport.export`` with ``--adaround`` (minmax / mse
  ranges; ``+bc``: bias correction inside AdaRound's walk), that calibration/validation.
- ``range-search``: the defaults with ``--range-search`` (edgeport.quantization.range_search), that
  calibration/validation.
- ``rr-off`` / ``mse+bc+rr-off``: onnx-int8 only, minmax / mse + bias correction, ``--onnx-reduce-range off``:
  8-bit weights where ``auto`` picks 7-bit (x86 without VNNI, as this table's machine; ``auto`` on such a CPU is
  what ``defaults`` and the other routes get).
- ``onnx2tf``: onnx2tf 1.28.8's own full-integer quantization (``onnx2tf -oiqt -cind input calib.npy 0 1``) of
  edgeport's fp32 ONNX, calibrated on the 54 images (already preprocessed, NHWC), run in LiteRT.
- ``ort-qdq``: onnxruntime ``quantize_static`` (QDQ, int8 activations and weights, per-tensor, MinMax: its
  defaults) of the same fp32 ONNX and images, run in onnxruntime; ``ort-qdq-pc`` the same with per_channel=True.
- ``litert-torch``: litert-torch 0.10's documented PT2E int8 flow on the PyTorch module itself (``PT2EQuantizer``
  with ``get_symmetric_quantization_config(is_per_channel=True)``, ``prepare_pt2e`` -> the 54 images ->
  ``convert_pt2e`` -> ``litert_torch.convert(..., quant_config=QuantConfig(pt2e_quantizer=...))``), run in LiteRT.
  It runs in a subprocess with ``.cache/litert-torch-site`` on its path (setup.sh installs it there, never into
  .venv: its jax/torchao dependencies are not edgeport's).

A route edgeport refuses (typed EdgeportError) or crashes on is recorded with the error, not fatal. edgeport's
own verdict (its thresholds on its validation data: exit 3 when one fails) is kept beside each number.
Writes ``<out>/quality.json`` and ``<out>/quality.md`` and, with ``--doc``, replaces the table in
docs/real-weights.md. Artifacts go to ``.cache/real-weights/runs`` (not kept).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.real_weights import models

ROOT = models.ROOT
RUNS = ROOT / ".cache" / "real-weights" / "runs"
DOC = ROOT / "docs" / "real-weights.md"
HELD_OUT = ("chelsea", "gravel", "motorcycle_right")  # never calibrated on (a cat, a texture, a vehicle)
INT8 = ("tflite-int8", "onnx-int8")
METHODS = ("minmax", "percentile", "entropy", "mse")
# edgeport.quantization.adaround (--adaround): minmax / mse ranges, with bias correction inside AdaRound's walk
ADAROUND = {"adaround": {}, "mse+adaround": {"method": "mse"}, "mse+adaround+bc": {"method": "mse", "bias_correction": True}}
ROUTES = ("defaults", *METHODS, *(f"{m}+bc" for m in METHODS), "cle", "mse+cle+bc", *ADAROUND, "range-search", "rr-off",
          "mse+bc+rr-off",
          "onnx2tf", "ort-qdq", "ort-qdq-pc", "litert-torch")
BEGIN, END = "<!-- quality table: begin (benchmarks/real_weights/quality.py --doc) -->", "<!-- quality table: end -->"


def photo_dirs() -> tuple[Path, Path, list[Path]]:
    """(folder of all images, folder of the calibration images, all image files): symlinks into the photos."""
    files = models.photo_files()
    base = RUNS / "photos"
    all_dir, calib_dir = base / "all", base / "calib"
    for d in (all_dir, calib_dir):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    for f in files:
        (all_dir / f.name).symlink_to(f)
        if not is_held_out(f):
            (calib_dir / f.name).symlink_to(f)
    return all_dir, calib_dir, files


def is_held_out(f: Path) -> bool:
    return f.stem.rsplit("_", 1)[0] in HELD_OUT


def agreement(ref: np.ndarray, out: np.ndarray, head: bool) -> np.ndarray:
    """Per image: top-1 equal (head), or the same nearest other image by cosine (embedding)."""
    if head:
        return ref.argmax(1) == out.argmax(1)

    def nearest(y):
        u = y / np.linalg.norm(y, axis=1, keepdims=True)
        s = u @ u.T
        np.fill_diagonal(s, -2)
        return s.argmax(1)

    return nearest(ref) == nearest(out)


def score(path: Path, x: np.ndarray, ref: np.ndarray, net, held: np.ndarray) -> dict:
    from edgeport.runtimes import open_runtime

    out = open_runtime(path).run(x).reshape(ref.shape)
    agree = agreement(ref, out, net.head)
    return {"file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
            "sqnr_db": round(models.sqnr_db(ref, out), 2), "agree": int(agree.sum()), "images": len(agree),
            "held_out_agree": int(agree[held].sum()), "held_out_images": int(held.sum())}


def _error(exc: BaseException) -> dict:
    from edgeport.errors import EdgeportError

    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, EdgeportError):
        return {"error": "refused", "type": type(exc).__name__, "message": first, "hint": getattr(exc, "hint", None),
                "exit_code": getattr(exc, "exit_code", None)}
    tb = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in tb if "/edgeport/" in f.filename]
    where = inside[-1] if inside else (tb[-1] if tb else None)
    return {"error": "traceback", "type": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": first,
            "where": f"{where.filename.split('/edgeport/')[-1]}:{where.lineno} in {where.name}" if where else None}


class Network:
    """One network's model, inputs, PyTorch reference outputs and working folders."""

    def __init__(self, name: str, dirs):
        self.model, self.net = models.load(name)
        self.all_dir, self.calib_dir, files = dirs
        self.x = models.inputs(self.net, files)
        self.x_calib = self.x[[not is_held_out(f) for f in files]]
        self.held = np.array([is_held_out(f) for f in files])
        with torch.no_grad():
            self.ref = self.model(torch.from_numpy(self.x)).numpy()
        self.work = RUNS / name
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.shape = (1, 3, self.net.size, self.net.size)
        self.pre = dict(self.net.preprocess)
        self._fp32 = None

    def score(self, path: Path) -> dict:
        return score(path, self.x, self.ref, self.net, self.held)

    def fp32_onnx(self) -> Path:
        """edgeport's fp32 ONNX (the fused graph), the baselines' input."""
        if self._fp32 is None:
            import edgeport

            r = edgeport.export(self.model, "onnx-fp32", input_shape=self.shape, out=self.work / "fp32", name=self.net.name)
            self._fp32 = r.artifact("onnx-fp32").path
        return self._fp32


def _verdict(passed: bool, failures) -> dict:
    return {"edgeport_passed": bool(passed), "edgeport_failures": list(failures)}


def run_defaults(n: Network) -> dict:
    import edgeport

    t = time.perf_counter()
    r = edgeport.export(n.model, list(INT8), input_shape=n.shape, calib=n.all_dir, preprocess=n.pre, out=n.work / "defaults",
                        strict=False, name=n.net.name)
    secs = round(time.perf_counter() - t, 1)
    return {a.target: {**n.score(a.path), **_verdict(a.parity.passed if a.parity else False, a.parity.failures if a.parity else ()),
                       "seconds": secs, "data": r.data} for a in r.artifacts}


def run_methods(n: Network, methods: list[str], bc: bool) -> dict:
    """edgeport.quantize with several methods (one capture + conversion); {route: {target: record}}."""
    import edgeport

    t = time.perf_counter()
    out = n.work / ("methods+bc" if bc else "methods")
    comp = edgeport.quantize(n.model, n.calib_dir, targets=list(INT8), methods=methods, val_data=n.all_dir,
                             quant=edgeport.QuantOptions(bias_correction=bc), out=out, input_shape=(n.shape),
                             preprocess=n.pre, strict=False)
    secs = round(time.perf_counter() - t, 1)
    routes: dict = {}
    for row in comp.results:
        route = row.method + ("+bc" if bc else "")
        routes.setdefault(route, {})[row.target] = {**n.score(Path(row.path)), **_verdict(row.passed, row.failures),
                                                    "seconds_group": secs, "edgeport_sqnr_db": row.sqnr_db}
    return routes


def run_export(n: Network, route: str, quant, targets=INT8) -> dict:
    import edgeport

    t = time.perf_counter()
    r = edgeport.export(n.model, list(targets), input_shape=n.shape, calib=n.calib_dir, val_data=n.all_dir, preprocess=n.pre,
                        quant=quant, out=n.work / route.replace("+", "_"), strict=False, name=n.net.name)
    secs = round(time.perf_counter() - t, 1)
    return {a.target: {**n.score(a.path), **_verdict(a.parity.passed if a.parity else False, a.parity.failures if a.parity else ()),
                       "seconds": secs} for a in r.artifacts}


ONNX2TF_SCRIPT = r"""
import sys, numpy as np
import onnx2tf, onnx2tf.onnx2tf as m
calib = np.load(sys.argv[2])
m.download_test_image_data = lambda: calib[:20]  # never fetch anything (only used without -cind)
onnx2tf.convert(input_onnx_file_path=sys.argv[1], output_folder_path=sys.argv[3], output_integer_quantized_tflite=True,
                custom_input_op_name_np_data_path=[[sys.argv[4], sys.argv[2], np.zeros(3, np.float32), np.ones(3, np.float32)]],
                non_verbose=True)
"""


def run_onnx2tf(n: Network) -> dict:
    """onnx2tf's own int8: the CLI's -oiqt -cind, through its Python API in a subprocess (TF stays out of ours)."""
    import onnx

    onnx_path = n.fp32_onnx()
    work = n.work / "onnx2tf"
    work.mkdir(exist_ok=True)
    calib = work / "calib_nhwc.npy"
    np.save(calib, n.x_calib.transpose(0, 2, 3, 1))  # already preprocessed: mean 0, std 1
    name = onnx.load(str(onnx_path)).graph.input[0].name
    t = time.perf_counter()
    log = work / "onnx2tf.log"
    with log.open("w") as f:
        code = subprocess.run([sys.executable, "-c", ONNX2TF_SCRIPT, str(onnx_path), str(calib), str(work / "out"), name],
                              stdout=f, stderr=subprocess.STDOUT, cwd=work).returncode
    produced = work / "out" / f"{onnx_path.stem}_full_integer_quant.tflite"
    if code != 0 or not produced.is_file():
        return {"tflite-int8": {"error": "onnx2tf failed", "exit_code": code, "log": str(log)}}
    return {"tflite-int8": {**n.score(produced), "seconds": round(time.perf_counter() - t, 1),
                            "settings": "onnx2tf -oiqt (per-channel weights, int8 I/O: *_full_integer_quant.tflite)"}}


LITERT_TORCH_SITE = ROOT / ".cache" / "litert-torch-site"
LITERT_TORCH_SCRIPT = r"""
import sys
import numpy as np, torch
from benchmarks.real_weights import models
import litert_torch
from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
from litert_torch.quantize.quant_config import QuantConfig
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

model, _ = models.load(sys.argv[1])
calib = np.load(sys.argv[2])
sample = (torch.from_numpy(calib[:1]),)
quantizer = PT2EQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False))
m = prepare_pt2e(torch.export.export(model.eval(), sample).module(), quantizer)
with torch.no_grad():
    for i in range(len(calib)):
        m(torch.from_numpy(calib[i : i + 1]))
m = convert_pt2e(m, fold_quantize=False)
litert_torch.convert(m, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer)).export(sys.argv[3])
"""


def run_litert_torch(n: Network) -> dict:
    """litert-torch's own PT2E int8 of the PyTorch module (its documented flow), in a subprocess."""
    if not (LITERT_TORCH_SITE / "litert_torch").is_dir():
        return {"tflite-int8": {"error": "litert-torch not installed", "hint": "bash benchmarks/real_weights/setup.sh"}}
    work = n.work / "litert_torch"
    work.mkdir(exist_ok=True)
    calib, out, log = work / "calib.npy", work / f"{n.net.name}.pt2e_int8.tflite", work / "litert_torch.log"
    np.save(calib, n.x_calib.astype(np.float32))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LITERT_TORCH_SITE), str(ROOT)])}
    t = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run([sys.executable, "-c", LITERT_TORCH_SCRIPT, n.net.name, str(calib), str(out)], stdout=f,
                              stderr=subprocess.STDOUT, cwd=work, env=env).returncode
    if code != 0 or not out.is_file():
        return {"tflite-int8": {"error": "litert-torch failed", "exit_code": code, "log": str(log)}}
    return {"tflite-int8": {**n.score(out), "seconds": round(time.perf_counter() - t, 1),
                            "settings": "litert-torch 0.10 PT2EQuantizer, symmetric per-channel, static"}}


def run_ort(n: Network, per_channel: bool) -> dict:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    onnx_path = n.fp32_onnx()
    name = onnx.load(str(onnx_path)).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: n.x_calib[i : i + 1]} for i in range(len(n.x_calib))])

        def get_next(self):
            return next(self.it, None)

    out = n.work / f"ort_qdq{'_pc' if per_channel else ''}.onnx"
    t = time.perf_counter()
    quantize_static(str(onnx_path), str(out), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel)
    return {"onnx-int8": {**n.score(out), "seconds": round(time.perf_counter() - t, 1),
                          "settings": f"quantize_static QDQ, QInt8/QInt8, MinMax, per_channel={per_channel}"}}


def run_network(name: str, routes: list[str], dirs) -> dict:
    import edgeport

    t0 = time.perf_counter()
    n = Network(name, dirs)
    net = n.net
    rec = {"network": name, "package": net.package, "file": net.file, "sha256": net.sha256, "license": net.license,
           "architecture": net.architecture, "input": list(n.shape), "preprocess": n.net.data_preprocess().describe(),
           "head": net.head, "images": len(n.x), "calibration_images": len(n.x_calib),
           "held_out_images": int(n.held.sum()), "routes": {}}

    def attempt(route_names: list[str], fn):
        print(f"[{name}] {', '.join(route_names)} ...", flush=True)
        t = time.perf_counter()
        try:
            got = fn()
        except Exception as exc:  # noqa: BLE001 - a refusal or crash is a result of this benchmark, recorded
            err = _error(exc)
            traceback.print_exc()
            got = {r: {"all": err} for r in route_names}
        for r in route_names:
            rec["routes"][r] = got.get(r, {"all": {"error": "not produced"}})
        print(f"[{name}]   done in {time.perf_counter() - t:.0f} s: "
              + "; ".join(f"{r}: {_brief(rec['routes'][r])}" for r in route_names), flush=True)

    if "defaults" in routes:
        attempt(["defaults"], lambda: {"defaults": run_defaults(n)})
    for bc in (False, True):
        group = [m for m in METHODS if (f"{m}+bc" if bc else m) in routes]
        if group:
            attempt([f"{m}+bc" if bc else m for m in group], lambda g=group, b=bc: run_methods(n, g, b))
    if "cle" in routes:
        attempt(["cle"], lambda: {"cle": run_export(n, "cle", edgeport.QuantOptions(cle=True))})
    if "mse+cle+bc" in routes:
        q = replace(edgeport.QuantOptions(), method="mse", cle=True, bias_correction=True)
        attempt(["mse+cle+bc"], lambda: {"mse+cle+bc": run_export(n, "mse+cle+bc", q)})
    for route, extra in ADAROUND.items():
        if route in routes:
            q = edgeport.QuantOptions(adaround=True, **extra)
            attempt([route], lambda r=route, q=q: {r: run_export(n, r, q)})
    if "range-search" in routes:  # the defaults (mse, bias correction) + --range-search
        q = edgeport.QuantOptions(range_search=True)
        attempt(["range-search"], lambda: {"range-search": run_export(n, "range-search", q)})
    if "rr-off" in routes:
        q = edgeport.QuantOptions(onnx_reduce_range="off")
        attempt(["rr-off"], lambda: {"rr-off": run_export(n, "rr-off", q, ("onnx-int8",))})
    if "mse+bc+rr-off" in routes:
        q = edgeport.QuantOptions(method="mse", bias_correction=True, onnx_reduce_range="off")
        attempt(["mse+bc+rr-off"], lambda: {"mse+bc+rr-off": run_export(n, "mse+bc+rr-off", q, ("onnx-int8",))})
    if "onnx2tf" in routes:
        attempt(["onnx2tf"], lambda: {"onnx2tf": run_onnx2tf(n)})
    if "ort-qdq" in routes:
        attempt(["ort-qdq"], lambda: {"ort-qdq": run_ort(n, False)})
    if "ort-qdq-pc" in routes:
        attempt(["ort-qdq-pc"], lambda: {"ort-qdq-pc": run_ort(n, True)})
    if "litert-torch" in routes:
        attempt(["litert-torch"], lambda: {"litert-torch": run_litert_torch(n)})
    rec["seconds"] = round(time.perf_counter() - t0, 1)
    return rec


def _brief(route: dict) -> str:
    return ", ".join(f"{t} {_cell(c)}" for t, c in route.items())


def _cell(c: dict | None) -> str:
    if c is None:
        return ""
    if "error" in c:
        return f"{c['error']}: {c.get('type', '')} {c.get('message', '')}".strip()[:160]
    mark = "" if c.get("edgeport_passed", True) else " (edgeport: fail)"
    return f"{c['sqnr_db']:.1f} dB, {c['agree']}/{c['images']}{mark}"


ROUTE_TEXT = {
    "defaults": "edgeport defaults (one folder of 63 images: too few to halve, so calibrated on all 63, validated in-sample)",
    "cle": "edgeport `--cle` (minmax)",
    "mse+cle+bc": "edgeport `--calib-method mse --cle --bias-correction`",
    "adaround": "edgeport `--adaround` (minmax)",
    "mse+adaround": "edgeport `--calib-method mse --adaround`",
    "mse+adaround+bc": "edgeport `--calib-method mse --adaround --bias-correction`",
    "rr-off": "edgeport `--onnx-reduce-range off` (minmax; 8-bit weights on a CPU without VNNI)",
    "mse+bc+rr-off": "edgeport `--calib-method mse --bias-correction --onnx-reduce-range off`",
    "onnx2tf": "onnx2tf 1.28.8 `-oiqt` (54 images)",
    "ort-qdq": "onnxruntime `quantize_static` QDQ, per-tensor (54 images)",
    "ort-qdq-pc": "onnxruntime `quantize_static` QDQ, per-channel (54 images)",
    "litert-torch": "litert-torch 0.10 PT2E int8, per-channel (54 images)",
}


def route_text(r: str) -> str:
    if r in ROUTE_TEXT:
        return ROUTE_TEXT[r]
    m, bc = r.split("+")[0], r.endswith("+bc")
    return f"edgeport `--calib-method {m}`" + (" `--bias-correction`" if bc else "") + " (54 images)"


def table(records: list[dict]) -> str:
    nets = [r["network"] for r in records]
    head = "| route | " + " | ".join(f"{n} {t.split('-')[0]}" for n in nets for t in INT8) + " |"
    lines = [head, "|---|" + "---|" * (2 * len(nets))]
    order = [r for r in ROUTES if any(r in rec["routes"] for rec in records)]
    for route in order:
        cells = []
        for rec in records:
            got = rec["routes"].get(route)
            for t in INT8:
                c = None if got is None else (got.get(t) or got.get("all"))
                cells.append(_cell(c) or "-")
        lines.append(f"| {route_text(route)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(records: list[dict], command: str) -> str:
    notes = "\n".join(
        f"- **{r['network']}**: {r['package']} `{r['file']}` ({r['license']}), {r['architecture']}, input "
        f"{'x'.join(map(str, r['input'][1:]))}, {r['preprocess']}; agreement = "
        f"{'top-1 equal to PyTorch' if r['head'] else 'same nearest other image (cosine of the 1280-d embeddings)'}; "
        f"{r['seconds']:.0f} s" for r in records)
    return (f"Command: `{command}`\n\nEach cell: SQNR of the int8 file's outputs vs PyTorch fp32 (dB), images "
            f"agreeing with PyTorch out of {records[0]['images']} (all photos; {records[0]['held_out_images']} of them "
            "never calibrated on); \"(edgeport: fail)\": edgeport's own thresholds failed on its validation data "
            "(the CLI would exit 3). A baseline route makes one file (tflite or onnx).\n\n"
            f"{table(records)}\n\n{notes}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--networks", default=",".join(models.BY_NAME))
    ap.add_argument("--routes", default=",".join(ROUTES), help=f"comma-separated, from: {', '.join(ROUTES)}")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "real_weights")
    ap.add_argument("--doc", action="store_true", help=f"replace the table in {DOC.relative_to(ROOT)}")
    ap.add_argument("--render", action="store_true", help="run nothing: rewrite the table from <out>/quality.json")
    ap.add_argument("--merge", action="store_true",
                    help="keep the networks and routes of an earlier <out>/quality.json that this run does not redo")
    args = ap.parse_args()
    routes = args.routes.split(",")
    bad = [r for r in routes if r not in ROUTES]
    names = args.networks.split(",")
    unknown = [n for n in names if n not in models.BY_NAME]
    if bad or unknown:
        sys.exit(f"unknown route(s) {bad} / network(s) {unknown}: routes {', '.join(ROUTES)}; networks {', '.join(models.BY_NAME)}")
    if args.render:
        saved = json.loads((args.out / "quality.json").read_text())
        return write_tables(saved["networks"], saved["command"], args.out, args.doc)
    why = models.missing()
    if why:
        sys.exit(why)
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    torch.manual_seed(0)
    dirs = photo_dirs()
    records = [run_network(name, routes, dirs) for name in names]
    command = "python -m benchmarks.real_weights.quality" + "".join(
        f" --{k} {v}" for k, v in (("networks", args.networks), ("routes", args.routes))
        if v != {"networks": ",".join(models.BY_NAME), "routes": ",".join(ROUTES)}[k])
    args.out.mkdir(parents=True, exist_ok=True)
    earlier = args.out / "quality.json"
    if args.merge and earlier.is_file():
        old = json.loads(earlier.read_text())
        records, command = merge(old["networks"], records), f"{old['command']}; {command} --merge"
    versions = _versions()
    (args.out / "quality.json").write_text(json.dumps({"command": command, "versions": versions, "held_out": HELD_OUT,
                                                       "networks": records}, indent=1, default=str) + "\n")
    write_tables(records, command, args.out, args.doc)


def write_tables(records: list[dict], command: str, out: Path, doc: bool) -> None:
    md = markdown(records, command)
    (out / "quality.md").write_text(md)
    print(md)
    if doc:
        text = DOC.read_text()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOC.write_text(text[:start] + "\n" + md + text[end:])


def merge(old: list[dict], new: list[dict]) -> list[dict]:
    """Earlier records with this run's routes put in (a network's new routes replace its old ones of that name)."""
    by_name = {r["network"]: r for r in old}
    for rec in new:
        if rec["network"] in by_name:
            kept = by_name[rec["network"]]
            rec = {**rec, "routes": {**kept["routes"], **rec["routes"]}, "seconds": kept["seconds"] + rec["seconds"]}
        by_name[rec["network"]] = rec
    return [by_name[n] for n in models.BY_NAME if n in by_name]


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("torch", "onnx", "onnxruntime", "tensorflow", "ai-edge-litert", "onnx2tf")}


if __name__ == "__main__":
    main()
