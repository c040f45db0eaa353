"""Which compute ops of an artifact really run in int8, read from the file's graph (never from the flags
that produced it).

``Coverage`` is format-agnostic: op kinds and node names are plain strings, so a TFLite reader can fill
the same type (with TFLite op names such as ``CONV_2D`` and its own critical set).

ONNX rules (:func:`onnx_coverage`):

* A *compute* node is one whose op type is in :data:`COMPUTE_ONNX_OPS` (convs, matmuls, element-wise
  arithmetic, pools, activations, normalisations, resize, concat, softmax). Shape/layout ops (Reshape,
  Transpose, ...) and the Q/DQ nodes themselves are not counted.
* A QOperator node (``QLinearConv``, ``ConvInteger``, ``QLinearMatMul``, ``MatMulInteger``, ``QGemm``,
  ``QLinearAdd``, ...) is int8 by construction and is counted under its float op's name (``Conv``...).
* A float compute node in a QDQ graph is int8 when
  - every float *data* input (activations and weights, not attributes-like constants such as Clip's
    bounds) comes from a ``DequantizeLinear`` of an int8/uint8 tensor; a bias (input 2 of Conv,
    ConvTranspose, Gemm) may instead come from a ``DequantizeLinear`` of an int32 tensor, and
  - every consumer of its (first) output is a ``QuantizeLinear`` to int8/uint8, and the output is not a
    graph output.
  Value-preserving layout ops (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Identity) are looked
  through on both sides: ``DQ -> Reshape -> Gemm`` and ``ReduceMean -> Reshape -> Q`` still count.
* Everything else is float, and its node name is listed in ``float_op_names``.

Subgraphs (If/Loop bodies) are not inspected.

The QDQ rule describes the *file*. What a runtime executes can differ: ONNX Runtime fuses a QDQ group
into an integer kernel only where it has one for this CPU, and runs the rest as DQ -> float op -> Q.
:func:`ort_coverage` reports that view (on x86, e.g., a QDQ ``Add`` whose inputs are one activation and
one int8 constant stays a float Add, and HardSwish/HardSigmoid/BatchNormalization always run in float).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Compute ops whose precision we report. Anything not listed is data movement or bookkeeping.
COMPUTE_ONNX_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul",
    "Add", "Sub", "Mul", "Div", "Concat",
    "AveragePool", "GlobalAveragePool", "MaxPool", "GlobalMaxPool", "ReduceMean",
    "Relu", "Clip", "LeakyRelu", "PRelu", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh", "Softmax",
    "Resize", "BatchNormalization", "InstanceNormalization", "LayerNormalization",
})

# The rule "fails if any conv/depthwise/fully connected/add stays float", in ONNX op names
# (depthwise convs are Conv with group == channels; fully connected layers are Gemm or MatMul).
CRITICAL_ONNX_OPS = frozenset({"Conv", "Gemm", "MatMul", "Add"})

# QOperator (and ORT contrib) ops that compute in integers -> the float op they stand for.
QOPERATOR_ONNX_OPS = {
    "QLinearConv": "Conv",
    "ConvInteger": "Conv",
    "QLinearConvTranspose": "ConvTranspose",
    "QLinearMatMul": "MatMul",
    "MatMulInteger": "MatMul",
    "MatMulIntegerToFloat": "MatMul",
    "DynamicQuantizeMatMul": "MatMul",
    "QGemm": "Gemm",
    "QLinearAdd": "Add",
    "QLinearMul": "Mul",
    "QLinearConcat": "Concat",
    "QLinearAveragePool": "AveragePool",
    "QLinearGlobalAveragePool": "GlobalAveragePool",
    "QLinearReduceMean": "ReduceMean",
    "QLinearSigmoid": "Sigmoid",
    "QLinearLeakyRelu": "LeakyRelu",
    "QLinearSoftmax": "Softmax",
}

# Ops that move or reshape values without changing them: looked through when tracing Q/DQ.
_PASSTHROUGH = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})

# Which inputs of an op are data (activations or weights); the rest (Clip bounds, Resize scales,
# ReduceMean axes...) are parameters whose precision does not decide where the op computes.
_DATA_INPUTS = {
    "Conv": (0, 1, 2), "ConvTranspose": (0, 1, 2), "Gemm": (0, 1, 2), "MatMul": (0, 1),
    "Add": (0, 1), "Sub": (0, 1), "Mul": (0, 1), "Div": (0, 1), "PRelu": (0, 1),
    "BatchNormalization": (0,), "InstanceNormalization": (0,), "LayerNormalization": (0,),
    "Concat": None,  # all inputs
}
_BIAS_INPUT = {"Conv": 2, "ConvTranspose": 2, "Gemm": 2}

_INT8 = frozenset({"int8", "uint8"})
_ONNX_DTYPE = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 10: "float16",
               11: "float64", 16: "bfloat16", 21: "uint4", 22: "int4"}


@dataclass(frozen=True)
class Coverage:
    """Counts of compute ops by the precision they run in, plus the names of the float ones.

    ``float_op_names[i]`` is a node (or tensor) name and ``float_op_types[i]`` its op kind.
    """

    int8_ops: Counter = field(default_factory=Counter)  # op kind -> number computed in int8
    float_ops: Counter = field(default_factory=Counter)  # op kind -> number left in float
    float_op_names: list[str] = field(default_factory=list)
    float_op_types: list[str] = field(default_factory=list)
    format: str = ""  # "onnx" | "tflite"
    critical: frozenset = CRITICAL_ONNX_OPS  # the format's names for conv / depthwise / fully connected / add
    int16_ops: Counter = field(default_factory=Counter)  # of int8_ops: integer kernels on int16 activations (16x8)

    def __post_init__(self):
        if len(self.float_op_names) != len(self.float_op_types):
            raise ValueError("float_op_names and float_op_types must be parallel lists")

    @property
    def int8_total(self) -> int:
        return sum(self.int8_ops.values())

    @property
    def float_total(self) -> int:
        return sum(self.float_ops.values())

    @property
    def total(self) -> int:
        return self.int8_total + self.float_total

    @property
    def int8_fraction(self) -> float:
        return self.int8_total / self.total if self.total else 1.0

    def critical_float(self, critical_ops=None) -> list[str]:
        """Names of float nodes whose kind is in ``critical_ops`` (default: this format's ``critical`` set).

        Empty means the issue's rule ("no conv/depthwise/fully connected/add stays float") passes.
        """
        ops = self.critical if critical_ops is None else critical_ops
        return [n for n, t in zip(self.float_op_names, self.float_op_types) if t in ops]

    def line(self) -> str:
        floats = ", ".join(f"{k} x{v}" for k, v in self.float_ops.most_common()) or "none"
        n16 = sum(self.int16_ops.values())
        wide = f", {n16} of them on int16 activations" if n16 else ""
        return f"int8 {self.int8_total}/{self.total} compute ops ({100 * self.int8_fraction:.0f} %{wide}); float: {floats}"

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "total": self.total,
            "int8": self.int8_total,
            "float": self.float_total,
            "int8_fraction": self.int8_fraction,
            "int8_ops": dict(sorted(self.int8_ops.items())),
            "float_ops": dict(sorted(self.float_ops.items())),
            "float_nodes": [{"name": n, "op": t} for n, t in zip(self.float_op_names, self.float_op_types)],
            **({"int16_activation_ops": dict(sorted(self.int16_ops.items()))} if self.int16_ops else {}),
        }


def coverage_of(path) -> Coverage:
    """Coverage of an artifact file, by its format."""
    from edgeport.formats import format_of

    return format_of(path).coverage(Path(path))


def onnx_coverage(model_or_path, qdq_counts_as_int8: bool = True) -> Coverage:
    """Coverage of an ONNX model (a ``ModelProto`` or a path to one).

    With ``qdq_counts_as_int8=False`` only integer (QOperator) kernels count as int8: the view of a graph
    that a runtime has already fused, see :func:`ort_coverage`.
    """
    import onnx

    model = model_or_path if isinstance(model_or_path, onnx.ModelProto) else onnx.load(str(Path(model_or_path)))
    return _Graph(model).coverage(qdq_counts_as_int8)


def ort_coverage(model_or_path, qdq_int8_allowed: bool | None = None) -> Coverage:
    """Which compute ops ONNX Runtime's CPU provider *on this machine* runs in integer kernels.

    The model is optimised as OrtRunner loads it (ORT_ENABLE_ALL) and the optimised graph is read with
    only QOperator nodes counted as int8. The answer depends on the CPU: ORT keeps int8-activation QDQ
    groups native only on ARM and converts them to uint8 on x86. ``qdq_int8_allowed=True`` makes an x86
    session fuse like an ARM one (``session.qdqisint8allowed``), to preview a device's graph.
    """
    return onnx_coverage(ort_optimized_model(model_or_path, qdq_int8_allowed), qdq_counts_as_int8=False)


def ort_optimized_model(model_or_path, qdq_int8_allowed: bool | None = None):
    """The graph ONNX Runtime's CPU provider executes on this machine: the model optimised at ORT_ENABLE_ALL
    (as OrtRunner loads it) and saved with ``optimized_model_filepath``, read back as a ``ModelProto``."""
    import tempfile

    import onnx
    import onnxruntime as ort

    data = model_or_path.SerializeToString() if isinstance(model_or_path, onnx.ModelProto) else Path(model_or_path).read_bytes()
    with tempfile.TemporaryDirectory(prefix="edgeport-ortcov-") as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        opts.log_severity_level = 3
        if qdq_int8_allowed is not None:
            opts.add_session_config_entry("session.qdqisint8allowed", "1" if qdq_int8_allowed else "0")
        ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        return onnx.load(opts.optimized_model_filepath)


class _Graph:
    def __init__(self, model):
        import onnx

        g = model.graph
        self.nodes = list(g.node)
        self.dtypes: dict[str, str] = {}
        try:
            inferred = onnx.shape_inference.infer_shapes(model).graph
        except Exception:  # best effort: Q/DQ zero points below decide where inference fails
            inferred = g
        for v in list(inferred.value_info) + list(inferred.input) + list(inferred.output):
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type:
                self.dtypes[v.name] = _ONNX_DTYPE.get(v.type.tensor_type.elem_type, "?")
        for init in g.initializer:
            self.dtypes[init.name] = _ONNX_DTYPE.get(init.data_type, "?")
        for node in self.nodes:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.dtypes[node.output[0]] = _ONNX_DTYPE.get(a.t.data_type, "?")
        self.producer = {o: n for n in self.nodes for o in n.output if o}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in g.output}

    def coverage(self, qdq_counts_as_int8: bool = True) -> Coverage:
        int8, flt, names, kinds = Counter(), Counter(), [], []
        for idx, node in enumerate(self.nodes):
            if node.op_type in QOPERATOR_ONNX_OPS:
                int8[QOPERATOR_ONNX_OPS[node.op_type]] += 1
            elif node.op_type in COMPUTE_ONNX_OPS:
                if qdq_counts_as_int8 and self._is_int8(node):
                    int8[node.op_type] += 1
                else:
                    flt[node.op_type] += 1
                    names.append(node.name or f"{node.op_type}#{idx}")
                    kinds.append(node.op_type)
        return Coverage(int8, flt, names, kinds, "onnx", CRITICAL_ONNX_OPS)

    # -- rules -----------------------------------------------------------------------------------

    def _is_int8(self, node) -> bool:
        data = _DATA_INPUTS.get(node.op_type, (0,))
        indices = range(len(node.input)) if data is None else [i for i in data if i < len(node.input)]
        inputs = [(i, node.input[i]) for i in indices if node.input[i]]
        if not inputs:
            return False
        for i, name in inputs:
            allowed = _INT8 | {"int32"} if i == _BIAS_INPUT.get(node.op_type) else _INT8
            if not self._from_dequantize(name, allowed):
                return False
        out = node.output[0] if node.output else ""
        return bool(out) and self._to_quantize(out)

    def _from_dequantize(self, name: str, allowed: frozenset) -> bool:
        seen = 0
        while seen < 64:
            seen += 1
            prod = self.producer.get(name)
            if prod is None:
                return False  # a graph input or float initializer feeding the op directly
            if prod.op_type == "DequantizeLinear":
                return self._dequantize_source_dtype(prod) in allowed
            if prod.op_type in _PASSTHROUGH and prod.input:
                name = prod.input[0]
                continue
            return False
        return False

    def _to_quantize(self, name: str) -> bool:
        frontier, seen = [name], 0
        while frontier and seen < 256:
            seen += 1
            t = frontier.pop()
            if t in self.graph_outputs:
                return False
            users = self.consumers.get(t, [])
            if not users:
                return False
            for u in users:
                if u.op_type == "QuantizeLinear" and u.input[0] == t:
                    if self._quantize_target_dtype(u) not in _INT8:
                        return False
                elif u.op_type in _PASSTHROUGH and u.input and u.input[0] == t:
                    frontier.extend(o for o in u.output[:1] if o)
                else:
                    return False
        return not frontier

    def _dequantize_source_dtype(self, dq) -> str:
        x = dq.input[0]
        if x in self.dtypes and self.dtypes[x] != "?":
            return self.dtypes[x]
        if len(dq.input) > 2 and dq.input[2] in self.dtypes:
            return self.dtypes[dq.input[2]]  # x and x_zero_point share their type
        prod = self.producer.get(x)
        if prod is not None and prod.op_type == "QuantizeLinear":
            return self._quantize_target_dtype(prod)
        return "?"

    def _quantize_target_dtype(self, q) -> str:
        if q.output and self.dtypes.get(q.output[0], "?") != "?":
            return self.dtypes[q.output[0]]
        for a in q.attribute:
            if a.name == "output_dtype" and a.i:
                return _ONNX_DTYPE.get(a.i, "?")
        if len(q.input) > 2 and q.input[2]:
            return self.dtypes.get(q.input[2], "?")
        return "uint8"  # QuantizeLinear without a zero point produces uint8


# --- TFLite -------------------------------------------------------------------------------------------

# Ops whose precision we report (TFLite builtin names); QUANTIZE/DEQUANTIZE and layout ops are not counted.
COMPUTE_TFLITE_OPS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "FULLY_CONNECTED", "BATCH_MATMUL",
    "ADD", "SUB", "MUL", "DIV", "CONCATENATION", "MEAN", "SUM", "AVERAGE_POOL_2D", "MAX_POOL_2D",
    "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "PRELU", "HARD_SWISH", "LOGISTIC", "TANH", "SOFTMAX",
    "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "PAD", "PADV2", "MAXIMUM", "MINIMUM",
})
CRITICAL_TFLITE_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"})
_TFLITE_INT = frozenset({"int8", "uint8", "int16"})  # int16: 16x8 activations, still integer kernels


def tflite_coverage(path) -> Coverage:
    """Coverage of a .tflite file: a compute op is integer when its first input and its output tensors are
    int8/uint8 (or int16 in 16x8 mode), read from the flatbuffer's tensor types."""
    from edgeport.formats.graph_summary import tflite_ops

    int8, flt, names, kinds, int16 = Counter(), Counter(), [], [], Counter()
    for op in tflite_ops(Path(path)):
        if op.name not in COMPUTE_TFLITE_OPS:
            continue
        if op.input_dtype in _TFLITE_INT and op.output_dtype in _TFLITE_INT:
            int8[op.name] += 1
            if "int16" in (op.input_dtype, op.output_dtype):
                int16[op.name] += 1  # integer, but not int8 activations: said so (XNNPACK runs none of these)
        else:
            flt[op.name] += 1
            names.append(op.output_name)
            kinds.append(op.name)
    return Coverage(int8, flt, names, kinds, format="tflite", critical=CRITICAL_TFLITE_OPS, int16_ops=int16)
