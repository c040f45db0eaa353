"""edgeport.formats.layer_names (fast): module paths for weighted ops, the neighbour rule for the others, Q/DQ looked
through, and TFLite filters matched to ONNX weights by their per-output-channel norms in any layout."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from edgeport.formats.layer_names import OpNode, _match, name_ops, onnx_names, onnx_weight_norms


def _op(key, op, inputs, module=None):
    return OpNode(key, op, tuple(inputs), (key,), module)


def test_residual_add_is_named_after_its_branch_and_pad_after_its_conv():
    nodes = [
        _op("pad", "PAD", ["input"]),
        _op("c0", "CONV_2D", ["pad"], "features.0.0"),
        _op("c1", "CONV_2D", ["c0"], "features.1.conv.0"),
        _op("c2", "DEPTHWISE_CONV_2D", ["c1"], "features.1.conv.1"),
        _op("add", "ADD", ["c0", "c2"]),  # skip from c0, branch from c2: named after the branch
        _op("mean", "MEAN", ["add"]),
        _op("fc", "FULLY_CONNECTED", ["mean"], "classifier.1"),
    ]
    names = name_ops(nodes)
    assert names["pad"] == "PAD before features.0.0"
    assert names["c2"] == "features.1.conv.1"
    assert names["add"] == "ADD after features.1.conv.1"
    assert names["mean"] == "MEAN after features.1.conv.1"  # the ADD's anchor carries on
    assert names["fc"] == "classifier.1"


def test_op_with_no_named_producer_keeps_its_op_type():
    assert name_ops([_op("a", "ADD", ["x", "y"])]) == {"a": "ADD"}


def test_a_pad_feeding_two_ops_is_not_attributed_to_one():
    nodes = [_op("p", "PAD", ["x"]), _op("c", "CONV_2D", ["p"], "a"), _op("d", "CONV_2D", ["p"], "b")]
    assert name_ops(nodes)["p"] == "PAD"


def _qdq_model():
    """x -Q-DQ-> Conv(conv.weight via DQ) -> Relu -Q-DQ-> Add(x) : the shape ORT's QDQ quantizer leaves."""
    w = numpy_helper.from_array(np.ones((2, 2, 1, 1), np.int8), "conv.weight_quantized")
    s = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = numpy_helper.from_array(np.array(0, np.int8), "z")
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["x_QuantizeLinear_Output"], name="qx"),
        helper.make_node("DequantizeLinear", ["x_QuantizeLinear_Output", "s", "z"], ["x_DequantizeLinear_Output"], name="dqx"),
        helper.make_node("DequantizeLinear", ["conv.weight_quantized", "s", "z"], ["conv.weight_DequantizeLinear_Output"], name="dqw"),
        helper.make_node("Conv", ["x_DequantizeLinear_Output", "conv.weight_DequantizeLinear_Output"], ["c"], name="node_conv2d"),
        helper.make_node("Relu", ["c"], ["r"], name="node_relu"),
        helper.make_node("QuantizeLinear", ["r", "s", "z"], ["r_QuantizeLinear_Output"], name="qr"),
        helper.make_node("DequantizeLinear", ["r_QuantizeLinear_Output", "s", "z"], ["r_DequantizeLinear_Output"], name="dqr"),
        helper.make_node("Add", ["x_DequantizeLinear_Output", "r_DequantizeLinear_Output"], ["y"], name="node_add"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 2, 2])], [w, s, z])
    return helper.make_model(graph)


def test_onnx_names_look_through_quantize_dequantize():
    names = onnx_names(_qdq_model())
    assert names["node_conv2d"] == "conv"
    assert names["node_relu"] == "Relu after conv"
    assert names["node_add"] == "Add after conv"
    assert "qx" not in names and "dqw" not in names


def _onnx_with_weights(weights: dict[str, np.ndarray]):
    inits = [numpy_helper.from_array(w.astype(np.float32), f"{k}.weight") for k, w in weights.items()]
    graph = helper.make_graph([], "g", [], [], inits)
    return helper.make_model(graph)


def test_tflite_filters_match_their_onnx_weight_in_any_layout_and_after_int8_rounding():
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(8, 4, 3, 3))  # OIHW
    other = rng.normal(size=(8, 4, 3, 3))  # same shape, different layer
    dw = rng.normal(size=(6, 1, 3, 3))
    fc = rng.normal(size=(10, 8))
    ref = onnx_weight_norms(_onnx_with_weights({"a.conv": conv, "b.conv": other, "dw": dw, "fc": fc}))

    ohwi = conv.transpose(0, 2, 3, 1)[:, :, :, ::-1]  # TFLite layout, input channels reordered too
    scale = np.abs(ohwi).reshape(8, -1).max(axis=1) / 127
    rounded = np.round(ohwi / scale[:, None, None, None]) * scale[:, None, None, None]
    assert _match(rounded, "CONV_2D", ref) == "a.conv"
    assert _match(other.transpose(0, 2, 3, 1), "CONV_2D", ref) == "b.conv"
    assert _match(dw.transpose(1, 2, 3, 0), "DEPTHWISE_CONV_2D", ref) == "dw"  # 1HWC
    assert _match(fc, "FULLY_CONNECTED", ref) == "fc"
    assert _match(rng.normal(size=(8, 3, 3, 4)), "CONV_2D", ref) is None  # an unknown filter is not guessed


def test_a_constant_factor_folded_into_the_weights_still_matches():
    """The h-swish rewrite folds 1/6 (or 1/36) into the next conv of the TFLite graph only."""
    rng = np.random.default_rng(1)
    conv = rng.normal(size=(16, 8, 1, 1))
    ref = onnx_weight_norms(_onnx_with_weights({"features.4.block.3.0": conv, "x": rng.normal(size=(16, 8, 1, 1))}))
    assert _match(conv.transpose(0, 2, 3, 1) / 36, "CONV_2D", ref) == "features.4.block.3.0"


def test_each_module_names_one_op_in_graph_order():
    """Two layers with identical weights (e.g. copies): the first op takes the first module, the second the other."""
    w = np.random.default_rng(2).normal(size=(4, 4, 3, 3))
    ref = onnx_weight_norms(_onnx_with_weights({"a": w, "b": w.copy()}))
    first = _match(w.transpose(0, 2, 3, 1), "CONV_2D", ref)
    second = _match(w.transpose(0, 2, 3, 1), "CONV_2D", ref, taken={first})
    assert {first, second} == {"a", "b"}


def test_a_single_output_channel_is_no_fingerprint():
    ref = onnx_weight_norms(_onnx_with_weights({"a": np.ones((1, 4, 3, 3)), "b": np.ones((1, 2, 3, 3))}))
    assert _match(np.ones((1, 3, 3, 4)), "CONV_2D", ref) is None
    only = onnx_weight_norms(_onnx_with_weights({"a": np.ones((1, 4, 3, 3))}))
    assert _match(np.ones((1, 3, 3, 4)), "CONV_2D", only) == "a"


def test_repeated_neighbour_names_are_ranked_so_each_names_one_op():
    nodes = [_op("c", "CONV_2D", ["x"], "conv"), _op("m1", "MUL", ["c"]), _op("m2", "MUL", ["m1"])]
    assert name_ops(nodes) == {"c": "conv", "m1": "MUL after conv", "m2": "MUL after conv #2"}


def test_requests_select_by_key_name_case_insensitive_name_or_module_prefix():
    from edgeport.errors import UserError
    from edgeport.formats.layer_names import resolve

    names = {"n0": "features.3.conv.0.0", "n1": "features.3.conv.1.0", "n2": "Add after features.3.conv.1.0",
             "n3": "features.30.conv.0.0"}
    assert resolve(names, ["features.3"]) == ["n0", "n1"]  # not features.30, not the weightless Add
    assert resolve(names, ["ADD after features.3.conv.1.0", "n3"]) == ["n2", "n3"]
    try:
        resolve(names, ["features.3.conv.1.O"])
    except UserError as err:
        assert "features.3.conv.1.0" in err.hint and "--allow-float" in err.message
    else:
        raise AssertionError("a misspelt layer must be refused")
