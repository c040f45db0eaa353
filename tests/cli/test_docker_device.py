"""--device docker-arm64 with a fake `docker` executable on PATH: engine check, image built once from the
rootfs (import + build), the run command, results read back. The real engine is tested in tests/arm/."""

import json
import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeport.benchmark import docker_device
from edgeport.benchmark.devices import parse_device
from edgeport.errors import EXIT_RUNTIME, RuntimeMissing

FAKE = r'''#!PYTHON
import json, os, sys
import numpy as np
state = os.environ["FAKE_DOCKER_STATE"]
args = sys.argv[1:]
with open(os.path.join(state, "calls.jsonl"), "a") as f:
    f.write(json.dumps(args) + "\n")
images = os.path.join(state, "images")
known = open(images).read().split() if os.path.exists(images) else []
if args[0] == "info":
    if os.environ.get("FAKE_DOCKER_NO_ENGINE"):
        sys.stderr.write("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n")
        sys.exit(1)
    print("99.0-fake")
elif args[:2] == ["image", "inspect"]:
    sys.exit(0 if args[2] in known else 1)
elif args[0] == "import":
    data = sys.stdin.buffer.read()
    open(os.path.join(state, "imported.tar"), "wb").write(data)
    open(images, "a").write(args[-1] + "\n")
elif args[0] == "build":
    ctx = args[-1]
    assert os.path.isfile(os.path.join(ctx, "device_runner.py"))
    open(images, "a").write(args[args.index("-t") + 1] + "\n")
elif args[0] == "run":
    work = args[args.index("-v") + 1].split(":")[0]
    threads = int(args[args.index("--threads") + 1])
    result = {"runner_version": "fake", "artifact": args[args.index("--artifact") + 1], "sha256": "0" * 64,
              "runtime": "ai-edge-litert", "runtime_version": "2.3.0", "numpy_version": np.__version__,
              "python": "3.11.2", "machine": "aarch64", "cpuinfo_model": None, "threads": threads, "xnnpack": True,
              "load_ms": 12.5, "timings_ms": [3.0, 2.0, 4.0]}
    json.dump(result, open(os.path.join(work, "result.json"), "w"))
    np.save(os.path.join(work, "outputs.npy"), np.arange(10, dtype=np.float32)[None])
else:
    sys.exit(2)
'''


@pytest.fixture
def fake_docker(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "docker"
    exe.write_text(FAKE.replace("PYTHON", sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_DOCKER_STATE", str(state))
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "bin").mkdir(parents=True)
    (rootfs / "usr" / "bin" / "python3").write_text("arm64 python")

    def calls():
        return [json.loads(line) for line in (state / "calls.jsonl").read_text().splitlines()]

    return rootfs, calls


def _device(rootfs):
    return docker_device.make_device(parse_device("docker-arm64"), rootfs=rootfs)


def test_no_engine_is_exit_4_with_a_way_to_get_one(fake_docker, monkeypatch, tmp_path):
    rootfs, _ = fake_docker
    monkeypatch.setenv("FAKE_DOCKER_NO_ENGINE", "1")
    with pytest.raises(RuntimeMissing) as exc:
        _device(rootfs).run(tmp_path / "m.tflite", np.zeros((1, 3, 8, 8), np.float32), 1)
    assert exc.value.exit_code == EXIT_RUNTIME
    assert "docker info" in exc.value.message and "Cannot connect" in exc.value.message
    assert "dockerd" in exc.value.hint and "qemu-pi4" in exc.value.hint


def test_no_docker_at_all(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeMissing) as exc:
        _device(tmp_path).check_engine()
    assert "not installed" in exc.value.message


def _static_qemu(monkeypatch, tmp_path):
    if not docker_device.BINFMT_AARCH64.exists() and not Path(docker_device.QEMU_STATIC).is_file():
        # the fake engine never executes it: a host without binfmt_misc or qemu-user-static (CI containers)
        # still checks that the static qemu is what the container is told to run
        fake_qemu = tmp_path / "qemu-aarch64-static"
        fake_qemu.write_bytes(b"")
        monkeypatch.setattr(docker_device, "QEMU_STATIC", str(fake_qemu))


def test_image_built_once_from_the_rootfs_then_runs(fake_docker, monkeypatch, tmp_path):
    rootfs, calls = fake_docker
    _static_qemu(monkeypatch, tmp_path)
    artifact = tmp_path / "m.int8.tflite"
    artifact.write_bytes(b"tflite bytes")
    device = _device(rootfs)
    run = device.run(artifact, np.ones((1, 3, 8, 8), np.float32), 2)
    assert run.device == "docker-arm64" and run.machine == "aarch64" and run.threads == 2
    assert run.median_ms == 3.0 and run.outputs.shape == (1, 10)
    assert run.emulated == (not docker_device._native()) and run.extra["engine"] == "99.0-fake"
    first = calls()
    imports = [c for c in first if c[0] == "import"]
    assert len(imports) == 1 and imports[0][1:3] == ["--platform", "linux/arm64"]
    build = [c for c in first if c[0] == "build"][0]
    assert f"BASE={imports[0][-1]}" in build and str(docker_device.DOCKERFILE) in build
    docker_run = [c for c in first if c[0] == "run"][0]
    assert docker_run[docker_run.index("--network") + 1] == "none"
    assert "/work/m.int8.tflite" in docker_run and docker_run[docker_run.index("--threads") + 1] == "2"
    if device.emulated:  # the runtimes need an ARM /proc/cpuinfo and a real core, never QEMU's "max"
        assert any(a.endswith(":/proc/cpuinfo:ro") for a in docker_run) and "QEMU_CPU=cortex-a72" in docker_run
    if device.emulated and not docker_device.BINFMT_AARCH64.exists():
        assert docker_run[docker_run.index("--entrypoint") + 1] == docker_device.QEMU_STATIC
    # the tarball really is the rootfs
    import tarfile

    names = tarfile.open(fake_docker[0].parent / "state" / "imported.tar").getnames()
    assert "./usr/bin/python3" in names
    device.run(artifact, np.ones((1, 3, 8, 8), np.float32), 1)
    assert sum(c[0] == "import" for c in calls()) == 1  # cached: the tag hashes the runner and Dockerfile


def test_bench_cli_without_engine_exits_4(cli, fake_docker, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_DOCKER_NO_ENGINE", "1")
    artifact = tmp_path / "m.tflite"
    artifact.write_bytes(b"x")
    res = cli("bench", artifact, "--device", "docker-arm64")
    assert res.code == EXIT_RUNTIME and "no Docker engine" in res.err and "dockerd" in res.err


def test_pte_gets_the_staged_executorch_runtime(fake_docker, monkeypatch, tmp_path):
    """A .pte runs in ExecuTorch's C++ runtime (the aarch64 build edgeport stages), passed to the runner."""
    from edgeport.formats.pte_file import PteFormat

    rootfs, calls = fake_docker
    _static_qemu(monkeypatch, tmp_path)
    native = tmp_path / "runtime"
    native.mkdir()
    (native / "libedgeport_pte.so").write_bytes(b"")
    monkeypatch.setattr(PteFormat, "device_runtime", lambda self, say=print: native)
    artifact = tmp_path / "m.int8.pte"
    artifact.write_bytes(b"pte bytes")
    _device(rootfs).run(artifact, np.ones((1, 3, 8, 8), np.float32), 1)
    docker_run = [c for c in calls() if c[0] == "run"][-1]
    assert docker_run[docker_run.index("--pte-runtime") + 1] == "/work/pte"
    tflite = tmp_path / "m.int8.tflite"
    tflite.write_bytes(b"tflite bytes")
    _device(rootfs).run(tflite, np.ones((1, 3, 8, 8), np.float32), 1)
    assert "--pte-runtime" not in [c for c in calls() if c[0] == "run"][-1]  # other formats import their runtime
