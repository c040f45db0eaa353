"""TFLite targets through onnx2tf -> SavedModel -> TFLiteConverter, checked in ai-edge-litert."""

import numpy as np
import pytest

from edgeport.data import sample_inputs
from edgeport.errors import UserError
from edgeport.exporters import ExportRequest, QuantOptions, parse_targets
from edgeport.formats.graph_summary import summarize
from edgeport.formats.int8_coverage import coverage_of
from edgeport.models import source as model_source
from edgeport.pipeline.export_flow import prepare
from edgeport.runtimes import open_runtime
from edgeport.validation.parity import compare

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def prepared():
    from pathlib import Path

    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    return prepare(model_source.load(f"{byo}:build", input_shape=SHAPE))


@pytest.fixture(scope="module")
def exported(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")
    calib = sample_inputs.image_like((48, *SHAPE[1:]), 48, seed=3).numpy()
    req = ExportRequest("byo", prepared.program, prepared.example, out, False, calib, QuantOptions())
    paths = {t.name: t.export(req) for t in parse_targets("tflite-fp32,tflite-fp16,tflite-int8")}
    held_out = sample_inputs.image_like((24, *SHAPE[1:]), 24, seed=11).numpy()
    reference, _ = prepared.outputs(held_out)
    return req, paths, held_out, reference


def test_files_are_nhwc_without_layout_transposes_at_the_input(exported):
    _, paths, _, _ = exported
    for target, path in paths.items():
        s = summarize(path)
        assert s.inputs[0].shape == (1, 32, 32, 3), target
        assert s.ops.get("TRANSPOSE", 0) <= 3  # only the channel shuffle's own transpose(s), no NCHW<->NHWC pairs


def test_fp32_and_fp16_match_torch(exported):
    _, paths, x, ref = exported
    p32 = compare(ref, open_runtime(paths["tflite-fp32"]).run(x))
    assert p32.max_abs <= 1e-4, p32
    p16 = compare(ref, open_runtime(paths["tflite-fp16"]).run(x))
    assert p16.max_abs <= 1e-2 and p16.sqnr_db > 40, p16
    assert summarize(paths["tflite-fp16"]).weight_dtypes["float16"] > 1000


def test_int8_is_fully_integer_and_close(exported):
    _, paths, x, ref = exported
    s = summarize(paths["tflite-int8"])
    assert s.inputs[0].dtype == "int8" and s.outputs[0].dtype == "int8" and s.inputs[0].scale > 0
    cov = coverage_of(paths["tflite-int8"])
    assert cov.float_total == 0 and not cov.critical_float(), cov.line()
    # h-swish is computed with ReLU6 for XNNPACK (edgeport.graph.rewrites.for_xnnpack_int8): no HARD_SWISH
    assert cov.int8_ops["CONV_2D"] == 4 and cov.int8_ops.get("HARD_SWISH", 0) == 0 and cov.int8_ops["MUL"] >= 2
    p = compare(ref, open_runtime(paths["tflite-int8"]).run(x))
    assert p.sqnr_db >= 25 and p.top1_agreement >= 0.9, p
    assert paths["tflite-int8"].stat().st_size < paths["tflite-fp32"].stat().st_size


@pytest.mark.parametrize("io", ["uint8", "float32"])
def test_int8_io_dtypes(exported, io, tmp_path):
    from dataclasses import replace

    req, _, x, ref = exported
    req2 = replace(req, out_dir=tmp_path, quant=QuantOptions(io_dtype=io), cache=req.cache)
    path = parse_targets("tflite-int8")[0].export(req2)
    s = summarize(path)
    assert s.inputs[0].dtype == io
    assert coverage_of(path).critical_float() == []
    assert compare(ref, open_runtime(path).run(x)).sqnr_db >= 25


def test_int8_without_calibration_is_refused(prepared, tmp_path):
    req = ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, None)
    with pytest.raises(UserError, match="calibration"):
        parse_targets("tflite-int8")[0].export(req)
    assert not list(tmp_path.iterdir())


def test_float_int8_coverage_is_detected(exported):
    _, paths, _, _ = exported
    cov = coverage_of(paths["tflite-fp32"])
    assert cov.int8_total == 0 and "CONV_2D" in {t for t in cov.float_op_types}
    assert len(cov.critical_float()) >= 6  # 4 conv + 1 depthwise + 1 FC (+ adds)


def _vector_positions(data: bytes) -> tuple[list[int], list[int]]:
    """(positions of each tensor's zero-point vector, positions of each non-empty buffer's bytes).

    The generated reader has no accessor for where a vector lies, so read the vtable slots directly:
    slot = 4 + 2 * field index (schema.fbs: QuantizationParameters.zero_point is field 3, Buffer.data field 0)."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAs(data, 0)
    zero_points = []
    for g in range(m.SubgraphsLength()):
        sg = m.Subgraphs(g)
        for t in range(sg.TensorsLength()):
            q = sg.Tensors(t).Quantization()
            if q is not None and q.ZeroPointLength() > 1:
                zero_points.append(q._tab.Vector(q._tab.Offset(10)))
    buffers = []
    for b in range(m.BuffersLength()):
        buf = m.Buffers(b)
        if buf.DataLength():
            buffers.append(buf._tab.Vector(buf._tab.Offset(4)))
    return zero_points, buffers


def test_int8_quantization_vectors_are_stored_once_without_changing_outputs(exported):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from edgeport.exporters.tflite_compact import share_quantization_vectors

    _, paths, _, _ = exported
    shipped = paths["tflite-int8"].read_bytes()
    # the same model as the generated object API writes it: one vector per tensor, as TFLiteConverter does
    builder = flatbuffers.Builder(0)
    builder.Finish(schema.ModelT.InitFromPackedBuf(bytearray(shipped), 0).Pack(builder), file_identifier=b"TFL3")
    fat = bytes(builder.Output())
    compact = share_quantization_vectors(fat)
    zp_fat, _ = _vector_positions(fat)
    zp_compact, buffers = _vector_positions(compact)
    assert len(zp_compact) == len(zp_fat) > 0
    assert len(set(zp_compact)) < len(set(zp_fat)) == len(zp_fat)
    assert len(compact) < len(fat) and len(shipped) <= len(compact)
    assert all(p % 16 == 0 for p in buffers)  # schema.fbs: Buffer.data (force_align: 16)
    from ai_edge_litert.interpreter import Interpreter

    outs = []
    for data in (fat, compact):
        it = Interpreter(model_content=data)
        it.allocate_tensors()
        d = it.get_input_details()[0]
        batch = np.random.default_rng(0).integers(-128, 128, size=d["shape"], dtype=np.int8)
        it.set_tensor(d["index"], batch)
        it.invoke()
        outs.append(it.get_tensor(it.get_output_details()[0]["index"]).copy())
    assert np.array_equal(outs[0], outs[1])
