"""Issue 21: one test per failure class that third-party architectures hit, on small stand-ins
(tests/fixtures/third_party.py). No traceback: every outcome is a file that validates, or a typed error."""

import json

import numpy as np
import pytest

import edgeport
from edgeport.errors import ArtifactFailed, UnsupportedOp
from edgeport.formats import format_of
from tests.fixtures import third_party as tp

SHAPE = (1, 3, 32, 32)
DATA = {"calib": "synthetic", "calib_samples": 32, "val_samples": 16}


def _export(model_cls, targets, out, **kwargs):
    return edgeport.export(tp.build(model_cls), targets=targets, input_shape=SHAPE, out=out, strict=False,
                           **{**DATA, **kwargs})


def _metadata(path):
    return format_of(path).metadata(path)


def test_several_outputs_are_refused_before_any_file(tmp_path):
    with pytest.raises(UnsupportedOp, match=r"returns 2 tensors .*one output tensor"):
        _export(tp.TwoHeadNet, "onnx-fp32", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_one_tensor_in_a_dict_exports_as_that_tensor(tmp_path):
    result = _export(tp.SegmentationNet, "onnx-fp32", tmp_path)
    assert result.passed
    assert result.artifacts[0].parity.judged and result.artifacts[0].parity.passed


@pytest.fixture
def ort_fails_on_instance_norm(monkeypatch):
    """ORT's quantizer as it behaves on MobileViT-v2 (timm mobilevitv2_050, 21 GroupNorm(1, C) exported as
    InstanceNormalization): it raises "Quantization parameter shared mode is not supported for weight yet" unless
    those nodes are excluded. The small stand-in does not trigger ORT's bug itself, so the bug is replayed."""
    import onnxruntime.quantization as ortq

    real = ortq.quantize_static

    def quantize_static(model, out, reader, **kwargs):
        norms = [n.name for n in model.graph.node if n.op_type == "InstanceNormalization"]
        if set(norms) - set(kwargs.get("nodes_to_exclude") or ()):
            raise ValueError("Quantization parameter shared mode is not supported for weight yet")
        return real(model, out, reader, **kwargs)

    monkeypatch.setattr(ortq, "quantize_static", quantize_static)


def test_onnx_int8_keeps_the_nodes_ort_cannot_quantize_float(tmp_path, ort_fails_on_instance_norm):
    """The export finds the nodes ORT cannot quantize, keeps them float, names them; the file is written and judged."""
    result = _export(tp.GroupNormNet, "onnx-int8", tmp_path)
    (int8,) = result.artifacts
    assert int8.path.is_file()
    assert any("2 InstanceNormalization" in w and "kept float" in w for w in result.warnings), result.warnings
    record = json.loads(result.parity_file.read_text())
    (entry,) = [a for a in record["artifacts"] if a["target"] == "onnx-int8"]
    assert [a["op"] for a in entry["auto_float"]] == ["InstanceNormalization"] * 2
    assert entry["auto_float"][0]["why"].startswith("ValueError: Quantization parameter shared mode")
    assert len(_metadata(int8.path)["quantization"]["auto_float"]) == 2
    assert int8.parity.judged and not result.problems


def test_no_float_makes_the_automatic_fallback_a_failure(tmp_path, ort_fails_on_instance_norm):
    result = _export(tp.GroupNormNet, "onnx-int8", tmp_path, quant=edgeport.QuantOptions(no_float=True))
    assert not result.passed
    assert any("onnx-int8" in p and "left float" in p for p in result.problems), result.problems


def test_a_quantizer_failure_tied_to_no_node_is_a_typed_error(tmp_path, monkeypatch):
    import onnxruntime.quantization as ortq

    def broken(*args, **kwargs):
        raise RuntimeError("something ORT-internal")

    monkeypatch.setattr(ortq, "quantize_static", broken)
    with pytest.raises(UnsupportedOp, match="onnxruntime cannot quantize the model: RuntimeError: something ORT-internal"):
        _export(tp.GroupNormNet, "onnx-int8", tmp_path)
    assert not list(tmp_path.glob("*.onnx"))


def test_runtime_failure_is_typed_with_the_node():
    from edgeport.runtimes.onnxruntime_runner import failure

    err = failure(RuntimeError("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Div node. "
                               "Name:'node_div_3' Status Message: division by zero"))
    assert isinstance(err, ArtifactFailed) and err.exit_code == 3
    assert "node 'node_div_3' (Div)" in err.message and "division by zero" in err.message


def test_converter_failure_names_the_op_not_the_mlir_page():
    from edgeport.exporters.tf_env import converter_failure

    text = ('Could not translate MLIR to FlatBuffer.<unknown>:0: error: loc(callsite(fused["Erf:", '
            '"model_37/tf.math.erf/Erf@__inference_<lambda>_15183"] at callsite(fused["PartitionedCall:", ...')
    line = converter_failure(RuntimeError(text))
    assert line.startswith("op Erf (model_37/tf.math.erf/Erf)") and "\n" not in line and "callsite" not in line


def test_dense_outputs_compare_per_pixel():
    from edgeport.validation.parity import compare

    rng = np.random.default_rng(0)
    ref = rng.standard_normal((2, 5, 8, 8))
    out = ref.copy()
    out[0, :, 0, 0] = out[0, ::-1, 0, 0]  # one pixel's class scores reversed: its argmax changes
    p = compare(ref, out)
    assert p.top1_agreement == pytest.approx(1 - 1 / 128)
    with pytest.raises(ArtifactFailed, match="output has shape"):
        compare(ref, ref.transpose(0, 2, 3, 1))


@pytest.mark.slow
def test_segmentation_tflite_output_is_mapped_back_to_nchw(tmp_path):
    result = _export(tp.SegmentationNet, "tflite-fp32", tmp_path)
    (fp32,) = result.artifacts
    assert _metadata(fp32.path)["output_permutation"] == [0, 3, 1, 2]
    assert fp32.parity.judged and fp32.parity.passed, fp32.parity
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(fp32.path))  # the file's own I/O names, not serving_default_input:0
    assert [d["name"] for d in it.get_input_details()] == ["input"]
    assert [d["name"] for d in it.get_output_details()] == ["output"]


@pytest.mark.slow
def test_gelu_exports_to_int8_tflite(tmp_path):
    """Exact GELU: at opset 18 TFLiteConverter failed on Erf ("Could not translate MLIR to FlatBuffer")."""
    result = _export(tp.GeluNet, "tflite-fp32,tflite-int8", tmp_path)
    assert [a.target for a in result.artifacts] == ["tflite-fp32", "tflite-int8"]
    assert not result.problems, result.problems
    int8 = result.artifacts[1]
    assert int8.int8_coverage["int8"] > 0 and int8.parity.judged


@pytest.mark.slow
def test_int8_div_that_litert_refuses_is_kept_float(tmp_path):
    """Linear attention: LiteRT's int8 DIV fails at run time ("data[i] != zero_point"); the export runs the file
    on the calibration data, keeps that DIV float and says so, and the file then runs in validation."""
    result = _export(tp.LinearAttentionNet, "tflite-int8", tmp_path)
    (int8,) = result.artifacts
    assert any("DIV" in w and "kept float" in w for w in result.warnings), result.warnings
    assert int8.parity is not None  # validated: it ran
    record = json.loads(result.parity_file.read_text())
    (entry,) = record["artifacts"]
    assert entry["auto_float"][0]["op"] == "DIV" and int8.auto_float[0]["op"] == "DIV"
    # its pad of v with ones is a zero pad plus a constant (PADV2 runs in neither int8 nor float XNNPACK)
    assert int8.delegation["partitions"] == 1 and "PADV2" not in int8.delegation["slow"], int8.delegation["summary"]
    strict = _export(tp.LinearAttentionNet, "tflite-int8", tmp_path / "strict", quant=edgeport.QuantOptions(no_float=True))
    assert any("left float" in p for p in strict.problems), strict.problems


@pytest.mark.slow
def test_hswish_feeding_a_residual_add_stays_in_one_xnnpack_partition(tmp_path):
    """Before: the 1/6 went back next to x*relu6(x+3), TFLiteConverter fused HARD_SWISH, which LiteRT runs
    outside XNNPACK in int8 (2 partitions). Now the add's other side is multiplied by 6 instead."""
    result = _export(tp.HardSwishResidualNet, "tflite-int8", tmp_path)
    (int8,) = result.artifacts
    assert int8.delegation["partitions"] == 1, int8.delegation["summary"]
    assert "HARD_SWISH" not in int8.delegation["slow"]
    assert int8.parity.judged and int8.parity.passed


@pytest.mark.slow
def test_l2_normalize_converts_to_tflite(tmp_path):
    result = _export(tp.NormalizeNet, "tflite-fp32", tmp_path)
    (fp32,) = result.artifacts
    assert fp32.parity.judged and fp32.parity.passed


@pytest.mark.slow
def test_ops_xnnpack_cannot_run_in_int8_stay_float_inside_one_partition(tmp_path):
    """A transformer block: LayerNorm's SQUARED_DIFFERENCE/RSQRT/SUB, SOFTMAX, activation x activation BATCH_MATMUL
    and GELU have no int8 XNNPACK kernel (10 partitions in pure int8). Kept float, XNNPACK runs them itself, and
    LayerNorm's two ADDs (variance + eps: scales XNNPACK refuses in int8) between them too: one partition. The
    conv and every FC stay int8, and so do the residual ADDs."""
    result = _export(tp.AttentionNet, "tflite-int8", tmp_path)
    (int8,) = result.artifacts
    pure = _export(tp.AttentionNet, "tflite-int8", tmp_path / "pure", quant=edgeport.QuantOptions(no_float=True))
    assert pure.artifacts[0].delegation["partitions"] > 1, pure.artifacts[0].delegation["summary"]
    assert int8.delegation["partitions"] == 1 and not int8.delegation["slow"], int8.delegation["summary"]
    kept = [a["op"] for a in int8.auto_float]
    assert {"SOFTMAX", "BATCH_MATMUL", "RSQRT"} <= set(kept) and not set(kept) & {"CONV_2D", "FULLY_CONNECTED"}, kept
    assert kept.count("ADD") == 2, kept  # the two LayerNorms' variance + eps, not the two residual ADDs
    assert int8.int8_coverage["int8"] > 0 and int8.parity.judged


@pytest.mark.slow
def test_a_zero_init_residual_branch_stays_int8_in_one_partition(tmp_path):
    """LeViT's untrained residual branches are exactly zero: int8 gives them a scale ~1e-8 of the sum's, below the
    1/1024 XNNPACK's int8 ADD takes, so LiteRT's builtin ADD runs it (2 partitions with --no-float). Widening that
    input's range keeps the ADD int8 inside the one partition, with nothing float and the same outputs."""
    from edgeport.formats.graph_summary import summarize
    from edgeport.runtimes.litert_runner import LiteRtRunner

    result = _export(tp.ZeroInitResidualNet, "tflite-int8", tmp_path)
    (int8,) = result.artifacts
    pure = _export(tp.ZeroInitResidualNet, "tflite-int8", tmp_path / "pure", quant=edgeport.QuantOptions(no_float=True))
    assert pure.artifacts[0].delegation["partitions"] == 2 and pure.artifacts[0].delegation["slow"] == {"ADD": 1}
    assert int8.delegation["partitions"] == 1 and not int8.delegation["slow"], int8.delegation["summary"]
    assert not int8.auto_float and int8.int8_coverage["float"] == 0
    assert len(_metadata(int8.path)["quantization"]["widened_for_xnnpack"]) == 1
    assert any("widened the int8 range of 1 ADD inputs" in w for w in result.warnings), result.warnings
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32)
    got, want = LiteRtRunner(int8.path).run(x), LiteRtRunner(pure.artifacts[0].path).run(x)
    step = summarize(int8.path).outputs[0].scale
    assert np.abs(got - want).max() <= step + 1e-9  # at most one rounding step apart


@pytest.mark.slow
def test_a_spatial_subsample_of_tokens_runs_in_one_partition(tmp_path):
    """LeViT's x.view(B, H, W, C)[:, ::2, ::2] was a stride-2 STRIDED_SLICE outside XNNPACK in every TFLite file;
    as a 1x1 stride-2 depthwise conv with weights 1 it runs in XNNPACK, float and int8, with the same values."""
    result = edgeport.export(tp.build(tp.SubsampleNet), targets=["tflite-fp32", "tflite-int8"], input_shape=(1, 3, 28, 28),
                             out=tmp_path, strict=False, **DATA)
    fp32, int8 = result.artifacts
    for a in (fp32, int8):
        assert a.delegation["partitions"] == 1 and not a.delegation["slow"], (a.target, a.delegation["summary"])
    assert fp32.parity.passed and fp32.parity.sqnr_db > 60
    assert not int8.auto_float and int8.int8_coverage["float"] == 0 and int8.parity.judged


@pytest.mark.slow
def test_a_global_pool_of_channels_last_strides_runs_in_one_partition(tmp_path):
    """The pool after EdgeNeXt-style permuted blocks became ReduceMean + Gather in ONNX, and the GATHER ran
    outside XNNPACK in every TFLite file (2 partitions); as a keepdim mean it is one partition."""
    result = edgeport.export(tp.build(tp.ChannelsLastPoolNet), targets=["tflite-fp32"], input_shape=SHAPE, out=tmp_path,
                             strict=False, **DATA)
    (fp32,) = result.artifacts
    assert fp32.delegation["partitions"] == 1 and not fp32.delegation["slow"], fp32.delegation["summary"]
    assert fp32.parity.passed
