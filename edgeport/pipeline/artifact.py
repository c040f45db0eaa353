"""An Artifact is a frozen record of one produced file: what it is, where it came from, what made it."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

TOOL_PACKAGES = ("edgeport", "torch", "onnx", "onnxscript", "onnxruntime", "onnxsim", "numpy")
# every tool that can change an artifact of `edgeport run` (stage keys, manifest)
ALL_TOOLS = TOOL_PACKAGES + ("tensorflow", "tf_keras", "onnx2tf", "onnx_graphsurgeon", "ai-edge-litert", "executorch", "torchao")


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tool_versions(packages: tuple[str, ...] = TOOL_PACKAGES) -> dict[str, str]:
    out = {}
    for pkg in packages:
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


@dataclass(frozen=True)
class Artifact:
    path: Path
    target: str  # e.g. "onnx-fp32"
    format: str  # "onnx" | "tflite"
    sha256: str
    size: int
    dtypes: dict[str, int] = field(default_factory=dict)  # compute ops per dtype, read from the graph
    parent: str | None = None  # the stage this was made from, e.g. "torch-fused"
    tools: dict[str, str] = field(default_factory=dict)
    # ops the exporter kept float because the converter or runtime cannot run them in int8 (named, with why)
    auto_float: list[dict] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: Path, target: str, fmt: str, **kwargs) -> "Artifact":
        path = Path(path)
        return cls(path=path, target=target, format=fmt, sha256=sha256_of(path), size=path.stat().st_size, **kwargs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)
