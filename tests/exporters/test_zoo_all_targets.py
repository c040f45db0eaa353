"""Every zoo family through all five targets with random weights: files, int8 graphs, parity numbers."""

import json

import pytest

FAMILIES = ["mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v1_g3", "shufflenet_v2_x1_0"]
TARGETS = "onnx-fp32,onnx-int8,tflite-fp32,tflite-fp16,tflite-int8"


@pytest.mark.slow
@pytest.mark.parametrize("name", FAMILIES)
def test_family_exports_every_target(name, cli, tmp_path):
    res = cli("export", "--model", name, "--target", TARGETS, "--calib", "synthetic",
              "--calib-samples", "32", "--val-samples", "8", "--out", tmp_path)
    assert res.code == 0, res.err + res.out
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert not parity["int8_problems"]
    arts = {a["target"]: a for a in parity["artifacts"]}
    assert set(arts) == set(TARGETS.split(","))
    for t in ("onnx-int8", "tflite-int8"):
        assert arts[t]["dtypes"]["float"] == 0 and arts[t]["dtypes"]["int8"] > 20, (t, arts[t]["dtypes"])
        assert arts[t]["size"] < 0.3 * arts[t.replace("int8", "fp32")]["size"]
    judged = {c["stage"]: c for c in parity["validation"]["checks"] if c["against"] == "torch"}
    for t in ("onnx-fp32", "tflite-fp32", "tflite-fp16"):
        assert judged[t]["passed"], judged[t]
    for t in ("onnx-int8", "tflite-int8"):  # random weights: reported, not judged
        assert not judged[t]["judged"] and "sqnr_db" in judged[t]
    assert "random weights" in res.out
    assert "onnx-int8" in res.out and "SQNR" in res.out
