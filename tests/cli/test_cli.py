"""The command line as a user meets it: output, exit codes, one-line errors without tracebacks."""

import json
import pickle

import pytest
import torch

from edgeport import __version__


def _one_line_error(res):
    lines = [line for line in res.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, res.err
    assert "Traceback" not in res.err + res.out
    return lines[0]


def test_version(cli):
    res = cli("--version")
    assert res.code == 0 and res.out.strip() == f"edgeport {__version__}"


def test_help_everywhere(cli):
    for args in (["--help"], ["models", "--help"], ["export", "--help"], ["inspect", "--help"]):
        res = cli(*args)
        assert res.code == 0 and "Usage" in res.out, args


def test_models_names_lists_every_family(cli):
    res = cli("models", "--names")
    names = res.out.split()
    for n in ("mobilenet_v1", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "shufflenet_v1_g3", "shufflenet_v2_x1_0"):
        assert n in names


def test_models_table_compares_with_paper(cli):
    res = cli("models", "--family", "mobilenet_v1")
    assert res.code == 0
    row = next(line for line in res.out.splitlines() if line.strip("│ ").startswith("mobilenet_v1 "))
    assert "4.232M" in row and "568.7M" in row and "569M" in row and "ok" in row


def test_unknown_model_suggests_close_names(cli, tmp_path):
    res = cli("export", "--model", "mobilenet_v22", "--out", tmp_path)
    assert res.code == 1
    line = _one_line_error(res)
    assert "unknown model 'mobilenet_v22'" in line and "mobilenet_v2" in line
    assert not any(tmp_path.iterdir())


def test_bad_factory_module(cli, tmp_path):
    res = cli("export", "--model", "no_such_pkg.nets:build", "--input-shape", "1,3,32,32", "--out", tmp_path)
    assert res.code == 1
    assert "cannot import module 'no_such_pkg.nets'" in _one_line_error(res)


def test_bad_factory_attribute(cli, tmp_path, byo_file):
    res = cli("export", "--model", f"{byo_file}:buld", "--input-shape", "1,3,32,32", "--out", tmp_path)
    assert res.code == 1
    line = _one_line_error(res)
    assert "has no attribute 'buld'" in line and "build" in line


def test_factory_returning_non_module(cli, tmp_path, byo_file):
    res = cli("export", "--model", f"{byo_file}:not_a_model", "--input-shape", "1,3,32,32", "--out", tmp_path)
    assert res.code == 1 and "not a torch.nn.Module" in _one_line_error(res)


def test_missing_weights_file(cli, tmp_path):
    res = cli("export", "--model", "mobilenet_v2", "--weights", tmp_path / "nope.pt", "--out", tmp_path / "o")
    assert res.code == 1 and "does not exist" in _one_line_error(res)


def test_wrong_input_shape(cli, tmp_path, byo_file):
    res = cli("export", "--model", f"{byo_file}:build", "--input-shape", "1,1,32,32", "--out", tmp_path)
    assert res.code == 1
    line = _one_line_error(res)
    assert "(1, 1, 32, 32)" in line and "--input-shape" in line


def test_malformed_input_shape_is_usage_error(cli, tmp_path, byo_file):
    res = cli("export", "--model", f"{byo_file}:build", "--input-shape", "1,3,a,32", "--out", tmp_path)
    assert res.code == 2 and "not a list of integers" in _one_line_error(res)


def test_unknown_target_is_usage_error(cli, tmp_path, byo_file):
    res = cli("export", "--model", f"{byo_file}:build", "--input-shape", "1,3,32,32", "--target", "onnx-fp33", "--out", tmp_path)
    assert res.code == 2 and "onnx-fp32" in _one_line_error(res)


def test_code_running_pickle_is_refused(cli, tmp_path, byo_file):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    ckpt = tmp_path / "evil.pt"
    ckpt.write_bytes(pickle.dumps({"state_dict": Evil()}))
    res = cli("export", "--model", f"{byo_file}:build", "--input-shape", "1,3,32,32", "--weights", ckpt, "--out", tmp_path / "o")
    assert res.code == 1
    line = _one_line_error(res)
    assert "weights_only" in line and "state_dict()" in line
    assert "pwned" not in res.out


def test_byo_export_writes_checked_onnx_and_parity(cli, tmp_path, byo_file):
    from tests.fixtures.byo_model import build

    ckpt = tmp_path / "ckpt.pt"
    torch.save({"epoch": 3, "state_dict": build().state_dict()}, ckpt)
    out = tmp_path / "out"
    res = cli("export", "--model", f"{byo_file}:build", "--weights", ckpt, "--input-shape", "1,3,32,32", "--out", out)
    assert res.code == 0, res.err
    assert "Conv+BN+ReLU6" in res.out and "post_bn not folded" in res.out
    onnx_file = out / "build.fp32.onnx"
    assert onnx_file.is_file() and not list(out.glob("*.part"))
    parity = json.loads((out / "parity.json").read_text())
    checks = parity["validation"]["checks"]
    assert [(c["stage"], c["against"]) for c in checks] == [("onnx-fp32", "torch"), ("onnx-fp32", "torch-fused")]
    assert all(c["passed"] and c["max_abs"] <= 1e-4 and c["cosine"] > 0.999999 for c in checks)
    assert parity["fusion"]["folded_bn"] == 3

    res = cli("inspect", onnx_file)
    assert res.code == 0
    assert "input  input: float32[1, 3, 32, 32]" in res.out and "Conv" in res.out and "HardSwish" in res.out
    res = cli("inspect", onnx_file, "--json")
    summary = json.loads(res.out)
    assert summary["ops"]["Conv"] == 5 and summary["inputs"][0]["shape"] == [1, 3, 32, 32]


def test_inspect_rejects_non_model(cli, tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\\x00garbage" * 10)
    res = cli("inspect", junk)
    assert res.code == 1 and "not a readable ONNX file" in _one_line_error(res)
    fake = tmp_path / "fake.tflite"
    fake.write_bytes(b"12345678" * 4)
    res = cli("inspect", fake)
    assert res.code == 1 and "not a TFLite flatbuffer" in _one_line_error(res)


@pytest.mark.slow
def test_random_weight_int8_is_said_loudly_to_be_not_judged(cli, tmp_path):
    """The zoo's random weights: onnx-int8 is compared with PyTorch but never shown or recorded as a pass."""
    res = cli("export", "--model", "mobilenet_v3_small", "--input-shape", "1,3,64,64", "--target", "onnx-fp32,onnx-int8",
              "--calib", "synthetic", "--calib-samples", "8", "--val-samples", "8", "--out", tmp_path)
    assert res.code == 0, res.err
    text = " ".join(res.out.split())
    assert "NOT JUDGED" in text and "random weights" in text and "--weights" in text
    checks = json.loads((tmp_path / "parity.json").read_text())["validation"]["checks"]
    int8 = next(c for c in checks if c["stage"] == "onnx-int8" and c["against"] == "torch")
    assert int8["judged"] is False and int8["passed"] is None and "random weights" in int8["not_judged_because"]
    strict = cli("export", "--model", "mobilenet_v3_small", "--input-shape", "1,3,64,64", "--target", "onnx-int8", "--calib",
                 "synthetic", "--calib-samples", "8", "--val-samples", "8", "--require-judged", "--out", tmp_path / "strict")
    assert strict.code == 3 and "onnx-int8 vs torch: not judged" in strict.err


def _images(path, n, seed):
    import numpy as np

    np.save(path, np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8))
    return path


def test_a_small_calib_set_is_split_out_loud_and_val_data_keeps_it_whole(cli, tmp_path, byo_file):
    calib, val = _images(tmp_path / "calib.npy", 80, 0), _images(tmp_path / "val.npy", 12, 1)
    base = ["export", "--model", f"{byo_file}:build", "--input-shape", "1,3,32,32"]
    res = cli(*base, "--calib", calib, "--out", tmp_path / "split")
    assert res.code == 0, res.err
    text = " ".join(res.out.split())
    assert f"data: calibration 40 samples ({calib}), validation 40 samples ({calib}); one source of 80 samples split" in text
    assert "WARNING: " in text and "its 80 samples were split in two, disjoint" in text
    assert "--val-data" in text and "--calib-samples 40 --val-samples 40" in text
    assert "parity on 40 held-out samples" in text
    accepted = cli(*base, "--calib", calib, "--calib-samples", "40", "--val-samples", "40", "--out", tmp_path / "accepted")
    assert accepted.code == 0 and "split in two, disjoint;" not in " ".join(accepted.out.split())  # asked for: no warning
    whole = cli(*base, "--calib", calib, "--val-data", val, "--out", tmp_path / "whole")
    assert whole.code == 0, whole.err
    text = " ".join(whole.out.split())
    assert f"data: calibration 80 samples ({calib}), validation 12 samples ({val})" in text and "split" not in text
    record = json.loads((tmp_path / "whole" / "parity.json").read_text())["data"]
    assert record["calibration"] == {"source": str(calib), "samples": 80, "synthetic": False}
    assert record["validation"]["source"] == str(val) and record["validation"]["samples"] == 12


def test_a_set_too_small_to_halve_calibrates_on_all_of_it_and_says_validation_is_in_sample(cli, tmp_path, byo_file):
    calib = _images(tmp_path / "calib.npy", 20, 0)
    base = ["export", "--model", f"{byo_file}:build", "--input-shape", "1,3,32,32", "--target", "onnx-fp32,onnx-int8"]
    res = cli(*base, "--calib", calib, "--out", tmp_path / "small")
    assert res.code == 0, res.err
    text = " ".join(res.out.split())
    assert f"data: calibration 20 samples ({calib}), validation on the same 20 samples (in-sample" in text
    assert "parity on 20 in-sample (calibration) samples" in text
    assert "too few to split" in text and "--val-data" in text and "--calib-samples 10 --val-samples 10" in text
    parity = json.loads((tmp_path / "small" / "parity.json").read_text())
    assert parity["data"]["calibration"]["samples"] == 20 and parity["data"]["validation"]["held_out"] is False
    assert parity["validation"]["held_out"] is False
    split = cli(*base, "--calib", calib, "--calib-samples", "10", "--val-samples", "10", "--out", tmp_path / "split")
    assert split.code == 0 and "parity on 10 held-out samples" in " ".join(split.out.split())  # asked for a split: held out
    assert json.loads((tmp_path / "split" / "parity.json").read_text())["validation"]["held_out"] is True


def test_val_data_that_is_the_calib_data_is_a_usage_error(cli, tmp_path, byo_file):
    calib = _images(tmp_path / "calib.npy", 20, 0)
    res = cli("export", "--model", f"{byo_file}:build", "--input-shape", "1,3,32,32", "--calib", calib, "--val-data", calib,
              "--out", tmp_path / "out")
    assert res.code == 2 and "would not be held out" in _one_line_error(res)


def test_int8_under_the_measured_minimum_of_calibration_samples_warns(cli, tmp_path, byo_file):
    from edgeport.data.calibration import MIN_CALIBRATION, MIN_CALIBRATION_DOC

    calib = _images(tmp_path / "calib.npy", 64, 0)
    res = cli("export", "--model", f"{byo_file}:build", "--input-shape", "1,3,32,32", "--target", "onnx-int8", "--calib", calib,
              "--calib-samples", "4", "--val-samples", "16", "--min-sqnr", "0", "--min-top1", "0", "--out", tmp_path / "out")
    assert res.code == 0, res.err
    text = " ".join(res.out.split())
    assert f"int8 calibrated on 4 samples, fewer than {MIN_CALIBRATION}" in text and MIN_CALIBRATION_DOC in text
    fp32 = cli("export", "--model", f"{byo_file}:build", "--input-shape", "1,3,32,32", "--calib", calib, "--calib-samples", "4",
               "--val-samples", "16", "--out", tmp_path / "fp32")
    assert fp32.code == 0 and "fewer than" not in fp32.out  # nothing is calibrated for a float target
