"""Output-aware activation ranges (edgeport.quantization.range_search): the search on a trained model, and each
int8 exporter finding the searched tensors among its own by their values."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from edgeport.quantization import range_search as rs


def test_signatures_match_by_count_and_values_not_by_name():
    a = rs.Signature(1000, 0.0, 6.0, 2.0)
    assert a.matches(rs.Signature(1000, 0.0, 6.0 + 1e-4, 2.0 + 1e-3))
    assert not a.matches(rs.Signature(1001, 0.0, 6.0, 2.0))  # another shape
    assert not a.matches(rs.Signature(1000, 0.0, 6.0, 2.1))  # another ReLU6 output: same range, other mean
    ranges = {"x": (0.0, 6.0), "x_reshaped": (0.0, 6.0), "y": (0.0, 6.0), "z": (-2.0, 4.0)}
    sigs = {"x": a, "x_reshaped": a, "y": rs.Signature(1000, 0.0, 6.0, 3.0), "z": rs.Signature(50, -2.0, 4.0, 0.5)}
    chosen = [rs.Shrink("n1", 0.5, a, 1.0), rs.Shrink("n2", 0.8, rs.Signature(50, -2.0, 4.0, 0.5), 0.1),
              rs.Shrink("n3", 0.9, rs.Signature(7, 0.0, 1.0, 0.5), 0.1)]
    out, unmatched = rs.apply(ranges, sigs, chosen)
    assert out == {"x": (0.0, 3.0), "x_reshaped": (0.0, 3.0), "y": (0.0, 6.0), "z": pytest.approx((-1.6, 3.2))}
    assert unmatched == ["n3"]


def test_histogram_signatures_recover_count_and_mean_within_a_bin():
    from edgeport.quantization.ranges import RangeCollector

    x = np.random.default_rng(0).gamma(2.0, 1.0, (4, 1000)).astype(np.float32)
    c = RangeCollector("mse")
    for part in x:
        c.collect({"t": part[None]})
    exact = c.signatures()["t"]
    binned = rs.histogram_signatures(c._histograms.histogram_dict)["t"]
    assert exact.count == binned.count == x.size
    assert exact.mean == pytest.approx(float(x.mean(dtype=np.float64)), rel=1e-6)
    assert binned.matches(exact)


@pytest.fixture(scope="module")
def trained():
    from edgeport import api
    from edgeport.pipeline.export_flow import prepare

    loaded = api.load_model("fmnist_mobilenet_v3_small")
    data = api.load_data(loaded, "fashion-mnist", calib_samples=16, val_samples=4, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return loaded, prepare(loaded), data.calibration.inputs


@pytest.mark.slow
def test_search_keeps_only_shrinks_that_lower_the_simulated_error_and_leaves_the_graph_alone(trained):
    _, prep, calib = trained
    before = {k: v.clone() for k, v in prep.fused.state_dict().items()}
    report = rs.search(prep.fused, calib, method="mse", top=4)
    assert report.searched == 4 and report.tensors > 20
    assert report.sqnr_after_db >= report.sqnr_before_db
    assert report.sqnr_after_db - report.sqnr_before_db == pytest.approx(sum(s.gain_db for s in report.chosen), abs=1e-6)
    assert all(s.scale in rs.SCALES and s.gain_db >= rs.MIN_GAIN_DB for s in report.chosen)
    assert all(torch.equal(before[k], v) for k, v in prep.fused.state_dict().items())
    assert report.to_dict()["chosen"] == [{"tensor": s.tensor, "scale": s.scale, "gain_db": round(s.gain_db, 3)}
                                          for s in report.chosen]


@pytest.fixture(scope="module")
def forced(trained):
    """A report that narrows three tensors of the fused graph to half their range, whatever the search would pick."""
    _, prep, calib = trained
    x = torch.from_numpy(calib)
    points = rs._points(prep.fused)
    ranges, sigs = rs._observe(prep.fused, points, x, 1, "mse", 99.99)
    kinds = {}
    for p in points:  # one ReLU-like output, one add, one conv/linear output: different ops in every backend
        kinds.setdefault(str(p.target).split(".")[1].rstrip("_"), p.name)
    # (not h-swish: the TFLite targets write it as x * relu6(x + 3) with the 1/6 folded into the next conv, so no
    # tensor of theirs holds its values; the search leaves such a tensor unmatched)
    names = [kinds[k] for k in ("hardtanh", "relu", "add", "conv2d") if k in kinds][:3]
    assert len(names) >= 2, kinds
    chosen = [rs.Shrink(n, 0.5, sigs[n], 1.0) for n in names]
    return ranges, rs.RangeSearchReport("mse", 8, len(points), len(chosen), 0.0, 0.0, 0.0, chosen)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tflite-int8", "onnx-int8"])
def test_each_exporter_finds_the_searched_tensors_by_their_values(trained, forced, target, tmp_path):
    from edgeport.exporters import RANGE_SEARCH, RANGE_SEARCH_APPLIED, ExportRequest, QuantOptions, onnx_int8, tflite

    loaded, prep, calib = trained
    ranges, report = forced
    req = ExportRequest(loaded.name, prep.program, prep.example, tmp_path, False, calib, QuantOptions(method="mse"))
    if target == "tflite-int8":
        plain = tflite.method_ranges(req)
        req.cache[RANGE_SEARCH] = report
        narrowed = tflite.method_ranges(req)
        applied = req.cache[RANGE_SEARCH_APPLIED][target]
    else:
        fp32 = onnx_int8.fp32_graph(req)
        _, plain_report = onnx_int8.quantize(fp32, calib, req.quant, ranges_cache=(cache := {}))
        _, rep = onnx_int8.quantize(fp32, calib, req.quant, ranges_cache=cache, shrinks=report.chosen)
        plain = {k: tuple(map(float, v.range_value)) for k, v in cache[("onnx-ranges", "mse", 99.99, None)][0].items()}
        narrowed = {k: tuple(map(float, v.range_value)) for k, v in
                    cache[("onnx-ranges", "mse", 99.99, id(report.chosen))][0].items()}
        applied = rep.range_search
        assert plain_report.range_search is None
    assert applied["unmatched"] == [] and applied["narrowed"] == {s.tensor: 0.5 for s in report.chosen}
    changed = [k for k in plain if not np.allclose(plain[k], narrowed[k])]
    assert len(changed) >= len(report.chosen)
    for k in changed:  # exactly halved, and each was one of the three chosen tensors' ranges (by value)
        assert np.allclose(narrowed[k], (plain[k][0] * 0.5, plain[k][1] * 0.5), rtol=1e-6)
        assert any(np.allclose(plain[k], ranges[s.tensor], rtol=1e-2, atol=1e-3) for s in report.chosen), k
