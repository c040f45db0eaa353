"""device_runner.py, the script copied to devices: run on this host against small artifacts, its outputs must be
exactly what edgeport's own runners give (same layout and quantization handling), and its contract holds."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeport.benchmark.devices import RUNNER_SCRIPT, DeviceRun


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    out = tmp_path_factory.mktemp("runner")
    loaded = model_source.load(f"{byo}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    run = run_export(loaded, parse_targets("onnx-fp32,onnx-int8,tflite-fp32,tflite-int8"), out, data=data, validate=False)
    return {a.path.name.split(".", 1)[1]: a.path for a in run.artifacts}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNNER_SCRIPT), *args], capture_output=True, text=True, timeout=300)


def test_runner_imports_nothing_of_edgeport():
    tree = ast.parse(RUNNER_SCRIPT.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.split(".")[0] == "edgeport"]


@pytest.mark.parametrize("kind", ["fp32.onnx", "int8.onnx", "fp32.tflite", "int8.tflite"])
def test_runner_matches_edgeport_runtimes(artifacts, kind, tmp_path):
    from edgeport.runtimes import open_runtime

    path = artifacts[kind]
    x = np.random.default_rng(1).standard_normal((3, 3, 32, 32)).astype(np.float32)  # NCHW, 3 samples
    np.save(tmp_path / "x.npy", x)
    out, y = tmp_path / "result.json", tmp_path / "y.out"  # not .npy: the runner must keep the name
    proc = _run("--artifact", str(path), "--inputs", str(tmp_path / "x.npy"), "--threads", "1", "--warmup", "1",
                "--runs", "2", "--out", str(out), "--outputs-npy", str(y), "--insn-markers")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["runner_version"] and result["machine"] and result["python"].startswith("3.")
    assert result["runtime"] == ("onnxruntime" if kind.endswith("onnx") else "ai-edge-litert")
    assert result["xnnpack"] is kind.endswith("tflite")
    assert len(result["timings_ms"]) == 2 and all(t > 0 for t in result["timings_ms"]) and result["load_ms"] > 0
    import hashlib

    assert result["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    got = np.load(y)
    want = open_runtime(path, threads=1).run(x)
    assert got.dtype == np.float32 and got.shape == want.shape and got.shape[0] == 3
    assert np.array_equal(got, want)  # same machine, same runtime: bit-exact
    run = DeviceRun.from_result(out, device="local-test")
    assert run.outputs is not None and np.array_equal(run.outputs, got) and run.median_ms > 0


def test_runner_without_xnnpack_still_runs(artifacts, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    proc = _run("--artifact", str(artifacts["int8.tflite"]), "--inputs", str(tmp_path / "x.npy"), "--out",
                str(tmp_path / "r.json"), "--no-xnnpack", "--runs", "1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["xnnpack"] is False


def test_runner_errors_are_one_line(artifacts, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 3, 32, 32), np.float32))
    for args in (["--artifact", str(tmp_path / "missing.onnx")], ["--artifact", str(tmp_path / "x.npy")]):
        proc = _run(*args, "--inputs", str(tmp_path / "x.npy"), "--out", str(tmp_path / "r.json"))
        assert proc.returncode != 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("device_runner: ")
    np.save(tmp_path / "bad.npy", np.zeros((1, 3, 8, 8), np.float32))
    proc = _run("--artifact", str(artifacts["fp32.tflite"]), "--inputs", str(tmp_path / "bad.npy"), "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 1 and "does not fit" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.json").exists()
