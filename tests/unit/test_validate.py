import numpy as np

from edgeport.validation.checks import Thresholds, parent_stage, top1_accuracy
from edgeport.validation.parity import compare


def test_parity_metrics_on_known_values():
    ref = np.array([[1.0, 2.0, 3.0], [3.0, 1.0, 0.0]])
    out = ref.copy()
    out[0, 2] = 2.0  # top-1 of row 0 changes (tie broken towards the first)
    p = compare(ref, out)
    assert p.max_abs == 1.0 and np.isclose(p.mean_abs, 1 / 6)
    assert p.top1_agreement == 0.5
    assert np.isclose(p.sqnr_db, 10 * np.log10(24 / 1))
    assert compare(ref, ref).sqnr_db == float("inf")


def test_thresholds_report_each_failing_metric():
    p = compare(np.eye(4) * 10, np.eye(4) * 10 + 0.5)
    assert Thresholds(max_abs=1e-4, max_rel=1e-4).failures(p)
    assert not Thresholds(max_abs=1.0, max_rel=1e-4).failures(p)
    fails = Thresholds(min_sqnr_db=40.0, min_top1=0.9).failures(p)
    assert len(fails) == 1 and "SQNR" in fails[0]


def test_stage_chain_falls_back_to_available_parent():
    assert parent_stage("tflite-int8", {"torch", "torch-fused", "onnx-fp32", "tflite-fp32"}) == "tflite-fp32"
    assert parent_stage("tflite-int8", {"torch", "torch-fused", "onnx-fp32"}) == "onnx-fp32"
    assert parent_stage("onnx-int8", {"torch", "torch-fused"}) == "torch-fused"


def test_top1_accuracy():
    assert top1_accuracy(np.array([[0.1, 0.9], [0.8, 0.2]]), np.array([1, 1])) == 0.5
    assert top1_accuracy(np.zeros((2, 2)), None) is None


def test_fp32_thresholds_catch_wrong_outputs_with_tiny_logits():
    """Random-init nets have logits ~1e-8: any output passes max|Δ| <= 1e-4, so SQNR must catch it."""
    from edgeport.exporters import FP32

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((8, 1000)) * 1e-8
    unrelated = rng.standard_normal((8, 1000)) * 1e-8
    assert FP32.failures(compare(ref, unrelated))
    assert not FP32.failures(compare(ref, ref * (1 + 1e-7)))
