"""parity.json: what was exported and how well each artifact matches PyTorch, written beside the artifacts.

One file per folder holds a record per artifact: a later export, validate or run into the same folder merges
its artifacts into it (replacing the records of the targets it made again, keeping the others), under a lock
and written atomically, so exporting tflite-fp32 after tflite-int8 keeps the int8 record. A folder that held
another model's record starts a new one. ``schema`` numbers the layout.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

from edgeport.util.atomic_file import write_text

SCHEMA = 2  # 2: records merged per artifact, "passed": null for checks not judged, "not_judged"
FILE_NAME = "parity.json"


def build(run, data=None, quant=None) -> dict:
    """The parity record of an ExportRun (edgeport.pipeline.export_flow)."""
    from edgeport.runtimes.cpu_features import describe_host

    prep = run.prep
    data_record = None
    if data is not None:
        data_record = {
            "calibration": {"source": data.calibration.source, "samples": len(data.calibration),
                            "synthetic": data.calibration.synthetic},
            "validation": data.validation.validation_record(),
        }
    quantization = quant.__dict__ if quant is not None else None
    made = {"data": data_record, "quantization": quantization}  # per artifact: a later merge keeps each one's own
    return {
        "schema": SCHEMA,
        "model": prep.loaded.name,
        "input_shape": list(prep.loaded.input_shape),
        "weights": str(prep.loaded.weights) if prep.loaded.weights else None,
        "host": describe_host(),
        "fusion": {**prep.report.to_dict(), "max_rel_error": prep.equivalence.max_rel_error},
        "data": data_record,
        "quantization": quantization,
        "equalization": getattr(run, "equalization", None),  # CLE / bias correction report (edgeport.quantization.equalization)
        "artifacts": [{**a.to_dict(), "made_with": made} for a in run.artifacts],
        "int8_problems": run.int8_problems,
        "validation": run.validation.to_dict() if run.validation else None,
        "passed": run.passed,
    }


def merge(old: dict | None, new: dict) -> dict:
    """``new`` with the records of ``old`` (same model and input shape) for the targets ``new`` did not make."""
    if not old or old.get("model") != new.get("model") or old.get("input_shape") != new.get("input_shape"):
        return new
    made = {a["target"] for a in new.get("artifacts") or []}
    merged = dict(new)
    merged["artifacts"] = [a for a in old.get("artifacts") or [] if a.get("target") not in made] + list(new.get("artifacts") or [])
    merged["int8_problems"] = ([p for p in old.get("int8_problems") or [] if p.split(":")[0] not in made]
                               + list(new.get("int8_problems") or []))
    old_v, new_v = old.get("validation"), new.get("validation")
    if old_v or new_v:
        base = dict(new_v or old_v)
        checks = [c for c in (old_v or {}).get("checks", []) if c.get("stage") not in made] + list((new_v or {}).get("checks", []))
        base["checks"] = checks
        base["passed"] = not any(c.get("judged") and not c.get("passed") for c in checks)
        base["not_judged"] = [c["stage"] for c in checks if c.get("against") == "torch" and not c.get("judged")]
        merged["validation"] = base
    merged["passed"] = not merged["int8_problems"] and (merged.get("validation") or {}).get("passed", True)
    return merged


@contextmanager
def _locked(folder: Path):
    """Exports into one folder merge one at a time (the lock file lives in the temp dir, not among the artifacts)."""
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"edgeport-parity-{key}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def read(path: Path) -> dict | None:
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write(path: Path, record: dict) -> Path:
    """Merge ``record`` into ``path`` (a folder gets ``parity.json`` inside it), atomically."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / FILE_NAME
    with _locked(path.parent):
        merged = merge(read(path), record)
        write_text(path, json.dumps(merged, indent=2, default=str))
    return path


def record_of(artifact: Path) -> tuple[dict, dict] | None:
    """(the parity.json record beside ``artifact``, its artifact entry), found by the file's sha256."""
    from edgeport.pipeline.artifact import sha256_of

    record = read(Path(artifact).parent / FILE_NAME)
    if record is None or not Path(artifact).is_file():
        return None
    digest = sha256_of(Path(artifact))
    for entry in record.get("artifacts") or []:
        if entry.get("sha256") == digest:
            return record, entry
    return None
