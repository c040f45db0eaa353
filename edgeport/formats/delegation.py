"""Which ops of an artifact run on the runtime's fast path, measured from the runtime itself.

TFLite (:func:`tflite_delegation`): the file is loaded in ai-edge-litert's Interpreter, which applies the
XNNPACK delegate by default, and the *post-delegation* node list is read back. After
``ModifyGraphWithDelegate`` the interpreter keeps the original nodes (indices 0..M-1) and appends one
``DELEGATE`` node per XNNPACK partition, whose inputs are every tensor the partition reads (activations and
weights) and whose outputs are what it hands back. An original node belongs to a partition when its output
is reached walking backwards from the partition's outputs without crossing the partition's inputs; every
other node runs in LiteRT's builtin kernels. So the partition count is the number of DELEGATE nodes, and the
per-op split is what the interpreter really did. Why not the log line "Replacing N out of M node(s) with
delegate (TfLiteXNNPackDelegate) node, yielding P partitions": the wheel's minimal logger is compiled with a
threshold above that line's severity and the setter is not exported (TF_CPP_MIN_LOG_LEVEL does not reach
it), so the line never appears; the node list is also more precise (it names the nodes). The op details
are read with ``Interpreter._get_ops_details``, the method the public ``get_...`` helpers are built on.

ONNX (:func:`onnx_kernels`): the model is optimised by ONNX Runtime's CPU provider at ORT_ENABLE_ALL and the
graph it saves (``optimized_model_filepath``, see :func:`edgeport.formats.int8_coverage.ort_optimized_model`) is
read: QOperator nodes (QLinearConv, QLinearAdd, QGemm, MatMulInteger...) are fused integer kernels; a float
compute node whose inputs come from DequantizeLinear and whose output goes to QuantizeLinear was quantized
in the file but ORT found no integer kernel for it on this CPU, so it runs as DQ -> float op -> Q; the
remaining compute nodes are float in the file as well. The two views come from the same rules
:mod:`edgeport.formats.int8_coverage` applies to files.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from edgeport.errors import RuntimeMissing, UserError

# formats whose runtime hands partitions to XNNPACK: (what is counted, where the rest runs, the same in a sentence)
_PARTITIONED = {"tflite": ("nodes", "builtin kernels", "LiteRT's builtin kernels"),
                "executorch": ("compute ops", "portable kernels", "ExecuTorch's portable kernels")}


def _counts(c: Counter) -> str:
    return ", ".join(f"{k} x{v}" for k, v in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


@dataclass(frozen=True)
class Delegation:
    """Where the compute of one artifact runs.

    ``fast``: op type -> count on the fast path (XNNPACK-delegated nodes; ORT integer kernels).
    ``slow``: op type -> count left out of it (LiteRT builtin kernels; float ops between DQ and Q).
    ``float_ops``: ONNX compute ops that are float in the file too (for a quantized model, also left out).
    """

    path: str
    format: str  # "tflite" | "onnx" | "executorch"
    engine: str  # e.g. "XNNPACK delegate (ai-edge-litert 2.3.0)"
    fast: Counter = field(default_factory=Counter)
    slow: Counter = field(default_factory=Counter)
    float_ops: Counter = field(default_factory=Counter)
    slow_nodes: list[tuple[str, str]] = field(default_factory=list)  # (node or tensor name, op type)
    partitions: int | None = None  # XNNPACK partitions (TFLite only)
    quantized: bool = True  # ONNX: the graph has Q/DQ or integer nodes; TFLite: always judged
    qdq_nodes: int = 0  # QuantizeLinear + DequantizeLinear nodes ORT still runs
    arm_preview: "Delegation | None" = None  # ONNX on x86: the graph ORT would run on ARM (see onnx_kernels)

    @property
    def total(self) -> int:
        return sum(self.fast.values()) + sum(self.slow.values()) + sum(self.float_ops.values())

    @property
    def left_out(self) -> Counter:
        """Ops that could be on the fast path and are not (empty for a float ONNX model: nothing to miss)."""
        if self.format == "onnx" and not self.quantized:
            return Counter()
        return self.slow + self.float_ops

    def summary(self) -> str:
        if self.format in _PARTITIONED:
            head = (f"{self.engine}: {sum(self.fast.values())}/{self.total} {_PARTITIONED[self.format][0]} delegated in "
                    f"{self.partitions} partition{'s' if self.partitions != 1 else ''}")
            return f"{head}; {_PARTITIONED[self.format][1]}: {_counts(self.slow)}"
        if not self.quantized:
            return f"{self.engine}: float model, {self.total} compute nodes ({_counts(self.float_ops)})"
        return (f"{self.engine}: integer kernels {sum(self.fast.values())}/{self.total}; float between DQ/Q: "
                f"{_counts(self.slow)}; float: {_counts(self.float_ops)}; {self.qdq_nodes} Q/DQ nodes")

    def lines(self) -> list[str]:
        """The summary, then one line per group with counts per op type."""
        out = [self.summary()]
        if self.format in _PARTITIONED:
            out.append(f"  delegated: {_counts(self.fast)}")
        elif self.quantized:
            out.append(f"  integer kernels: {_counts(self.fast)}")
        if self.arm_preview is not None:
            a = self.arm_preview
            out.append(f"  on ARM (ORT's optimizer with session.qdqisint8allowed=1, run here): integer kernels "
                       f"{sum(a.fast.values())}/{a.total}; left in float: {_counts(a.left_out)}")
        return out

    def warning(self) -> str | None:
        """One line when ops are left out of the fast path, else None."""
        left = self.left_out
        if not left:
            return None
        where = (f"run in {_PARTITIONED[self.format][2]}, not XNNPACK" if self.format in _PARTITIONED
                 else "run in float in onnxruntime")
        return f"{Path(self.path).name}: {sum(left.values())} op(s) {where}: {_counts(left)}"

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "engine": self.engine,
            "partitions": self.partitions,
            "quantized": self.quantized,
            "fast": dict(sorted(self.fast.items())),
            "slow": dict(sorted(self.slow.items())),
            "float": dict(sorted(self.float_ops.items())),
            "left_out": sum(self.left_out.values()),
            "slow_nodes": [{"name": n, "op": t} for n, t in self.slow_nodes],
            "qdq_nodes": self.qdq_nodes,
            "arm_preview": self.arm_preview.to_dict() if self.arm_preview is not None else None,
            "summary": self.summary(),
            "warning": self.warning(),
        }


def delegation_of(path) -> Delegation:
    """The delegation report of an .onnx or .tflite file, by its format."""
    from edgeport.formats import format_of

    return format_of(path).delegation(Path(path))


def tflite_delegation(path) -> Delegation:
    """XNNPACK-delegated vs builtin nodes of a .tflite, from the interpreter's post-delegation graph."""
    from edgeport.runtimes.litert_runner import LiteRtRunner

    runner = LiteRtRunner(Path(path), threads=1)  # loads with XNNPACK applied, typed errors on failure
    interp = runner.interpreter
    if not hasattr(interp, "_get_ops_details"):
        raise RuntimeMissing("this ai-edge-litert does not expose its node list", "pip install 'ai-edge-litert==2.3.*'")
    ops = interp._get_ops_details()
    delegated = delegated_nodes(ops)
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    fast, slow, slow_nodes = Counter(), Counter(), []
    for o in originals:
        if o["index"] in delegated:
            fast[o["op_name"]] += 1
        else:
            slow[o["op_name"]] += 1
            out = int(o["outputs"][0]) if len(o["outputs"]) else -1
            name = names.get(out, f"node {o['index']}")
            slow_nodes.append((name, o["op_name"]))
    return Delegation(str(path), "tflite", f"XNNPACK delegate (ai-edge-litert {runner.version})", fast, slow,
                      Counter(), slow_nodes, partitions=sum(o["op_name"] == "DELEGATE" for o in ops))


PASS_THROUGH_OPS = frozenset({"QUANTIZE", "DEQUANTIZE"})  # dtype changes between an int8 op and a float one


def tflite_neighbours(path) -> dict[str, set[str]]:
    """Op (named by its first output tensor) -> the ops next to it in a .tflite graph: the producers of its
    inputs and the consumers of its outputs, looking through QUANTIZE/DEQUANTIZE (which only change dtype)."""
    from edgeport.runtimes.litert_runner import LiteRtRunner

    interp = LiteRtRunner(Path(path), threads=1).interpreter
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    ops = [o for o in interp._get_ops_details() if o["op_name"] != "DELEGATE"]
    producer = {int(t): o for o in ops for t in o["outputs"]}
    consumers: dict[int, list[dict]] = {}
    for o in ops:
        for t in o["inputs"]:
            consumers.setdefault(int(t), []).append(o)

    def across(o: dict, upstream: bool) -> list[dict]:
        if o["op_name"] not in PASS_THROUGH_OPS:
            return [o]
        if upstream:
            return [n for t in o["inputs"] if int(t) in producer for n in across(producer[int(t)], True)]
        return [n for t in o["outputs"] for c in consumers.get(int(t), []) for n in across(c, False)]

    out: dict[str, set[str]] = {}
    for o in ops:
        if o["op_name"] in PASS_THROUGH_OPS or not len(o["outputs"]):
            continue
        near = [n for t in o["inputs"] if int(t) in producer for n in across(producer[int(t)], True)]
        near += [n for t in o["outputs"] for c in consumers.get(int(t), []) for n in across(c, False)]
        out[names[int(o["outputs"][0])]] = {names[int(n["outputs"][0])] for n in near if len(n["outputs"])}
    return out


def delegated_nodes(ops: list[dict]) -> dict[int, int]:
    """Original node index -> index of the DELEGATE node that took it, from a post-delegation node list
    (dicts with ``index``, ``op_name``, ``inputs``, ``outputs`` as ``Interpreter._get_ops_details`` gives)."""
    originals = [o for o in ops if o["op_name"] != "DELEGATE"]
    producer = {int(t): o["index"] for o in originals for t in o["outputs"]}
    by_index = {o["index"]: o for o in ops}
    owner: dict[int, int] = {}
    for d in ops:
        if d["op_name"] != "DELEGATE":
            continue
        inputs = {int(t) for t in d["inputs"]}  # a partition's inputs bound it: walk back until them
        stack = [int(t) for t in d["outputs"]]
        while stack:
            node = producer.get(stack.pop())
            if node is None or node in owner:
                continue
            owner[node] = d["index"]
            stack.extend(int(t) for t in by_index[node]["inputs"] if int(t) >= 0 and int(t) not in inputs)
    return owner


def onnx_kernels(path, qdq_int8_allowed: bool | None = None, arm_preview: bool = True) -> Delegation:
    """Integer kernels vs float ops in the graph ONNX Runtime's CPU provider runs on this machine.

    On x86, ORT converts int8-activation QDQ groups to uint8 and fuses fewer of them than on ARM; with
    ``arm_preview`` a quantized model is optimised a second time with ``session.qdqisint8allowed=1`` (what
    ORT sets on ARM) and that graph's report is attached: ORT's own fusion decisions for an ARM CPU, made here
    (the kernels themselves still run on the device, see ``edgeport bench --device``)."""
    import platform

    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeMissing("onnxruntime is not installed", "pip install 'onnxruntime>=1.32,<1.33'") from None
    from edgeport.formats.int8_coverage import QOPERATOR_ONNX_OPS, onnx_coverage, ort_optimized_model

    try:
        optimized = ort_optimized_model(Path(path), qdq_int8_allowed)
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph types
        raise UserError(f"onnxruntime cannot load {path}: {str(exc).splitlines()[0][:200]}") from None
    nodes = list(optimized.graph.node)
    fast = Counter(n.op_type for n in nodes if n.op_type in QOPERATOR_ONNX_OPS)
    qdq = sum(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in nodes)
    in_file = onnx_coverage(optimized, qdq_counts_as_int8=True)  # float in the file itself
    run = onnx_coverage(optimized, qdq_counts_as_int8=False)  # float as ORT runs it
    truly_float = set(zip(in_file.float_op_names, in_file.float_op_types))
    slow, slow_nodes = Counter(), []
    for name, kind in zip(run.float_op_names, run.float_op_types):
        if (name, kind) not in truly_float:
            slow[kind] += 1
            slow_nodes.append((name, kind))
    quantized = bool(fast) or qdq > 0
    if quantized:  # in a float model every node is float by design: nothing to list
        slow_nodes += sorted(truly_float)
    engine = f"onnxruntime {ort.__version__} CPU ({platform.machine()})"
    preview = None
    if arm_preview and quantized and qdq_int8_allowed is None and platform.machine().lower() in ("x86_64", "amd64", "i686"):
        preview = onnx_kernels(path, qdq_int8_allowed=True, arm_preview=False)
    return Delegation(str(path), "onnx", engine, fast, slow, Counter(in_file.float_ops), slow_nodes,
                      quantized=quantized, qdq_nodes=qdq, arm_preview=preview)
