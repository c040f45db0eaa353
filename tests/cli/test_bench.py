"""edgeport bench: the record it writes and its errors. No assertion on how fast anything is."""

import json

import pytest

from edgeport.benchmark.local import median_ci, target_of_name, vnni_explanation


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from pathlib import Path

    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    out = tmp_path_factory.mktemp("bench")
    loaded = model_source.load(f"{byo}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    run = run_export(loaded, parse_targets("onnx-fp32,tflite-fp32,tflite-int8"), out, data=data, validate=False)
    return [a.path for a in run.artifacts]


def test_bench_writes_percentiles_ratios_and_cpu(cli, artifacts, tmp_path):
    res = cli("bench", *artifacts, "--threads", "1,2", "--budget", "0.3", "--json", tmp_path / "b.json")
    assert res.code == 0, res.err
    assert "CPU:" in res.out and "VNNI" in res.out
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["host"]["arch"] and isinstance(record["host"]["vnni"], bool)
    timings = record["timings"]
    assert len(timings) == 6 and {t["threads"] for t in timings} == {1, 2}
    for t in timings:
        assert 0 < t["min_ms"] <= t["p50_ms"] <= t["p90_ms"] <= t["p99_ms"]
        assert t["runs"] >= 5 and t["load_ms"] > 0
        assert t["runtime"] in ("onnxruntime", "ai-edge-litert")
    by = {(t["target"], t["threads"]): t for t in timings}
    assert by[("tflite-fp32", 1)]["x_fp32"] == 1.0 and by[("onnx-fp32", 2)]["x_fp32"] == 1.0
    int8 = by[("tflite-int8", 1)]
    assert int8["x_fp32"] == pytest.approx(int8["p50_ms"] / by[("tflite-fp32", 1)]["p50_ms"])


def test_bench_errors(cli, artifacts, tmp_path):
    assert cli("bench", artifacts[0], "--device", "pi9").code == 2
    assert cli("bench", artifacts[0], "--threads", "0").code == 2
    res = cli("bench", tmp_path / "missing.onnx")
    assert res.code == 1 and "does not exist" in res.err


def test_helpers():
    lo, hi = median_ci([float(i) for i in range(1, 101)])
    assert lo < 50.5 < hi and hi - lo < 25
    assert target_of_name(__import__("pathlib").Path("m.int8.tflite")) == "tflite-int8"
    assert "VNNI" in vnni_explanation(True, "x86_64") and "AVX2" in vnni_explanation(False, "x86_64")
    assert "ARM" in vnni_explanation(False, "aarch64")
