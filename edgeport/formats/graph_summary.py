"""Read an .onnx or .tflite file's graph: ops, the dtype each op computes in, tensors, inputs and outputs.

This is how edgeport verifies an artifact instead of trusting the flags that made it: dtypes are read
from the file itself (ONNX value types after shape inference; TFLite flatbuffer tensor types).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeport.errors import LITERT_HINT, REEXPORT_HINT, RuntimeMissing, UserError


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple
    dtype: str
    scale: float | None = None  # for quantized tensors
    zero_point: int | None = None


@dataclass
class GraphSummary:
    path: Path
    format: str
    size: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    ops: Counter = field(default_factory=Counter)  # op type -> count
    op_dtypes: Counter = field(default_factory=Counter)  # (op type, dtype it computes in) -> count
    weight_dtypes: Counter = field(default_factory=Counter)  # dtype -> number of weight elements
    details: dict = field(default_factory=dict)  # format-specific facts (opset, producer, subgraphs...)

    @property
    def weight_count(self) -> int:
        return sum(self.weight_dtypes.values())

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "format": self.format,
            "size": self.size,
            "inputs": [t.__dict__ for t in self.inputs],
            "outputs": [t.__dict__ for t in self.outputs],
            "ops": dict(self.ops.most_common()),
            "op_dtypes": {f"{op}:{dt}": n for (op, dt), n in sorted(self.op_dtypes.items())},
            "weight_dtypes": dict(self.weight_dtypes),
            **{k: v for k, v in self.details.items() if k != "operators"},
        }


def summarize(path: Path) -> GraphSummary:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    from edgeport.formats import format_of

    return format_of(path).summarize(path)


# --- ONNX -------------------------------------------------------------------------------------------

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64",
                12: "uint32", 16: "bfloat16"}


def onnx_summary(path: Path) -> GraphSummary:
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, RuntimeError) as exc:
        raise UserError(f"{path} is not a readable ONNX file "
                        f"({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__})", REEXPORT_HINT) from None
    if not model.graph.node and not model.graph.input:
        raise UserError(f"{path} is not a readable ONNX file (empty graph)", REEXPORT_HINT)
    try:  # a damaged file can still decode (found by fuzzing: names that are not UTF-8 come back as bytes)
        onnx.checker.check_model(model)
        if not all(isinstance(n.op_type, str) and all(isinstance(i, str) for i in n.input) for n in model.graph.node):
            raise onnx.checker.ValidationError("node names or op types are not text")
    except (onnx.checker.ValidationError, ValueError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not a valid ONNX model ({str(exc).splitlines()[0][:120]})", REEXPORT_HINT) from None
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # inference is best effort: dtypes of intermediate values may stay unknown
        inferred = model
    g = inferred.graph
    types = {v.name: _ONNX_DTYPES.get(v.type.tensor_type.elem_type, "?") for v in list(g.value_info) + list(g.input) + list(g.output)}
    for init in g.initializer:
        types[init.name] = _ONNX_DTYPES.get(init.data_type, "?")
    initializers = {i.name for i in g.initializer}

    def info(v) -> TensorInfo:
        dims = tuple(d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim)
        return TensorInfo(v.name, dims, _ONNX_DTYPES.get(v.type.tensor_type.elem_type, "?"))

    s = GraphSummary(path, "onnx", path.stat().st_size,
                     [info(v) for v in g.input if v.name not in initializers], [info(v) for v in g.output])
    for node in g.node:
        s.ops[node.op_type] += 1
        first = next((i for i in node.input if i), None)
        s.op_dtypes[(node.op_type, types.get(first, "?") if first else "-")] += 1
    for init in g.initializer:
        s.weight_dtypes[_ONNX_DTYPES.get(init.data_type, "?")] += int(np.prod(init.dims)) if init.dims else 1
    s.details = {"opset": {o.domain or "ai.onnx": o.version for o in model.opset_import}, "producer": model.producer_name}
    return s


# --- TFLite -----------------------------------------------------------------------------------------


def _tflite_schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise RuntimeMissing("reading .tflite files needs ai-edge-litert", LITERT_HINT) from None
    return schema


def _enum_names(enum_cls) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


def tflite_summary(path: Path) -> GraphSummary:
    schema = _tflite_schema()
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise UserError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)", REEXPORT_HINT)
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        return _read_tflite(path, data, model, schema)
    except UserError:
        raise
    except Exception as exc:  # a truncated or corrupt flatbuffer fails anywhere inside the reader
        raise UserError(f"{path} is a corrupt or truncated TFLite file ({type(exc).__name__})", REEXPORT_HINT) from None


@dataclass(frozen=True)
class TfliteOp:
    name: str  # builtin op name, e.g. CONV_2D
    input_dtype: str  # dtype of the first input tensor
    output_dtype: str
    output_name: str


def tflite_ops(path: Path) -> list[TfliteOp]:
    """The operators of a .tflite file's main subgraph, in execution order, with their tensor dtypes."""
    return tflite_summary(Path(path)).details["operators"]


def _read_tflite(path: Path, data: bytes, model, schema) -> GraphSummary:
    builtin = _enum_names(schema.BuiltinOperator)
    ttype = {k: v.lower() for k, v in _enum_names(schema.TensorType).items()}
    op_names = []
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        b = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        op_names.append(code.CustomCode().decode() if b == schema.BuiltinOperator.CUSTOM and code.CustomCode() else builtin.get(b, str(b)))
    sub = model.Subgraphs(0)

    def info(idx: int) -> TensorInfo:
        t = sub.Tensors(idx)
        q = t.Quantization()
        scale = float(q.Scale(0)) if q is not None and q.ScaleLength() > 0 else None
        zp = int(q.ZeroPoint(0)) if q is not None and q.ZeroPointLength() > 0 else None
        return TensorInfo(t.Name().decode(), tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else (),
                          ttype.get(t.Type(), "?"), scale, zp)

    s = GraphSummary(path, "tflite", len(data),
                     [info(sub.Inputs(i)) for i in range(sub.InputsLength())],
                     [info(sub.Outputs(i)) for i in range(sub.OutputsLength())])
    operators = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        name = op_names[op.OpcodeIndex()]
        s.ops[name] += 1
        first = op.Inputs(0) if op.InputsLength() else -1
        out = op.Outputs(0) if op.OutputsLength() else -1
        in_dt = ttype.get(sub.Tensors(first).Type(), "?") if first >= 0 else "-"
        s.op_dtypes[(name, in_dt)] += 1
        out_t = sub.Tensors(out) if out >= 0 else None
        operators.append(TfliteOp(name, in_dt, ttype.get(out_t.Type(), "?") if out_t else "-", out_t.Name().decode() if out_t else ""))
    for i in range(sub.TensorsLength()):
        t = sub.Tensors(i)
        buf = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        has_data = buf is not None and (buf.DataLength() > 0 or buf.Size() > 0)
        if has_data:
            s.weight_dtypes[ttype.get(t.Type(), "?")] += int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 1
    s.details = {"subgraphs": model.SubgraphsLength(), "schema_version": model.Version(), "operators": operators}
    return s
