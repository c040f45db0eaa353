"""Did the converter keep AdaRound's rounding? The int8 weights read out of a written file, compared bit for bit
with the q AdaRound chose (:mod:`edgeport.quantization.adaround`).

Files store weights in their own layout, so each file weight is compared in the layouts a torch weight
[out, in/groups, kh, kw] can take there: as is (ONNX Conv), OHWI (TFLite CONV_2D), [1, kh, kw, out] (TFLite
DEPTHWISE_CONV_2D), transposed 2-D (a MatMul's [in, out]). A chosen q counts as found when one file weight equals
it exactly in one of them (a multiset: two layers with the same q need two file weights). Values are int8
arrays of hundreds of elements or more, so an accidental match is not a concern; a converter that re-rounded
differently shows up as a missing layer.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def _views(t: np.ndarray) -> list[np.ndarray]:
    views = [t]
    if t.ndim == 4:
        views += [t.transpose(0, 3, 1, 2), t.transpose(3, 0, 1, 2)]  # OHWI -> OIHW; [1, H, W, C] -> [C, 1, H, W]
    elif t.ndim == 2:
        views.append(t.T)
    return views


def _key(a: np.ndarray) -> tuple:
    return a.shape, np.ascontiguousarray(a).tobytes()


def compare(chosen: dict[str, np.ndarray], file_weights: list[np.ndarray]) -> dict:
    """{"layers": n, "bit_exact": found, "missing": [names]} for ``chosen`` (weight name -> int8 q) in a file."""
    pool: Counter = Counter()
    for t in file_weights:
        for key in {_key(v) for v in _views(t)}:
            pool[key] += 1
    missing = []
    for name, q in chosen.items():
        key = _key(q.astype(np.int8))
        if pool[key] > 0:
            pool[key] -= 1
        else:
            missing.append(name)
    return {"layers": len(chosen), "bit_exact": len(chosen) - len(missing), "missing": missing}


def onnx_int8_weights(model) -> list[np.ndarray]:
    """Every int8 initializer of an ONNX model (QDQ or QOperator weights; biases are int32)."""
    from onnx import TensorProto, numpy_helper

    return [numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) >= 2]


def tflite_int8_weights(data: bytes) -> list[np.ndarray]:
    """Every constant int8 tensor (a buffer with data) of a .tflite flatbuffer, in its stored shape."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytearray(data), 0)
    out = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.TensorsLength()):
            t = graph.Tensors(i)
            if t.Type() != schema.TensorType.INT8 or t.ShapeLength() < 2:
                continue
            buf = model.Buffers(t.Buffer())
            if buf is None:
                continue
            shape = tuple(t.ShapeAsNumpy())
            if buf.DataLength():
                raw = buf.DataAsNumpy()
            elif buf.Offset() > 1 and buf.Size():  # large models keep buffers after the flatbuffer
                raw = np.frombuffer(bytes(data[buf.Offset(): buf.Offset() + buf.Size()]), np.uint8)
            else:
                continue
            out.append(np.frombuffer(raw.tobytes(), np.int8).reshape(shape))
    return out
