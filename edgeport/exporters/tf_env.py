"""TensorFlow, loaded quietly or named as missing, and the NHWC layout of onnx2tf's graphs: shared by the
TFLite exporter, TFLite's post-training quantization (tflite_ptq), activation ranges and the TFLite diagnosis,
none of which may import the exporter module itself (it imports them)."""

from __future__ import annotations

import os
import re

import numpy as np

from edgeport.errors import RuntimeMissing
from edgeport.util import native_logs

TF_HINT = ("pip install 'edgeport[tflite]' (TensorFlow 2.21, onnx2tf 1.28.8, tf_keras, ai-edge-litert; "
           "without it edgeport is ONNX-only)")


def import_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with native_logs.silenced():  # TensorFlow logs CUDA/oneDNN notices to stderr on import
            import onnx2tf  # noqa: F401
            import tensorflow as tf
    except ImportError as exc:
        raise RuntimeMissing(
            f"TFLite export needs tensorflow and onnx2tf ({exc.name} is missing)",
            TF_HINT,
        ) from None
    return tf


def to_nhwc(nchw: np.ndarray) -> np.ndarray:
    """PyTorch-layout inputs in the layout of onnx2tf's graphs."""
    return np.ascontiguousarray(nchw.transpose(0, 2, 3, 1)).astype(np.float32)


_MLIR_OP = re.compile(r'fused\["(\w+):\s*", "([^"@]+)')


def converter_failure(exc: BaseException) -> str:
    """TFLiteConverter's error in one line: the op and TensorFlow node it names, not a page of MLIR locations
    ("Could not translate MLIR to FlatBuffer ... fused["Erf:", "model_37/tf.math.erf/Erf@..."] ...")."""
    text = str(exc)
    found = _MLIR_OP.search(text)
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    first = first.split("<unknown>")[0].strip().rstrip(".")[:160]
    if found:
        return f"op {found.group(1)} ({found.group(2)}) has no TFLite kernel for this conversion: {first}"
    return first
