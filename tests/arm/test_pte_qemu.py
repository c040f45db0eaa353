""".pte on qemu-pi5 (marker ``arm``): ExecuTorch's C++ runtime (edgeport.benchmark.executorch_arm, built by the
setup step from the pinned aarch64 wheel) runs a small int8 program in the arm64 guest. Asserted: instructions are
counted between the markers, the count repeats, the outputs match the x86 ExecuTorch runtime's, and the CLI
bench line works; a missing runtime is a typed one-line error. Nothing about how fast anything runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.benchmark import arm_rootfs, executorch_arm, qemu
from edgeport.benchmark.device_bench import bench_on
from edgeport.errors import RuntimeMissing

pytestmark = [
    pytest.mark.arm,
    pytest.mark.skipif(importlib.util.find_spec("executorch") is None, reason="executorch not installed (x86 reference)"),
    pytest.mark.skipif(executorch_arm.find() is None and not executorch_arm.wheel_path().is_file(),
                       reason=f"ExecuTorch's arm64 runtime is not set up ({executorch_arm.SETUP_HINT})"),
]
SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def pte(tmp_path_factory):
    """The BYO fixture model at 32x32 as executorch-int8 (its outputs are not all zero, unlike a random-weight zoo
    model at this size)."""
    from edgeport.data import sample_inputs
    from edgeport.exporters import ExportRequest, QuantOptions, parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import prepare

    arm_rootfs.ensure()
    qemu.ensure_plugin()
    executorch_arm.ensure()
    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    prepared = prepare(model_source.load(f"{byo}:build", input_shape=SHAPE))
    out = tmp_path_factory.mktemp("pte-arm")
    calib = sample_inputs.image_like((16, *SHAPE[1:]), 16, seed=3).numpy()
    req = ExportRequest("byo", prepared.program, prepared.example, out, False, calib, QuantOptions(), {},
                        {"edgeport": "test", "model": "byo", "input_shape": list(SHAPE)})
    (target,) = parse_targets("executorch-int8")
    return target.export(req)


def test_int8_pte_counts_and_matches_x86(pte):
    result = bench_on(qemu.QemuDevice("qemu-pi5", warmup=1, runs=3), pte, 1)
    run = result.run
    assert run.machine == "aarch64" and "Cortex-A76" in (run.cpuinfo_model or "") and run.emulated
    assert run.runtime == "executorch" and run.runtime_version == executorch_arm.VERSION and run.xnnpack
    per_run = run.extra["insn_per_run"]
    assert len(per_run) == 3 and run.instructions_per_inference > 10_000
    assert max(per_run) - min(per_run) < 5_000  # the forward() call alone is between the marks
    assert np.abs(run.outputs).max() > 0  # a meaningful comparison, not zeros against zeros
    # XNNPACK's int8 kernels on aarch64 vs x86: measured bit-identical here; allow one output step
    assert result.parity.max_rel < 0.01 and result.parity.top1_agreement == 1.0, result.parity


def test_cli_bench_pte_on_qemu_pi5(pte, cli, tmp_path):
    res = cli("bench", str(pte), "--device", "qemu-pi5", "--json", tmp_path / "b.json")
    assert res.code == 0, res.err + res.out
    assert "Traceback" not in res.out + res.err
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["runs"][0]["runtime"] == "executorch" and record["runs"][0]["instructions_per_inference"] > 0


def test_missing_runtime_is_a_typed_error(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path))  # an empty cache: no wheel, no build
    with pytest.raises(RuntimeMissing) as err:
        executorch_arm.ensure(lambda _: None)
    assert "setup" in (err.value.hint or "")


def test_cli_bench_pte_over_ssh_stages_the_runtime(pte, cli, sshd, qemu_python, tmp_path):
    """ssh:// to a "board" whose python is the arm64 rootfs's under qemu: edgeport copies ExecuTorch's aarch64
    C++ runtime there (no executorch module on the board) and the outputs equal the x86 runtime's."""
    res = cli("bench", str(pte), "--device", sshd.url, "--ssh-key", sshd.key, "--ssh-config", sshd.ssh_config,
              "--remote-python", qemu_python, "--runs", "3", "--json", tmp_path / "r.json")
    assert res.code == 0, res.err + res.out
    (run,) = json.loads((tmp_path / "r.json").read_text())["runs"]
    assert run["machine"] == "aarch64" and run["runtime"] == "executorch" and run["emulated"] is True
    assert run["runtime_version"] == executorch_arm.VERSION and run["parity_vs_host"]["max_abs"] == 0.0
