"""The issue's acceptance run on the trained Fashion-MNIST checkpoints: five targets, int8 graphs verified,
int8 top-1 accuracy within 1 point of PyTorch on held-out test images."""

import json
from pathlib import Path

import pytest

from tests.datasets import needs_fashion_mnist

WEIGHTS = Path(__file__).resolve().parents[2] / "edgeport" / "weights"
TARGETS = "onnx-fp32,onnx-int8,tflite-fp32,tflite-fp16,tflite-int8"


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.parametrize("zoo, ckpt", [("mobilenet_v2", "fmnist_mobilenet_v2_x0_5.pt"),
                                       ("shufflenet_v2_x0_5", "fmnist_shufflenet_v2_x0_5.pt"),
                                       ("mobilenet_v3_small", "fmnist_mobilenet_v3_small.pt"),
                                       ("shufflenet_v1_g3_x0_5", "fmnist_shufflenet_v1_g3_x0_5.pt"),
                                       ("mobilenet_v3_large", "fmnist_mobilenet_v3_large_x0_5.pt")])
def test_trained_model_int8_within_one_point(zoo, ckpt, cli, tmp_path):
    # Builder kwargs (width, classes), input shape and preprocessing come from the checkpoint itself.
    res = cli("export", "--model", zoo, "--weights", WEIGHTS / ckpt, "--target", TARGETS,
              "--calib", "fashion-mnist", "--val-samples", "2000", "--out", tmp_path)
    assert res.code == 0, res.err + res.out
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert parity["input_shape"] == [1, 3, 64, 64]
    assert parity["data"]["validation"] == {"source": "fashion-mnist:test", "samples": 2000, "labelled": True, "held_out": True}
    arts = {a["target"]: a for a in parity["artifacts"]}
    assert len(arts) == 5 and all(Path(a["path"]).is_file() for a in arts.values())
    for t in ("onnx-int8", "tflite-int8"):
        assert arts[t]["dtypes"]["float"] == 0, arts[t]
    torch_acc = parity["validation"]["accuracy"]["torch"]
    assert torch_acc >= 0.89
    judged = {c["stage"]: c for c in parity["validation"]["checks"] if c["against"] == "torch"}
    for t in ("onnx-int8", "tflite-int8"):
        assert judged[t]["judged"] and judged[t]["passed"], judged[t]  # SQNR >= 15 dB, top-1 agreement >= 0.9
        assert torch_acc - judged[t]["accuracy"] <= 0.01, (t, torch_acc, judged[t]["accuracy"])
    for t in ("onnx-fp32", "tflite-fp32"):
        assert judged[t]["accuracy"] == pytest.approx(torch_acc, abs=0.001)
