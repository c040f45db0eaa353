"""Corrupt, truncated or foreign model files given to inspect / validate / bench."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import BYO, SHAPE, assert_clean_failure


def _damaged(src, tmp_path, how: str):
    data = src.read_bytes()
    dest = tmp_path / f"damaged{src.suffix}"
    if how == "truncated":
        dest.write_bytes(data[: len(data) // 3])
    elif how == "garbage":
        dest.write_bytes(bytes(range(256)) * 64)
    elif how == "empty":
        dest.write_bytes(b"")
    return dest


def _artifact(byo_onnx, fmt: str):
    return next(byo_onnx.glob(f"*.{'fp32.onnx' if fmt == 'onnx' else 'int8.tflite'}"))


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
@pytest.mark.parametrize("how", ["truncated", "garbage", "empty"])
def test_inspect_refuses_damaged_file(cli, byo_onnx, tmp_path, fmt, how):
    bad = _damaged(_artifact(byo_onnx, fmt), tmp_path, how)
    r = cli("inspect", bad)
    assert_clean_failure(r, 1, r"damaged\." + fmt, r"corrupt|truncated|not a TFLite|not a readable|empty", r"re-export")


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_validate_refuses_truncated_file(cli, byo_onnx, tmp_path, fmt):
    bad = _damaged(_artifact(byo_onnx, fmt), tmp_path, "truncated")
    r = cli("validate", bad, "--model", f"{BYO}:build", "--input-shape", SHAPE)
    assert_clean_failure(r, 1, r"damaged\." + fmt, r"corrupt|truncated|not a valid|cannot (read|load)")


@pytest.mark.parametrize("fmt", ["onnx", "tflite"])
def test_bench_refuses_garbage_file(cli, byo_onnx, tmp_path, fmt):
    bad = _damaged(_artifact(byo_onnx, fmt), tmp_path, "garbage")
    r = cli("bench", bad, "--budget", "0.2")
    assert_clean_failure(r, 1, r"damaged\." + fmt, r"corrupt|truncated|not a valid|cannot (read|load)")


def test_inspect_unknown_format(cli, tmp_path):
    f = tmp_path / "model.bin"
    f.write_bytes(b"\0" * 64)
    assert_clean_failure(cli("inspect", f), 1, r"model\.bin", r"\.onnx|\.tflite")


def test_inspect_missing_file(cli, tmp_path):
    assert_clean_failure(cli("inspect", tmp_path / "gone.onnx"), 1, r"gone\.onnx", r"does not exist|not found")


def test_validate_artifact_of_another_model(cli, byo_onnx):
    """An artifact whose input shape is not the model's: named, not a crash inside the runtime."""
    r = cli("validate", _artifact(byo_onnx, "onnx"), "--model", f"{BYO}:build", "--input-shape", "1,3,48,48")
    assert_clean_failure(r, 1, r"input|shape", r"48")
