"""The public Python API: model kinds, results, typed errors (never SystemExit), one source of truth for
closed sets of values, and the README's example."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import edgeport
from edgeport.errors import BadOption, UsageError, UserError
from tests.datasets import needs_fashion_mnist

ROOT = Path(__file__).resolve().parents[2]


def _tiny():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()


def test_import_is_light_and_exports_the_api():
    import subprocess
    import sys

    code = ("import sys, edgeport; api = ('export', 'quantize', 'validate', 'evaluate', 'bench', 'run', 'inspect'); "
            "print(all(callable(getattr(edgeport, f)) for f in api), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False"]


def test_in_memory_module_to_onnx(tmp_path):
    torch.manual_seed(0)
    r = edgeport.export(_tiny(), "onnx-fp32", input_shape=(1, 3, 16, 16), out=tmp_path)
    a = r.artifact("onnx-fp32")
    assert isinstance(r, edgeport.ExportResult) and r.passed and r.model == "sequential"
    assert a.path.is_file() and a.sha256 and a.size == a.path.stat().st_size
    assert a.parity.judged and a.parity.passed and a.parity.sqnr_db > 60
    assert a.delegation is not None and a.int8_coverage is None
    with pytest.raises(Exception):  # frozen
        r.passed = False


def test_saved_torch_export_program(tmp_path):
    torch.manual_seed(0)
    ep = torch.export.export(_tiny(), (torch.zeros(1, 3, 16, 16),))
    torch.export.save(ep, str(tmp_path / "tiny.pt2"))
    r = edgeport.export(tmp_path / "tiny.pt2", ["onnx-fp32"], out=tmp_path / "out")
    assert r.model == "tiny" and r.input_shape == (1, 3, 16, 16) and r.passed


def test_calibration_data_may_be_numpy_arrays(tmp_path):
    """calib= and val_data= take arrays in memory, as a file's: uint8 pixels are preprocessed, float32 shaped like the
    input is used as is; the same array twice is refused (not held out), anything else is a typed error."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8)
    floats = rng.normal(size=(6, 3, 16, 16)).astype(np.float32)
    r = edgeport.export(_tiny(), ["onnx-int8"], input_shape=(1, 3, 16, 16), calib=pixels, val_data=floats,
                        calib_samples=12, val_samples=6, out=tmp_path / "a", strict=False)
    assert r.data["calibration"] == {"source": "array uint8(12, 16, 16, 3)", "samples": 12, "synthetic": False}
    assert r.data["validation"]["source"] == "array float32(6, 3, 16, 16)" and r.data["validation"]["samples"] == 6
    assert r.artifact("onnx-int8").parity is not None
    one = edgeport.export(_tiny(), ["onnx-int8"], input_shape=(1, 3, 16, 16), calib=pixels, out=tmp_path / "b",
                          strict=False)
    # one array of 12: too few to halve, so calibrated on all of it and validated in-sample, as a file of 12
    assert one.data["calibration"]["samples"] == 12 and one.data["validation"]["held_out"] is False
    with pytest.raises(UsageError, match="is the --calib data"):
        edgeport.export(_tiny(), ["onnx-int8"], input_shape=(1, 3, 16, 16), calib=pixels, val_data=pixels, out=tmp_path / "c")
    with pytest.raises(UsageError, match="not a data source"):
        edgeport.export(_tiny(), ["onnx-int8"], input_shape=(1, 3, 16, 16), calib=[1, 2, 3], out=tmp_path / "d")
    with pytest.raises(UserError, match="fits neither"):
        edgeport.export(_tiny(), ["onnx-int8"], input_shape=(1, 3, 16, 16), calib=floats[:, :2], out=tmp_path / "e")


@pytest.mark.parametrize("call,error,text", [
    (lambda: edgeport.export(object(), "onnx-fp32", input_shape=(1, 3, 8, 8)), UserError, "not a torch.nn.Module"),
    (lambda: edgeport.export(_tiny(), "onnx-fp32"), UsageError, "input shape"),
    (lambda: edgeport.export(_tiny(), "onnx-fp99", input_shape=(1, 3, 8, 8)), UsageError, "onnx-fp32"),
    (lambda: edgeport.export(_tiny(), ["tflite-int8"], input_shape=(1, 3, 8, 8)), UserError, "calibration data"),
    (lambda: edgeport.export("mobilenet_v9", "onnx-fp32"), UserError, "mobilenet_v"),
    (lambda: edgeport.QuantOptions(method="kl"), BadOption, "unknown calibration method"),
    (lambda: edgeport.validate([Path("/nonexistent.onnx")], "mobilenet_v2"), UserError, "does not exist"),
    (lambda: edgeport.bench([], threads=(1,)), UsageError, "nothing to time"),
    (lambda: edgeport.inspect(Path(__file__)), UserError, "unknown file format"),
])
def test_failures_are_typed_errors_not_exits(call, error, text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(error, match=text) as exc:
        call()
    assert exc.value.exit_code in (1, 2, 3, 4)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_bad_option_is_usage_and_user_error():
    with pytest.raises(BadOption) as exc:
        edgeport.QuantOptions(onnx_format="qop")
    assert isinstance(exc.value, UsageError) and isinstance(exc.value, UserError) and exc.value.exit_code == 2
    assert "qdq" in exc.value.hint


def test_every_listed_value_is_accepted_by_every_consumer(tmp_path):
    """Each value of each closed set (edgeport.quantization.options) is taken by QuantOptions, the recipe parser
    and named in the CLI's help; a consumer with its own copy of a list fails here when the list grows."""
    from typer.testing import CliRunner

    from edgeport.cli.app import _register_commands, app
    from edgeport.pipeline import recipe
    from edgeport.quantization import options

    _register_commands()
    help_text = re.sub(r"\s+", " ", CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "200"}).output)
    for key, (allowed, flag) in options.CHOICES.items():
        assert flag in help_text, flag
        for value in allowed:
            edgeport.QuantOptions(**{key: value})
            text = (f'[model]\nname = "mobilenet_v2"\n[data]\ncalib = "synthetic"\n[quantize]\n{key} = "{value}"\n'
                    '[export]\ntargets = ["onnx-int8", "tflite-int8"]\n')
            (tmp_path / "r.toml").write_text(text)
            assert getattr(recipe.parse(tmp_path / "r.toml").quantize, key) == value
            if key != "io_dtype":  # the io dtype's flag help names int8/uint8/float32 in one sentence
                assert value in help_text, (flag, value)
    for preset in options.DEPLOY_PRESETS:
        (tmp_path / "r.toml").write_text(f'[model]\nname = "mobilenet_v2"\n[data]\ncalib = "synthetic"\n[quantize]\n'
                                         f'deploy = "{preset}"\n[export]\ntargets = ["onnx-int8"]\n')
        assert recipe.parse(tmp_path / "r.toml").quantize.deploy == preset
        assert preset in help_text
    from edgeport.exporters import target_names

    for name in target_names():
        assert name in help_text
        (tmp_path / "r.toml").write_text(f'[model]\nname = "mobilenet_v2"\n[data]\ncalib = "synthetic"\n[export]\ntargets = ["{name}"]\n')
        assert recipe.parse(tmp_path / "r.toml").targets == (name,)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path, monkeypatch):
    """The first ```python block of README.md, executed as written (in a scratch folder)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "README.md has no ```python example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert {a.target for a in result.artifacts} == {"onnx-fp32", "tflite-fp32"}
    assert all(a.path.is_file() and a.parity.passed for a in result.artifacts)


@pytest.mark.slow
def test_trained_module_instance_to_int8_with_photos(tmp_path):
    """The issue's example: an in-memory module, onnx-fp32 + tflite-int8, calibrated on a folder of photos.
    The module is the trained Fashion-MNIST MobileNetV2 (judged int8: random weights would say nothing)."""
    from PIL import Image

    loaded = edgeport.load_model("fmnist_mobilenet_v2_x0_5")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):  # garment-like: a bright blob on dark ground, 28x28 grayscale as the training data
        img = np.zeros((28, 28), np.uint8)
        h, w = rng.integers(8, 20, 2)
        y, x = rng.integers(0, 28 - h), rng.integers(0, 28 - w)
        img[y:y + h, x:x + w] = rng.integers(80, 255)
        Image.fromarray(img).save(photos / f"{i}.png")
    r = edgeport.export(loaded.module, ["onnx-fp32", "tflite-int8"], calib=photos, input_shape=loaded.input_shape,
                        preprocess=loaded.data_preprocess().__dict__ | {}, calib_samples=16, val_samples=8,
                        out=tmp_path / "out", strict=False)
    int8 = r.artifact("tflite-int8")
    assert int8.int8_coverage["float"] == 0 and int8.int8_coverage["int8"] > 0
    assert int8.parity.judged and int8.delegation["format"] == "tflite"
    assert r.data["calibration"]["samples"] == 16 and r.data["validation"]["samples"] == 8


@pytest.mark.slow
@needs_fashion_mnist
def test_quantize_compares_methods_from_one_capture(tmp_path):
    c = edgeport.quantize("fmnist_mobilenet_v2_x0_5", "fashion-mnist", targets=["onnx-int8"], methods=["minmax", "mse"],
                          calib_samples=64, val_samples=64, data="fashion-mnist", limit=200, out=tmp_path)
    assert {(r.method, r.target) for r in c.results} == {("minmax", "onnx-int8"), ("mse", "onnx-int8")}
    assert all(r.passed and r.accuracy is not None for r in c.results)
    assert (tmp_path / "minmax" / "fmnist_mobilenet_v2_x0_5.int8.onnx").is_file() and (tmp_path / "methods.json").is_file()
    assert c.best()["onnx-int8"] in ("minmax", "mse")
    assert c.warnings == [] and json.loads((tmp_path / "methods.json").read_text())["warnings"] == []  # 64 samples: enough
