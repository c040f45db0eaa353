"""Reproducibility: rebuilding with the same inputs (--force) gives the same sha256 for onnx-fp32, onnx-int8,
tflite-fp32 and tflite-int8 of a small trained model, and the run records no non-deterministic tool."""

from __future__ import annotations

import json

import pytest

from tests.pipeline.helpers import edgeport_run, sha256

pytestmark = pytest.mark.slow

RECIPE = """\
[model]
name = "fmnist_shufflenet_v2_x0_5"

[data]
calib = "fashion-mnist"
calib_samples = 32
val_samples = 64

[export]
targets = ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"]

[bench]
budget_s = 0.2
"""


def test_same_inputs_same_sha256(tmp_path):
    recipe = tmp_path / "small.toml"
    recipe.write_text(RECIPE)
    runs = []
    for i, extra in enumerate(([], ["--force"])):
        proc = edgeport_run(recipe, "--out", tmp_path / f"out{i}", "--cache-dir", tmp_path / "cache", *extra)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        runs.append(json.loads((tmp_path / f"out{i}" / "manifest.json").read_text())["recipes"][0])
    assert runs[1]["reused_stages"] == []  # --force really rebuilt
    first = {a["target"]: sha256(tmp_path / "out0" / a["path"]) for a in runs[0]["artifacts"]}
    second = {a["target"]: sha256(tmp_path / "out1" / a["path"]) for a in runs[1]["artifacts"]}
    assert set(first) == {"onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-int8"}
    assert first == second
    assert runs[1]["nondeterministic"] == []
