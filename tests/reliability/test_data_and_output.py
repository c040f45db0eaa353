"""Bad calibration data, bad output folders, bad options, missing runtimes."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from tests.reliability.conftest import BYO, SHAPE, assert_clean_failure, files_in


def export(cli, out, *extra):
    return cli("export", "--model", f"{BYO}:build", "--input-shape", SHAPE, "--out", out, *extra)


def test_empty_calibration_folder(cli, tmp_path):
    (tmp_path / "imgs").mkdir()
    r = export(cli, tmp_path / "out", "--target", "onnx-int8", "--calib", tmp_path / "imgs")
    assert_clean_failure(r, 1, r"imgs", r"no images|empty", out=tmp_path / "out")


def test_unreadable_image_in_calibration_folder(cli, tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    r = export(cli, tmp_path / "out", "--target", "onnx-int8", "--calib", tmp_path / "imgs")
    assert_clean_failure(r, 1, r"broken\.png", out=tmp_path / "out")


def test_wrong_shape_npy(cli, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((10, 7), np.float32))
    r = export(cli, tmp_path / "out", "--target", "onnx-int8", "--calib", tmp_path / "x.npy")
    assert_clean_failure(r, 1, r"x\.npy", r"shape", out=tmp_path / "out")


def test_npy_that_is_not_an_array(cli, tmp_path):
    (tmp_path / "x.npy").write_text("not numpy")
    r = export(cli, tmp_path / "out", "--target", "onnx-int8", "--calib", tmp_path / "x.npy")
    assert_clean_failure(r, 1, r"x\.npy", out=tmp_path / "out")


def test_calibration_with_nan(cli, tmp_path):
    x = np.random.default_rng(0).random((40, 3, 32, 32), dtype=np.float32)
    x[3, 0, 0, 0] = np.nan
    np.save(tmp_path / "x.npy", x)
    r = export(cli, tmp_path / "out", "--target", "onnx-int8", "--calib", tmp_path / "x.npy")
    assert_clean_failure(r, 1, r"NaN|inf|finite", out=tmp_path / "out")


def test_missing_calibration_source(cli, tmp_path):
    r = export(cli, tmp_path / "out", "--target", "onnx-int8", "--calib", tmp_path / "nowhere")
    assert_clean_failure(r, 1, r"nowhere", out=tmp_path / "out")


def test_out_is_a_file(cli, tmp_path):
    f = tmp_path / "out"
    f.write_text("occupied")
    r = export(cli, f, "--no-validate")
    assert_clean_failure(r, 1, r"out", r"writable|not a folder|exists")
    assert f.read_text() == "occupied"


@pytest.fixture
def small_mount(tmp_path):
    """A small tmpfs: 'disk full' for real (root in this sandbox may mount; skipped where it may not)."""
    where = tmp_path / "small"
    where.mkdir()
    def mount(*opts):
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(opts), "tmpfs", str(where)], capture_output=True)
        if r.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
        return where
    yield mount
    subprocess.run(["umount", str(where)], capture_output=True)


def test_full_output_disk(cli, small_mount):
    out = small_mount("size=8k")  # the BYO model's .onnx alone is larger
    r = export(cli, out, "--no-validate")
    assert_clean_failure(r, 1, r"no space|full", out=out)


def test_read_only_output_folder(cli, small_mount):
    out = small_mount("size=256k", "ro")
    r = export(cli, out / "sub", "--no-validate")
    assert_clean_failure(r, 1, r"read-only|cannot write|permission", out=out)


def test_unknown_target(cli, tmp_path):
    r = export(cli, tmp_path / "out", "--target", "tflite-int4")
    assert_clean_failure(r, 2, r"tflite-int4", r"tflite-int8", out=tmp_path / "out")


def test_unknown_calibration_method(cli, tmp_path):
    r = export(cli, tmp_path / "out", "--target", "onnx-int8", "--calib-method", "magic")
    assert_clean_failure(r, 2, r"magic", r"minmax", out=tmp_path / "out")


def test_unknown_bench_device(cli, byo_onnx):
    r = cli("bench", next(byo_onnx.glob("*.onnx")), "--device", "toaster")
    assert_clean_failure(r, 2, r"toaster", r"local")


def test_bad_thread_list(cli, byo_onnx):
    r = cli("bench", next(byo_onnx.glob("*.onnx")), "--threads", "two")
    assert_clean_failure(r, 2, r"two", r"--threads 1,2")


BLOCK = "import sys; sys.modules[{mod!r}] = None\nfrom edgeport.cli.app import main\nsys.argv = {argv!r}\nmain()\n"


@pytest.mark.parametrize(
    "module, args, code, pip",
    [
        # inspect reads the graph with onnx alone: it still works and says what it could not measure
        ("onnxruntime", ["inspect", "{onnx}"], 0, r"not measured: onnxruntime is not installed.*pip install 'onnxruntime"),
        ("onnxruntime", ["bench", "{onnx}", "--budget", "0.1"], 4, r"pip install 'onnxruntime"),
        ("ai_edge_litert", ["bench", "{tflite}", "--budget", "0.1"], 4, r"pip install 'ai-edge-litert"),
        ("onnx2tf", ["export", "--model", f"{BYO}:build", "--input-shape", SHAPE, "--target", "tflite-fp32", "--out", "{out}"],
         4, r"pip install .*onnx2tf"),
    ],
)
def test_missing_runtime_package_exits_4_with_pip_command(byo_onnx, tmp_path, module, args, code, pip):
    files = {"onnx": next(byo_onnx.glob("*.onnx")), "tflite": next(byo_onnx.glob("*.tflite")), "out": tmp_path / "out"}
    argv = ["edgeport", *(a.format(**files) for a in args)]
    r = subprocess.run([sys.executable, "-c", BLOCK.format(mod=module, argv=argv)], capture_output=True, text=True, timeout=600)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == code, r.stdout + r.stderr
    assert len([line for line in r.stderr.splitlines() if line.startswith("error:")]) == (code != 0)
    assert re.search(pip, r.stdout + r.stderr, re.S), r.stdout + r.stderr
    assert files_in(tmp_path / "out") == set()
