"""The qemu-x86-avx2 device: an x86-64 CPU with AVX2 and FMA but no AVX-512 and no VNNI (QEMU's ``Haswell`` model),
emulated on this x86 host by qemu user mode, running this machine's own Python and runtimes.

Why: on x86 the int8/fp32 ratio depends on VNNI (edgeport.runtimes.cpu_features): without it the int8 dot products
go through VPMADDUBSW, and onnx-int8's ``x86-avx2`` preset exists for those CPUs. The runtimes pick their kernels
from CPUID, which qemu answers for the emulated model, so a VNNI host can still run the AVX2 code paths. As on
qemu-pi4/pi5, the cost measure is guest instructions per inference (the TCG plugin, with x86_64's lseek as the
marker syscall); emulated wall time says nothing about a real CPU, and an instruction count is not a latency:
AVX2's int8 sequences (VPMADDUBSW, VPMADDWD, VPADDD) count one each, like the FMAs of fp32.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgeport.benchmark.devices import DeviceRun, DeviceSpec
from edgeport.benchmark.qemu import QemuDevice, ensure_plugin
from edgeport.errors import RuntimeMissing, UserError
from edgeport.runtimes import cpu_features

CPU_MODELS = {"qemu-x86-avx2": "Haswell"}  # device -> qemu -cpu model: AVX2 + FMA, no AVX-512, no VNNI
X86_64_SYS_LSEEK = 8


class QemuX86Device(QemuDevice):
    def __init__(self, name: str, warmup: int = 1, runs: int = 3, say=print):
        if name not in CPU_MODELS:
            raise UserError(f"unknown emulated x86 device {name!r}", f"one of {', '.join(CPU_MODELS)}")
        self.name, self.core = name, CPU_MODELS[name]
        self.warmup, self.runs, self.say = warmup, runs, say

    def run(self, artifact: Path, inputs: np.ndarray, threads: int = 1) -> DeviceRun:
        artifact = Path(artifact).resolve()
        if not artifact.is_file():
            raise UserError(f"{artifact} does not exist")
        if artifact.suffix.lower() == ".pte":
            raise UserError(f"{self.name} runs .onnx and .tflite files", "bench a .pte on local, qemu-pi4 or qemu-pi5")
        if not cpu_features.detect().is_x86 or shutil.which("qemu-x86_64") is None:
            raise RuntimeMissing(f"{self.name} needs an x86-64 host with qemu-user (qemu-x86_64)",
                                 "scripts/setup.sh installs qemu-user (apt-get install qemu-user)")
        plugin = ensure_plugin(self.say)
        work = Path(tempfile.mkdtemp(prefix="edgeport-qemu-x86-"))
        try:
            def command(args: list[str], counts: Path) -> list[str]:
                return ["qemu-x86_64", "-cpu", self.core, "-plugin", f"{plugin},out={counts},syscall={X86_64_SYS_LSEEK}",
                        sys.executable, *args]

            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONDONTWRITEBYTECODE": "1"}
            return self._run(plugin, work, artifact, np.asarray(inputs, dtype=np.float32), threads, command, env)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def make_device(spec: DeviceSpec, warmup: int = 1, runs: int = 3, **_ignored) -> QemuX86Device:
    """As qemu-pi4/pi5: a warm-up and the median of 3 counted inferences."""
    return QemuX86Device(spec.kind, warmup=warmup, runs=runs)
