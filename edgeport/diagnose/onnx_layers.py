"""Per-layer diagnosis of a QDQ onnx-int8 model against its fp32 ONNX model, with ONNX Runtime's own debugging
tools (``onnxruntime.quantization.qdq_loss_debug``): both models are augmented to output every float tensor
(``modify_model_output_intermediate_tensors``), run on the same inputs (``collect_activations``), and each
quantized tensor's pre-QDQ, post-QDQ and float values are paired by name (``create_activation_matching``).

What is edgeport's own (each for a measured reason):

* the errors are accumulated chunk by chunk (:class:`edgeport.diagnose.per_layer.ErrorSums`) instead of through
  ``compute_activation_error``, which needs every activation of every sample in memory at once;
* the local error is not ORT's pre- vs post-QDQ error alone: that one computes the op with the *int8* weights, so a
  damaged or badly quantized weight tensor never shows (measured: a depthwise conv with a third of its int8 weights
  flipped kept 0.2 steps). Each op with quantized weights gets a float twin in the int8 graph (:func:`_with_float_twins`):
  the same op on the same dequantized int8 inputs, with the fp32 model's weights and bias, as TFLite's NumericVerify
  does; the local error is twin vs post-QDQ, in quantization steps;
* the local error applies the float model's activation first where ORT's quantizer folded a Relu/Clip into the
  preceding op's quantization range: the int8 op's output is then the raw conv output, and without the activation
  the local error would count the ReLU's clipping as quantization error.

The int8 model runs as the file says (ORT graph optimizations off, as ``collect_activations`` does by default):
DequantizeLinear -> float op -> QuantizeLinear. ORT's fused integer kernels round the same way up to
requantization; the model output's SQNR here is compared with the validation SQNR in the tests.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from edgeport.diagnose.metrics import ErrorSums, LayerError
from edgeport.errors import UserError
from edgeport.formats.layer_names import onnx_names

CHUNK = 64  # batches per collect_activations call: bounds the activations held in memory
_QOPERATOR = ("QLinearConv", "QLinearMatMul", "QLinearAdd", "QGemm", "ConvInteger", "MatMulInteger")


def diagnose_onnx(fp32: onnx.ModelProto, int8: onnx.ModelProto, inputs_nchw: np.ndarray) -> list[LayerError]:
    """One row per quantized activation tensor of the QDQ model ``int8`` that the fp32 model also computes
    (the graph input has no op to keep float and is left out), in graph order."""
    from onnxruntime.quantization import qdq_loss_debug as qdq_debug

    from edgeport.exporters import onnx_fp32
    from edgeport.exporters.onnx_int8 import CalibrationReader, quiet_ort, rewrite_spatial_reduce_mean

    ops = {n.op_type for n in int8.graph.node}
    if ops & set(_QOPERATOR) or "QuantizeLinear" not in ops:
        raise UserError("per-layer diagnosis reads QDQ onnx-int8 models only (this one has QOperator ops)",
                        "export with --onnx-format qdq (QOperator has no float tensor between layers to compare)")
    reference = onnx.ModelProto()
    reference.CopyFrom(fp32)
    rewrite_spatial_reduce_mean(reference)  # as onnx_int8.quantize does first, so tensor names match the int8 model
    batch = _batch(int8)
    data = np.ascontiguousarray(inputs_nchw, dtype=np.float32)
    data = data[: len(data) // batch * batch]
    if not len(data):
        raise UserError(f"per-layer diagnosis needs at least {batch} input samples")
    graph = _Int8Graph(int8, reference)
    sums = {t: ErrorSums() for t in graph.tensors}
    with tempfile.TemporaryDirectory(prefix="edgeport-perlayer-") as tmp, quiet_ort():
        paths = {}
        twins = _with_float_twins(int8, reference)
        for name, model in (("fp32", reference), ("int8", twins)):
            src, aug = Path(tmp) / f"{name}.onnx", Path(tmp) / f"{name}.aug.onnx"
            onnx.save(model, str(src))
            qdq_debug.modify_model_output_intermediate_tensors(str(src), str(aug))
            paths[name] = str(aug)
        reader = CalibrationReader(onnx_fp32.INPUT_NAME, data, batch)
        options = _session_options()
        for start in range(0, len(reader), CHUNK):
            acts = {}
            for name in ("fp32", "int8"):
                reader.set_range(start, start + CHUNK)
                acts[name] = qdq_debug.collect_activations(paths[name], reader, options)
            matching = qdq_debug.create_activation_matching(acts["int8"], acts["fp32"])
            for tensor, acc in sums.items():
                m = matching.get(tensor)
                if m is None or "float" not in m:
                    continue
                twin = acts["int8"].get(_twin(graph.producer[tensor].output[0]), m["pre_qdq"])
                for f, local, post in zip(m["float"], twin, m["post_qdq"]):
                    acc.add(f.reshape(post.shape), post, graph.activation(tensor, local.reshape(post.shape)) - post)
    rows, names = [], onnx_names(int8)
    for tensor in graph.tensors:
        acc = sums[tensor]
        if acc.count == 0:
            continue
        node = graph.producer[tensor]
        scale, zero = graph.qparams[tensor]
        rows.append(LayerError(tensor, names.get(node.name, node.name), node.op_type, node.name, scale, zero, acc.sqnr_db(),
                               acc.rel_rmse(), acc.error_to_scale(scale), len(rows)))
    return rows


def _twin(name: str) -> str:
    return f"{name}__float_weights"


def _with_float_twins(int8: onnx.ModelProto, reference: onnx.ModelProto) -> onnx.ModelProto:
    """``int8`` plus, for every op fed by dequantized constant weights, a copy of the op reading the fp32 weights
    (outputs named :func:`_twin`): the layer's float result on the int8 model's own activations (module doc)."""
    from onnxruntime.quantization.quant_utils import TENSOR_NAME_QUANT_SUFFIX

    out = onnx.ModelProto()
    out.CopyFrom(int8)
    g = out.graph
    inits = {i.name for i in g.initializer}
    ref_inits = {i.name: i for i in reference.graph.initializer}
    float_of = {}  # DQ output of a quantized constant -> the fp32 model's initializer of that constant
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.input[0].endswith(TENSOR_NAME_QUANT_SUFFIX):
            src = n.input[0][: -len(TENSOR_NAME_QUANT_SUFFIX)]
            if src in ref_inits:
                float_of[n.output[0]] = src
    added = {}
    for n in list(g.node):
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") or not any(i in float_of for i in n.input):
            continue
        inputs = []
        for i in n.input:
            if i in float_of:
                name = _twin(float_of[i])
                if name not in added:
                    added[name] = onnx.TensorProto()
                    added[name].CopyFrom(ref_inits[float_of[i]])
                    added[name].name = name
                inputs.append(name)
            else:
                inputs.append(i)
        twin = onnx.NodeProto()
        twin.CopyFrom(n)
        twin.name = _twin(n.name)
        del twin.input[:]
        twin.input.extend(inputs)
        del twin.output[:]
        twin.output.extend([_twin(o) for o in n.output])
        g.node.append(twin)
    g.initializer.extend(added.values())
    return out


class _Int8Graph:
    """Which tensors of the QDQ model are quantized activations, their producers and quantization parameters."""

    def __init__(self, int8: onnx.ModelProto, reference: onnx.ModelProto):
        g = int8.graph
        self.init = {i.name: i for i in g.initializer}
        self.producer = {o: n for n in g.node for o in n.output if o}
        ref_producer = {o: n for n in reference.graph.node for o in n.output if o}
        self.ref_init = {i.name: numpy_helper.to_array(i) for i in reference.graph.initializer}
        self.ref_producer = ref_producer
        self.tensors: list[str] = []
        self.qparams: dict[str, tuple[float, int]] = {}
        order = {n.name: i for i, n in enumerate(g.node)}
        found = []
        for n in g.node:
            if n.op_type != "QuantizeLinear":
                continue
            x = n.input[0]
            # post-QDQ names: the quantized tensor is an op's output (not the graph input, not a weight)
            if x in self.init or x not in self.producer or x in self.qparams:
                continue
            name = x[: -len("_QuantizeLinear_Input")] if x.endswith("_QuantizeLinear_Input") else x
            if name not in ref_producer:
                continue
            scale = float(numpy_helper.to_array(self.init[n.input[1]]).ravel()[0])
            zero = int(numpy_helper.to_array(self.init[n.input[2]]).ravel()[0]) if len(n.input) > 2 and n.input[2] else 0
            self.qparams[x] = (scale, zero)
            found.append((order[self.producer[x].name], x))
        self.tensors = [x for _, x in sorted(found)]
        # matching keys: create_activation_matching names a pair by the float tensor's name
        renamed = {x: (x[: -len("_QuantizeLinear_Input")] if x.endswith("_QuantizeLinear_Input") else x) for x in self.tensors}
        self.producer.update({renamed[x]: self.producer[x] for x in self.tensors})
        self.qparams.update({renamed[x]: self.qparams[x] for x in self.tensors})
        self.tensors = [renamed[x] for x in self.tensors]

    def activation(self, tensor: str, pre: np.ndarray) -> np.ndarray:
        """The float model's Relu/Clip on ``pre`` where ORT folded it into the quantization (module doc)."""
        ref = self.ref_producer.get(tensor)
        own = self.producer[tensor]
        if ref is None or ref.op_type == own.op_type:
            return pre
        if ref.op_type == "Relu":
            return np.maximum(pre, 0)
        if ref.op_type == "Clip":
            lo = self._const(ref.input[1]) if len(ref.input) > 1 and ref.input[1] else -np.inf
            hi = self._const(ref.input[2]) if len(ref.input) > 2 and ref.input[2] else np.inf
            return np.clip(pre, lo, hi)
        return pre

    def _const(self, name: str) -> float:
        if name in self.ref_init:
            return float(self.ref_init[name].ravel()[0])
        node = self.ref_producer.get(name)
        if node is not None and node.op_type == "Constant":
            return float(numpy_helper.to_array(node.attribute[0].t).ravel()[0])
        raise ValueError(f"Clip bound {name} is not a constant")


def _batch(model: onnx.ModelProto) -> int:
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return int(dim.dim_value) if dim.HasField("dim_value") and dim.dim_value > 0 else 1


def _session_options():
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # collect_activations' default
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return opts

