""".pte files (ExecuTorch programs): run in ExecuTorch's Python runtime; graph, int8 coverage and delegation read
from the program itself (edgeport.formats.pte_program: which ops each XNNPACK partition computes and in which
dtype, which run in ExecuTorch's portable kernels); metadata from the program's ``edgeport_metadata`` constant
method. Inputs are NCHW float."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from edgeport.formats.base import FileFormat, register_format


class PteFormat(FileFormat):
    name = "executorch"
    suffix = ".pte"
    runtime_module = "executorch"
    runtime_package = "executorch==1.5.1"

    def device_runtime(self, say=print) -> Path:
        # On arm64 the executorch wheel's Python extension wants a CUDA torch: devices run ExecuTorch's C++
        # runtime, built once from the aarch64 wheel (edgeport.benchmark.executorch_arm).
        from edgeport.benchmark import executorch_arm

        return executorch_arm.ensure(say)

    def open_runner(self, path: Path, threads: int = 1):
        from edgeport.runtimes.executorch_runner import ExecuTorchRunner

        return ExecuTorchRunner(path, threads=threads)

    def graph(self, path: Path):
        from edgeport.formats.graph_summary import GraphSummary, TensorInfo
        from edgeport.formats.pte_program import read

        program = read(path)
        ops = Counter(f"{'xnnpack' if o.delegated else 'kernel'}:{o.op}" for o in program.ops)
        op_dtypes = Counter((f"{'xnnpack' if o.delegated else 'kernel'}:{o.op}", o.dtype) for o in program.ops)
        summary = GraphSummary(Path(path), self.name, program.size,
                               [TensorInfo(f"input{i}", shape, dtype) for i, (shape, dtype) in enumerate(program.inputs)],
                               [TensorInfo(f"output{i}", shape, dtype) for i, (shape, dtype) in enumerate(program.outputs)],
                               ops, op_dtypes, program.weight_dtypes)
        summary.details.update({"methods": program.methods, "delegates": dict(program.backends),
                                "partitions": program.partitions,
                                "portable_kernel_calls": sum(not o.delegated for o in program.ops),
                                "input_dim_orders": [list(o) for o in program.input_dim_orders]})
        return summary

    def metadata_text(self, path: Path) -> str | None:
        from edgeport.formats.pte_program import read

        return read(path).metadata

    def coverage(self, path: Path):
        from edgeport.formats.int8_coverage import Coverage
        from edgeport.formats.pte_program import CRITICAL_PTE_OPS, read

        int8, floats, names, types = Counter(), Counter(), [], []
        for op in read(path).compute_ops():
            if op.dtype in ("int8", "uint8"):
                int8[op.op] += 1
            else:
                floats[op.op] += 1
                names.append(op.name)
                types.append(op.op)
        return Coverage(int8, floats, names, types, format=self.name, critical=CRITICAL_PTE_OPS)

    def layer_names(self, path: Path, fp32_onnx) -> dict[str, str]:
        """op key ("xnnpack0/12") -> PyTorch module path, from the debug handles the export recorded in the file's
        metadata (``layers``); ops without one (layout ops, a program from elsewhere) are left out."""
        from edgeport.formats.pte_program import read

        layers = (self.metadata(path) or {}).get("layers") or {}
        return {op.name: layers[str(op.debug_handle)] for op in read(path).ops if str(op.debug_handle) in layers}

    def delegation(self, path: Path):
        from importlib.metadata import version

        from edgeport.formats.delegation import Delegation
        from edgeport.formats.pte_program import read

        program = read(path)
        fast, slow, slow_nodes = Counter(), Counter(), []
        for op in program.compute_ops():
            if op.delegated:
                fast[f"{op.op}:{op.dtype}"] += 1
            else:
                slow[f"{op.op}:{op.dtype}"] += 1
                slow_nodes.append((op.name, op.op))
        return Delegation(str(path), self.name, f"XNNPACK delegate (executorch {version('executorch')})", fast, slow, Counter(),
                          slow_nodes, partitions=program.partitions)


PTE = register_format(PteFormat())
