"""Per-layer diagnosis of an executorch-int8 program, measured in ExecuTorch's runtime with XNNPACK's int8 kernels.

ExecuTorch's own devtools (an ETRecord, an ETDump with debug buffers, ``Inspector.calculate_numeric_gap``) see a
delegate call as one operator: in a program whose whole graph is one XNNPACK partition they see no intermediate
tensor at all (ExecuTorch's numerical-debugging tutorial: operator-level debugging "is limited to ET-visible
operators, and treat[s] every delegate call as a single operator"). So edgeport makes a diagnostic twin instead:
the same quantized program (:func:`edgeport.exporters.executorch.quantize`: the same calibration gives the same
scales), lowered the same way, whose outputs also return every quantized activation (the int8 tensor each quantize
node makes). XNNPACK computes the twin with the same kernels and partition; its first output is checked against
the artifact's own outputs (``twin_max_abs`` in the rows' source line), so the rows describe the file written.

* End to end (``sqnr_db``, ``rel_rmse``): each dequantized int8 tensor against the float program's tensor of the
  same node (the quantized program is the float one with quantize/dequantize pairs between its ops: same names).
* Layer-local (``error_to_scale``): the op's float result (float weights) on the int8 model's own dequantized
  inputs, computed in PyTorch from the twin's tensors, against the op's int8 output, in quantization steps.
* ``fallback``: the node's name, which ``--allow-float`` / ``QuantOptions.float_fallback`` takes (its module path,
  the ``layer`` column, works too).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgeport.diagnose.metrics import ErrorSums, LayerError


@dataclasses.dataclass(frozen=True)
class _Point:
    producer: str  # the node whose output is quantized (same name in the float program)
    scale: float
    zero: int


def _quantize_nodes(gm) -> dict:
    """producer name -> the first quantize_per_tensor node quantizing its output, in graph order."""
    import torch

    q_op = torch.ops.quantized_decomposed.quantize_per_tensor.default
    found = {}
    for node in gm.graph.nodes:
        src = node.args[0] if node.op == "call_function" and node.target == q_op else None
        if getattr(src, "op", None) in ("call_function", "placeholder", "get_attr"):
            found.setdefault(src.name, node)
    return found


def _points(gm) -> list[_Point]:
    """The quantized activations of the quantized program's module, in graph order: one per producer."""
    return [_Point(name, float(q.args[1]), int(q.args[2])) for name, q in _quantize_nodes(gm).items()]


def twin(req, quantized_module, points: list[_Point]) -> bytes:
    """The quantized program's module lowered like the artifact, returning its output and then each point's int8
    tensor."""
    import copy

    import torch

    from edgeport.exporters.executorch import lower

    gm = copy.deepcopy(quantized_module)
    by_producer = _quantize_nodes(gm)
    out = gm.graph.output_node()
    (results,) = out.args
    results = tuple(results) if isinstance(results, (tuple, list)) else (results,)
    out.args = (results + tuple(by_producer[p.producer] for p in points),)
    gm.graph._codegen = torch.fx.graph.CodeGen()  # noqa: SLF001 - a plain tuple out, not the one-output pytree spec
    gm.graph.lint()
    gm.recompile()
    program = torch.export.export(gm, (req.example,), strict=False)
    return lower(dataclasses.replace(req, metadata={}), program, "executorch-int8")


def diagnose_pte(req, artifact, inputs_nchw: np.ndarray) -> tuple[list[LayerError], float]:
    """One row per quantized activation made by an op (the input's quantization is not a layer), and the largest
    difference between the twin's final output and ``artifact``'s on the same inputs (0 when they agree)."""
    import tempfile
    from pathlib import Path

    import torch

    from edgeport.exporters.executorch import quantize
    from edgeport.graph.fuse import module_path
    from edgeport.graph.rewrites import for_executorch
    from edgeport.runtimes.executorch_runner import ExecuTorchRunner

    quantized = quantize(req)[0].module()
    floating = for_executorch(req.program, req.example, int8=True)[0].module()
    nodes = {n.name: n for n in floating.graph.nodes}
    points = [p for p in _points(quantized) if p.producer in nodes]
    data = np.ascontiguousarray(inputs_nchw, dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgeport-pte-diagnose-") as tmp:
        path = Path(tmp) / "twin.pte"
        path.write_bytes(twin(req, quantized, points))
        runner, shipped = ExecuTorchRunner(path), ExecuTorchRunner(artifact)
        batch = runner.batch
        data = data[: len(data) // batch * batch]
        sums = {p.producer: ErrorSums() for p in points}
        twin_gap = 0.0
        for i in range(0, len(data), batch):
            x = data[i : i + batch]
            outs = runner.method.execute([runner._tensor(x)])  # noqa: SLF001 - the runner's own input layout
            twin_gap = max(twin_gap, float(np.abs(outs[0].numpy().astype(np.float32) - shipped.run(x)).max()))
            dq = {p.producer: (outs[k + 1].numpy().astype(np.float32) - p.zero) * np.float32(p.scale)
                  for k, p in enumerate(points)}
            reference = _float_values(floating, torch.from_numpy(x), set(sums))
            own = _on_int8_inputs(floating, nodes, dq, points)
            for p in points:
                sums[p.producer].add(reference[p.producer], dq[p.producer], dq[p.producer] - own[p.producer])
    rows = []
    for p in points:
        node = nodes[p.producer]
        if node.op != "call_function":  # the input's or a constant's quantization: not a layer
            continue
        acc = sums[p.producer]
        op = getattr(node.target, "__name__", str(node.target)).split(".")[0]
        rows.append(LayerError(p.producer, module_path(node), op, p.producer, p.scale, p.zero, acc.sqnr_db(),
                               acc.rel_rmse(), acc.error_to_scale(p.scale), len(rows)))
    return rows, twin_gap


def _float_values(gm, x, wanted: set[str]) -> dict[str, np.ndarray]:
    """The float program's value of every ``wanted`` node on ``x``."""
    import torch
    from torch import fx

    got: dict[str, np.ndarray] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            value = super().run_node(n)
            if n.name in wanted and isinstance(value, torch.Tensor):  # a copy: a later in-place op (relu_) changes it
                got[n.name] = value.detach().float().numpy().copy()
            return value

    with torch.no_grad():
        Recorder(gm).run(x)
    return got


def _on_int8_inputs(module, nodes: dict, dq: dict[str, np.ndarray], points: list[_Point]) -> dict[str, np.ndarray]:
    """Each point's op computed in float on the int8 model's own dequantized tensors: a node between two points
    (a conv before its fused clamp) is computed from the last points before it, weights are ``module``'s float ones."""
    import torch
    from torch import fx

    out = {}
    for p in points:
        memo: dict[str, object] = {}

        def value(n, top=p.producer):
            if not isinstance(n, fx.Node):
                return n
            if n.name != top and n.name in dq:
                return torch.tensor(dq[n.name])  # a copy: an in-place op (relu_) must not change the twin's values
            if n.name in memo:
                return memo[n.name]
            if n.op == "get_attr":
                v = module
                for part in n.target.split("."):
                    v = getattr(v, part)
            elif n.op == "placeholder":  # reached only when the input is not quantized (a float first layer)
                raise LookupError(n.name)
            else:
                args = fx.node.map_arg(n.args, value)
                kwargs = fx.node.map_arg(n.kwargs, value)
                v = n.target(*args, **kwargs)
            memo[n.name] = v
            return v

        try:
            with torch.no_grad():
                out[p.producer] = value(nodes[p.producer]).detach().float().numpy().copy()
        except (LookupError, TypeError, RuntimeError):
            out[p.producer] = np.full_like(dq[p.producer], np.nan)
    return out
