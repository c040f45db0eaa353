"""Shared pieces of the bad-input battery: a small exported model, and the checks every case makes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from tests.conftest import TESTS

BYO = TESTS / "fixtures" / "byo_model.py"
SHAPE = "1,3,32,32"


def files_in(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def assert_clean_failure(result, code: int, *patterns: str, out: Path | None = None, before: set[str] | None = None):
    """The exact exit code, one `error:` line naming the problem (``patterns``, regex, case-insensitive),
    no traceback, and nothing new left in ``out``."""
    text = result.out + result.err
    assert result.code == code, f"exit {result.code}, expected {code}:\n{text}"
    assert "Traceback" not in text, text
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    if code != 2:  # usage errors come from typer's own box for malformed options, or ours
        assert len(errors) == 1, f"expected one error line:\n{result.err}"
    for pattern in patterns:
        assert re.search(pattern, text, re.I | re.S), f"{pattern!r} not in:\n{text}"
    if out is not None:
        assert files_in(out) == (before or set()), f"left in {out}: {files_in(out) - (before or set())}"


@pytest.fixture(scope="session")
def byo_onnx(tmp_path_factory) -> Path:
    """A good onnx-fp32 + tflite-int8 export of the BYO model to damage."""
    from edgeport.data import sample_inputs
    from edgeport.data.calibration import DataSplit, Samples
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    out = tmp_path_factory.mktemp("good")
    loaded = model_source.load(f"{BYO}:build", input_shape=(1, 3, 32, 32))
    calib = sample_inputs.image_like((32, 3, 32, 32), 32, seed=1).numpy()
    data = DataSplit(Samples(calib, None, "synthetic", True), Samples(calib[:8], None, "synthetic", True))
    run_export(loaded, parse_targets("onnx-fp32,tflite-int8"), out, data=data, validate=False)
    return out


@pytest.fixture
def state_dict_file(tmp_path):
    def make(mutate=lambda sd: sd, name="w.pt") -> Path:
        import importlib.util

        spec = importlib.util.spec_from_file_location("byo_for_reliability", BYO)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sd = module.build().state_dict()
        path = tmp_path / name
        torch.save(mutate(dict(sd)), path)
        return path

    return make
