"""What every artifact says about itself: the ``edgeport`` metadata entry written into each file.

ONNX keeps it in ``metadata_props`` (key ``edgeport``), TFLite in the flatbuffer's ``metadata`` list (name
``edgeport``, a buffer holding the same JSON). It carries the edgeport version, the target, the source model,
the weights' sha256 (never a local path), the input shape and layout, the preprocessing and the calibration
data's sha256, so ``eval``, ``bench`` and ``inspect`` read a file's context from the file. Nothing in it depends
on the time or the machine: the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json

KEY = "edgeport"


def describe(loaded, calibration=None) -> dict:
    """The metadata shared by every artifact of one export (a LoadedModel and its calibration inputs)."""
    from edgeport import __version__
    from edgeport.pipeline.artifact import sha256_of

    meta = {
        "edgeport": __version__,
        "model": loaded.name,
        "weights_sha256": sha256_of(loaded.weights) if loaded.weights else None,
        "input_shape": list(loaded.input_shape),
        "preprocess": loaded.data_preprocess().to_dict(),
    }
    if calibration is not None:
        meta["calibration_sha256"] = hashlib.sha256(calibration.tobytes()).hexdigest()
        meta["calibration_samples"] = int(len(calibration))
    return meta


def for_target(meta: dict, target: str, layout: str, **extra) -> str:
    """The JSON stored in one file: the export's metadata plus its target, input layout and I/O facts."""
    return json.dumps({**meta, "target": target, "input_layout": layout, **extra}, sort_keys=True)


def set_onnx(model, text: str) -> None:
    """Put the entry into an onnx ModelProto's metadata_props (replacing an earlier one)."""
    kept = [p for p in model.metadata_props if p.key != KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key, entry.value = KEY, text
