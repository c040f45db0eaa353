"""One model of the sweep, in its own process (sweep.py runs this with a timeout):

    python -m benchmarks.third_party.run_one MODEL --photos DIR --out DIR --targets T,T --result FILE

Builds the model with random weights, re-estimates its BatchNorm statistics on the photos, then calls
``edgeport.export(...)`` exactly as a user would and writes one JSON record to ``--result``:
status "ok" (export returned), "refused" (a typed ``edgeport.EdgeportError``: its class and one-line message)
or "traceback" (any other exception: a failure of edgeport; type, message, the deepest edgeport frame, the
target being worked on and the stage). The traceback is also printed to stderr, which sweep.py keeps.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
import traceback
from pathlib import Path

import torch

TARGET_NAMES = ("onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16", "tflite-int8")


def _target_in_frames(tb, stage: str) -> str | None:
    """The target an exception was raised while working on: the export stage's target, or in validation the
    artifact validate_artifacts was running (None: before any artifact, e.g. the PyTorch reference)."""
    if stage.startswith("export "):
        return stage.split()[-1]
    found = None
    for frame, _ in traceback.walk_tb(tb):
        v = frame.f_locals.get("artifact") if frame.f_code.co_name == "validate_artifacts" else None
        if isinstance(getattr(v, "target", None), str) and v.target in TARGET_NAMES:
            found = v.target
    return found


def _traceback_record(exc: BaseException, stage: str) -> dict:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "/edgeport/" in f.filename]
    where = inside[-1] if inside else (frames[-1] if frames else None)
    lines = str(exc).strip().splitlines() or [""]
    return {
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message_first": lines[0][:400],
        "message_last": lines[-1][:400],
        "message_lines": len(lines),
        "edgeport_frame": f"{where.filename.split('/edgeport/')[-1] if where else '?'}:{where.lineno if where else '?'} "
                          f"in {where.name if where else '?'}",
        "innermost_frame": f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}" if frames else None,
        "target": _target_in_frames(exc.__traceback__, stage) or "none (before any artifact)",
        "tail": traceback.format_exception(exc)[-6:],
    }


def _native_log(message: str, out: Path) -> dict | None:
    """The native log an EdgeportError points at ("full log: PATH"): copied beside the record, with the lines
    that say what failed (exception lines, onnx2tf's op name)."""
    m = re.search(r"full log: (\S+?\.log)", message)
    if not m or not Path(m.group(1)).is_file():
        return None
    text = Path(m.group(1)).read_text(errors="replace")
    shutil.copy(m.group(1), out / "native.log")
    keys = ("Error:", "error:", "onnx_op_name", "must be", "not supported", "failed")
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # onnx2tf colours its log
    lines = [ln.strip()[:300] for ln in text.splitlines() if any(k in ln for k in keys) and "File \"" not in ln]
    return {"file": str(out / "native.log"), "key_lines": lines[:8]}


def _parity(p) -> dict | None:
    if p is None:
        return None
    keep = ("max_abs", "cosine", "sqnr_db", "top1_agreement", "samples")
    return {"against": p.against, "judged": p.judged, "passed": p.passed, "failures": list(p.failures),
            "metrics": {k: p.metrics.get(k) for k in keep if k in p.metrics}}


def _delegation(d: dict | None) -> dict | None:
    if d is None:
        return None
    return {"partitions": d.get("partitions"), "slow": d.get("slow"), "float": d.get("float"),
            "left_out": d.get("left_out"), "slow_nodes": d.get("slow_nodes", [])[:40]}


def _artifacts(result) -> list[dict]:
    return [{"target": a.target, "file": a.path.name, "size": a.size, "int8_coverage": a.int8_coverage,
             "delegation": _delegation(a.delegation), "parity": _parity(a.parity),
             "auto_float": [{k: f[k] for k in ("layer", "op", "why")} for f in a.auto_float]} for a in result.artifacts]


def _files_delegation(out: Path) -> dict:
    """XNNPACK delegation of the int8 .tflite on disk, when export did not return (best effort)."""
    from edgeport.formats.delegation import delegation_of

    found = {}
    for path in sorted(out.glob("*.int8.tflite")):
        try:
            found[path.name] = _delegation(delegation_of(path).to_dict())
        except Exception as exc:  # noqa: BLE001 - only a report; the export's own failure is what counts
            found[path.name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    return found


def run(name: str, photos: Path, out: Path, targets: str, record: dict, progress: Path) -> None:
    import edgeport
    from benchmarks.third_party.models import BY_NAME, reestimate_bn
    from benchmarks.third_party.photos import load_batch
    from edgeport.errors import EdgeportError

    spec = BY_NAME[name]
    record["stage"] = "build"
    model = spec.build()
    record["bn_layers"] = reestimate_bn(model, torch.from_numpy(load_batch(photos, spec.size)))
    model.eval()
    t0 = time.perf_counter()

    def on_stage(s: str) -> None:
        record["stage"] = s.split(": ", 1)[-1]
        record.setdefault("stages", []).append([record["stage"], round(time.perf_counter() - t0, 1)])
        progress.write_text(json.dumps(record, indent=1, default=str))  # a timeout or crash keeps the stage

    try:
        result = edgeport.export(model, targets, input_shape=(1, 3, spec.size, spec.size), calib=str(photos),
                                 out=str(out), strict=False, on_stage=on_stage, name=spec.name)
    except EdgeportError as exc:
        record.update(status="refused", error={"type": type(exc).__name__, "message": str(exc).splitlines()[0][:400] if str(exc) else "",
                                               "message_lines": len(str(exc).splitlines()), "hint": getattr(exc, "hint", None),
                                               "exit_code": getattr(exc, "exit_code", None)})
    except Exception as exc:  # noqa: BLE001 - the sweep's job: any other exception is an edgeport failure to record
        traceback.print_exc()
        record.update(status="traceback", error=_traceback_record(exc, record.get("stage", "")))
    else:
        record.update(status="ok", artifacts=_artifacts(result), passed=result.passed, problems=list(result.problems),
                      warnings=list(result.warnings), data=result.data)
    if record["status"] != "ok":
        record["native_log"] = _native_log(str(record["error"].get("message") or record["error"].get("message_first")), out)
    record["export_seconds"] = round(time.perf_counter() - t0, 1)
    if record["status"] != "ok":
        record["files_delegation"] = _files_delegation(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--photos", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--targets", required=True)
    ap.add_argument("--result", type=Path, required=True)
    args = ap.parse_args()
    record: dict = {"model": args.model, "targets": args.targets.split(",")}
    try:
        run(args.model, args.photos, args.out, args.targets, record, args.result)
    finally:
        args.result.write_text(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    main()
