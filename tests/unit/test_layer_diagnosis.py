"""edgeport.diagnose.per_layer on hand-made data (fast): the error sums, worst-first order, JSON, the rich table, the
QOperator refusal, the [quantize] per_layer recipe key and the report table."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeport.diagnose.per_layer import Diagnosis, ErrorSums, LayerError, worst_first, write
from edgeport.errors import UserError


def _row(pos, sqnr, e2s, name=None) -> LayerError:
    name = name or f"t{pos}"
    return LayerError(name, name, "Conv", f"node_{name}", 0.02, 0, sqnr, 10 ** (-sqnr / 20), e2s, pos)


def test_error_sums_over_chunks_equal_the_whole_and_rounding_is_a_third_of_a_step():
    rng = np.random.default_rng(0)
    f = rng.normal(size=10_000)
    scale = 0.05
    q = np.round(f / scale) * scale
    acc = ErrorSums()
    for part in range(4):
        sl = slice(part * 2500, (part + 1) * 2500)
        acc.add(f[sl], q[sl], q[sl] - f[sl])
    whole = 10 * math.log10(float(f @ f) / float((q - f) @ (q - f)))
    assert acc.sqnr_db() == pytest.approx(whole, rel=1e-12)
    assert acc.rel_rmse() == pytest.approx(10 ** (-whole / 20), rel=1e-12)
    assert acc.error_to_scale(scale) == pytest.approx(1 / math.sqrt(12), rel=0.03)  # uniform rounding error
    exact = ErrorSums()
    exact.add(f, f, np.zeros_like(f))
    assert exact.sqnr_db() == math.inf and exact.rel_rmse() == 0.0


def test_worst_first_puts_the_largest_local_error_first_and_unknown_last():
    rows = [_row(0, 40.0, 0.29), _row(1, 20.0, 0.31), _row(2, 35.0, 2.5), _row(3, 10.0, math.nan), _row(4, 25.0, 0.31)]
    assert [r.position for r in worst_first(rows)] == [2, 1, 4, 0, 3]
    assert [r.flagged for r in rows] == [False, False, True, False, False]


def test_json_is_worst_first_with_null_for_non_finite(tmp_path):
    d = Diagnosis({"onnx-int8": [_row(0, math.inf, 0.0), _row(1, 30.0, 0.9)]}, 7, "fashion-mnist:test", {"onnx-int8": 1.25})
    doc = json.loads(write(tmp_path, d).read_text())
    rows = doc["targets"]["onnx-int8"]
    assert [r["position"] for r in rows] == [1, 0] and rows[0]["flagged"] and rows[1]["sqnr_db"] is None
    assert doc["samples"] == 7 and doc["flag_error_to_scale"] == 0.7
    assert [p["position"] for p in d.series()["onnx-int8"]] == [0, 1]  # graph order for the plot


def test_rich_table_shows_the_ten_worst_with_the_flag():
    from rich.console import Console

    from edgeport.cli import per_layer_view

    rows = [_row(i, 40.0 - i, 0.3) for i in range(15)] + [_row(15, 33.0, 1.4, "bad")]
    console = Console(record=True, width=200)
    per_layer_view.show(console, Diagnosis({"tflite-int8": rows}, 10, "", {"tflite-int8": 2.0}))
    text = console.export_text()
    assert "10 worst of 16" in text and "node_bad" in text and "> 0.7" in text
    body = [line for line in text.splitlines() if "node_t" in line or "node_bad" in line]
    assert len(body) == 10 and "node_bad" in body[0]


def test_qoperator_model_is_refused_with_a_hint():
    from edgeport.diagnose.onnx_layers import diagnose_onnx

    x = helper.make_tensor_value_info("input", TensorProto.UINT8, [1, 1, 2, 2])
    y = helper.make_tensor_value_info("output", TensorProto.UINT8, [1, 1, 2, 2])
    node = helper.make_node("QLinearAdd", ["input", "s", "z", "input", "s", "z", "s", "z"], ["output"], domain="com.microsoft")
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("z", TensorProto.UINT8, [], [0])]
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], inits))
    with pytest.raises(UserError, match="QDQ") as err:
        diagnose_onnx(onnx.ModelProto(), model, np.zeros((1, 1, 2, 2), np.float32))
    assert "--onnx-format qdq" in str(err.value)


def test_recipe_per_layer_key_parses_and_rejects_a_non_boolean(tmp_path):
    from edgeport.pipeline import recipe

    path = tmp_path / "m.toml"
    path.write_text('name = "m"\n[model]\nname = "mobilenet_v2"\n[quantize]\nper_layer = true\n')
    assert recipe.parse(path).quantize.per_layer is True
    path.write_text('name = "m"\n[model]\nname = "mobilenet_v2"\n[quantize]\nper_layer = "yes"\n')
    with pytest.raises(UserError, match="per_layer"):
        recipe.parse(path)


def test_report_md_and_html_show_the_worst_layers_first(tmp_path):
    from edgeport import report
    from tests.pipeline.test_report_units import _manifest, _recipe_entry

    rows = [_row(i, 40.0 - i, 0.3).to_dict() for i in range(8)] + [_row(8, 33.0, 1.4, "features.3.conv.1").to_dict()]
    rows[0]["sqnr_db"] = None  # an exact tensor is null in the manifest
    report.write_all(tmp_path, _manifest(_recipe_entry("good", per_layer={"onnx-int8": rows})))
    md = (tmp_path / "report.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| onnx-int8 | ") and "| Conv |" in line]
    assert len(table) == 5 and "features.3.conv.1" in table[0] and "> 0.7" in table[0]
    html = (tmp_path / "report.html").read_text()
    assert "per-layer int8 error" in html and html.index("features.3.conv.1") < html.index(">t7<")
