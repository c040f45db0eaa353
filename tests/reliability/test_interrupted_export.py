"""A kill or Ctrl-C in the middle of an export leaves the previous artifacts intact: every artifact name in
--out holds either the previous file or a complete new one, never half of one."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ARGS = ["--model", "mobilenet_v2", "--input-shape", "1,3,64,64", "--target", "onnx-fp32", "--no-validate"]


def _export(out: Path, seed_weights: Path | None = None) -> subprocess.Popen:
    extra = ["--weights", str(seed_weights)] if seed_weights else []
    return subprocess.Popen(
        [sys.executable, "-m", "edgeport", "export", *ARGS, *extra, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "GOMP_SPINCOUNT": "1000"},
        # as in a terminal: a job started in the background by a non-interactive shell (how CI may start
        # us) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler (seen in CI)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory) -> Path:
    """Different weights for the same network, so a finished second export would change the file."""
    import torch

    from edgeport.models.source import load

    model = load("mobilenet_v2", input_shape=(1, 3, 64, 64)).module
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(1.01)
    path = tmp_path_factory.mktemp("w") / "other.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_export_leaves_previous_artifact_intact(tmp_path, other_weights, sig):
    out = tmp_path / "out"
    first = _export(out)
    assert first.wait(timeout=600) == 0, first.stderr.read()
    before = _digest(out)
    assert "mobilenet_v2.fp32.onnx" in before

    proc = _export(out, other_weights)
    deadline = time.monotonic() + 600
    caught_mid_write = False
    while proc.poll() is None and time.monotonic() < deadline:
        if any(p.name.endswith(".part") for p in out.iterdir()):  # an artifact is being written right now
            caught_mid_write = True
            break
        time.sleep(0.001)
    assert proc.poll() is None, "the export finished before it could be interrupted"
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    after = _digest(out)

    assert caught_mid_write
    assert code == (-9 if sig == signal.SIGKILL else 130), (code, proc.stderr.read()[-2000:])
    assert set(after) == set(before)
    for name, digest in after.items():
        if digest != before[name]:  # the new file completed just before the signal: it must be whole
            from edgeport.formats.graph_summary import summarize

            summarize(out / name)
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".")]
    if sig == signal.SIGINT:
        assert leftovers == [], leftovers  # Ctrl-C cleans up its temporary file
        assert "Traceback" not in proc.stderr.read()
    else:  # a kill cannot clean up: what remains is a hidden temp file no artifact glob picks up
        assert all(n.endswith(".part") for n in leftovers), leftovers
