"""parity.json: what was exported and how well each artifact matches PyTorch, written beside the artifacts."""

from __future__ import annotations

import json
from pathlib import Path

from edgeport.util.atomic_file import write_text


def build(run, data=None, quant=None) -> dict:
    """The parity record of an ExportRun (edgeport.pipeline.export_flow)."""
    from edgeport.runtimes.cpu_features import describe_host

    prep = run.prep
    d = {
        "model": prep.loaded.name,
        "input_shape": list(prep.loaded.input_shape),
        "weights": str(prep.loaded.weights) if prep.loaded.weights else None,
        "host": describe_host(),
        "fusion": {**prep.report.to_dict(), "max_rel_error": prep.equivalence.max_rel_error},
        "data": None,
        "quantization": quant.__dict__ if quant is not None else None,
        "equalization": getattr(run, "equalization", None),  # CLE / bias correction report (edgeport.quantization.equalization)
        "artifacts": [a.to_dict() for a in run.artifacts],
        "int8_problems": run.int8_problems,
        "validation": run.validation.to_dict() if run.validation else None,
        "passed": run.passed,
    }
    if data is not None:
        d["data"] = {
            "calibration": {"source": data.calibration.source, "samples": len(data.calibration), "synthetic": data.calibration.synthetic},
            "validation": {"source": data.validation.source, "samples": len(data.validation),
                           "labelled": data.validation.labels is not None},
        }
    return d


def write(path: Path, record: dict) -> Path:
    """Write ``record`` to ``path`` (a folder gets ``parity.json`` inside it)."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / "parity.json"
    write_text(path, json.dumps(record, indent=2, default=str))
    return path
