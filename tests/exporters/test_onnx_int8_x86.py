"""--deploy x86 on the trained Fashion-MNIST checkpoints: the onnx-int8 file runs every compute op as an integer kernel
in ONNX Runtime on this x86 CPU (h-swish and ShuffleNet's max-pool padding included) and keeps the accuracy."""

import json
from pathlib import Path

import onnx
import pytest

from edgeport.exporters import metadata
from edgeport.formats.int8_coverage import ort_coverage, ort_optimized_model
from edgeport.quantization.options import resolve_deploy
from edgeport.runtimes import cpu_features
from tests.datasets import needs_fashion_mnist

WEIGHTS = Path(__file__).resolve().parents[2] / "edgeport" / "weights"


@pytest.mark.slow
@needs_fashion_mnist
@pytest.mark.skipif(not cpu_features.detect().is_x86, reason="--deploy x86 reads an x86 CPU")
@pytest.mark.parametrize("zoo, ckpt", [("mobilenet_v3_small", "fmnist_mobilenet_v3_small.pt"),
                                       ("shufflenet_v2_x0_5", "fmnist_shufflenet_v2_x0_5.pt")])
def test_deploy_x86_runs_every_op_in_integer_kernels(zoo, ckpt, cli, tmp_path):
    res = cli("export", "--model", zoo, "--weights", WEIGHTS / ckpt, "--target", "onnx-int8", "--calib", "fashion-mnist",
              "--val-samples", "1000", "--deploy", "x86", "--out", tmp_path)
    assert res.code == 0, res.err + res.out
    assert f"--deploy x86: this CPU is {cpu_features.describe()}: {resolve_deploy('x86')}" in " ".join(res.out.split())
    path = next(tmp_path.glob("*.int8.onnx"))
    cov = ort_coverage(path)
    assert cov.float_total == 0 and cov.int8_total > 0, cov.to_dict()  # before: HardSigmoid/Mul, Pad between DQ/Q
    ran = {n.op_type for n in ort_optimized_model(path).graph.node}
    assert not ran & {"HardSigmoid", "Pad"}, ran
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    facts = json.loads(meta[metadata.KEY])["quantization"]
    assert facts["hard_activations"] == "int8" and facts["activations"] == "u8" and facts["format"] == "qdq"
    parity = json.loads((tmp_path / "parity.json").read_text())
    judged = {c["stage"]: c for c in parity["validation"]["checks"] if c["against"] == "torch"}
    torch_acc = parity["validation"]["accuracy"]["torch"]
    assert judged["onnx-int8"]["judged"] and judged["onnx-int8"]["passed"], judged["onnx-int8"]
    assert torch_acc - judged["onnx-int8"]["accuracy"] <= 0.01, (torch_acc, judged["onnx-int8"]["accuracy"])

