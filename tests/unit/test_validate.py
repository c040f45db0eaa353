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


def test_top1_bound_allows_one_disagreement_only_below_ten_samples():
    def flipped(n, flips, classes=4):
        ref = np.tile(np.eye(classes) * 5, (n // classes + 1, 1))[:n]
        out = ref.copy()
        out[:flips] = np.roll(out[:flips], 1, axis=1)  # the first ``flips`` rows pick another class
        return compare(ref, out)

    t = Thresholds(min_top1=0.9)
    assert flipped(8, 1).top1_agreement == 0.875 and flipped(8, 1).top1_rows == 8
    assert not t.failures(flipped(8, 1))  # 0.9 cannot be met on 8 samples with one flip
    assert t.failures(flipped(8, 2)) == ["top-1 agreement 0.750 < 0.9"]
    assert t.failures(flipped(20, 3)) and not t.failures(flipped(20, 2))  # the plain fraction from 10 samples on
    assert Thresholds(min_top1=1.0).failures(flipped(200, 2))
    # flips between classes PyTorch itself scored nearly alike are near ties, not counted; probabilities as given
    ref = np.tile([[2.0, 1.9, -3.0], [2.0, -3.0, 1.0]], (10, 1))
    out = ref[:, [1, 0, 2]]  # every row picks its second class: a near tie in rows 0, 2, ...; decisive in 1, 3, ...
    p = compare(ref, out)
    assert p.top1_agreement == 0 and p.top1_ties == 10 and p.top1_decisive == 0.5
    assert t.failures(p) == ["top-1 agreement 0.500 < 0.9 (10 near ties not counted)"]
    assert not t.failures(compare(ref[::2], out[::2]))
    probs = np.array([[0.5, 0.4, 0.1], [0.9, 0.05, 0.05]] * 5)
    assert compare(probs, probs[:, [1, 0, 2]]).top1_ties == 5
    # a dense output counts rows per pixel: one image of 16 pixels with 2 flipped pixels fails
    ref = np.zeros((1, 3, 4, 4))
    ref[:, 0] = 1
    out = ref.copy()
    out[0, :, 0, :2] = [[0], [1], [0]]
    assert compare(ref, out).top1_rows == 16 and t.failures(compare(ref, out))


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


def test_an_unjudged_check_is_never_recorded_as_passed():
    import numpy as np

    from edgeport.validation.checks import StageCheck, ValidationReport
    from edgeport.validation.parity import compare

    ref = np.random.default_rng(0).standard_normal((4, 10))
    report = ValidationReport(4, "synthetic", None, None, [
        StageCheck("tflite-int8", "torch", compare(ref, ref * 0.5), None, not_judged_because="random weights"),
        StageCheck("tflite-int8", "tflite-fp32", compare(ref, ref), None)])
    d = report.to_dict()
    assert d["checks"][0]["passed"] is None and d["checks"][0]["not_judged_because"] == "random weights"
    assert d["checks"][1]["passed"] is True and "not_judged_because" not in d["checks"][1]  # parent comparison: info
    assert d["not_judged"] == ["tflite-int8"] and [c.stage for c in report.unjudged] == ["tflite-int8"]


def _record(model, targets, passed=True, judged=True, sha="s"):
    return {"schema": 2, "model": model, "input_shape": [1, 3, 8, 8],
            "artifacts": [{"target": t, "path": f"/o/{model}.{t}", "sha256": f"{sha}-{t}"} for t in targets],
            "int8_problems": [],
            "validation": {"checks": [{"stage": t, "against": "torch", "judged": judged, "passed": passed if judged else None,
                                       "failures": [] if passed else ["SQNR low"]} for t in targets], "passed": passed},
            "passed": passed}


def test_parity_records_merge_per_artifact_across_exports(tmp_path):
    """tflite-fp32 exported after tflite-int8 into one folder keeps the int8 record; a re-export replaces its own."""
    import json

    from edgeport.validation import parity_file

    parity_file.write(tmp_path, _record("m", ["tflite-int8"], judged=False))
    parity_file.write(tmp_path, _record("m", ["tflite-fp32"]))
    merged = json.loads((tmp_path / "parity.json").read_text())
    assert [a["target"] for a in merged["artifacts"]] == ["tflite-int8", "tflite-fp32"]
    assert [c["stage"] for c in merged["validation"]["checks"]] == ["tflite-int8", "tflite-fp32"]
    assert merged["validation"]["not_judged"] == ["tflite-int8"] and merged["passed"]
    parity_file.write(tmp_path, _record("m", ["tflite-fp32"], passed=False, sha="t"))  # rebuilt, now failing
    merged = json.loads((tmp_path / "parity.json").read_text())
    assert [a["sha256"] for a in merged["artifacts"]] == ["s-tflite-int8", "t-tflite-fp32"] and not merged["passed"]
    parity_file.write(tmp_path, _record("other", ["onnx-fp32"]))  # another model: a new record, not a mix
    assert [a["target"] for a in json.loads((tmp_path / "parity.json").read_text())["artifacts"]] == ["onnx-fp32"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["parity.json"]  # no lock or temp file left beside it


def test_record_of_finds_a_file_by_its_sha256(tmp_path):
    import hashlib

    from edgeport.validation import parity_file

    art = tmp_path / "renamed.int8.tflite"
    art.write_bytes(b"bytes")
    rec = _record("m", ["tflite-int8"])
    rec["artifacts"][0]["sha256"] = hashlib.sha256(b"bytes").hexdigest()
    parity_file.write(tmp_path, rec)
    record, entry = parity_file.record_of(art)
    assert entry["target"] == "tflite-int8" and record["model"] == "m"
    art.write_bytes(b"other bytes")
    assert parity_file.record_of(art) is None
