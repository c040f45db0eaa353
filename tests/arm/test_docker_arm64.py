"""--device docker-arm64 against a real Docker engine (marker ``arm``). Skipped, with the reason, when
`docker info` fails: an engine is not something scripts/setup.sh starts (see docker/README.md). Asserted:
the container's python is aarch64 on the emulated core, int8 outputs are bit-identical to this machine's,
the image is built once. Nothing about how fast anything runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from edgeport.benchmark import docker_device
from edgeport.benchmark.device_bench import bench_on
from edgeport.benchmark.devices import parse_device
from edgeport.errors import RuntimeMissing

pytestmark = pytest.mark.arm


@pytest.fixture(scope="module")
def device():
    dev = docker_device.make_device(parse_device("docker-arm64"), runs=3, warmup=1)
    try:
        dev.check_engine()
    except RuntimeMissing as exc:
        pytest.skip(f"no Docker engine here: {exc}")
    return dev


@pytest.fixture(scope="module")
def int8_tflite(tmp_path_factory):
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    out = tmp_path_factory.mktemp("docker_arm64")
    loaded = model_source.load(f"{byo}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    return run_export(loaded, parse_targets("tflite-int8"), out, data=data, validate=False).artifacts[0].path


def test_int8_in_the_arm64_container_is_bit_identical(device, int8_tflite):
    result = bench_on(device, int8_tflite, threads=1)
    run = result.run
    assert run.machine == "aarch64" and run.runtime == "ai-edge-litert" and run.xnnpack
    assert len(run.timings_ms) == 3 and run.extra["image"].startswith(docker_device.IMAGE)
    if device.emulated:
        assert run.emulated and "Cortex-A72" in (run.cpuinfo_model or "")
    assert result.parity.max_abs == 0.0 and result.parity.top1_agreement == 1.0
    # built once: the tag names an image that exists now and is reused
    tag = device.ensure_image()
    assert subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0
