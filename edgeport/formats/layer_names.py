"""Which PyTorch layer each int8 op came from, so ONNX and TFLite diagnoses name layers the way the user's model does.

* ONNX: an op with a weight is named by the weight's module path (``features.3.conv.1.0.weight`` ->
  ``features.3.conv.1.0``): our exporter keeps parameter names as initializer names.
* TFLite: onnx2tf and the converter name ops after TensorFlow functions (``tf.nn.convolution_1``), which appear
  nowhere in the user's model. Nothing records the origin, and no library maps a converted TFLite op back to its
  ONNX node, so this module matches *weights*: a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED filter, dequantized
  when it is int8, is compared with the fp32 ONNX model's initializers by the direction of the vector of its output
  channels' L2 norms. That signature survives every layout change the converters make (OIHW -> OHWI / 1HWO,
  input-channel reordering), int8 rounding, and the constant factors our h-swish rewrite folds into weights; it is a
  per-layer fingerprint in practice (measured on the four trained models: every conv and FC that has a PyTorch
  weight matched, each to its own module).
* An op without a weight (ADD, PAD, MEAN, MUL, HARD_SWISH, ...) is named after its neighbours: ``ADD after
  features.3.conv.2`` (the latest named op feeding it), and ``PAD before features.0.0`` for a padding that only
  feeds a named conv. Both backends use the same rule, so one layer has one name in both reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WEIGHT_SUFFIX = ".weight"
_DQ_SUFFIX = "_DequantizeLinear_Output"
_MATCH_TOLERANCE = 0.05  # distance of the unit norm vectors; int8 rounding moves them by ~0.5% (measured)


@dataclass(frozen=True)
class OpNode:
    """One op of either graph, reduced to what naming needs."""

    key: str  # what the caller looks the name up by: ONNX node name, TFLite output tensor name
    op: str  # op type as the file spells it
    inputs: tuple[str, ...]  # tensor names
    outputs: tuple[str, ...]
    module: str | None  # module path when the op's weight identifies it


def name_ops(nodes: Sequence[OpNode]) -> dict[str, str]:
    """key -> display name: the module path for ops with a known weight, else the neighbour rule (module doc)."""
    producer = {o: n for n in nodes for o in n.outputs}
    consumers: dict[str, list[OpNode]] = {}
    for n in nodes:
        for i in n.inputs:
            consumers.setdefault(i, []).append(n)
    names: dict[str, str] = {}
    anchor: dict[str, tuple[int, str]] = {}  # key -> (graph position, module) of the nearest named op at or above it
    for pos, n in enumerate(nodes):  # graph order: every producer is named before its consumers
        if n.module:
            names[n.key], anchor[n.key] = n.module, (pos, n.module)
            continue
        ups = [anchor[producer[i].key] for i in n.inputs if i in producer and producer[i].key in anchor]
        if ups:  # the latest: a residual ADD is named after its branch, not after the skip connection
            anchor[n.key] = max(ups)
            names[n.key] = f"{n.op} after {anchor[n.key][1]}"
        else:
            names[n.key] = n.op
    for n in nodes:  # a padding that only feeds one named conv is that conv's padding
        if n.module is None and n.op.upper() in ("PAD", "PADV2", "MIRROR_PAD"):
            outs = [c for o in n.outputs for c in consumers.get(o, [])]
            if len(outs) == 1 and outs[0].module:
                names[n.key] = f"{n.op} before {outs[0].module}"
    seen: dict[str, int] = {}
    for n in nodes:  # names are what --allow-float takes: a repeated neighbour name gets its rank, in graph order
        if n.module is None:
            seen[names[n.key]] = seen.get(names[n.key], 0) + 1
            if seen[names[n.key]] > 1:
                names[n.key] = f"{names[n.key]} #{seen[names[n.key]]}"
    return names


# --- ONNX ---------------------------------------------------------------------------------------------------------

def onnx_names(model) -> dict[str, str]:
    """ONNX node name -> display name, for an fp32 or a QDQ int8 model (node names survive quantize_static)."""
    skip = {"QuantizeLinear", "DequantizeLinear"}
    nodes, alias = [], {}
    for node in model.graph.node:
        if node.op_type in skip:  # look through Q/DQ pairs: DQ output -> the tensor quantized
            if node.input and node.output:
                alias[node.output[0]] = alias.get(node.input[0], node.input[0])
            continue
        inputs = tuple(alias.get(i, i) for i in node.input)
        weight = _strip_dq(node.input[1]) if len(node.input) > 1 else ""
        module = weight[: -len(WEIGHT_SUFFIX)] if weight.endswith(WEIGHT_SUFFIX) else None
        nodes.append(OpNode(node.name, node.op_type, inputs, tuple(node.output), module))
    return name_ops(nodes)


def _strip_dq(name: str) -> str:
    return name[: -len(_DQ_SUFFIX)] if name.endswith(_DQ_SUFFIX) else name


def onnx_weight_norms(model) -> dict[str, np.ndarray]:
    """module path -> per-output-channel L2 norm of every conv/linear weight (ONNX keeps output channels first)."""
    from onnx import numpy_helper

    out = {}
    for init in model.graph.initializer:
        if init.name.endswith(WEIGHT_SUFFIX) and len(init.dims) >= 2:
            out[init.name[: -len(WEIGHT_SUFFIX)]] = _channel_norms(numpy_helper.to_array(init).astype(np.float64))
    return out


def _channel_norms(w: np.ndarray) -> np.ndarray:
    """L2 norm of each slice along the first axis (the output channels)."""
    return np.sqrt((w.reshape(w.shape[0], -1) ** 2).sum(axis=1))


# --- TFLite -------------------------------------------------------------------------------------------------------

_WEIGHTED = {"CONV_2D": 0, "FULLY_CONNECTED": 0, "DEPTHWISE_CONV_2D": 3}  # op -> output-channel axis of its filter


def tflite_names(model: bytes, reference_norms: dict[str, np.ndarray]) -> dict[str, str]:
    """Output tensor name of each op of a .tflite -> display name; weights matched to ``reference_norms``
    (:func:`onnx_weight_norms` of the fp32 ONNX model the file was converted from). Each reference module names
    one op at most; in graph order, an op takes the closest module not taken yet."""
    nodes, taken = [], set()
    for op, weight in _tflite_graph(model):
        module = _match(weight, op["op_name"], reference_norms, taken) if weight is not None else None
        if module:
            taken.add(module)
        nodes.append(OpNode(op["out_names"][0] if op["out_names"] else str(op["index"]), op["op_name"],
                            op["in_names"], op["out_names"], module))
    return name_ops(nodes)


def _tflite_graph(model: bytes):
    """(op details with tensor names, float filter or None) per op, in execution order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgeport.util import native_logs

    with native_logs.silenced():
        it = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    for op in it._get_ops_details():  # noqa: SLF001 - the public API has no op list; QuantizationDebugger uses it too
        ins = [int(i) for i in op["inputs"] if int(i) >= 0]
        op = dict(op, in_names=tuple(tensors[i]["name"] for i in ins),
                  out_names=tuple(tensors[int(o)]["name"] for o in op["outputs"]))
        weight = None
        if op["op_name"] in _WEIGHTED and len(ins) > 1:
            weight = _float_tensor(it, tensors[ins[1]])
        yield op, weight


def _float_tensor(it, detail: dict) -> np.ndarray | None:
    try:
        w = it.get_tensor(detail["index"])
    except ValueError:  # not a constant (a filter computed at run time has no fingerprint)
        return None
    q = detail["quantization_parameters"]
    if w.dtype in (np.int8, np.uint8, np.int16) and len(q["scales"]):
        shape = [1] * w.ndim
        axis = int(q["quantized_dimension"]) if len(q["scales"]) > 1 else 0
        shape[axis] = -1
        w = (w.astype(np.float64) - q["zero_points"].reshape(shape)) * q["scales"].reshape(shape)
    return w.astype(np.float64)


def _match(weight: np.ndarray, op: str, reference: dict[str, np.ndarray], taken: set[str] = frozenset()) -> str | None:
    """The reference module whose per-channel norms point the same way as this filter's, within tolerance.

    Directions, not values: our TFLite graph may carry a layer's weights times a constant (the h-swish rewrite
    of :mod:`edgeport.graph.rewrites` folds 1/6 into the next conv; measured 1/6 and 1/36 on MobileNetV3-Small)."""
    direction = _direction(_channel_norms(np.moveaxis(weight, _WEIGHTED[op], 0)))
    if direction is None:
        return None
    scored = []
    for module, ref in reference.items():
        ref_dir = _direction(ref) if ref.shape == direction.shape else None
        if ref_dir is not None:
            scored.append((float(np.linalg.norm(ref_dir - direction)), module in taken, module))
    if direction.size == 1 and len(scored) > 1:  # one output channel: every such layer points the same way
        return None
    fits = sorted((used, d, m) for d, used, m in scored if d < _MATCH_TOLERANCE)
    return fits[0][2] if fits else None


def _direction(v: np.ndarray) -> np.ndarray | None:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else None


# --- user-named layers (--allow-float, [quantize] allow_float) ------------------------------------------------------

def requested(key: str, display: str, requests: Sequence[str]) -> bool:
    """Whether the op ``key`` (ONNX node / TFLite tensor name) named ``display`` is one of ``requests``: its own
    name, its display name, or a module path above it (``features.3`` covers ``features.3.conv.1.0``)."""
    return any(r in (key, display) or r.lower() == display.lower() or display.startswith(r + ".") for r in requests)


def resolve(names: dict[str, str], requests: Sequence[str], flag: str = "--allow-float") -> list[str]:
    """The keys of ``names`` (key -> display name) that ``requests`` select; a request selecting nothing is a
    UserError with the closest layer names."""
    import difflib

    from edgeport.errors import UserError

    out: list[str] = []
    for r in requests:
        found = [k for k, d in names.items() if requested(k, d, [r])]
        if not found:
            modules = sorted({d for d in names.values() if " " not in d})
            close = difflib.get_close_matches(r, modules, n=5, cutoff=0.5)
            raise UserError(f"{flag} {r!r} matches no layer or node of the model",
                            f"did you mean: {', '.join(close)}?" if close else "use a layer name from the model's "
                            "state dict (e.g. features.0.0), as the per-layer diagnosis prints them")
        out.extend(k for k in found if k not in out)
    return out


def artifact_names(path, fp32_onnx) -> dict[str, str]:
    """key -> display name for an int8 artifact on disk (.onnx node names / .tflite op-output tensor names)."""
    from edgeport.formats import format_of

    return format_of(path).layer_names(path, fp32_onnx)
