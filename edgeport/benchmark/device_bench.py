"""Run artifacts on a non-local ``--device`` and compare its outputs with this machine's (arm-vs-x86 parity).

Every device gets the same seeded, image-like float32 NCHW batch; the host runs the artifact in its own
runtime (OrtRunner / LiteRtRunner) on that batch, and :func:`edgeport.validation.parity.compare` judges the device's
outputs against it. Latency comes from device_runner.py's timings on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.benchmark.devices import Device, DeviceRun
from edgeport.runtimes import open_runtime
from edgeport.validation.parity import Parity, compare

PARITY_SAMPLES = 4


@dataclass
class DeviceResult:
    run: DeviceRun
    parity: Parity  # device outputs vs this machine's, same inputs

    def to_dict(self) -> dict:
        ms = np.asarray(self.run.timings_ms) if self.run.timings_ms else np.asarray([np.nan])
        return {**self.run.to_dict(), "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                "min_ms": float(ms.min()), "parity_vs_host": self.parity.to_dict()}


def nchw_inputs(artifact: Path, n: int = PARITY_SAMPLES) -> np.ndarray:
    """A seeded image-like NCHW batch shaped for ``artifact`` (from its input, NHWC .tflite read as NCHW)."""
    from edgeport.data import sample_inputs
    from edgeport.formats import format_of

    fmt = format_of(artifact)
    shape = fmt.input_nchw(fmt.open_runner(artifact).input_shape)
    return sample_inputs.image_like(shape, n).numpy().astype(np.float32)


def bench_on(device: Device, artifact: Path, threads: int) -> DeviceResult:
    x = nchw_inputs(artifact)
    run = device.run(artifact, x, threads)
    host = open_runtime(artifact, threads=threads).run(x)
    if run.outputs is None or run.outputs.shape != host.shape:
        got = None if run.outputs is None else run.outputs.shape
        from edgeport.errors import UserError

        raise UserError(f"{device.name} returned outputs of shape {got} for {artifact.name}, the host {host.shape}")
    return DeviceResult(run, compare(host, run.outputs))
