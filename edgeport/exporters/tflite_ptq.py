"""TFLite full-integer PTQ in two steps: calibrate once, then quantize as often as needed.

``TFLiteConverter.convert()`` calibrates and quantizes in one call. Its new (MLIR) quantizer is literally
``calibrate`` followed by ``mlir_quantize`` and ``deduplicate_readonly_buffers`` (tensorflow/lite/python/lite.py,
``TFLiteConverterBase._quantize``); this module makes the two steps separate, as TensorFlow's own
``QuantizationDebugger`` does, because three features need the calibrated model in between:

* the per-layer diagnosis runs the *calibrated* model, a float TFLite graph whose tensor names are exactly the
  int8 model's, as its float reference;
* calibration methods other than TFLite's min/max rewrite the calibrated ranges before quantizing;
* accuracy control re-quantizes with some layers denylisted (kept float) without calibrating again.

Measured on the trained MobileNetV2-0.5 (TF 2.21): ``quantize(calibrated(...))`` gives the same 178 tensors,
names, quantization parameters and values as ``convert()``; only the CONVERSION_METADATA buffer (the converter's
hash and options record) differs, so edgeport's default export keeps ``convert()`` and uses this path only when
ranges or denylisted layers are given. Calibration takes ~1.5 s and each quantization ~0.1 s for that model.
These are TensorFlow's private entry points (pinned TF 2.21); the public ``QuantizationDebugger`` uses them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from edgeport.errors import UnsupportedOp
from edgeport.exporters.tf_env import converter_failure
from edgeport.util import native_logs


def converter(saved_model: Path, calibration_nhwc: np.ndarray, batch: int, allow_float: bool = False):
    """TFLiteConverter for full-integer PTQ of ``saved_model`` with ``calibration_nhwc`` as representative data."""
    from edgeport.exporters.tf_env import import_tf

    tf = import_tf()

    def representative():
        for i in range(0, len(calibration_nhwc) - batch + 1, batch):
            yield [calibration_nhwc[i : i + batch]]

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if allow_float:
        ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)  # allow float kernels; coverage names what stayed float
    conv.target_spec.supported_ops = ops
    return conv


def calibrate(saved_model: Path, calibration_nhwc: np.ndarray, batch: int) -> bytes:
    """The float TFLite model with TFLite's calibrated min/max recorded on every tensor it will quantize."""
    conv = converter(saved_model, calibration_nhwc, batch)
    conv._experimental_calibrate_only = True
    with native_logs.captured() as log:
        try:
            data = conv.convert()
        except Exception as exc:
            raise UnsupportedOp(f"TFLiteConverter could not calibrate the model: {converter_failure(exc)}",
                                f"log: {log}") from None
    log.unlink(missing_ok=True)
    return bytes(data)


def calibrated_ranges(calibrated: bytes) -> dict[str, tuple[float, float]]:
    """Tensor name -> (min, max) as calibrated (per-tensor activation ranges)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    out: dict[str, tuple[float, float]] = {}
    for sg in model.subgraphs:
        for t in sg.tensors:
            q = t.quantization
            if q is not None and q.min is not None and q.max is not None and len(q.min) == 1:
                out[_name(t)] = (float(q.min[0]), float(q.max[0]))
    return out


def with_ranges(calibrated: bytes, ranges: Mapping[str, tuple[float, float]]) -> bytes:
    """``calibrated`` with the min/max of the named tensors replaced (a calibration method's ranges)."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(calibrated))
    for sg in model.subgraphs:
        for t in sg.tensors:
            r = ranges.get(_name(t))
            if r is not None and t.quantization is not None and t.quantization.min is not None:
                t.quantization.min, t.quantization.max = [float(r[0])], [float(r[1])]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def quantize(calibrated: bytes, io_dtype: str = "int8", denylisted_nodes: Iterable[str] = ()) -> bytes:
    """Full-integer quantization of a calibrated model; ``denylisted_nodes`` (tensor names of op outputs, as the
    per-layer diagnosis reports them) stay float, with QUANTIZE/DEQUANTIZE around them."""
    from tensorflow.lite.python import convert as tf_convert

    from edgeport.exporters.tf_env import import_tf

    tf = import_tf()
    io = {"int8": tf.int8, "uint8": tf.uint8, "float32": tf.float32}[io_dtype]
    denied = sorted(set(denylisted_nodes))
    with native_logs.captured() as log:
        try:
            data = tf_convert.mlir_quantize(calibrated, input_data_type=io, output_data_type=io,
                                            denylisted_nodes=denied or None)
            data = tf_convert.deduplicate_readonly_buffers(data)
        except Exception as exc:
            raise UnsupportedOp(f"TFLite could not quantize the model: {converter_failure(exc)}",
                                f"log: {log}") from None
    log.unlink(missing_ok=True)
    return bytes(data)


def _name(tensor) -> str:
    n = tensor.name
    return n.decode() if isinstance(n, bytes) else str(n)
