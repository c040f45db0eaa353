"""onnx-int8: static QDQ quantization, its coverage checker, and the CPU-dependent reduce_range choice.

No test assumes which CPU runs it: reduce_range is pinned where results depend on it, and the CPU logic is
tested on fake CpuFeatures / cpuinfo texts.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgeport.data import sample_inputs
from edgeport.errors import UserError
from edgeport.exporters import TARGETS, ExportRequest, QuantOptions, onnx_fp32, onnx_int8
from edgeport.formats.int8_coverage import CRITICAL_ONNX_OPS, Coverage, coverage_of, onnx_coverage, ort_coverage
from edgeport.models import source as model_source
from edgeport.pipeline.export_flow import prepare
from edgeport.runtimes import cpu_features
from edgeport.runtimes.cpu_features import CpuFeatures, choose_reduce_range, parse_cpuinfo
from edgeport.validation.parity import compare

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def prep():
    byo = Path(__file__).parents[1] / "fixtures" / "byo_model.py"
    return prepare(model_source.load(f"{byo}:build", input_shape=SHAPE))


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return sample_inputs.image_like(SHAPE, 32, seed=11).numpy()


@pytest.fixture(scope="module")
def held_out() -> np.ndarray:
    return sample_inputs.image_like(SHAPE, 16, seed=12345).numpy()


def _request(prep, out_dir: Path, calibration=None, **quant) -> ExportRequest:
    return ExportRequest("byo", prep.program, prep.example, Path(out_dir), calibration=calibration, quant=QuantOptions(**quant))


@pytest.fixture(scope="module")
def fp32(prep, tmp_path_factory) -> onnx.ModelProto:
    return onnx_fp32.to_onnx(_request(prep, tmp_path_factory.mktemp("fp32")))


@pytest.fixture(scope="module")
def exported(prep, calibration, tmp_path_factory) -> Path:
    return onnx_int8.export(_request(prep, tmp_path_factory.mktemp("int8"), calibration))


def _run(model, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else Path(model).read_bytes()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    s = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    return np.concatenate([s.run(None, {"input": x[i : i + 1]})[0] for i in range(len(x))])


def _activation_scales(model: onnx.ModelProto) -> dict[str, float]:
    """Scale of every activation QuantizeLinear (weights are stored quantized, without a Q node)."""
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return {n.input[0]: float(init[n.input[1]]) for n in model.graph.node if n.op_type == "QuantizeLinear"}


def _weight_of(model: onnx.ModelProto, node) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(quantized weight, scale, zero point) feeding ``node``'s input 1 through its DequantizeLinear."""
    init = {i.name: i for i in model.graph.initializer}
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == node.input[1])
    w = init[dq.input[0]]
    assert w.data_type == TensorProto.INT8, f"{node.name}: weight stored as {TensorProto.DataType.Name(w.data_type)}"
    return numpy_helper.to_array(w), numpy_helper.to_array(init[dq.input[1]]), numpy_helper.to_array(init[dq.input[2]])


# --- the exporter -------------------------------------------------------------------------------------


def test_target_is_registered_with_sqnr_based_thresholds():
    t = TARGETS.get("onnx-int8")
    assert (t.format, t.precision) == ("onnx", "int8")
    assert t.filename("mobilenet_v2") == "mobilenet_v2.int8.onnx"
    assert t.thresholds.max_abs is None and t.thresholds.min_sqnr_db is not None


def test_export_writes_one_checked_artifact(exported):
    assert exported.name == "byo.int8.onnx" and exported.is_file()
    assert [p.name for p in exported.parent.iterdir()] == [exported.name]  # no temp or calibration files left
    model = onnx.load(exported)
    onnx.checker.check_model(model, full_check=True)
    assert model.producer_name == "edgeport"


def test_every_compute_op_of_the_export_is_int8(exported):
    cov = coverage_of(exported)
    assert cov.critical_float() == cov.critical_float(CRITICAL_ONNX_OPS) == []
    assert cov.int8_ops["Conv"] == 5 and cov.int8_ops["Gemm"] == 1 and cov.int8_ops["Add"] == 1
    assert not cov.float_ops, cov.line()  # incl. SE (GlobalAveragePool from ReduceMean), HardSwish, the lone BN
    # and ORT really runs the convs in integer kernels, on this CPU and as an ARM device would
    assert ort_coverage(exported).int8_ops["Conv"] == 5
    assert ort_coverage(exported, qdq_int8_allowed=True).int8_ops["Conv"] == 5


def test_weights_are_per_channel_symmetric_int8(exported):
    model = onnx.load(exported)
    for node in (n for n in model.graph.node if n.op_type in ("Conv", "Gemm")):
        w, scale, zp = _weight_of(model, node)
        assert scale.shape == (w.shape[0],), f"{node.name}: not per output channel"
        assert not zp.any(), f"{node.name}: weight zero points must be 0"
    dtypes = Counter(i.data_type for i in model.graph.initializer if i.name.endswith("_quantized"))
    assert set(dtypes) <= {TensorProto.INT8, TensorProto.INT32}  # int8 weights, int32 biases


def test_int8_matches_fp32_on_held_out_inputs(exported, fp32, held_out):
    p = compare(_run(fp32, held_out), _run(exported, held_out))
    assert p.sqnr_db > 15, p.line()
    assert p.top1_agreement >= 0.9, p.line()


@pytest.mark.parametrize("method", ["percentile", "entropy", "mse"])
def test_each_calibration_method_works_and_differs_from_minmax(method, fp32, calibration, held_out):
    base, _ = onnx_int8.quantize(fp32, calibration, QuantOptions(method="minmax"), reduce_range=False)
    other, report = onnx_int8.quantize(fp32, calibration, QuantOptions(method=method), reduce_range=False)
    assert report.method == method
    a, b = _activation_scales(base), _activation_scales(other)
    assert a.keys() == b.keys()
    assert any(not np.isclose(a[k], b[k], rtol=1e-4) for k in a), f"{method} chose the same ranges as minmax"
    assert compare(_run(fp32, held_out), _run(other, held_out)).sqnr_db > 15


def test_reduce_range_stores_7_bit_weights(fp32, calibration):
    full, _ = onnx_int8.quantize(fp32, calibration, reduce_range=False)
    reduced, report = onnx_int8.quantize(fp32, calibration, reduce_range=True)
    assert report.reduce_range

    def extremes(model):
        return [np.abs(_weight_of(model, n)[0].astype(int)).max() for n in model.graph.node if n.op_type == "Conv"]

    assert max(extremes(full)) == 127
    assert max(extremes(reduced)) <= 64  # |w| * 255 * 2 <= 32767: a u8*s8 pair cannot saturate int16


def test_uint8_activations_variant(fp32, calibration, held_out):
    model, _ = onnx_int8.quantize(fp32, calibration, activations="uint8", reduce_range=False)
    zps = {numpy_helper.to_array(i).dtype for n in model.graph.node if n.op_type == "QuantizeLinear"
           for i in model.graph.initializer if i.name == n.input[2]}
    assert zps == {np.dtype(np.uint8)}
    assert onnx_coverage(model).critical_float() == []
    assert compare(_run(fp32, held_out), _run(model, held_out)).sqnr_db > 15


def test_missing_or_malformed_calibration_is_a_user_error(prep, tmp_path):
    for bad in (None, np.zeros((0, 3, 32, 32), np.float32)):
        with pytest.raises(UserError, match="int8 needs calibration data: pass --calib"):
            onnx_int8.export(_request(prep, tmp_path, bad))
    with pytest.raises(UserError, match="shape"):
        onnx_int8.export(_request(prep, tmp_path, np.zeros((4, 3, 16, 16), np.float32)))
    with pytest.raises(UserError, match="NaN"):
        onnx_int8.export(_request(prep, tmp_path, np.full((2, 3, 32, 32), np.nan, np.float32)))
    with pytest.raises(UserError, match="calibration method"):
        onnx_int8.quantize(onnx.ModelProto(), np.zeros((1, 3, 32, 32), np.float32), QuantOptions(method="kl"))
    assert not any(tmp_path.iterdir())


def test_float_fallback_by_layer_name_keeps_that_conv_float(fp32, calibration):
    model, report = onnx_int8.quantize(fp32, calibration, QuantOptions(float_fallback=("pw",)), reduce_range=False)
    cov = onnx_coverage(model)
    assert len(report.excluded_nodes) == 1
    assert cov.critical_float() == report.excluded_nodes
    assert cov.float_ops["Conv"] == 1 and cov.int8_ops["Conv"] == 4
    with pytest.raises(UserError, match="matches no layer"):
        onnx_int8.quantize(fp32, calibration, QuantOptions(float_fallback=("no_such_layer",)), reduce_range=False)


def test_failed_quantization_leaves_no_file(prep, calibration, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("quantizer crashed")

    monkeypatch.setattr(onnx_int8, "quantize", boom)
    with pytest.raises(RuntimeError):
        onnx_int8.export(_request(prep, tmp_path, calibration))
    assert not any(tmp_path.iterdir())


def test_spatial_reduce_mean_becomes_global_average_pool():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5, 5])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    axes = numpy_helper.from_array(np.array([-2, -1], np.int64), "axes")
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=0)
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], [axes]), opset_imports=[helper.make_opsetid("", 18)])
    data = np.random.default_rng(0).standard_normal((2, 4, 5, 5)).astype(np.float32)
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    assert onnx_int8.rewrite_spatial_reduce_mean(rewritten) == 1
    assert [n.op_type for n in rewritten.graph.node] == ["GlobalAveragePool", "Flatten"]
    assert not rewritten.graph.initializer  # the axes constant is gone
    onnx.checker.check_model(rewritten, full_check=True)
    import onnxruntime as ort

    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": data})[0]
    out = ort.InferenceSession(rewritten.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": data})[0]
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)


# --- the coverage checker on hand-built graphs ----------------------------------------------------------


def _graph(nodes, inits, outputs=("y",)) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
    g = helper.make_graph(nodes, "g", [x], outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])


def _qparams(prefix: str, dtype=np.int8) -> list:
    return [numpy_helper.from_array(np.array(0.1, np.float32), f"{prefix}_s"), numpy_helper.from_array(np.array(0, dtype), f"{prefix}_zp")]


def _conv_graph(quantize_input=True, quantize_output=True, act_dtype=np.int8):
    w = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.int8), "w_q")
    w_s = numpy_helper.from_array(np.full(3, 0.1, np.float32), "w_s")
    w_zp = numpy_helper.from_array(np.zeros(3, np.int8), "w_zp")
    inits = [w, w_s, w_zp, *_qparams("x", act_dtype), *_qparams("y", act_dtype)]
    nodes = [helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_zp"], ["w"], axis=0)]
    conv_in = "x"
    if quantize_input:
        nodes += [helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["x_q"]),
                  helper.make_node("DequantizeLinear", ["x_q", "x_s", "x_zp"], ["x_dq"])]
        conv_in = "x_dq"
    if quantize_output:
        nodes += [helper.make_node("Conv", [conv_in, "w"], ["c"], name="conv"),
                  helper.make_node("QuantizeLinear", ["c", "y_s", "y_zp"], ["c_q"]),
                  helper.make_node("DequantizeLinear", ["c_q", "y_s", "y_zp"], ["y"])]
    else:
        nodes.append(helper.make_node("Conv", [conv_in, "w"], ["y"], name="conv"))
    return _graph(nodes, inits)


def test_coverage_counts_a_qdq_conv_as_int8():
    cov = onnx_coverage(_conv_graph())
    assert cov.int8_ops == Counter({"Conv": 1}) and not cov.float_ops and cov.total == 1
    assert cov.critical_float() == [] and cov.int8_fraction == 1.0


@pytest.mark.parametrize(
    "kwargs",
    [dict(quantize_input=False), dict(quantize_output=False), dict(act_dtype=np.int16)],
    ids=["weight-only", "float-output", "int16-activations"],
)
def test_coverage_counts_a_partly_quantized_conv_as_float(kwargs):
    cov = onnx_coverage(_conv_graph(**kwargs))
    assert cov.float_ops == Counter({"Conv": 1}) and not cov.int8_ops
    assert cov.float_op_names == ["conv"] and cov.critical_float({"Conv"}) == ["conv"]


def test_coverage_counts_a_float_conv_as_float():
    w = numpy_helper.from_array(np.ones((3, 2, 1, 1), np.float32), "w")
    cov = onnx_coverage(_graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c0")], [w]))
    assert cov.float_ops == Counter({"Conv": 1}) and cov.critical_float() == ["c0"]
    d = cov.to_dict()
    assert d["total"] == 1 and d["float_nodes"] == [{"name": "c0", "op": "Conv"}] and d["format"] == "onnx"


def test_coverage_counts_qoperators_and_looks_through_reshape():
    inits = [numpy_helper.from_array(np.ones((3, 2, 1, 1), np.int8), "w_q"), *_qparams("w"), *_qparams("x"),
             *_qparams("y"), numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
             numpy_helper.from_array(np.ones((3, 48), np.int8), "fc_q"), *_qparams("fc"), *_qparams("z")]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_s", "x_zp"], ["x_q"]),
        helper.make_node("QLinearConv", ["x_q", "x_s", "x_zp", "w_q", "w_s", "w_zp", "y_s", "y_zp"], ["c_q"], name="qconv"),
        helper.make_node("DequantizeLinear", ["c_q", "y_s", "y_zp"], ["c"]),
        helper.make_node("Reshape", ["c", "shape"], ["flat"]),
        helper.make_node("DequantizeLinear", ["fc_q", "fc_s", "fc_zp"], ["fc"]),
        helper.make_node("Gemm", ["flat", "fc"], ["g"], name="fc", transB=1),
        helper.make_node("Reshape", ["g", "shape"], ["g2"]),
        helper.make_node("QuantizeLinear", ["g2", "z_s", "z_zp"], ["g_q"]),
        helper.make_node("DequantizeLinear", ["g_q", "z_s", "z_zp"], ["y"]),
    ]
    cov = onnx_coverage(_graph(nodes, inits))
    assert cov.int8_ops == Counter({"Conv": 1, "Gemm": 1}) and not cov.float_ops
    strict = onnx_coverage(_graph(nodes, inits), qdq_counts_as_int8=False)  # the runtime's view
    assert strict.int8_ops == Counter({"Conv": 1}) and strict.float_op_names == ["fc"]


def test_coverage_type_is_format_agnostic():
    tfl_critical = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD"})
    cov = Coverage(Counter({"CONV_2D": 3}), Counter({"ADD": 1}), ["block/add"], ["ADD"], "tflite", tfl_critical)
    assert cov.total == 4 and (cov.int8_total, cov.float_total) == (3, 1)
    assert cov.critical_float() == cov.critical_float(tfl_critical) == ["block/add"]
    assert "ADD x1" in cov.line()
    with pytest.raises(ValueError):
        Coverage(Counter(), Counter({"ADD": 1}), ["a", "b"], ["ADD"])


# --- CPU features and the reduce_range choice -----------------------------------------------------------

XEON_VNNI = ("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6230\nflags\t\t: fpu sse2 ssse3 avx avx2 avx512f avx512bw avx512_vnni\n"
             "\nprocessor\t: 1\nmodel name\t: other\n")
HASWELL = "processor\t: 0\nmodel name\t: Intel(R) Core(TM) i7-4770 CPU @ 3.40GHz\nflags\t\t: fpu sse2 ssse3 avx avx2 fma\n"
GRACEMONT = "processor\t: 0\nmodel name\t: 12th Gen Intel(R) Core(TM) i5-12400\nflags\t\t: avx2 avx_vnni\n"
ARM = ("processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes crc32 asimddp i8mm\n"
       "CPU implementer\t: 0x41\nCPU part\t: 0xd0c\n")


def test_parse_cpuinfo_reads_flags_and_names():
    xeon = parse_cpuinfo(XEON_VNNI, "x86_64")
    assert xeon.model_name == "Intel(R) Xeon(R) Gold 6230" and xeon.arch == "x86_64"
    assert xeon.avx2 and xeon.avx512 and xeon.avx512_vnni and xeon.vnni and not xeon.avx_vnni
    assert xeon.describe() == "Intel(R) Xeon(R) Gold 6230 x86_64 AVX2 AVX-512 AVX-512 VNNI"
    assert parse_cpuinfo(GRACEMONT, "AMD64").avx_vnni and parse_cpuinfo(GRACEMONT, "AMD64").vnni
    arm = parse_cpuinfo(ARM, "aarch64")
    assert arm.is_arm and arm.neon and arm.dotprod and arm.i8mm and not arm.vnni
    assert "DOTPROD" in arm.describe() and "0xd0c" in arm.model_name
    haswell = parse_cpuinfo(HASWELL, "x86_64")
    assert haswell.avx2 and not haswell.vnni and "saturate" in haswell.describe()


@pytest.mark.parametrize(
    "text,machine,expected",
    [(HASWELL, "x86_64", True), (XEON_VNNI, "x86_64", False), (GRACEMONT, "x86_64", False), (ARM, "aarch64", False),
     ("", "riscv64", False)],
    ids=["x86-avx2-no-vnni", "x86-avx512-vnni", "x86-avx-vnni", "arm64", "unknown"],
)
def test_reduce_range_only_where_u8s8_saturates(text, machine, expected):
    assert choose_reduce_range(parse_cpuinfo(text, machine)) is expected


def test_fake_cpu_reaches_the_quantizer(fp32, calibration, monkeypatch):
    monkeypatch.setattr(cpu_features, "detect", lambda: CpuFeatures("old Xeon", "x86_64", frozenset({"avx2", "avx512f"})))
    _, report = onnx_int8.quantize(fp32, calibration)
    assert report.weight_grid == "int8-pairs" and report.cpu.startswith("old Xeon x86_64 AVX2 AVX-512")
    assert report.pair_check["worst_pair"] <= 128 and not report.reduce_range
    monkeypatch.setattr(cpu_features, "detect", lambda: CpuFeatures("phone", "aarch64", frozenset({"asimd", "asimddp"})))
    assert onnx_int8.quantize(fp32, calibration)[1].weight_grid == "int8"


def test_detect_describes_this_machine_without_assuming_it():
    cpu = cpu_features.detect()
    assert cpu.arch and cpu.describe().startswith(cpu.model_name or "unknown CPU")
    assert choose_reduce_range(cpu) == (cpu.is_x86 and not cpu.vnni)

