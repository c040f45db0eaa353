"""Accuracy control on the trained Fashion-MNIST MobileNetV2-0.5, in the real runtimes.

A deliberately damaged calibration (one activation range shrunk 100x, so that tensor clips) must cost several points
of accuracy; accuracy control must find the few layers whose float fallback repairs it and stay within budget."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

MODEL = "fmnist_mobilenet_v2_x0_5"


@pytest.fixture(scope="module")
def setup():

    from edgeport import api
    from edgeport.data import labelled
    from edgeport.pipeline.export_flow import prepare
    from edgeport.quantization.accuracy_backends import control_set

    loaded = api.load_model(MODEL)
    data = api.load_data(loaded, "fashion-mnist", calib_samples=64, val_samples=100, seed=0)
    prep = prepare(loaded)
    cset = control_set(prep, labelled.load("fashion-mnist"), samples=600)
    return prep, data, cset


def _req(prep, data, out: Path):
    from edgeport.exporters import ExportRequest, QuantOptions

    return ExportRequest(MODEL, prep.program, prep.example, out, False, data.calibration.inputs, QuantOptions(), {})


def test_damaged_tflite_range_is_repaired_by_few_float_layers(setup, tmp_path):
    from edgeport.exporters import tflite, tflite_ptq
    from edgeport.formats.int8_coverage import coverage_of
    from edgeport.quantization.accuracy_backends import TfliteBackend
    from edgeport.quantization.accuracy_control import control

    prep, data, cset = setup
    req = _req(prep, data, tmp_path)
    ranges = tflite_ptq.calibrated_ranges(tflite.calibrated_model(req))
    victim = next(n for n in list(ranges)[len(ranges) // 3:] if "convolution" in n and ranges[n][1] > 1)
    lo, hi = ranges[victim]
    damaged = {victim: (lo / 100, hi / 100)}

    class Damaged(TfliteBackend):
        def build(self, fallbacks, dest):
            made = tflite.export_int8(dataclasses.replace(self.req, out_dir=dest.parent), tuple(fallbacks), ranges=damaged)
            made.replace(dest)
            return dest

    result = control(Damaged(req), cset, 0.5, tmp_path / "final.tflite", bench=False)
    assert result.float_score - result.int8_score > 2.0, "the damage should cost accuracy"
    assert result.within_budget, result.summary()
    assert 1 <= len(result.kept_float) <= 4, result.summary()
    floats = set(coverage_of(tmp_path / "final.tflite").float_op_names)
    assert {c.fallback for c in result.kept_float} <= floats
    # the damaged tensor's producer must stay float (measured: it and the residual ADD reading it are kept)
    assert victim in {c.fallback for c in result.kept_float}, result.summary()


def test_onnx_budget_zero_keeps_something_float_or_matches(setup, tmp_path):
    """A zero budget on the agreement metric forces the search to work; whatever it keeps float is in the graph."""
    from edgeport.formats.int8_coverage import coverage_of
    from edgeport.quantization.accuracy_backends import OnnxBackend
    from edgeport.quantization.accuracy_control import ControlSet, control

    prep, data, cset = setup
    small = ControlSet(cset.inputs[:200], None, cset.float_logits[:200], "agreement")
    backend = OnnxBackend(_req(prep, data, tmp_path))
    backend.candidates = lambda full=backend.candidates: full()[:6]  # keep the test short: the first 6 layers
    result = control(backend, small, 0.0, tmp_path / "final.onnx", bench=False)
    assert result.float_score == 100.0
    if result.int8_score < 100.0:
        assert result.kept_float or not result.within_budget
    floats = set(coverage_of(tmp_path / "final.onnx").float_op_names)
    assert {c.fallback for c in result.kept_float} <= floats
