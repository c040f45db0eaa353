"""Delegation report on real exports of the bring-your-own model (it has h-swish and hard-sigmoid), shown by
inspect, bench (with the torch eager baseline) and validate. No assertion on how fast anything is."""

import json
import platform
from pathlib import Path

import pytest

from edgeport.formats.delegation import delegation_of
from edgeport.formats.graph_summary import tflite_ops

BYO = Path(__file__).parent.parent / "fixtures" / "byo_model.py"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    out = tmp_path_factory.mktemp("delegation")
    loaded = model_source.load(f"{BYO}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    run = run_export(loaded, parse_targets("onnx-fp32,onnx-int8,tflite-fp32,tflite-int8"), out, data=data, validate=False)
    return {a.target: a.path for a in run.artifacts}


@pytest.fixture(scope="module")
def hard_swish_int8(tmp_path_factory):
    from tests.fixtures import hard_swish_tflite

    return hard_swish_tflite.write(tmp_path_factory.mktemp("hswish") / "hswish.int8.tflite")


def test_int8_hard_swish_falls_back_and_splits_partitions(hard_swish_int8):
    d = delegation_of(hard_swish_int8)
    assert d.slow == {"HARD_SWISH": 1} and d.fast == {"CONV_2D": 2}  # XNNPACK has no int8 HARD_SWISH
    assert d.partitions == 2  # conv | hard-swish (builtin) | conv
    assert [op for _, op in d.slow_nodes] == ["HARD_SWISH"] and "HARD_SWISH x1" in d.warning()


def test_every_node_is_accounted_for_once(artifacts):
    for target in ("tflite-fp32", "tflite-int8"):
        d = delegation_of(artifacts[target])
        assert sum(d.fast.values()) + sum(d.slow.values()) == len(tflite_ops(Path(artifacts[target])))
        assert 1 <= d.partitions <= sum(d.slow.values()) + 1  # each builtin node splits the graph at most once
        assert (d.warning() is None) == (not d.slow)


def test_tflite_fp32_takes_hard_swish(artifacts):
    d = delegation_of(artifacts["tflite-fp32"])
    assert "HARD_SWISH" not in d.slow  # fp32 HARD_SWISH (if the exporter keeps one) is XNNPACK's


def test_onnx_int8_kernels_from_ort_optimized_graph(artifacts):
    from edgeport.formats.int8_coverage import ort_coverage

    d = delegation_of(artifacts["onnx-int8"])
    assert d.quantized and d.fast["QLinearConv"] >= 1 and d.qdq_nodes > 0
    assert sum(d.fast.values()) == ort_coverage(artifacts["onnx-int8"]).int8_total  # same graph, same rules
    assert d.left_out and sum(d.left_out.values()) == len(d.slow_nodes)  # x86 ORT leaves some of this model in float
    if platform.machine() == "x86_64":  # ORT's ARM fusion rules (qdqisint8allowed) fuse at least as much
        arm = d.arm_preview
        assert arm is not None and arm.arm_preview is None and arm.total == d.total
        assert sum(arm.fast.values()) >= sum(d.fast.values()) and "on ARM" in d.lines()[-1]
    f = delegation_of(artifacts["onnx-fp32"])
    assert not f.quantized and not f.fast and f.warning() is None and f.arm_preview is None


def test_inspect_shows_and_serializes_it(cli, artifacts, hard_swish_int8):
    res = cli("inspect", hard_swish_int8)
    assert res.code == 0, res.err
    assert "2/3 nodes delegated in 2 partitions" in res.out and "HARD_SWISH x1" in res.out
    res = cli("inspect", artifacts["onnx-int8"], "--json")
    record = json.loads(res.out)["delegation"]
    assert record["format"] == "onnx" and record["fast"].get("QLinearConv", 0) >= 1 and record["left_out"] > 0


def test_bench_with_torch_baseline_and_delegation(cli, artifacts, hard_swish_int8, tmp_path):
    res = cli("bench", artifacts["tflite-int8"], hard_swish_int8, "--model", f"{BYO}:build", "--input-shape", "1,3,32,32",
              "--budget", "0.2", "--json", tmp_path / "b.json")
    assert res.code == 0, res.err
    assert "torch eager" in res.out and "partition" in res.out and "left out of the fast path: 1 op(s)" in res.out
    record = json.loads((tmp_path / "b.json").read_text())
    torch_row = [t for t in record["timings"] if t["target"] == "torch-eager"]
    assert len(torch_row) == 1 and torch_row[0]["runtime"] == "torch" and torch_row[0]["x_torch"] == 1.0
    assert 0 < torch_row[0]["min_ms"] <= torch_row[0]["p50_ms"] <= torch_row[0]["p99_ms"]
    tfl = [t for t in record["timings"] if t["target"] == "tflite-int8"][0]
    assert tfl["x_torch"] == pytest.approx(tfl["p50_ms"] / torch_row[0]["p50_ms"])
    assert [d["slow"] for d in record["delegation"]][1] == {"HARD_SWISH": 1}
    assert cli("bench").code == 2  # neither files nor --model


def test_validate_warns_about_ops_left_out(cli, artifacts, tmp_path):
    # the BatchNormalization after an add cannot be folded; onnxruntime has no integer kernel for it
    res = cli("validate", artifacts["onnx-int8"], "--model", f"{BYO}:build", "--input-shape", "1,3,32,32",
              "--val-samples", "8", "--report", tmp_path)
    assert res.code in (0, 3), res.err
    assert "WARNING" in res.out and "run in float in onnxruntime" in res.out and "BatchNormalization" in res.out
