"""Activation range methods (edgeport.quantization.ranges) on synthetic distributions with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.errors import UserError
from edgeport.quantization import ranges as cr


@pytest.fixture(scope="module")
def outliers() -> np.ndarray:
    """A unit Gaussian with 0.01 % far outliers on both sides (what activation tails look like)."""
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, 200_000).astype(np.float32)
    x[:10] = rng.uniform(40, 80, 10)
    x[10:20] = -rng.uniform(40, 80, 10)
    return x


def _ranges(method: str, x: np.ndarray, chunks: int = 4, **kw) -> tuple[float, float]:
    c = cr.RangeCollector(method, **kw)
    for part in np.array_split(x, chunks):
        c.collect({"t": part.reshape(1, -1)})
    return c.ranges()["t"]


def test_minmax_is_the_observed_extremes_across_chunks(outliers):
    assert _ranges("minmax", outliers) == (float(outliers.min()), float(outliers.max()))


def test_mse_range_is_inside_minmax_and_has_lower_error_than_minmax_and_a_narrow_range(outliers):
    lo, hi = _ranges("mse", outliers)
    mn, mx = float(outliers.min()), float(outliers.max())
    assert mn < lo < 0 < hi < mx
    measured = cr.quantization_mse(outliers, lo, hi)
    assert measured < cr.quantization_mse(outliers, mn, mx)
    assert measured < cr.quantization_mse(outliers, -0.5, 0.5)  # clipping most of the Gaussian is worse
    # and no symmetric clip on a fine grid does better than ~2 % over what the search found
    grid = min(cr.quantization_mse(outliers, -t, t) for t in np.linspace(1, 80, 400))
    assert measured <= grid * 1.02


def test_expected_mse_tracks_measured_error(outliers):
    hist, edges = np.histogram(outliers, 2048, range=(-80, 80))
    for lo, hi in ((-80, 80), (-8, 8), (-2, 2)):
        model, measured = cr.expected_mse(hist, edges, lo, hi), cr.quantization_mse(outliers, lo, hi)
        assert model == pytest.approx(measured, rel=0.2)


def test_mse_without_outliers_keeps_nearly_the_full_range_of_a_uniform():
    x = np.random.default_rng(1).uniform(-1, 1, 100_000).astype(np.float32)
    lo, hi = _ranges("mse", x)
    assert lo < -0.97 and hi > 0.97  # clipping a uniform costs more than it saves


def test_percentile_clips_both_tails(outliers):
    lo, hi = _ranges("percentile", outliers)
    assert float(outliers.min()) < lo < -3 and 3 < hi < float(outliers.max())
    narrower = _ranges("percentile", outliers, percentile=99.0)
    assert lo < narrower[0] < 0 < narrower[1] < hi


def test_entropy_clips_the_outliers(outliers):
    lo, hi = _ranges("entropy", outliers)
    assert float(outliers.min()) < lo < 0 < hi < float(outliers.max())


def test_every_range_contains_zero():
    x = np.random.default_rng(2).uniform(2, 6, 10_000).astype(np.float32)  # all positive (a ReLU6 output)
    for method in cr.METHODS:
        lo, hi = _ranges(method, x)
        assert lo == 0.0 and 2 < hi <= 6.0, method


def test_constant_zero_tensor_gives_an_empty_range():
    for method in cr.METHODS:
        assert _ranges(method, np.zeros(1000, np.float32)) == (0.0, 0.0), method


def test_unknown_method_and_bad_percentile_are_user_errors():
    with pytest.raises(UserError, match="unknown calibration method"):
        cr.RangeCollector("kl")
    with pytest.raises(UserError, match="percentile"):
        cr.RangeCollector("percentile", percentile=0)


def test_non_finite_values_are_a_user_error():
    with pytest.raises(UserError, match="NaN"):
        cr.RangeCollector("mse").collect({"t": np.array([1.0, np.nan], np.float32)})


@pytest.mark.slow
def test_the_four_methods_give_different_tflite_ranges_on_a_trained_model(tmp_path):
    """tflite-int8 on the trained MobileNetV2-0.5: each method's ranges differ from every other's, the input keeps
    TFLite's calibrated range, and the exported int8 file carries the method's ranges."""
    from dataclasses import replace

    from edgeport import api
    from edgeport.exporters import ExportRequest, QuantOptions, tflite, tflite_ptq
    from edgeport.pipeline.export_flow import prepare

    loaded = api.load_model("fmnist_mobilenet_v2_x0_5")
    data = api.load_data(loaded, "fashion-mnist", calib_samples=64, val_samples=10, seed=0)
    prep = prepare(loaded)
    req = ExportRequest(loaded.name, prep.program, prep.example, tmp_path, False, data.calibration.inputs)
    calibrated = tflite_ptq.calibrated_ranges(tflite.calibrated_model(req))
    found = {"minmax": calibrated}
    for method in ("percentile", "entropy", "mse"):
        found[method] = tflite.method_ranges(replace(req, quant=QuantOptions(method=method)))
        assert tflite.method_ranges(replace(req, quant=QuantOptions(method=method))) is found[method]  # cached per run
        assert "serving_default_input:0" not in found[method]  # the input keeps its calibrated range
        assert set(found[method]) == set(calibrated) - {"serving_default_input:0"}
    names = sorted(found["mse"])
    for a in found:
        for b in found:
            if a < b:
                differ = sum(not np.allclose(found[a][n], found[b][n], rtol=1e-3, atol=1e-6) for n in names)
                assert differ > len(names) // 4, (a, b, differ, len(names))
    for method in ("percentile", "mse"):  # clipping methods: never wider than min/max
        assert all(found[method][n][0] >= calibrated[n][0] - 1e-6 and found[method][n][1] <= calibrated[n][1] + 1e-6
                   for n in names), method
    mse_req = replace(req, quant=QuantOptions(method="mse"), out_dir=tmp_path / "mse")
    (tmp_path / "mse").mkdir()
    path = tflite.export_int8(mse_req)
    from ai_edge_litert.interpreter import Interpreter

    details = {d["name"]: d["quantization"] for d in Interpreter(model_path=str(path)).get_tensor_details()}
    n = next(n for n in names if n in details and details[n][0] > 0 and not np.allclose(found["mse"][n], calibrated[n], rtol=1e-2))
    lo, hi = found["mse"][n]
    assert details[n][0] == pytest.approx((hi - lo) / 255, rel=2e-2)  # the file's scale is the MSE range's
