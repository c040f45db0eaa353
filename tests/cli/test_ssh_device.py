"""--device ssh://: against a throwaway sshd on 127.0.0.1 (the "device" runs the host venv's python), and
against a closed port. No assertion on how fast anything is."""

import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgeport.benchmark.devices import parse_device
from edgeport.benchmark.ssh_device import make_device
from edgeport.errors import RuntimeMissing, UserError
from edgeport.formats import FORMATS
from tests.cli import local_sshd


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    why = local_sshd.available()
    assert why is None, why  # scripts/setup.sh installs openssh-server/-client
    server = local_sshd.start(tmp_path_factory.mktemp("sshd") / "s")
    yield server
    server.stop()


def _device(server, **kw):
    return make_device(parse_device(server.url), identity=server.key, ssh_config=server.ssh_config, **kw)


def test_closed_port_is_a_quick_typed_error():
    port = local_sshd.free_port()  # nothing listens there
    device = make_device(parse_device(f"ssh://nobody@127.0.0.1:{port}"), connect_timeout=3)
    t0 = time.monotonic()
    with pytest.raises(UserError) as exc:
        device.run(Path("m.tflite"), np.zeros((1, 3, 8, 8), np.float32), 1)
    assert f"127.0.0.1:{port}" in exc.value.message and "3 s" in exc.value.message
    assert time.monotonic() - t0 < 30  # bounded by the connect timeout, not by TCP's retries


def test_missing_runtime_names_the_pip_command(sshd, tmp_path):
    artifact = tmp_path / "m.tflite"
    artifact.write_bytes(b"not used: the probe stops first")
    # Debian's own python3 has no numpy: exactly what a fresh Raspberry Pi OS looks like
    with pytest.raises(RuntimeMissing) as exc:
        _device(sshd, remote_python="/usr/bin/python3").run(artifact, np.zeros((1, 3, 8, 8), np.float32), 1)
    assert "numpy" in exc.value.message and "ai_edge_litert" in exc.value.message
    assert "pip install" in exc.value.hint and "ai-edge-litert==" in exc.value.hint and "--remote-python" in exc.value.hint
    with pytest.raises(RuntimeMissing) as exc:
        _device(sshd, remote_python="/nonexistent/python3").run(artifact, np.zeros((1, 3, 8, 8), np.float32), 1)
    assert "does not run" in exc.value.message


def test_unknown_key_is_refused(sshd, tmp_path):
    import subprocess

    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    device = make_device(parse_device(sshd.url), identity=other, ssh_config=sshd.ssh_config, connect_timeout=5)
    with pytest.raises(UserError) as exc:
        device.probe(FORMATS.get("onnx"))
    assert "Permission denied" in exc.value.message and "--ssh-key" in exc.value.hint


@pytest.fixture(scope="module")
def tflite_int8(tmp_path_factory):
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    out = tmp_path_factory.mktemp("ssh_artifacts")
    loaded = model_source.load(f"{byo}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((16, 3, 32, 32), 16).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:4], None, "synthetic", True))
    run = run_export(loaded, parse_targets("tflite-int8"), out, data=data, validate=False)
    return run.artifacts[0].path, calib[:4]


def test_runs_on_the_device_and_matches_the_host(sshd, tflite_int8):
    from edgeport.runtimes import open_runtime

    artifact, x = tflite_int8
    device = _device(sshd, remote_python=sys.executable, warmup=2, runs=7)
    run = device.run(artifact, x, threads=1)
    assert run.device == sshd.url and not run.emulated
    assert len(run.timings_ms) == 7 and all(t > 0 for t in run.timings_ms) and run.load_ms > 0
    assert run.runtime == "ai-edge-litert" and run.xnnpack and run.threads == 1
    host = open_runtime(artifact).run(x)
    assert run.outputs.shape == host.shape
    np.testing.assert_array_equal(run.outputs, host)  # same wheel, same kernels: bit-identical
    leftovers = [p for p in Path("/tmp").glob("edgeport-*") if p.is_dir() and p.name == Path(run.extra["remote_dir"]).name]
    assert not leftovers  # the device's temp dir was removed


def test_bench_cli_over_ssh_reports_latency_and_parity(cli, sshd, tflite_int8, tmp_path):
    artifact, _ = tflite_int8
    res = cli("bench", artifact, "--device", sshd.url, "--ssh-key", sshd.key, "--ssh-config", sshd.ssh_config,
              "--remote-python", sys.executable, "--runs", "5", "--json", tmp_path / "ssh.json")
    assert res.code == 0, res.err
    assert "measured on the device itself" in res.out and "SQNR" in res.out
    import json

    record = json.loads((tmp_path / "ssh.json").read_text())
    (run,) = record["runs"]
    assert record["device"] == sshd.url and run["emulated"] is False and len(run["timings_ms"]) == 5
    assert run["parity_vs_host"]["max_abs"] == 0.0  # the same wheel on the same CPU


def test_bench_cli_unreachable_host_is_exit_1_on_one_line(cli, tmp_path):
    artifact = tmp_path / "m.tflite"
    artifact.write_bytes(b"x")
    port = local_sshd.free_port()
    res = cli("bench", artifact, "--device", f"ssh://pi@127.0.0.1:{port}", "--ssh-timeout", "2")
    assert res.code == 1
    line = res.err.strip()
    assert "\n" not in line and f"127.0.0.1:{port}" in line and "2 s" in line and "Traceback" not in line


def test_pte_stages_the_arm64_runtime_and_refuses_another_machine(sshd, tmp_path, monkeypatch):
    """A .pte needs no executorch module on the board (edgeport copies ExecuTorch's aarch64 C++ runtime there),
    so the probe asks for numpy only; this x86 "board" cannot load that runtime: a typed error, before copying."""
    from edgeport.formats.pte_file import PteFormat

    native = tmp_path / "runtime"
    native.mkdir()
    monkeypatch.setattr(PteFormat, "device_runtime", lambda self, say=print: native)
    artifact = tmp_path / "m.pte"
    artifact.write_bytes(b"not used: the machine check stops first")
    device = _device(sshd, remote_python=sys.executable)
    info = device.probe(PteFormat(), staged=True)
    device._cleanup(info["tmp"])
    assert info["missing"] == [] and info["machine"] == "x86_64"
    with pytest.raises(UserError) as exc:
        device.run(artifact, np.zeros((1, 3, 8, 8), np.float32), 1)
    assert "needs an arm64 board" in exc.value.message and "x86_64" in exc.value.message
