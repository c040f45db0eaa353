"""docs/third-party.md from the sweep's JSON: how to run it, what the columns mean, the table, the failures and
the int8 .tflite files that do not run in one XNNPACK partition.

    .venv/bin/python -m benchmarks.third_party.report [benchmarks/results/third_party/sweep.json] [docs/third-party.md]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HEAD = """# Third-party architectures: the sweep

edgeport is tried here the way a new user would try it: mobile networks, attention hybrids, a segmentation
model and a detection backbone+head from torchvision and timm, each passed as an `nn.Module` to

    edgeport.export(model, "onnx-fp32,onnx-int8,tflite-fp32,tflite-fp16,tflite-int8",
                    input_shape=(1, 3, S, S), calib=<photo folder>, out=<dir>, strict=False)

The weights are random (nothing is downloaded); each network's BatchNorm statistics are first re-estimated on
the sweep's real photos (train mode, cumulative average, 2 passes, no gradients), so its outputs depend on the
input. The same photos are the calibration data: 21 photographs (scikit-image's and matplotlib's sample
photos) plus two square crops of each, 63 images that edgeport splits into 31 calibration and 32 held-out
validation samples.

## How to run

    bash benchmarks/third_party/setup.sh                  # once: torchvision 0.28.0 + timm 1.0.31 into .cache/sweep-site
                                                          #       (--no-deps --target, never into .venv), photos into .cache/sweep-photos
    .venv/bin/python -m benchmarks.third_party.sweep      # all models, one at a time, each in its own process
    .venv/bin/python -m benchmarks.third_party.sweep --models mobilevit_xxs,levit_128s --quick --no-doc

`--quick` exports only onnx-fp32 and tflite-int8. PyPI's torchvision wheel is CUDA-built; the sweep imports it
with a small shim (`benchmarks/third_party/thirdparty_import.py`) that skips its C ops, which none of these
architectures use. Records: `benchmarks/results/third_party/sweep.json`; each model's files, `record.json` and
full log (with any traceback) under `benchmarks/results/third_party/<model>/` (not committed).

## Columns

- **files**: artifacts written, of the targets asked for.
- **int8 float ops**: compute ops left float in the int8 graphs, as edgeport's int8 check reads them
  (onnx-int8 / tflite-int8); `(N auto)`: ops edgeport kept float on its own, named in the export's output
  and parity.json (ops ORT's quantizer or LiteRT's int8 kernels cannot take, and ops XNNPACK has no int8 kernel
  for, kept float so they run inside its partition; [quantization.md](quantization.md#ops-int8-cannot-run));
  `-`: that file was not made or not checked.
- **XNNPACK**: partitions of the int8 .tflite in ai-edge-litert's XNNPACK delegate (1 = whole graph on the
  fast path) and the number of nodes left to LiteRT's builtin kernels.
- **fp32 parity**: onnx-fp32 and tflite-fp32 judged against PyTorch on the held-out photos (pass/FAIL).
- **int8 SQNR**: onnx-int8 / tflite-int8 SQNR in dB against PyTorch, and whether edgeport's default int8
  thresholds (15 dB, 0.9 top-1 agreement) passed. An `nn.Module` is judged like a trained model, so with
  random weights a low SQNR here says little about the quantizer.
- **s**: wall seconds for the whole process (build, BN re-estimation, export, validation) on 2 shared cores.
- **result**: `ok`, or how it failed: `traceback` (an exception that is not an `EdgeportError`: a bug),
  `refused` (a typed one-line `EdgeportError`), `crash` (the process died), `timeout`.
"""


def _art(rec: dict, target: str) -> dict | None:
    return next((a for a in rec.get("artifacts", []) if a["target"] == target), None)


def _float_ops(rec: dict, target: str) -> str:
    a = _art(rec, target)
    cov = a and a.get("int8_coverage")
    if not cov:
        return "-"
    auto = len(a.get("auto_float") or [])
    return f"{cov.get('float', 0)}" + (f" ({auto} auto)" if auto else "")


def _xnnpack(rec: dict) -> str:
    a = _art(rec, "tflite-int8")
    d = a["delegation"] if a else next(iter(rec.get("files_delegation", {}).values()), None)
    if not d or "error" in d:
        return "-"
    left = sum((d.get("slow") or {}).values())
    return f"{d.get('partitions')}" + (f" ({left} out)" if left else "")


def _parity(rec: dict, target: str, fmt: str) -> str:
    a = _art(rec, target)
    p = a and a.get("parity")
    if not p:
        return "-"
    if fmt == "pass":
        return "pass" if p["passed"] else "FAIL"
    sqnr = p["metrics"].get("sqnr_db")
    return f"{sqnr:.1f}{'' if p['passed'] else '✗'}" if sqnr is not None else "?"


def _result(rec: dict) -> str:
    status, err = rec.get("status", "?"), rec.get("error") or {}
    if status == "ok" and rec.get("traceback_in_log"):
        return "ok, but a traceback in the log"
    if status == "ok":
        return "ok" + (" (problems)" if rec.get("problems") and not all("SQNR" in p or "top-1" in p for p in rec["problems"]) else "")
    if status == "traceback":
        return f"traceback: `{err.get('type', '').split('.')[-1]}` in {_target(rec)} ({rec.get('stage')})"
    if status == "refused":
        return f"refused: `{err.get('type')}` in {_target(rec)}"
    return f"{status} ({rec.get('stage', '?')})"


def table(records: list[dict], n_targets: int) -> list[str]:
    rows = ["| model | family | files | int8 float ops (onnx/tflite) | XNNPACK int8 | fp32 parity (onnx/tflite) "
            "| int8 SQNR dB (onnx/tflite) | s | result |", "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        rows.append(
            f"| {r['model']} | {r.get('family', '')} | {len(r.get('files', []))}/{n_targets} "
            f"| {_float_ops(r, 'onnx-int8')} / {_float_ops(r, 'tflite-int8')} | {_xnnpack(r)} "
            f"| {_parity(r, 'onnx-fp32', 'pass')} / {_parity(r, 'tflite-fp32', 'pass')} "
            f"| {_parity(r, 'onnx-int8', 'sqnr')} / {_parity(r, 'tflite-int8', 'sqnr')} | {r.get('seconds', '')} | {_result(r)} |")
    return rows


def _target(rec: dict) -> str:
    """The target a failure happened in: from the traceback's frames, or the export stage it stopped in."""
    stage, err = rec.get("stage") or "", rec.get("error") or {}
    if stage.startswith("export "):
        return stage.split()[-1]
    if stage == "validate" and str(err.get("edgeport_frame", "")).startswith("pipeline/"):
        return "none (PyTorch reference, before any artifact)"
    return err.get("target") or "?"


def failures(records: list[dict]) -> list[str]:
    out = []
    for r in records:
        err = r.get("error") or {}
        if r.get("status") == "ok":
            continue
        out.append(f"- **{r['model']}** ({r.get('status')}, stage `{r.get('stage')}`, target {_target(r)}): "
                   f"`{err.get('type')}`")
        if r.get("status") == "traceback":
            out.append(f"  - message: `{err.get('message_first', '')[:300]}`"
                       + (f" ... `{err.get('message_last', '')[:200]}` ({err.get('message_lines')} lines)"
                          if err.get("message_lines", 1) > 1 else ""))
            out.append(f"  - raised at `{err.get('innermost_frame')}`; deepest edgeport frame `{err.get('edgeport_frame')}`")
        elif r.get("status") == "refused":
            out.append(f"  - `{err.get('message')}` (exit {err.get('exit_code')}; hint: {err.get('hint')})")
        if r.get("native_log"):
            out.append("  - native log: " + "; ".join(f"`{ln[:160]}`" for ln in r["native_log"]["key_lines"][:4]))
        else:
            out.extend(f"  - `{line[:200]}`" for line in r.get("log_tail", []))
    return out or ["none"]


def delegation(records: list[dict]) -> list[str]:
    out = []
    for r in records:
        a = _art(r, "tflite-int8")
        d = a["delegation"] if a else next(iter(r.get("files_delegation", {}).values()), None)
        if not d or "error" in d or (d.get("partitions") == 1 and not d.get("slow")):
            continue
        slow = ", ".join(f"{k} x{v}" for k, v in sorted((d.get("slow") or {}).items(), key=lambda kv: -kv[1]))
        nodes = ", ".join(f"{n['op']} `{n['name']}`" for n in d.get("slow_nodes", [])[:8])
        out.append(f"- **{r['model']}**: {d.get('partitions')} partitions; outside XNNPACK: {slow or 'none'}"
                   + (f" (e.g. {nodes})" if nodes else ""))
    return out or ["none: every int8 .tflite that was written runs whole in one XNNPACK partition"]


def render(summary: dict, notes: str = "") -> str:
    """The doc's text from the sweep's records; ``notes`` (notes.md beside sweep.json: which code each row
    ran, what was measured beside the sweep) goes under the results heading."""
    family = ("cnn", "hybrid", "segmentation", "detection")
    recs, n = sorted(summary["models"], key=lambda r: family.index(r.get("family", "cnn"))), len(summary["targets"])
    ok = [r for r in recs if r.get("status") == "ok" and len(r.get("files", [])) == n]
    one = [r for r in recs if _xnnpack(r) == "1"]
    tfl = [r for r in recs if _xnnpack(r) != "-"]
    from benchmarks.third_party.models import SPECS

    missing = [s.name for s in SPECS if s.name not in {r["model"] for r in recs}]
    partial = [f"**Partial run**: not yet run: {', '.join(missing)}.", ""] if missing else []
    lines = [HEAD, "## Results", "", *([notes.strip(), ""] if notes.strip() else []), *partial,
             f"Targets: {', '.join(summary['targets'])}. {len(ok)} of {len(recs)} models wrote every file and returned; "
             f"{len(one)} of {len(tfl)} int8 .tflite files run in one XNNPACK partition.", "", *table(recs, n), "",
             "## Failures", "", *failures(recs), "", "## int8 .tflite files not whole in one XNNPACK partition", "",
             *delegation(recs), ""]
    return "\n".join(lines)


def write_doc(summary_path: Path, doc: Path) -> None:
    notes = Path(summary_path).with_name("notes.md")
    doc.write_text(render(json.loads(Path(summary_path).read_text()), notes.read_text() if notes.is_file() else ""))


if __name__ == "__main__":
    root = Path(__file__).resolve().parents[2]
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else root / "benchmarks" / "results" / "third_party" / "sweep.json"
    write_doc(src, Path(sys.argv[2]) if len(sys.argv) > 2 else root / "docs" / "third-party.md")
