"""The whole ssh:// ARM path without hardware (marker ``arm``): the loopback sshd's "device" python is the
arm64 rootfs's python3.11 under qemu-aarch64 (Cortex-A72, edgeport's fake cpuinfo), given as --remote-python.
Asserted: the run happens on aarch64, is flagged emulated, and int8 outputs are bit-identical to x86's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.arm


@pytest.fixture(scope="module")
def int8_tflite(tmp_path_factory):
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    out = tmp_path_factory.mktemp("ssh_qemu")
    loaded = model_source.load(f"{byo}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    return run_export(loaded, parse_targets("tflite-int8"), out, data=data, validate=False).artifacts[0].path


def test_bench_over_ssh_into_the_arm64_rootfs(cli, sshd, qemu_python, int8_tflite, tmp_path):
    res = cli("bench", int8_tflite, "--device", sshd.url, "--ssh-key", sshd.key, "--ssh-config", sshd.ssh_config,
              "--remote-python", qemu_python, "--runs", "3", "--json", tmp_path / "r.json")
    assert res.code == 0, res.err
    (run,) = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert run["machine"] == "aarch64" and "Cortex-A72" in run["cpuinfo_model"]
    assert run["emulated"] is True and "NOT device latency" in res.out
    assert run["parity_vs_host"]["max_abs"] == 0.0  # XNNPACK int8 on NEON == on x86
