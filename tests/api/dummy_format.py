"""A target and a file format defined outside the edgeport package, the way a user would add one: the fused
program saved with torch.export (``.ep``), run by torch itself. Registering it touches nothing in edgeport/."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from edgeport.exporters import FP32, TARGETS, ExportRequest, Target, register_target
from edgeport.formats import FORMATS, FileFormat, register_format


class EpRunner:
    name = "torch.export"

    def __init__(self, path: Path, threads: int = 1):
        import torch

        self.version = torch.__version__
        program = _load(path)
        self.module = program.module()
        node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs)
        self.input_shape = [int(d) for d in node.meta["val"].shape]

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        step = self.input_shape[0]
        with torch.no_grad():
            return np.concatenate([self.module(torch.from_numpy(np.ascontiguousarray(batch[i:i + step], np.float32))).numpy()
                                   for i in range(0, len(batch), step)])

    def invoker(self, batch: np.ndarray | None = None):
        x = np.zeros(self.input_shape, np.float32) if batch is None else batch[: self.input_shape[0]]
        return lambda: self.run(x)


class EpFormat(FileFormat):
    name = "ep"
    suffix = ".ep"

    def open_runner(self, path: Path, threads: int = 1):
        return EpRunner(path, threads)

    def summarize(self, path: Path):

        from edgeport.formats.graph_summary import GraphSummary, TensorInfo

        program = _load(path)
        ops = Counter(str(n.target) for n in program.graph.nodes if n.op == "call_function")
        weights = Counter(str(t.dtype).replace("torch.", "") for t in program.state_dict.values())
        shape = tuple(EpRunner(path).input_shape)
        return GraphSummary(Path(path), self.name, Path(path).stat().st_size, [TensorInfo("x", shape, "float32")], [],
                            ops, Counter({(op, "float32"): n for op, n in ops.items()}), weights)

    def coverage(self, path: Path):
        from edgeport.formats.int8_coverage import Coverage

        return Coverage(format=self.name)


def export_ep(req: ExportRequest) -> Path:
    import torch

    dest = req.out_dir / TARGETS.get("ep-fp32").filename(req.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as fh:  # a buffer: torch.export names files .pt2, this format calls them .ep
        torch.export.save(req.program, fh)
    return dest


def _load(path: Path):
    import torch

    with open(path, "rb") as fh:
        return torch.export.load(fh)


def register() -> None:
    if "ep" not in FORMATS:
        register_format(EpFormat())
    if "ep-fp32" not in TARGETS:
        register_target(Target("ep-fp32", "ep", "fp32", export_ep, FP32, parent="torch-fused", writer="torch.export.save"))


def unregister() -> None:
    for registry, name in ((TARGETS, "ep-fp32"), (FORMATS, "ep")):
        if name in registry:
            registry.remove(name)
