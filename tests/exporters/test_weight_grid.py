"""onnx-int8's pair-bounded 8-bit weights (edgeport.quantization.weight_grid, ``--onnx-reduce-range pairs``, the
default on x86 without VNNI): the grid's arithmetic, the ORT kernel facts it rests on, and the written file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from onnx import numpy_helper as nh

from edgeport.data import sample_inputs
from edgeport.exporters import ExportRequest, QuantOptions, onnx_fp32, onnx_int8
from edgeport.models import source as model_source
from edgeport.pipeline.export_flow import prepare
from edgeport.quantization import weight_grid as grids
from edgeport.runtimes import cpu_features

SHAPE = (1, 3, 32, 32)


def test_pair_scales_keep_every_same_sign_pair_within_the_limit():
    w = 0.2 * torch.randn(32, 24, 1, 1, generator=torch.Generator().manual_seed(0))
    w[0, :2] = 1.0  # two equal neighbours: the pair bound is the 7-bit grid's scale for this channel
    w[1, 0], w[1, 1] = 1.0, -1.0  # opposite signs cannot saturate: plain 8-bit
    s = grids.channel_scales(w, "int8-pairs")
    plain = grids.channel_scales(w, "int8")
    assert torch.all(s >= plain) and torch.all(s <= 2 * plain + 1e-9)
    assert s[0] == pytest.approx(2.0 / 127) and s[1] == pytest.approx(float(plain[1]))
    q = torch.round(w / s.reshape(-1, 1, 1, 1)).to(torch.int8).numpy()
    assert grids.worst_pair(q) <= grids.PAIR_LIMIT
    assert grids.worst_pair(torch.round(w / plain.reshape(-1, 1, 1, 1)).to(torch.int8).numpy()) > grids.PAIR_LIMIT


def test_kxk_convs_are_bounded_in_both_reduction_orders_and_depthwise_ones_not_at_all():
    w = torch.zeros(2, 4, 3, 3)
    w[0, 0, 0, 0] = w[0, 1, 0, 0] = 1.0  # adjacent in (kh, kw, cin) order only
    w[1, 0, 0, 0] = w[1, 0, 0, 1] = 1.0  # adjacent in (cin, kh, kw) order only
    assert torch.allclose(grids.channel_scales(w, "int8-pairs"), torch.full((2,), 2.0 / 127))
    dw = torch.ones(8, 1, 3, 3)
    assert torch.allclose(grids.channel_scales(dw, "int8-pairs", groups=8), grids.channel_scales(dw, "int8"))
    assert torch.allclose(grids.channel_scales(dw, "int8-pairs", groups=1), 2 * grids.channel_scales(dw, "int8"))
    assert grids.worst_pair(np.full((8, 1, 3, 3), 127, np.int8), groups=8) == 0


def _qdq_conv(q: np.ndarray, group: int, k: int, stride: int = 1) -> onnx.ModelProto:
    """u8 input (scale 1, zero point 0) -> int8 conv weights q (scale 1) -> output requantized with a scale large
    enough that no exact result clips (127 steps up to 255 * 127 * K): what ORT fuses to one QLinearConv."""
    cout, cin = q.shape[0], q.shape[1] * group
    g = helper.make_graph([
        helper.make_node("DequantizeLinear", ["xq", "one", "zu"], ["x"]),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["x", "wd"], ["y"], group=group, pads=[k // 2] * 4, strides=[stride] * 2),
        helper.make_node("QuantizeLinear", ["y", "ys", "zs"], ["yq"]),
        helper.make_node("DequantizeLinear", ["yq", "ys", "zs"], ["out"]),
    ], "g", [helper.make_tensor_value_info("xq", TensorProto.UINT8, [1, cin, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [nh.from_array(np.float32(1.0), "one"), nh.from_array(np.uint8(0), "zu"), nh.from_array(q, "w"),
         nh.from_array(np.ones(cout, np.float32), "ws"), nh.from_array(np.zeros(cout, np.int8), "wz"),
         nh.from_array(np.float32(255 * q[0].size), "ys"), nh.from_array(np.int8(0), "zs")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 19)])


def _fused_and_exact(model: onnx.ModelProto, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import onnxruntime as ort

    def run(level):
        so = ort.SessionOptions()
        so.graph_optimization_level = level
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(None, {"xq": x})[0]

    # no optimization: DequantizeLinear, a float Conv and QuantizeLinear (exact: the sums are integers < 2^24)
    return run(ort.GraphOptimizationLevel.ORT_ENABLE_ALL), run(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)


@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (5, 1), (7, 1)])
def test_ort_depthwise_kernel_takes_full_8_bit_weights_without_saturating(k, stride):
    q = np.full((16, 1, k, k), 127, np.int8)
    fused, exact = _fused_and_exact(_qdq_conv(q, 16, k, stride), np.full((1, 16, 8, 8), 255, np.uint8))
    assert exact.max() == pytest.approx(255 * 127 * k * k, rel=0.01)  # a window of 255s, nothing clipped
    np.testing.assert_array_equal(fused, exact)


def test_ort_pairs_are_adjacent_reduction_indices_from_zero():
    """Pairs (0, 1), (2, 3) ... sum to 128, so nothing saturates; pairs (1, 2), (3, 4) ... would sum to 254. A
    kernel that paired differently would clip here. And on a CPU without VNNI plain 8-bit pairs do clip."""
    row = np.tile(np.array([1, 127, 127, 1], np.int8), 8)
    x = np.full((1, row.size, 8, 8), 255, np.uint8)
    fused, exact = _fused_and_exact(_qdq_conv(np.tile(row, (8, 1))[:, :, None, None], 1, 1), x)
    assert exact.max() == pytest.approx(255 * 64 * row.size, rel=0.02)  # the exact sum, not the output's clip
    np.testing.assert_array_equal(fused, exact)
    if not cpu_features.choose_reduce_range(cpu_features.detect()):
        pytest.skip("this CPU's kernels do not saturate (VNNI or ARM): the clipping control needs one that does")
    fused, exact = _fused_and_exact(_qdq_conv(np.full((8, row.size, 1, 1), 127, np.int8), 1, 1), x)
    assert np.abs(fused - exact).max() > 0.1 * np.abs(exact).max()


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> onnx.ModelProto:
    byo = Path(__file__).parents[1] / "fixtures" / "byo_model.py"  # stem 3x3, depthwise, grouped 1x1, SE, linear
    prep = prepare(model_source.load(f"{byo}:build", input_shape=SHAPE))
    return onnx_fp32.to_onnx(ExportRequest("byo", prep.program, prep.example, tmp_path_factory.mktemp("fp32")))


def test_the_written_file_holds_the_pair_bounded_grid(fp32):
    calibration = sample_inputs.image_like(SHAPE, 16, seed=3).numpy()
    model, report = onnx_int8.quantize(fp32, calibration, QuantOptions(onnx_reduce_range="pairs"))
    assert report.weight_grid == "int8-pairs" and not report.reduce_range
    assert report.pair_check["layers"] == 6 and report.pair_check["worst_pair"] <= grids.PAIR_LIMIT
    floats = {i.name: nh.to_array(i) for i in fp32.graph.initializer}
    held = {i.name: nh.to_array(i) for i in model.graph.initializer}
    dq = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    checked = 0
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        weight = dq[node.input[1]]
        name = next(k for k in floats if weight.input[0].startswith(k))
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        expected = grids.channel_scales(torch.from_numpy(floats[name]), "int8-pairs", group).numpy()
        np.testing.assert_allclose(held[weight.input[1]], expected, rtol=1e-6)
        checked += 1
    assert checked == 5


def test_accuracy_control_rebuilds_onnx_int8_from_its_own_grids_program(monkeypatch, tmp_path):
    """Export bias-corrects onnx-int8's graph for its own weight grid; accuracy control's rebuilds must start from that
    graph, not from the one corrected for plain 8-bit weights (which cost 7-bit files 7.6 dB on EfficientNet-Lite0)."""
    from types import SimpleNamespace

    from edgeport.pipeline.export_flow import GRID_PROGRAM
    from edgeport.quantization import accuracy_backends, accuracy_control

    seen = {}
    monkeypatch.setattr(accuracy_backends, "backend_for", lambda name, req: seen.setdefault(name, req))
    monkeypatch.setattr(accuracy_control, "control", lambda backend, *a, **k: backend)
    own_program, own_cache = object(), {}
    cache = {(GRID_PROGRAM, "int8-pairs"): (own_program, own_cache)}
    prep = SimpleNamespace(loaded=SimpleNamespace(name="m"), int8_program="shared", example=None, dynamic_batch=False)
    quant = QuantOptions(onnx_reduce_range="pairs", bias_correction=True)
    accuracy_backends.control_targets(prep, ["onnx-int8"], None, quant, None, 0.5, tmp_path, cache)
    assert seen["onnx-int8"].program is own_program and seen["onnx-int8"].cache is own_cache
    seen.clear()
    accuracy_backends.control_targets(prep, ["onnx-int8"], None, QuantOptions(onnx_reduce_range="off"), None, 0.5, tmp_path, cache)
    assert seen["onnx-int8"].program == "shared"  # plain 8-bit weights: the shared graph is onnx-int8's own
