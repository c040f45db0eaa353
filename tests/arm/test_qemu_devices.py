"""qemu-pi4 / qemu-pi5 end to end (marker ``arm``; CI runs it with -m ""): the arm64 userland is built once per
session (or taken from ~/.cache/edgeport/arm64), small artifacts run in it under qemu user-mode emulation.

Asserted: instruction counts repeat (same process and across processes), int8 LiteRT+XNNPACK outputs are
bit-identical to x86's, fp32 ones close, the guest really is an aarch64 Cortex-A72/A76, the CLI prints and
writes the int8/fp32 instruction ratio. Nothing about how fast anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.benchmark import arm_rootfs, qemu
from edgeport.benchmark.device_bench import bench_on, nchw_inputs
from edgeport.runtimes import open_runtime

pytestmark = pytest.mark.arm


@pytest.fixture(scope="session")
def arm64():
    """Build (or reuse) the arm64 rootfs and the insn plugin: the one slow step, shared by every test."""
    rootfs = arm_rootfs.ensure()
    plugin = qemu.ensure_plugin()
    assert (rootfs.path / "usr/bin/python3.11").exists() and plugin.is_file()
    assert rootfs.stamp["guest"]["machine"] == "aarch64"
    return rootfs


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    out = tmp_path_factory.mktemp("arm")
    loaded = model_source.load(f"{byo}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    run = run_export(loaded, parse_targets("tflite-fp32,tflite-int8,onnx-fp32,onnx-int8"), out, data=data, validate=False)
    return {a.path.name.split(".", 1)[1]: a.path for a in run.artifacts}


def test_int8_tflite_is_bit_exact_and_counts_repeat(arm64, small):
    dev = qemu.QemuDevice("qemu-pi5", warmup=1, runs=3)
    first = bench_on(dev, small["int8.tflite"], 1)
    run = first.run
    assert run.machine == "aarch64" and "Cortex-A76" in (run.cpuinfo_model or "") and run.emulated
    assert run.runtime == "ai-edge-litert" and run.xnnpack
    per_run = run.extra["insn_per_run"]
    assert len(per_run) == 3 and run.instructions_per_inference > 10_000
    # The runtime call itself repeats exactly; the Python around it varies by ~1000 instructions at most
    # (MobileNetV2: < 0.002 % of 49 M). This model is tiny (~0.26 M), so the bound is absolute.
    assert max(per_run) - min(per_run) < 5_000  # same process
    host = open_runtime(small["int8.tflite"]).run(nchw_inputs(small["int8.tflite"]))
    assert len(np.unique(host)) > 3  # outputs that vary, so bit-exactness below is not trivially true
    assert first.parity.max_abs == 0.0  # int8 LiteRT + XNNPACK: arm64 == x86, bit for bit
    again = dev.run(small["int8.tflite"], nchw_inputs(small["int8.tflite"]), 1)
    assert abs(again.instructions_per_inference - run.instructions_per_inference) < 5_000  # new process
    assert again.extra["insn_total"] > again.instructions_per_inference * 3  # startup + load are outside the marks


def test_fp32_tflite_close_and_pi4_is_a72(arm64, small):
    result = bench_on(qemu.QemuDevice("qemu-pi4", runs=1), small["fp32.tflite"], 1)
    assert "Cortex-A72" in (result.run.cpuinfo_model or "")
    assert result.parity.max_rel < 1e-4 and result.parity.cosine > 0.999999
    assert result.run.instructions_per_inference > 0


def test_onnxruntime_runs_in_the_guest(arm64, small):
    for kind in ("fp32.onnx", "int8.onnx"):
        result = bench_on(qemu.QemuDevice("qemu-pi5", runs=1), small[kind], 1)
        assert result.run.runtime == "onnxruntime" and result.run.machine == "aarch64"
        assert result.run.instructions_per_inference > 0
        host = open_runtime(small[kind]).run(nchw_inputs(small[kind]))
        assert np.argmax(host, 1).tolist() == np.argmax(result.run.outputs, 1).tolist() or result.parity.max_rel < 0.05


def test_cli_prints_and_writes_the_instruction_ratio(arm64, small, cli, tmp_path):
    res = cli("bench", small["int8.tflite"], small["fp32.tflite"], "--device", "qemu-pi5", "--json", tmp_path / "q.json")
    assert res.code == 0, res.err
    assert "insn/inf" in res.out and "NOT device latency" in res.out and "rel max|Δ| vs x86" in res.out
    record = json.loads((tmp_path / "q.json").read_text())
    rows = {r["target"]: r for r in record["instructions"]}
    int8, fp32 = rows["tflite-int8"], rows["tflite-fp32"]
    assert fp32["x_fp32"] == 1.0 and int8["bit_exact"] is True and int8["core"] == "cortex-a76"
    assert int8["x_fp32"] == pytest.approx(int8["instructions_per_inference"] / fp32["instructions_per_inference"])
    assert all(r["emulated"] for r in record["runs"])
    assert "delegation" in res.out and "XNNPACK" in res.out
    tflite = [d for d in record["delegation"] if d["path"].endswith("int8.tflite")]
    assert tflite and tflite[0]["left_out"] == 0 and sum(tflite[0]["fast"].values()) > 0


def test_unknown_device_is_a_usage_error(cli, small):
    res = cli("bench", small["int8.tflite"], "--device", "qemu-pi3")
    assert res.code == 2 and "qemu-pi4" in res.err and "qemu-pi5" in res.err
