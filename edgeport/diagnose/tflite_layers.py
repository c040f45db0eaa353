"""Per-layer diagnosis of a tflite-int8 model against its *calibrated* float model
(:func:`edgeport.exporters.tflite.calibrated_model`): the float graph TFLite quantized, whose tensor names are
the int8 model's (measured: 178/178 on MobileNetV2-0.5), so every quantized tensor has its float twin by name.

* End to end (``sqnr_db``, ``rel_rmse``): both models run in ai-edge-litert with
  ``experimental_preserve_all_tensors=True`` and TFLite's built-in kernels (no XNNPACK delegate: a delegated
  partition does not keep its intermediate tensors), the int8 input quantized with the file's own scale/zero
  point; each int8 activation is dequantized with its scale/zero point and compared with the float tensor.
* Layer-local (``error_to_scale``): TensorFlow's own ``tf.lite.experimental.QuantizationDebugger`` on a debug
  model quantized from the same calibrated model with ``enable_numeric_verify`` (a float twin of every op fed
  with the int8 op's dequantized inputs; NumericVerify outputs the difference). Chosen over re-deriving the
  local error by hand, which would mean re-implementing every TFLite op in float. Measured on the trained
  MobileNetV2-0.5 with 500 samples: ~10 s. Its rows are matched to ours by tensor name; a tensor it does not
  verify gets NaN there (written as null).
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from edgeport.diagnose.metrics import ErrorSums, LayerError
from edgeport.formats.layer_names import tflite_names
from edgeport.util import native_logs


def diagnose_tflite(int8: bytes, calibrated: bytes, inputs_nchw: np.ndarray,
                    reference_norms: dict[str, np.ndarray] | None = None) -> list[LayerError]:
    """One row per int8 activation tensor produced by an op of ``int8`` with a float twin in ``calibrated``.
    Layers are named by :func:`edgeport.formats.layer_names.tflite_names` against ``reference_norms`` (the fp32 ONNX
    model's :func:`~edgeport.formats.layer_names.onnx_weight_norms`); without it, by op type and neighbours only."""
    from edgeport.exporters.tf_env import to_nhwc

    data = to_nhwc(np.asarray(inputs_nchw, dtype=np.float32))
    qi, fi = _interpreter(int8), _interpreter(calibrated)
    q_in, f_in = qi.get_input_details()[0], fi.get_input_details()[0]
    batch = int(q_in["shape"][0])
    data = data[: len(data) // batch * batch]
    float_index = {t["name"]: t["index"] for t in fi.get_tensor_details()}
    # a written file names its I/O "input"/"output" (tflite_compact.with_metadata): pair them by position
    twin = {q["name"]: f["name"] for get in ("get_input_details", "get_output_details")
            for q, f in zip(getattr(qi, get)(), getattr(fi, get)())}
    float_index.update({q: float_index[f] for q, f in twin.items() if f in float_index})
    produced = {}  # output tensor index -> (op position, op name)
    for op in qi._get_ops_details():  # noqa: SLF001 - the public API has no op list; QuantizationDebugger uses it too
        for o in op["outputs"]:
            produced[int(o)] = (int(op["index"]), op["op_name"])
    rows_meta = []
    for t in qi.get_tensor_details():
        scales = t["quantization_parameters"]["scales"]
        if t["index"] not in produced or t["dtype"] not in (np.int8, np.uint8) or len(scales) != 1:
            continue
        if t["name"] not in float_index:
            continue
        zero = int(t["quantization_parameters"]["zero_points"][0])
        rows_meta.append((produced[t["index"]][0], t, float(scales[0]), zero, produced[t["index"]][1]))
    rows_meta.sort(key=lambda m: m[0])
    sums = {m[1]["name"]: ErrorSums() for m in rows_meta}
    for i in range(0, len(data), batch):
        x = data[i : i + batch]
        qi.set_tensor(q_in["index"], _quantize_input(x, q_in))
        fi.set_tensor(f_in["index"], x.astype(f_in["dtype"]))
        qi.invoke()
        fi.invoke()
        for _, t, scale, zero, _ in rows_meta:
            q = (qi.get_tensor(t["index"]).astype(np.float32) - zero) * scale
            sums[t["name"]].add(fi.get_tensor(float_index[t["name"]]), q)
    local = local_errors(calibrated, data, batch)
    names = tflite_names(int8, reference_norms or {})
    rows = []
    for _, t, scale, zero, op in rows_meta:
        acc, name = sums[t["name"]], t["name"]
        calibrated_name = twin.get(name, name)  # what the converter's denylist and the local errors know it by
        mse = local.get(calibrated_name)
        e2s = math.sqrt(mse) / scale if mse is not None and math.isfinite(mse) and scale > 0 else math.nan
        rows.append(LayerError(calibrated_name, names.get(name, name), op, calibrated_name, scale, zero, acc.sqnr_db(),
                               acc.rel_rmse(), e2s, len(rows)))
    return rows


def local_errors(calibrated: bytes, data_nhwc: np.ndarray, batch: int) -> dict[str, float]:
    """Tensor name -> layer-local mean squared error, from TensorFlow's QuantizationDebugger (module doc)."""
    from tensorflow.lite.python import convert as tf_convert

    from edgeport.exporters.tf_env import import_tf

    tf = import_tf()
    with native_logs.captured() as log:
        debug_model = tf_convert.mlir_quantize(calibrated, fully_quantize=False, enable_numeric_verify=True)

        def dataset():
            for i in range(0, len(data_nhwc), batch):
                yield [data_nhwc[i : i + batch]]

        debugger = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model, debug_dataset=dataset)
        debugger.run()
        buf = io.StringIO()
        debugger.layer_statistics_dump(buf)
    log.unlink(missing_ok=True)
    return {r["tensor_name"]: float(r["mean_squared_error"]) for r in csv.DictReader(io.StringIO(buf.getvalue()))}


def _interpreter(model: bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with native_logs.silenced():
        it = Interpreter(model_content=model, num_threads=1, experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    return it


def _quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype not in (np.int8, np.uint8):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)
