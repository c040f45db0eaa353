"""Read an ExecuTorch program (.pte) without running it: the forward method's instructions, the ops each XNNPACK
delegate computes and in which dtype, the program's inputs and outputs, and edgeport's metadata entry.

How, and why this way:

* The program flatbuffer is parsed with ExecuTorch's own deserializer (``deserialize_pte_binary``, the one
  ``to_executorch`` round-trips with). The ``forward`` execution plan is a chain of instructions: a
  ``KernelCall`` runs one operator from ExecuTorch's kernel library (portable/optimized kernels, named like
  ``aten::convolution``), a ``DelegateCall`` hands a subgraph to a backend. One DelegateCall is one partition.
* An XNNPACK delegate's payload is ExecuTorch's XNNPACK graph: an ``XH00`` header, then a flatbuffer of
  ``XNNGraph`` (xnodes, xvalues), then constant data. ExecuTorch ships the schema (``schema.fbs``) and the
  ``flatc`` binary it serializes with but no Python reader, so the flatbuffer is turned into JSON with that
  flatc and that schema (the inverse of ``convert_to_flatbuffer``). Each xnode names its op (``XNNConv2d``,
  ``XNNAdd``...) and its input/output value ids; each xvalue has an XNNPACK datatype (``xnn_datatype_qint8``,
  per-channel ``qcint8`` weights, ``fp32``...). An op computes in int8 when its data input and its output are
  quantized values: that is what XNNPACK is told to run, read from the file.
* The metadata entry is a constant method (``edgeport_metadata``, returning the JSON string), which ExecuTorch
  stores as an execution plan holding one String value: inside the file, readable without a runtime. A sidecar
  file was not needed.
"""

from __future__ import annotations

import json
import re
import struct
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from edgeport.errors import REEXPORT_HINT, RuntimeMissing, UserError

EXECUTORCH_HINT = "pip install 'executorch==1.5.1' (or 'edgeport[executorch]')"
METADATA_METHOD = "edgeport_metadata"  # the constant method holding edgeport's metadata JSON

# XNNPACK ops that move or convert values without computing (Convert is the quantize/dequantize at a partition's
# edges); every other xnode is a compute op and counted.
XNN_LAYOUT_OPS = frozenset({"Convert", "StaticTranspose", "StaticReshape", "StaticSlice", "StaticConstantPad", "Copy"})
# Portable-kernel operators that move data or (de)quantize: not compute.
KERNEL_LAYOUT_OPS = frozenset({
    "dim_order_ops::_to_dim_order_copy", "dim_order_ops::_clone_dim_order", "aten::view_copy", "aten::permute_copy",
    "aten::slice_copy", "aten::squeeze_copy", "aten::unsqueeze_copy", "aten::expand_copy", "aten::clone",
    "aten::_to_copy", "aten::split_with_sizes_copy", "aten::select_copy", "aten::index_select",
    "executorch_prim::et_view", "quantized_decomposed::quantize_per_tensor", "quantized_decomposed::dequantize_per_tensor",
    "quantized_decomposed::quantize_per_channel", "quantized_decomposed::dequantize_per_channel",
})
# conv / depthwise / fully connected / add, in this reader's names (delegated: XNNPACK's; portable: ATen's)
CRITICAL_PTE_OPS = frozenset({"Conv2d", "DepthwiseConv2d", "FullyConnected", "Add", "aten::convolution", "aten::linear",
                              "aten::addmm", "aten::mm", "aten::add"})
_QUANTIZED = {"xnn_datatype_qint8": "int8", "xnn_datatype_quint8": "uint8", "xnn_datatype_qcint8": "int8",
              "xnn_datatype_qdint8": "int8", "xnn_datatype_qpint8": "int8", "xnn_datatype_qint32": "int32",
              "xnn_datatype_qcint32": "int32", "xnn_datatype_qcint4": "int4", "xnn_datatype_qbint4": "int4"}
_XNN_DTYPE = {"xnn_datatype_fp32": "float32", "xnn_datatype_fp16": "float16", "xnn_datatype_bf16": "bfloat16",
              "xnn_datatype_int32": "int32", "xnn_datatype_pfp32": "float32", **_QUANTIZED}
# ExecuTorch ScalarType codes (same as c10's)
SCALAR_TYPES = {0: "uint8", 1: "int8", 2: "int16", 3: "int32", 4: "int64", 5: "float16", 6: "float32", 7: "float64", 11: "bool",
                15: "bfloat16"}


@dataclass(frozen=True)
class PteOp:
    """One compute step of the forward method: an XNNPACK node inside a partition, or a portable kernel call."""

    op: str  # "Conv2d" (XNNPACK, without the XNN prefix) | "aten::convolution" (a kernel)
    dtype: str  # what it computes in: "int8" when its data input and output are quantized, else their dtype
    delegated: bool
    partition: int | None = None  # index of its DelegateCall, None for a kernel call
    name: str = ""  # a stable key: "xnnpack0/12" (partition/node) or "kernel/5" (instruction index)
    debug_handle: int | None = None

    @property
    def compute(self) -> bool:
        return self.op not in (XNN_LAYOUT_OPS if self.delegated else KERNEL_LAYOUT_OPS)


@dataclass
class PteProgram:
    path: Path
    size: int
    methods: list[str]
    inputs: list[tuple[tuple[int, ...], str]]  # (shape, dtype) of forward's tensor inputs
    outputs: list[tuple[tuple[int, ...], str]]
    ops: list[PteOp] = field(default_factory=list)
    backends: Counter = field(default_factory=Counter)  # delegate id -> partitions
    weight_dtypes: Counter = field(default_factory=Counter)  # dtype -> elements (XNNPACK constants + program constants)
    metadata: str | None = None
    input_dim_orders: list[tuple[int, ...]] = field(default_factory=list)  # memory order of each tensor input

    @property
    def nhwc_input(self) -> bool:
        return reads_nhwc(self.input_dim_orders)

    @property
    def partitions(self) -> int:
        return sum(self.backends.values())

    def compute_ops(self) -> list[PteOp]:
        return [o for o in self.ops if o.compute]


def import_executorch() -> None:
    """Import executorch (and torchao, which it loads) once, quietly: torchao prints "Failed to load" lines for
    its CUDA kernels and torch logs a deprecation warning at import, on every x86 CPU machine. RuntimeMissing with
    the pip line when it is not installed."""
    import importlib.util
    import sys

    if "executorch.exir" in sys.modules:
        return
    if importlib.util.find_spec("executorch") is None:
        raise RuntimeMissing("executorch is not installed: edgeport cannot export, read or run .pte files", EXECUTORCH_HINT)
    from edgeport.util import native_logs

    with native_logs.silenced():
        import executorch.exir  # noqa: F401


def _program(path: Path) -> tuple[bytes, object, dict]:
    """The file's bytes, its deserialized program and its execution plans by name (a "forward" among them)."""
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    import_executorch()
    from executorch.exir._serialize._program import deserialize_pte_binary

    data = path.read_bytes()
    if len(data) < 8 or data[4:6] != b"ET":  # the program flatbuffer's file identifier: ET12 in 1.5
        raise UserError(f"{path} is not an ExecuTorch program (no ET file identifier)", REEXPORT_HINT)
    try:
        program = deserialize_pte_binary(data).program
        plans = {p.name: p for p in program.execution_plan}
    except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails anywhere inside the generated reader
        raise UserError(f"{path} is not a readable ExecuTorch program ({type(exc).__name__})", REEXPORT_HINT) from None
    if "forward" not in plans:
        raise UserError(f"{path} has no forward method (methods: {', '.join(plans) or 'none'})", REEXPORT_HINT)
    return data, program, plans


def input_dim_orders(path: Path | str) -> list[tuple[int, ...]]:
    """The memory order of each tensor input of forward, without reading the delegates (for the runners)."""
    return _input_dim_orders(_program(Path(path))[2]["forward"])


def _input_dim_orders(plan) -> list[tuple[int, ...]]:
    return [_dim_order(plan.values[i].val) for i in plan.inputs if _is_tensor(plan.values[i].val)]


def reads_nhwc(dim_orders: list[tuple[int, ...]]) -> bool:
    """Whether a program with these input dim orders reads its image input channels-last (an NCHW shape with dim
    order 0, 2, 3, 1: a file exported with --pte-layout nhwc)."""
    return dim_orders[:1] == [NHWC_DIM_ORDER]


def read(path: Path | str) -> PteProgram:
    """The program of a .pte file; a UserError when the file is not one, RuntimeMissing without executorch."""
    path = Path(path)
    data, program, plans = _program(path)
    plan = plans["forward"]
    out = PteProgram(path, len(data), list(plans), [_tensor(plan.values[i].val) for i in plan.inputs if _is_tensor(plan.values[i].val)],
                     [_tensor(plan.values[i].val) for i in plan.outputs if _is_tensor(plan.values[i].val)])
    out.input_dim_orders = _input_dim_orders(plan)
    meta = plans.get(METADATA_METHOD)
    if meta is not None and meta.values and hasattr(meta.values[0].val, "string_val"):
        out.metadata = meta.values[0].val.string_val
    for v in plan.values:  # constants the kernels read (weights left outside any delegate)
        t = v.val
        if _is_tensor(t) and getattr(t, "data_buffer_idx", 0):
            shape, dtype = _tensor(t)
            out.weight_dtypes[dtype] += _numel(shape)
    partition = 0
    for index, instr in enumerate(i for chain in plan.chains for i in chain.instructions):
        args = instr.instr_args
        kind = type(args).__name__
        if kind == "KernelCall":
            op = plan.operators[args.op_index]
            out.ops.append(PteOp(op.name, _kernel_dtype(plan, args.args), False, None, f"kernel/{index}"))
        elif kind == "DelegateCall":
            delegate = plan.delegates[args.delegate_index]
            out.backends[delegate.id] += 1
            if "xnnpack" in delegate.id.lower():
                graph = xnnpack_graph(_delegate_bytes(program, delegate))
                out.ops += _xnn_ops(graph, partition)
                for value in graph.get("xvalues", []):
                    tv = _tensor_value(value)
                    if tv is not None and tv.get("constant_buffer_idx", 0):
                        out.weight_dtypes[_XNN_DTYPE.get(tv.get("datatype"), "?")] += _numel(tv.get("dims", []))
            else:
                out.ops.append(PteOp(f"delegate:{delegate.id}", "?", True, partition, f"{delegate.id}{partition}"))
            partition += 1
    return out


NHWC_DIM_ORDER = (0, 2, 3, 1)


def _dim_order(t) -> tuple[int, ...]:
    order = getattr(t, "dim_order", None)
    return tuple(int(d) for d in order) if order else tuple(range(len(t.sizes)))


def _is_tensor(val) -> bool:
    return type(val).__name__ == "Tensor"


def _tensor(t) -> tuple[tuple[int, ...], str]:
    return tuple(int(s) for s in t.sizes), SCALAR_TYPES.get(int(t.scalar_type), str(t.scalar_type))


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _kernel_dtype(plan, arg_indices) -> str:
    """The dtype of a kernel call's first tensor argument (its input)."""
    for i in arg_indices:
        val = plan.values[i].val
        if _is_tensor(val):
            return _tensor(val)[1]
    return "?"


def _delegate_bytes(program, delegate) -> bytes:
    processed = delegate.processed  # deserialize_pte_binary moves segment-stored payloads inline
    if int(processed.location) != 0:
        raise UserError(f"a {delegate.id} delegate of this program is stored outside it (location {processed.location})",
                        "edgeport reads programs whose delegates are inside the .pte")
    return bytes(program.backend_delegate_data[processed.index].data)


def xnnpack_graph(payload: bytes) -> dict:
    """An XNNPACK delegate payload (``XH00`` header + XNNGraph flatbuffer + constants) as a dict (flatc's JSON)."""
    if payload[4:8] == b"XH00":
        offset, size = struct.unpack("<II", payload[10:18])
        flatbuffer = payload[offset:offset + size]
    else:  # an old payload: the flatbuffer alone
        flatbuffer = payload
    flatc, schema = _flatc_and_schema()
    with tempfile.TemporaryDirectory(prefix="edgeport-pte-") as tmp:
        binary = Path(tmp) / "graph.bin"
        binary.write_bytes(flatbuffer)
        run = subprocess.run([flatc, "--json", "--strict-json", "--defaults-json", "--raw-binary", "-o", tmp, schema, "--", str(binary)],
                             capture_output=True, text=True)
        made = Path(tmp) / "graph.json"
        if run.returncode or not made.is_file():
            raise UserError(f"cannot read an XNNPACK delegate of this program: {(run.stderr or run.stdout).strip()[:200]}", REEXPORT_HINT)
        text = made.read_text()
    # flatc writes non-finite floats (a ReLU's output_max) bare: inf, -inf, nan
    text = re.sub(r"(:\s*-?)inf\b", r"\1Infinity", text)
    return json.loads(re.sub(r"(:\s*-?)nan\b", r"\1NaN", text))


@lru_cache(maxsize=1)
def _flatc_and_schema() -> tuple[str, str]:
    """ExecuTorch's flatc binary and XNNPACK schema, copied once per process to a temporary folder."""
    from importlib import resources

    from executorch.backends.xnnpack.serialization.xnnpack_graph_serialize import _get_schema_bytes

    folder = Path(tempfile.mkdtemp(prefix="edgeport-xnnschema-"))
    schema = folder / "schema.fbs"
    schema.write_bytes(_get_schema_bytes())
    flatc = folder / "flatc"
    flatc.write_bytes(resources.files("executorch.data.bin").joinpath("flatc").read_bytes())
    flatc.chmod(0o755)
    return str(flatc), str(schema)


def _tensor_value(value: dict) -> dict | None:
    union = value.get("xvalue_union") or {}
    if value.get("xvalue_union_type") == "XNNQuantizedTensorValue":
        return union.get("tensor_value")
    if value.get("xvalue_union_type") == "XNNTensorValue":
        return union
    return None


def _xnn_ops(graph: dict, partition: int) -> list[PteOp]:
    dtypes = {}
    for value in graph.get("xvalues", []):
        tv = _tensor_value(value)
        if tv is not None:
            dtypes[tv.get("id_out")] = tv.get("datatype", "")
    ops = []
    for i, node in enumerate(graph.get("xnodes", [])):
        kind = node.get("xnode_union_type", "?").removeprefix("XNN")
        fields = node.get("xnode_union") or {}
        data_in = next((fields[k] for k in ("input1_id", "input_id") if k in fields), None)
        if data_in is None and fields.get("input_ids"):
            data_in = fields["input_ids"][0]
        extra = [fields[k] for k in ("input2_id", "input3_id", "input4_id", "input5_id") if k in fields]
        d_in, d_out = dtypes.get(data_in, ""), dtypes.get(fields.get("output_id"), "")
        if d_in in _QUANTIZED and d_out in _QUANTIZED and all(dtypes.get(x, "") in _QUANTIZED for x in extra):
            dtype = _QUANTIZED[d_out]
        elif kind == "Convert":
            dtype = f"{_XNN_DTYPE.get(d_in, '?')}->{_XNN_DTYPE.get(d_out, '?')}"
        else:
            dtype = _XNN_DTYPE.get(d_in or d_out, "?")
        ops.append(PteOp(kind, dtype, True, partition, f"xnnpack{partition}/{i}", node.get("debug_handle")))
    return ops
