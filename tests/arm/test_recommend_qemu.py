"""The per-device recommendation end to end (marker ``arm``): one ``edgeport bench`` call on local, qemu-pi4
and qemu-pi5 with a small model's fp32 and int8 TFLite files. Asserted: one recommendation per device, from
instructions on the emulated cores and p50 on this machine, and consistent with the measured costs in the
same JSON (int8 shipped exactly when it costs <= 0.90x the cheapest float file). Nothing about speed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeport.benchmark.recommend import INT8_MARGIN

pytestmark = pytest.mark.arm


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from edgeport.benchmark import arm_rootfs, qemu
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    arm_rootfs.ensure()
    qemu.ensure_plugin()
    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    out = tmp_path_factory.mktemp("rec")
    loaded = model_source.load(f"{byo}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    run = run_export(loaded, parse_targets("tflite-fp32,tflite-int8"), out, data=data, validate=False)
    return [a.path for a in run.artifacts]


def test_one_call_three_devices_one_recommendation_each(files, cli, tmp_path):
    res = cli("bench", *files, "--device", "local,qemu-pi4", "--device", "qemu-pi5", "--budget", "0.3", "--json", tmp_path / "r.json")
    assert res.code == 0, res.err
    assert "recommendation per device" in res.out
    record = json.loads((tmp_path / "r.json").read_text())
    assert [d["device"] for d in record["devices"]] == ["local", "qemu-pi4", "qemu-pi5"]
    recs = {r["device"]: r for r in record["recommendation"]}
    assert set(recs) == {"local", "qemu-pi4", "qemu-pi5"}
    assert recs["local"]["unit"] == "p50 ms"
    for name in ("qemu-pi4", "qemu-pi5"):
        rec = recs[name]
        assert rec["unit"] == "M insn/inf" and rec["artifact"] in {str(f) for f in files}
        rows = {r["target"]: r["instructions_per_inference"]
                for r in next(d for d in record["devices"] if d["device"] == name)["instructions"]}
        ratio = rows["tflite-int8"] / rows["tflite-fp32"]
        assert rec["int8_vs_float"][Path(files[1]).name if "int8" in files[1].name else Path(files[0]).name] == pytest.approx(ratio)
        assert rec["target"] == ("tflite-int8" if ratio <= INT8_MARGIN else "tflite-fp32"), (name, ratio, rec["reason"])
