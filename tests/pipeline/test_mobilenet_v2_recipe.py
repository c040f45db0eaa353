"""The shipped MobileNetV2 recipe end to end (slow tier: CI runs it): five targets, validation, local bench,
every output file, a second run that reuses the cache, and report.html rendered in headless chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline.helpers import check_outputs, edgeport_run, png_is_nontrivial, screenshot

ROOT = Path(__file__).resolve().parents[2]
FIVE = {"onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16", "tflite-int8"}

pytestmark = pytest.mark.slow


def test_mobilenet_v2_recipe_cold_then_warm(tmp_path):
    recipe = ROOT / "recipes" / "mobilenet_v2.toml"
    cold = edgeport_run(recipe, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert cold.returncode == 0, cold.stdout[-3000:] + cold.stderr[-3000:]
    m = check_outputs(tmp_path / "out", "mobilenet_v2", FIVE)
    r = m["recipes"][0]
    assert r["reused_stages"] == [] and r["passed"]
    for stage in ("capture + fuse", "export onnx-fp32", "quantize + export onnx-int8", "export tflite-fp32",
                  "export tflite-fp16", "quantize + export tflite-int8", "validate"):
        assert r["durations_s"][stage] >= 0, stage
    judged = {c["stage"] for c in r["validation"]["checks"] if c["judged"]}
    assert judged == {"onnx-fp32", "tflite-fp32", "tflite-fp16"}  # random weights: int8 reported, not judged
    assert any("random weights" in w for w in r["warnings"])

    warm = edgeport_run(recipe, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert warm.returncode == 0, warm.stderr
    assert "mobilenet_v2: reused from cache: export, validate, bench" in warm.stdout
    w = check_outputs(tmp_path / "out", "mobilenet_v2", FIVE)["recipes"][0]
    assert w["reused_stages"] == ["export", "validate", "bench"]
    assert [a["sha256"] for a in w["artifacts"]] == [a["sha256"] for a in r["artifacts"]]
    assert sum(w["durations_s"].values()) < sum(r["durations_s"].values())

    png = screenshot(tmp_path / "out" / "report.html", tmp_path / "report.png")
    png_is_nontrivial(png)
