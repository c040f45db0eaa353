"""onnx-int8 format knobs: QDQ vs QOperator, int8 vs uint8 activations, reduce_range, and the --deploy presets.

Each variant must produce the node types its format promises and stay within the int8 parity floor on
this machine (x86 here; the arm64 numbers are measured under qemu and live in the README)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from edgeport.data import sample_inputs
from edgeport.errors import UserError
from edgeport.exporters import INT8, ExportRequest, QuantOptions, onnx_fp32, onnx_int8
from edgeport.models import source as model_source
from edgeport.pipeline.export_flow import prepare
from edgeport.quantization import options
from edgeport.runtimes import cpu_features
from edgeport.validation.parity import compare

SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="module")
def fp32(tmp_path_factory) -> onnx.ModelProto:
    byo = Path(__file__).parents[1] / "fixtures" / "byo_model.py"
    prep = prepare(model_source.load(f"{byo}:build", input_shape=SHAPE))
    req = ExportRequest("byo", prep.program, prep.example, tmp_path_factory.mktemp("fp32"))
    return onnx_fp32.to_onnx(req)


@pytest.fixture(scope="module")
def calibration() -> np.ndarray:
    return sample_inputs.image_like(SHAPE, 32, seed=11).numpy()


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {sess.get_inputs()[0].name: x[i : i + 1]})[0] for i in range(len(x))])


def _activation_types(model: onnx.ModelProto) -> set[int]:
    """Element types of the zero points of QuantizeLinear / QLinear* outputs (the activation type)."""
    init = {i.name: i for i in model.graph.initializer}
    types = set()
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2] in init:
            types.add(init[n.input[2]].data_type)
    return types


@pytest.mark.parametrize("fmt", ["qdq", "qoperator"])
@pytest.mark.parametrize("acts", ["s8", "u8"])
def test_format_and_activation_knobs(fp32, calibration, fmt, acts):
    model, report = onnx_int8.quantize(fp32, calibration, QuantOptions(onnx_format=fmt, onnx_activations=acts, onnx_reduce_range="off"))
    ops = Counter(n.op_type for n in model.graph.node)
    assert (report.format, report.activations, report.reduce_range) == (fmt, acts, False)
    if fmt == "qdq":
        assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
        assert ops["QLinearConv"] == 0 and ops["Conv"] > 0  # float Conv between DequantizeLinear and QuantizeLinear
    else:
        convs = sum(n.op_type == "Conv" for n in fp32.graph.node)
        assert ops["QLinearConv"] == convs and ops["Conv"] == 0  # every conv runs as one integer operator
    assert _activation_types(model) == {TensorProto.UINT8 if acts == "u8" else TensorProto.INT8}
    held_out = sample_inputs.image_like(SHAPE, 16, seed=12345).numpy()
    parity = compare(_run(fp32, held_out), _run(model, held_out))
    assert parity.sqnr_db >= INT8.min_sqnr_db, (fmt, acts, parity.sqnr_db)


def test_reduce_range_knob_changes_the_weights(fp32, calibration):
    def weights(rr):
        model, report = onnx_int8.quantize(fp32, calibration, QuantOptions(onnx_reduce_range=rr))
        assert report.reduce_range == (rr == "on")
        init = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
        return max(int(np.abs(v).max()) for k, v in init.items() if v.dtype == np.int8 and v.ndim == 4)

    assert weights("off") == 127  # per-channel symmetric: the largest weight of some channel maps to 127
    assert weights("on") <= 64  # 7-bit weights
    assert 64 < weights("pairs") <= 127  # 8-bit weights, each channel's scale bounding its pairs


def test_deploy_presets():
    base = QuantOptions(method="percentile")
    arm = onnx_int8.deploy_options(base, "arm64")
    assert arm.method == "percentile"  # only the onnx-int8 settings change
    assert (arm.onnx_format, arm.onnx_activations, arm.onnx_reduce_range) == tuple(onnx_int8.ONNX_DEPLOY["arm64"].values())
    assert onnx_int8.deploy_options(base, None) is base
    with pytest.raises(UserError, match="deploy"):
        onnx_int8.deploy_options(base, "riscv")


def _cpu(arch: str, *flags: str) -> cpu_features.CpuFeatures:
    return cpu_features.CpuFeatures("test CPU", arch, frozenset(flags))


@pytest.mark.parametrize("cpu,preset", [(_cpu("x86_64", "avx2", "avx512f", "avx512_vnni"), "x86-vnni"),
                                        (_cpu("x86_64", "avx2", "avx_vnni"), "x86-vnni"),
                                        (_cpu("x86_64", "avx2"), "x86-avx2"),
                                        (_cpu("x86_64", "avx2", "avx512f", "avx512bw"), "x86-avx2")])
def test_deploy_x86_reads_the_cpu(cpu, preset):
    assert options.resolve_deploy("x86", cpu) == preset
    assert options.resolve_deploy(preset, cpu) == preset  # a named preset is never second-guessed


def test_deploy_x86_presets_fuse_on_x86_and_never_saturate():
    for preset in ("x86-vnni", "x86-avx2"):
        q = onnx_int8.deploy_options(QuantOptions(), preset)
        # uint8 QDQ: the only layout ORT's x86 provider fuses whole (int8 QDQ: 39/64 on MobileNetV2)
        assert (q.onnx_format, q.onnx_activations, q.onnx_hard_activations) == ("qdq", "u8", "int8")
    # VPMADDUBSW saturates plain 8-bit pairs: 8-bit weights with pair-bounded scales
    assert onnx_int8.deploy_options(QuantOptions(), "x86-avx2").onnx_reduce_range == "pairs"
    assert onnx_int8.deploy_options(QuantOptions(), "x86-vnni").onnx_reduce_range == "off"
    here = onnx_int8.deploy_options(QuantOptions(), "x86") if cpu_features.detect().is_x86 else None
    if here is not None:
        assert here == onnx_int8.deploy_options(QuantOptions(), options.resolve_deploy("x86"))


def test_deploy_x86_on_arm_is_a_user_error():
    with pytest.raises(UserError, match="x86-vnni or x86-avx2"):
        options.resolve_deploy("x86", _cpu("aarch64", "asimddp"))


@pytest.mark.parametrize("field,value", [("onnx_format", "qop"), ("onnx_activations", "int4"), ("onnx_reduce_range", "yes"),
                                         ("onnx_hard_activations", "int4")])
def test_unknown_settings_are_user_errors(fp32, calibration, field, value):
    with pytest.raises(UserError, match="choose from"):
        onnx_int8.quantize(fp32, calibration, QuantOptions(**{field: value}))


def test_explicit_settings_win_over_deploy():
    q = onnx_int8.deploy_options(QuantOptions(), "arm64", onnx_activations="u8", onnx_format=None)
    assert (q.onnx_format, q.onnx_activations, q.onnx_reduce_range) == ("qoperator", "u8", "off")
    assert onnx_int8.deploy_options(QuantOptions(), "arm64-nodot").onnx_activations == "u8"


def test_recipe_keys(tmp_path):
    from edgeport.pipeline import recipe

    text = '[model]\nname = "mobilenet_v2"\n[data]\ncalib = "synthetic"\n[quantize]\ndeploy = "arm64"\nonnx_activations = "u8"\n' \
           '[export]\ntargets = ["onnx-int8"]\n'
    (tmp_path / "r.toml").write_text(text)
    q = recipe.parse(tmp_path / "r.toml").quantize
    assert (q.deploy, q.onnx_activations, q.onnx_format) == ("arm64", "u8", None)
    (tmp_path / "hs.toml").write_text(text.replace('onnx_activations = "u8"', 'onnx_hard_activations = "int8"'))
    assert recipe.parse(tmp_path / "hs.toml").quantize.onnx_hard_activations == "int8"
    (tmp_path / "hs_bad.toml").write_text(text.replace('onnx_activations = "u8"', 'onnx_hard_activations = "fast"'))
    with pytest.raises(UserError, match="onnx_hard_activations 'fast' is not one of float, int8"):
        recipe.parse(tmp_path / "hs_bad.toml")
    (tmp_path / "bad.toml").write_text(text.replace('"arm64"', '"riscv"'))
    with pytest.raises(UserError, match="deploy"):
        recipe.parse(tmp_path / "bad.toml")
