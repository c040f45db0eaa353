"""Where ``edgeport bench`` runs artifacts: the ``--device`` values, the Device hook and its result.

Values: ``local`` (this machine, in-process: edgeport.benchmark.local), ``qemu-pi4`` / ``qemu-pi5`` (an arm64
Debian userland under qemu user-mode emulation: edgeport.benchmark.qemu), ``qemu-x86-avx2`` (this machine's Python
on an emulated x86 CPU without VNNI or AVX-512: edgeport.benchmark.qemu_x86), ``docker-arm64``
(edgeport.benchmark.docker_device) and ``ssh://user@host[:port]`` (a real board: edgeport.benchmark.ssh_device).

Every remote device runs the same self-contained script, ``device_runner.py`` (RUNNER_SCRIPT), whose
``result.json`` becomes a DeviceRun (``DeviceRun.from_result``). A device module exposes
``make_device(spec: DeviceSpec) -> Device``; the dispatch lives only in DEVICES below.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from edgeport.errors import RuntimeMissing, UsageError

RUNNER_SCRIPT = Path(__file__).with_name("device_runner.py")
# Where a format's native device runtime (FileFormat.device_runtime: ExecuTorch's C++ runtime for .pte) is staged,
# beside device_runner.py; the runner, which imports nothing of edgeport, looks in the folder of the same name.
STAGED_RUNTIME = "pte"
ARM64 = ("aarch64", "arm64")  # platform.machine() of the boards a staged (aarch64-built) runtime runs on


@dataclass(frozen=True)
class DeviceSpec:
    """A parsed ``--device`` value."""

    kind: str  # a key of DEVICES
    text: str  # what the user typed
    user: str | None = None  # ssh only
    host: str | None = None
    port: int | None = None


@dataclass
class DeviceRun:
    """One artifact run on one device: the fields of device_runner.py's result.json, plus what edgeport adds."""

    device: str
    runner_version: str
    artifact: str
    sha256: str
    runtime: str
    runtime_version: str
    numpy_version: str
    python: str
    machine: str  # platform.machine() where it ran, e.g. "aarch64"
    cpuinfo_model: str | None
    threads: int
    xnnpack: bool
    load_ms: float
    timings_ms: list[float]
    outputs: np.ndarray | None = field(default=None, repr=False)  # float32, dequantized, same layout as the host runner's
    instructions_per_inference: float | None = None  # guest instructions (QEMU TCG plugin), None on real hardware
    emulated: bool = False  # timings are emulated wall time, NOT device latency
    extra: dict = field(default_factory=dict)  # device-specific details (core, repeatability, command line...)

    @classmethod
    def from_result(cls, result: dict | Path, device: str, outputs: np.ndarray | None = None,
                    instructions_per_inference: float | None = None, emulated: bool = False, **extra) -> "DeviceRun":
        """Build from a result.json dict (or its path); loads ``outputs_npy`` when outputs are not given."""
        if isinstance(result, (str, Path)):
            result = json.loads(Path(result).read_text())
        if outputs is None and result.get("outputs_npy") and Path(result["outputs_npy"]).is_file():
            outputs = np.load(result["outputs_npy"])
        return cls(
            device=device, runner_version=str(result["runner_version"]), artifact=str(result["artifact"]),
            sha256=str(result["sha256"]), runtime=str(result["runtime"]), runtime_version=str(result["runtime_version"]),
            numpy_version=str(result["numpy_version"]), python=str(result["python"]), machine=str(result["machine"]),
            cpuinfo_model=result.get("cpuinfo_model"), threads=int(result["threads"]), xnnpack=bool(result["xnnpack"]),
            load_ms=float(result["load_ms"]), timings_ms=[float(t) for t in result["timings_ms"]], outputs=outputs,
            instructions_per_inference=instructions_per_inference, emulated=emulated, extra=dict(extra),
        )

    @property
    def median_ms(self) -> float | None:
        return float(np.median(self.timings_ms)) if self.timings_ms else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("outputs")
        d["median_ms"] = self.median_ms
        return d


class Device(Protocol):
    """Something that runs an artifact on float32 NCHW inputs and says what happened."""

    name: str
    emulated: bool

    def run(self, artifact: Path, inputs: np.ndarray, threads: int) -> DeviceRun: ...


# kind -> module exposing make_device(spec). "local" stays in-process (edgeport.benchmark.local), no Device object.
DEVICES: dict[str, str | None] = {
    "local": None,
    "qemu-pi4": "edgeport.benchmark.qemu",
    "qemu-pi5": "edgeport.benchmark.qemu",
    "qemu-x86-avx2": "edgeport.benchmark.qemu_x86",
    "docker-arm64": "edgeport.benchmark.docker_device",
    "ssh": "edgeport.benchmark.ssh_device",
}
VALID = ", ".join("ssh://user@host[:port]" if kind == "ssh" else kind for kind in DEVICES)  # derived: one list
_SSH = re.compile(r"^ssh://(?:(?P<user>[A-Za-z0-9._-]+)@)?(?P<host>[A-Za-z0-9._-]+|\[[0-9A-Fa-f:]+\])(?::(?P<port>\d{1,5}))?/?$")


def parse_device(text: str) -> DeviceSpec:
    """``--device`` text -> DeviceSpec; anything else is a UsageError listing the valid values."""
    value = text.strip()
    if value.lower() in DEVICES and value.lower() != "ssh":
        return DeviceSpec(kind=value.lower(), text=value)
    if value.lower().startswith("ssh://"):
        m = _SSH.match(value)
        if not m:
            raise UsageError(f"--device {text!r} is not ssh://user@host[:port]", "e.g. ssh://pi@raspberrypi.local:22")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"--device {text!r}: port {port} is out of range")
        return DeviceSpec(kind="ssh", text=value, user=m["user"], host=m["host"].strip("[]"), port=port)
    raise UsageError(f"unknown --device {text!r}", f"valid: {VALID}")


def open_device(spec: DeviceSpec, **options) -> Device:
    """The Device for a non-local spec, from the module named in DEVICES; ``options`` go to its make_device
    (ssh: identity, remote_python, connect_timeout, runs; docker-arm64: remote_python, runs)."""
    module_name = DEVICES.get(spec.kind)
    if module_name is None:
        raise UsageError(f"--device {spec.text} runs in-process; it has no Device object")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise RuntimeMissing(f"--device {spec.text} is not available in this edgeport build", f"valid: {VALID}") from None
    return module.make_device(spec, **options)
