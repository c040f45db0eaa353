"""Did the converter keep AdaRound's rounding? The int8 weights read out of a written file, compared bit for bit
with the q AdaRound chose (:mod:`edgeport.quantization.adaround`).

Files store weights in their own layout, so each file weight is compared in the layouts a torch weight
[out, in/groups, kh, kw] can take there: as is (ONNX Conv), OHWI (TFLite CONV_2D), [1, kh, kw, out] (TFLite
DEPTHWISE_CONV_2D), transposed 2-D (a MatMul's [in, out]). Each chosen q is paired with the file weight of its
shape that agrees on the most output channels (each file weight used once).

One thing both converters do on their own: when a channel's weights are so small that its int32 bias would
overflow (bias / (input scale * weight scale) beyond int32: dead channels of a BN-folded checkpoint, max|w| ~1e-9
and a non-zero bias, e.g. 26 of EfficientNet-Lite0's 50 layers), ORT (``_adjust_weight_scale_for_int32_bias``)
and TFLiteConverter enlarge that channel's weight scale and round again. Such a channel is reported as
``rescaled`` (its file scale is not max|w|/127), not as a mismatch: AdaRound cannot know the converter's
activation scale, and those weights are zero or near zero either way. A layer is ``bit_exact`` when every other
channel holds exactly AdaRound's q.
"""

from __future__ import annotations

import numpy as np


def _views(t: np.ndarray) -> list[np.ndarray]:
    views = [t]
    if t.ndim == 4:
        views += [t.transpose(0, 3, 1, 2), t.transpose(3, 0, 1, 2)]  # OHWI -> OIHW; [1, H, W, C] -> [C, 1, H, W]
    elif t.ndim == 2:
        views.append(t.T)
    return views


def compare(chosen: dict[str, np.ndarray], file_weights: list[tuple[np.ndarray, np.ndarray | None]],
            scales: dict[str, np.ndarray] | None = None) -> dict:
    """{"layers", "bit_exact", "rescaled_channels", "missing"} for ``chosen`` (weight name -> int8 q) in a file's
    ``file_weights`` ([(int8 array, per-output-channel scales or None)]); ``scales``: AdaRound's per-channel scales
    (name -> max|w|/127), which tell a channel the converter rescaled from one it rounded differently."""
    used: set[int] = set()
    missing, rescaled, exact = [], 0, 0
    for name, q in chosen.items():
        q = q.astype(np.int8)
        best = None  # (channels equal, file index, per-channel equality, file scales)
        for i, (t, file_scale) in enumerate(file_weights):
            if i in used:
                continue
            for v in _views(t):
                if v.shape == q.shape:
                    eq = (v.reshape(len(v), -1) == q.reshape(len(q), -1)).all(axis=1)
                    if best is None or eq.sum() > best[0]:
                        best = (int(eq.sum()), i, eq, file_scale)
        if best is None or best[0] == 0:
            missing.append(name)
            continue
        _, i, eq, file_scale = best
        used.add(i)
        differ = ~eq
        if differ.any() and file_scale is not None and scales is not None and name in scales:
            ours = np.asarray(scales[name], np.float64).reshape(-1)
            theirs = np.broadcast_to(np.asarray(file_scale, np.float64).reshape(-1), ours.shape)
            moved = differ & (theirs > ours * (1 + 1e-5))
            rescaled += int(moved.sum())
            differ = differ & ~moved
        if differ.any():
            missing.append(name)
        else:
            exact += 1
    return {"layers": len(chosen), "bit_exact": exact, "rescaled_channels": rescaled, "missing": missing}


def onnx_int8_weights(model) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every int8 initializer of at least 2 dimensions of an ONNX model (QDQ or QOperator weights; biases are int32),
    with its scale initializer (``<name>_quantized`` -> ``<name>_scale``, ORT's naming) when there is one."""
    from onnx import TensorProto, numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    out = []
    for t in model.graph.initializer:
        if t.data_type == TensorProto.INT8 and len(t.dims) >= 2:
            base = t.name[: -len("_quantized")] if t.name.endswith("_quantized") else t.name
            scale = inits.get(f"{base}_scale")
            out.append((numpy_helper.to_array(t), numpy_helper.to_array(scale) if scale is not None else None))
    return out


def tflite_int8_weights(data: bytes) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Every constant int8 tensor (a buffer with data) of a .tflite flatbuffer, in its stored shape, with its scales."""
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
            quant = t.Quantization()
            scale = quant.ScaleAsNumpy() if quant is not None and quant.ScaleLength() else None
            out.append((np.frombuffer(raw.tobytes(), np.int8).reshape(shape), scale))
    return out
