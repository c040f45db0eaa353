"""Calibration ranges that let XNNPACK run an int8 ADD whose input is tiny next to its output.

XNNPACK's LiteRT delegate takes an int8 ADD only when each input's scale divided by the output's is in
[1/1024, 256) (tensorflow/lite/delegates/xnnpack/xnnpack_delegate.cc, VisitAddNode); any other ADD runs in
LiteRT's builtin kernel and cuts the graph into partitions. A residual branch that is (almost) zero next to
the sum it is added to breaks the lower bound: LeViT's untrained branches end in a BatchNorm whose weight starts
at zero (timm's ``bn_weight_init=0``), so their calibrated range is ~0 and their int8 scale ~1e-8 of the sum's
(21 such ADDs, 24 partitions on timm levit_128s).

The fix keeps the op int8: widen that input's calibrated range (and its producer's, back through ops that keep
the scale, such as RESHAPE) until its scale is 1/1000 of the output's. Its step is still 1000x finer than the
ADD's own output step, so the sum changes by at most 1/2000 of an output step before the ADD rounds; nothing is
clipped, since the new range contains the old one. Only tensors read by nothing but that ADD are widened (a
second reader would lose resolution it may need). Written here because the converter has no option for it;
the ranges go through the same ``with_ranges`` path as the calibration methods'. A constant operand (a bias
that is ~0, as the sum of LeViT's two zero-init classifier biases) has no calibrated range to widen: that ADD is
kept float, which XNNPACK runs inside the partition.
"""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field

XNNPACK_ADD_MIN_RATIO = 1.0 / 1024.0  # VisitAddNode's scale_min
WIDENED_RATIO = 1.0 / 1000.0  # the widened input's scale / the output's: a margin above the minimum
SAME_SCALE_OPS = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")  # the quantizer gives output = input scale
INT8_RANGE = (-128, 127)


@dataclass
class AddFixes:
    # input tensor name -> widened (min, max) of it and of the tensors that share its scale
    widened: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    # ADDs (output tensor names) whose tiny input is a constant (a ~0 bias): its range is the converter's, not a
    # calibrated one, so these are kept float instead, which XNNPACK runs inside its partition
    constant: list[str] = field(default_factory=list)


def add_fixes(int8_model: bytes, refused_adds: set[str]) -> AddFixes:
    """For each input of the ``refused_adds`` (output tensor names of ADDs XNNPACK left to LiteRT) whose scale is
    below 1/1024 of the output's: the widened ranges of an activation, or the ADD itself when it is a constant."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(int8_model))
    sg = model.subgraphs[0]
    ops = [(_op_name(model, op), op) for op in sg.operators]
    producer = {int(o): (name, op) for name, op in ops for o in op.outputs}
    readers = Counter(int(i) for _, op in ops for i in op.inputs if i >= 0)
    readers.update(int(o) for o in sg.outputs)

    def scale(i: int) -> tuple[float, int] | None:
        q = sg.tensors[i].quantization
        if q is None or q.scale is None or len(q.scale) != 1:
            return None
        return float(q.scale[0]), int(q.zeroPoint[0]) if q.zeroPoint is not None and len(q.zeroPoint) else 0

    fixes = AddFixes()
    for name, op in ops:
        if name != "ADD" or _tensor_name(sg, op.outputs[0]) not in refused_adds:
            continue
        out = scale(int(op.outputs[0]))
        for i in (int(x) for x in op.inputs):
            own = scale(i)
            if out is None or own is None or own[0] >= out[0] * XNNPACK_ADD_MIN_RATIO:
                continue  # float, per-channel, or a scale XNNPACK takes
            if sg.tensors[i].buffer and model.buffers[sg.tensors[i].buffer].data is not None:
                fixes.constant.append(_tensor_name(sg, op.outputs[0]))
                continue
            chain = _same_scale_chain(i, producer, scale)
            if any(readers[t] != 1 for t in chain):
                continue
            factor = out[0] * WIDENED_RATIO / own[0]
            fixes.widened[_tensor_name(sg, i)] = {
                _tensor_name(sg, t): ((INT8_RANGE[0] - zp) * s * factor, (INT8_RANGE[1] - zp) * s * factor)
                for t in chain
                for s, zp in [scale(t)]
            }
    return fixes


def _same_scale_chain(i: int, producer, scale) -> list[int]:
    """``i`` and the tensors before it that share its quantization through SAME_SCALE_OPS."""
    chain = [i]
    while chain[-1] in producer and producer[chain[-1]][0] in SAME_SCALE_OPS:
        before = int(producer[chain[-1]][1].inputs[0])
        if scale(before) != scale(chain[-1]):
            break
        chain.append(before)
    return chain


@functools.cache
def _builtin_names() -> dict[int, str]:
    from tensorflow.lite.python import schema_py_generated as schema

    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


def _op_name(model, op) -> str:
    code = model.operatorCodes[op.opcodeIndex]
    b = max(code.builtinCode, code.deprecatedBuiltinCode)
    return _builtin_names().get(b, str(b))


def _tensor_name(sg, i: int) -> str:
    n = sg.tensors[int(i)].name
    return n.decode() if isinstance(n, bytes) else str(n)
