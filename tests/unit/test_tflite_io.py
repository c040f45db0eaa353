"""TFLite I/O details: written files carry a SignatureDef (onnx2tf 1.28's float file has none), so LiteRT's
signature runner and tools that need one (ai-edge-quantizer) take them; int16 (16x8) files are read through their
scale and are named as int16 in the coverage line."""

import numpy as np
import pytest


def _tiny_tflite_without_signature() -> bytes:
    tf = pytest.importorskip("tensorflow")
    from ai_edge_litert import schema_py_generated as schema

    from edgeport.exporters.tflite_compact import _repack

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def f(x):
        return tf.nn.relu(x * 2.0 + 1.0)

    conv = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    tree = schema.ModelT.InitFromPackedBuf(bytearray(conv.convert()), 0)
    tree.signatureDefs = []
    return _repack(schema, tree, 4096)


def test_a_file_without_signature_gets_serving_default_over_its_renamed_io():
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.exporters.tflite_compact import SIGNATURE_KEY, read_metadata, with_metadata

    bare = _tiny_tflite_without_signature()
    assert Interpreter(model_content=bare).get_signature_list() == {}
    written = with_metadata(bare, '{"a": 1}')
    it = Interpreter(model_content=written)
    assert it.get_signature_list() == {SIGNATURE_KEY: {"inputs": ["input"], "outputs": ["output"]}}
    x = np.array([[-2.0, -0.25, 0.5, 3.0]], np.float32)
    out = it.get_signature_runner(SIGNATURE_KEY)(input=x)["output"]
    assert np.array_equal(out, np.maximum(x * 2 + 1, 0))
    assert read_metadata(written) == '{"a": 1}'
    again = with_metadata(written, '{"a": 2}')  # a signature already there is kept, not doubled
    assert Interpreter(model_content=again).get_signature_list() == it.get_signature_list()


def test_int16_io_goes_through_its_scale_like_int8():
    """16-bit activation files (ai-edge-quantizer's wi8_ai16) have int16 inputs and outputs with a scale: read and
    written through it, not cast (which gave -45 dB on a correct file)."""
    from edgeport.runtimes.litert_runner import _quantized

    assert _quantized({"dtype": np.int16, "quantization": (2.9e-05, 0)})
    assert _quantized({"dtype": np.int8, "quantization": (0.1, -3)}) and _quantized({"dtype": np.uint8, "quantization": (0.1, 3)})
    assert not _quantized({"dtype": np.float32, "quantization": (0.0, 0)})
    assert not _quantized({"dtype": np.int32, "quantization": (0.0, 0)})  # plain integers (ids): cast, not scaled


def test_int16_activation_ops_are_counted_as_integer_and_named_as_int16(monkeypatch, tmp_path):
    """A 16x8 file's ops are integer kernels (not float), but the coverage line and record say int16 activations."""
    from edgeport.formats import graph_summary, int8_coverage
    from edgeport.formats.graph_summary import TfliteOp

    ops = [TfliteOp("CONV_2D", "int16", "int16", "a"), TfliteOp("CONV_2D", "int8", "int8", "b"),
           TfliteOp("FULLY_CONNECTED", "float32", "float32", "c")]
    monkeypatch.setattr(graph_summary, "tflite_ops", lambda path: ops)
    cov = int8_coverage.tflite_coverage(tmp_path / "x.tflite")
    assert (cov.int8_total, cov.float_total, dict(cov.int16_ops)) == (2, 1, {"CONV_2D": 1})
    assert cov.line() == "int8 2/3 compute ops (67 %, 1 of them on int16 activations); float: FULLY_CONNECTED x1"
    assert cov.to_dict()["int16_activation_ops"] == {"CONV_2D": 1}
    plain = int8_coverage.Coverage(cov.int8_ops, cov.float_ops, cov.float_op_names, cov.float_op_types, format="tflite")
    assert "int16" not in plain.line() and "int16_activation_ops" not in plain.to_dict()  # int8 files: as before
