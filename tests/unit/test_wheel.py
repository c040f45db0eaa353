"""edgeport as users install it: the wheel carries everything a command reads at run time, TensorFlow is an
optional extra, and an ONNX-only install works from outside the checkout (slow: a fresh venv)."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TFLITE_ONLY = ("tensorflow", "tf_keras", "onnx2tf", "ai-edge-litert")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    import shutil

    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md"):  # built from a copy: setuptools leaves build/ in its source tree
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "edgeport", src / "edgeport", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(src)], check=True,
                   capture_output=True, timeout=600)
    (found,) = out.glob("edgeport-*.whl")
    return found


def test_the_wheel_ships_what_commands_read_at_run_time(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package = ROOT / "edgeport"
    needed = {f"edgeport/{p.relative_to(package).as_posix()}" for p in package.rglob("*")
              if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".c", ".cpp", ".pt", ".json", ".arm64")}
    assert needed <= names, sorted(needed - names)
    assert "edgeport/benchmark/insn_counter.c" in names and "edgeport/benchmark/Dockerfile.arm64" in names
    assert "edgeport/benchmark/pte_runner.cpp" in names  # the .pte runner is built from it on the host


def test_tensorflow_is_an_optional_extra(wheel):
    z = zipfile.ZipFile(wheel)
    meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    for pkg in TFLITE_ONLY:
        lines = [r for r in requires if r.lower().startswith(pkg.lower())]
        assert lines and all('extra == "tflite"' in r for r in lines), (pkg, lines)
    assert any(r.startswith("onnxruntime") and "extra" not in r for r in requires)


@pytest.mark.slow
def test_onnx_only_install_exports_and_says_how_to_get_tflite(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, "torch==2.13.0"], check=True, capture_output=True, timeout=1200)  # the CPU build, first
    subprocess.run([*pip, "-c", str(ROOT / "constraints.txt"), str(wheel)], check=True, capture_output=True, timeout=1200)
    py = str(venv / "bin" / "python")
    probe = "import importlib.util as u; print([m for m in ('tensorflow', 'onnx2tf', 'ai_edge_litert') if u.find_spec(m)])"
    assert subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    edgeport = str(venv / "bin" / "edgeport")
    work = tmp_path / "elsewhere"  # not the checkout: only the installed package is importable
    work.mkdir()
    ok = subprocess.run([edgeport, "export", "--model", "mobilenet_v2_x0_35", "--input-shape", "1,3,96,96", "--out", "out"],
                        cwd=work, capture_output=True, text=True, timeout=600)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (work / "out" / "mobilenet_v2_x0_35.fp32.onnx").is_file() and (work / "out" / "parity.json").is_file()
    no_tf = subprocess.run([edgeport, "export", "--model", "mobilenet_v2_x0_35", "--target", "tflite-fp32", "--out", "out2"],
                           cwd=work, capture_output=True, text=True, timeout=600)
    assert no_tf.returncode == 4 and "pip install 'edgeport[tflite]'" in no_tf.stderr, no_tf.stderr
    assert "capture" not in no_tf.stdout and not (work / "out2").exists()  # refused before any work
    inspect = subprocess.run([edgeport, "inspect", "out/mobilenet_v2_x0_35.fp32.onnx"], cwd=work, capture_output=True, text=True)
    assert inspect.returncode == 0 and "made by edgeport" in inspect.stdout
    # the qemu preflight from the installed package: ready (0) or, here without the tflite extra at least, 4 naming
    # every missing requirement; never a traceback, and the packaged plugin source and guest runner are found
    arm = subprocess.run([edgeport, "arm", "setup", "--check"], cwd=work, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "COLUMNS": "300"})
    assert arm.returncode in (0, 4) and "Traceback" not in arm.stdout + arm.stderr, arm.stdout + arm.stderr
    assert "ok       insn_counter.c (plugin source)" in arm.stdout and "ok       device_runner.py" in arm.stdout
    missing = [line.split()[1].rstrip(":") for line in arm.stdout.splitlines() if line.strip().startswith("missing ")]
    if arm.returncode == 4:
        error = [line for line in arm.stderr.splitlines() if line.strip()]
        assert len(error) == 1 and missing and all(name in error[0] for name in missing), arm.stderr
        assert "ai-edge-litert" in error[0] and "pip install 'edgeport[tflite]'" in error[0]  # an ONNX-only install
    else:
        assert not missing and "ready:" in arm.stdout
