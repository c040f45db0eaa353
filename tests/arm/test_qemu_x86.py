"""qemu-x86-avx2 end to end (marker ``arm``: an emulated CPU like qemu-pi4/pi5; CI runs it with -m ""): this machine's
Python on QEMU's Haswell model (AVX2, no AVX-512, no VNNI), instructions counted by the TCG plugin with x86_64's
lseek as the marker. Asserted: counts per inference repeat, outputs agree with this machine's, a .pte is refused.
Nothing about how fast anything runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeport.benchmark import devices, qemu, qemu_x86
from edgeport.benchmark.device_bench import bench_on
from edgeport.errors import UserError
from edgeport.runtimes import cpu_features

pytestmark = [pytest.mark.arm, pytest.mark.skipif(not cpu_features.detect().is_x86, reason="emulates x86 on an x86 host")]


@pytest.fixture(scope="module")
def avx2_int8(tmp_path_factory) -> Path:
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export
    from edgeport.quantization.options import QuantOptions, deploy_options

    qemu.ensure_plugin()
    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    loaded = model_source.load(f"{byo}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    run = run_export(loaded, parse_targets("onnx-int8"), tmp_path_factory.mktemp("x86"), data=data, validate=False,
                     quant=deploy_options(QuantOptions(), "x86-avx2"))
    return run.artifacts[0].path


def test_counts_repeat_and_outputs_agree_with_this_machine(avx2_int8):
    spec = devices.parse_device("qemu-x86-avx2")
    dev = devices.open_device(spec)
    assert isinstance(dev, qemu_x86.QemuX86Device) and dev.core == "Haswell"
    result = bench_on(dev, avx2_int8, 1)
    run = result.run
    assert run.emulated and run.machine == "x86_64" and run.runtime == "onnxruntime"
    per_run = run.extra["insn_per_run"]
    assert len(per_run) == 3 and run.instructions_per_inference > 10_000
    assert max(per_run) - min(per_run) < 0.01 * run.instructions_per_inference
    # 7-bit weights: neither VPDPBUSD (this machine, if it has VNNI) nor VPMADDUBSW (the emulated Haswell) saturates
    assert result.parity.max_rel < 1e-3 and result.parity.cosine > 0.99999, result.parity.to_dict()

def test_pte_is_refused(tmp_path):
    pte = tmp_path / "m.pte"
    pte.write_bytes(b"\0" * 16)
    with pytest.raises(UserError, match="runs .onnx and .tflite"):
        qemu_x86.QemuX86Device("qemu-x86-avx2").run(pte, np.zeros((1, 3, 8, 8), np.float32))
