"""A target and a file format registered from outside the package go through export -> validate -> inspect ->
bench like the built-in ones, with no edit inside edgeport/ (tests/api/dummy_format.py is all of it)."""

from __future__ import annotations

import pytest
import torch

import edgeport
from edgeport.exporters import target_names
from edgeport.formats import format_of
from tests.api import dummy_format


def _tiny():
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 5)).eval()


@pytest.fixture
def ep_target():
    dummy_format.register()
    yield
    dummy_format.unregister()


def test_outside_target_runs_through_every_stage(tmp_path, ep_target):
    assert "ep-fp32" in target_names() and format_of("x.ep").name == "ep"
    torch.manual_seed(0)
    result = edgeport.export(_tiny(), ["ep-fp32", "onnx-fp32"], input_shape=(1, 3, 16, 16), out=tmp_path, delegation=True)
    ep = result.artifact("ep-fp32")
    assert ep.path == tmp_path / "sequential.fp32.ep" and ep.path.is_file() and len(ep.sha256) == 64
    assert ep.parity.judged and ep.parity.passed and ep.parity.metrics["max_abs"] < 1e-5
    assert ep.delegation is None  # the format reports none: said, not invented
    assert result.passed and result.parity_file.is_file()

    checked = edgeport.validate([ep.path], _tiny_trained(result), input_shape=(1, 3, 16, 16), report=tmp_path / "v.json")
    assert checked.artifacts[0].target == "ep-fp32" and checked.artifacts[0].parity.passed

    summary = edgeport.inspect(ep.path)
    assert summary.format == "ep" and summary.to_dict()["inputs"][0]["shape"] == (1, 3, 16, 16)
    assert any("conv" in op for op in summary.ops) and not any("batch_norm" in op for op in summary.ops)  # fused

    timings = edgeport.bench([ep.path], threads=(1,), budget_s=0.2)
    assert timings[0].runtime == "torch.export" and timings[0].target == "ep-fp32" and timings[0].p50_ms > 0


def _tiny_trained(result):
    """The very module export used (validate compares the file with the model it came from)."""
    return result.run.prep.loaded.module
