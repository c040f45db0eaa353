"""edgeport quantize --max-accuracy-drop: usage errors, and a run on the trained MobileNetV3-Small."""

from __future__ import annotations

import json

import pytest

from tests.datasets import needs_fashion_mnist


@pytest.mark.parametrize("extra", [["--compare-methods"], ["--control-samples", "0"]])
def test_accuracy_control_usage_errors(cli, tmp_path, extra):
    res = cli("quantize", "--model", "fmnist_mobilenet_v2_x0_5", "--calib", "synthetic", "--max-accuracy-drop", "0.5",
              *extra, "--out", tmp_path)
    assert res.code == 2, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "--max-accuracy-drop" in lines[0]
    assert not any(tmp_path.iterdir())


def test_negative_budget_is_a_usage_error(cli, tmp_path):
    res = cli("quantize", "--model", "fmnist_mobilenet_v2_x0_5", "--calib", "synthetic", "--max-accuracy-drop", "-1",
              "--out", tmp_path)
    assert res.code == 2 and "budget" in res.err


@pytest.mark.slow
@needs_fashion_mnist
def test_accuracy_control_on_trained_v3_small(cli, tmp_path):
    """A zero budget on agreement with float forces the search; whatever it keeps float is reported and is float
    in the file, and the JSON records float/int8/final scores consistent with the drop it reports."""
    res = cli("quantize", "--model", "fmnist_mobilenet_v3_small", "--calib", "fashion-mnist", "--calib-samples", "64",
              "--val-samples", "300", "--target", "tflite-int8", "--max-accuracy-drop", "0", "--out", tmp_path)
    record = json.loads((tmp_path / "accuracy_control.json").read_text())
    (r,) = record
    assert r["metric"].startswith("top-1 agreement") and r["float_score"] == 100.0
    assert r["drop"] == pytest.approx(r["float_score"] - r["final_score"])
    assert res.code == (0 if r["within_budget"] else 3), res.err
    if r["int8_score"] < 100.0 and r["within_budget"]:
        assert r["kept_float"], "a non-zero int8 drop met a zero budget only by keeping layers float"
    from edgeport.formats.int8_coverage import coverage_of

    floats = set(coverage_of(tmp_path / "fmnist_mobilenet_v3_small.int8.tflite").float_op_names)
    assert {c["fallback"] for c in r["kept_float"]} <= floats
    assert "accuracy control" in res.out
    if r["kept_float"] and r["within_budget"]:
        # the printed --allow-float options rebuild the same float layers with a plain export
        import re
        import shlex

        line = next(ln for ln in res.out.splitlines() if "--allow-float" in ln)
        args = shlex.split(line[line.index("--allow-float"):])
        again = cli("export", "--model", "fmnist_mobilenet_v3_small", "--calib", "fashion-mnist", "--calib-samples", "64",
                    "--val-samples", "300", "--target", "onnx-fp32,tflite-int8", "--no-validate", *args,
                    "--out", tmp_path / "again")
        assert again.code == 0, again.err
        # by layer name: onnx2tf's tensor names carry per-process counters (model_57/... vs model_115/...)
        import onnx

        from edgeport.formats.layer_names import artifact_names

        fp32 = onnx.load(str(tmp_path / "again" / "fmnist_mobilenet_v3_small.fp32.onnx"))
        named = []
        for path in (tmp_path / "fmnist_mobilenet_v3_small.int8.tflite",
                     tmp_path / "again" / "fmnist_mobilenet_v3_small.int8.tflite"):
            names = artifact_names(path, fp32)
            named.append({names[n] for n in coverage_of(path).float_op_names})
        assert named[0] == named[1] == {c["layer"] for c in r["kept_float"]}, named[0] ^ named[1]
        assert re.search(r"--allow-float \S+", line)
