"""ExecuTorch targets (.pte, XNNPACK delegate): export from the fused graph, run in ExecuTorch's own runtime, int8
read from the program; the missing extra, bad requests and converter failures as typed one-line errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.data import sample_inputs
from edgeport.errors import EXIT_RUNTIME, RuntimeMissing, UnsupportedOp, UserError
from edgeport.exporters import TARGETS, ExportRequest, QuantOptions, metadata, parse_targets, target_names
from edgeport.formats import format_of
from edgeport.models import source as model_source
from edgeport.quantization.options import DEFAULT_METHOD

HAVE_EXECUTORCH = importlib.util.find_spec("executorch") is not None
needs_executorch = pytest.mark.skipif(not HAVE_EXECUTORCH, reason="executorch not installed (pip install 'edgeport[executorch]')")
SHAPE = (1, 3, 32, 32)
BYO = Path(__file__).parent.parent / "fixtures" / "byo_model.py"


# --- without executorch: registered, and refused with the pip line ------------------------------------------------

def test_targets_and_format_are_registered():
    assert {"executorch-fp32", "executorch-int8"} <= set(target_names())
    fmt = format_of("model.int8.pte")
    assert fmt.name == "executorch" and TARGETS.get("executorch-int8").filename("m") == "m.int8.pte"
    assert TARGETS.get("executorch-int8").parent == "executorch-fp32"


def test_missing_executorch_is_exit_4_with_the_pip_line(monkeypatch, cli, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name.split(".")[0] == "executorch" else real(name, *a))
    with pytest.raises(RuntimeMissing) as err:
        TARGETS.get("executorch-int8").check_installed()
    assert err.value.exit_code == EXIT_RUNTIME and "edgeport[executorch]" in str(err.value)
    res = cli("export", "--model", "mobilenet_v2_x0_35", "--input-shape", "1,3,64,64", "--target", "executorch-fp32",
              "--out", tmp_path / "o")
    assert res.code == 4 and "edgeport[executorch]" in res.err and "Traceback" not in res.out + res.err
    assert not (tmp_path / "o").exists()  # refused before any work


# --- a small model through both targets -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared():
    from edgeport.pipeline.export_flow import prepare

    return prepare(model_source.load(f"{BYO}:build", input_shape=SHAPE))


@pytest.fixture(scope="module")
def exported(prepared, tmp_path_factory):
    if not HAVE_EXECUTORCH:
        pytest.skip("executorch not installed")
    out = tmp_path_factory.mktemp("pte")
    calib = sample_inputs.image_like((32, *SHAPE[1:]), 32, seed=3).numpy()
    meta = {"edgeport": "test", "model": "byo", "input_shape": list(SHAPE)}
    req = ExportRequest("byo", prepared.program, prepared.example, out, False, calib, QuantOptions(), {}, meta)
    paths = {t.name: t.export(req) for t in parse_targets("executorch-fp32,executorch-int8")}
    held_out = sample_inputs.image_like((12, *SHAPE[1:]), 12, seed=11).numpy()
    reference, _ = prepared.outputs(held_out)
    return req, paths, held_out, reference


@needs_executorch
def test_fp32_runs_in_executorch_like_torch(exported):
    from edgeport.exporters import FP32
    from edgeport.runtimes import open_runtime
    from edgeport.validation.parity import compare

    _, paths, x, ref = exported
    runner = open_runtime(paths["executorch-fp32"])
    assert runner.name == "executorch" and runner.input_shape == list(SHAPE)
    got = runner.run(x)  # 12 samples through a batch-1 program
    assert got.shape == ref.shape
    p = compare(ref, got)
    assert p.max_abs <= FP32.max_abs * max(1.0, float(np.abs(ref).max())) and p.sqnr_db >= FP32.min_sqnr_db, p


@needs_executorch
def test_int8_is_int8_in_xnnpack_and_close(exported):
    from edgeport.exporters import INT8
    from edgeport.formats.int8_coverage import coverage_of
    from edgeport.runtimes import open_runtime
    from edgeport.validation.parity import compare

    _, paths, x, ref = exported
    cov = coverage_of(paths["executorch-int8"])
    assert cov.format == "executorch" and cov.float_total == 0 and cov.int8_total >= 10, cov.line()
    # the BN that follows no conv becomes a depthwise 1x1 conv (graph.rewrites.batchnorm_as_depthwise), int8 too
    assert cov.int8_ops["Conv2d"] >= 2 and cov.int8_ops["DepthwiseConv2d"] == 2 and cov.int8_ops["FullyConnected"] == 1
    p = compare(ref, open_runtime(paths["executorch-int8"]).run(x))
    assert p.sqnr_db >= INT8.min_sqnr_db, p
    fp32 = coverage_of(paths["executorch-fp32"])
    assert fp32.int8_total == 0 and fp32.float_total > 0  # the same reader says float where it is float


@needs_executorch
def test_delegation_and_summary_read_from_the_program(exported):
    from edgeport.formats.delegation import delegation_of
    from edgeport.formats.graph_summary import summarize

    _, paths, _, _ = exported
    d = delegation_of(paths["executorch-int8"])
    assert d.format == "executorch" and d.partitions == 1 and not d.slow and d.warning() is None, d.lines()
    assert "XNNPACK delegate (executorch" in d.summary() and "1 partition" in d.summary()
    s = summarize(paths["executorch-int8"])
    assert s.inputs[0].shape == SHAPE and s.outputs[0].shape == (1, 10)
    assert s.inputs[0].dtype == s.outputs[0].dtype == "int8"  # --io-dtype int8, the default
    assert summarize(paths["executorch-fp32"]).inputs[0].dtype == "float32"
    assert s.op_dtypes[("xnnpack:Conv2d", "int8")] >= 2 and s.weight_dtypes["int8"] > 1000
    assert s.details["delegates"] == {"XnnpackBackend": 1}
    assert summarize(paths["executorch-fp32"]).weight_dtypes["float32"] > 1000


@needs_executorch
def test_metadata_is_inside_the_file(exported):
    _, paths, _, _ = exported
    fmt = format_of(paths["executorch-int8"])
    meta = fmt.metadata(paths["executorch-int8"])
    assert meta["target"] == "executorch-int8" and meta["input_layout"] == "NCHW" and meta["io_dtype"] == "int8"
    assert meta["io"] == {"input": "int8", "output": "int8"}
    assert meta["quantization"]["method"] == DEFAULT_METHOD and meta["model"] == "byo"
    assert fmt.metadata(paths["executorch-fp32"])["target"] == "executorch-fp32"
    assert not list(paths["executorch-int8"].parent.glob("*.json"))  # no sidecar


@needs_executorch
def test_nhwc_layout_reads_channels_last_memory_without_the_input_transpose(exported, tmp_path, cli):
    """--pte-layout nhwc: the program's input keeps its NCHW shape with dim order (0, 2, 3, 1); the runner lays the
    batch out that way (ExecuTorch itself would read a contiguous tensor as channels-last, silently); XNNPACK gets
    no input transpose; both targets still match PyTorch."""
    import dataclasses

    import torch

    from edgeport.exporters import FP32, INT8
    from edgeport.formats.graph_summary import summarize
    from edgeport.formats.pte_program import read
    from edgeport.runtimes import open_runtime
    from edgeport.validation.parity import compare

    req, paths, x, ref = exported
    nhwc = dataclasses.replace(req, out_dir=tmp_path, pte_layout="nhwc", cache={})
    made = {t.name: t.export(nhwc) for t in parse_targets("executorch-fp32,executorch-int8")}
    for target, path in made.items():
        assert read(path).nhwc_input and not read(paths[target]).nhwc_input
        assert read(path).inputs[0][0] == SHAPE
        assert format_of(path).metadata(path)["input_layout"] == "NHWC"
    runner = open_runtime(made["executorch-fp32"])
    got = runner.run(x)
    p = compare(ref, got)
    assert p.max_abs <= FP32.max_abs * max(1.0, float(np.abs(ref).max())) and p.sqnr_db >= FP32.min_sqnr_db, p
    wrong = runner.method.execute([torch.from_numpy(np.ascontiguousarray(x[:1]))])[0].numpy()  # NCHW memory
    # NCHW memory is read as NHWC: far off, where the runner's channels-last batch is at fp32 rounding
    assert np.abs(wrong - ref[:1]).max() > 100 * np.abs(got - ref).max(), "the layout would not matter: the test proves nothing"
    assert compare(ref, open_runtime(made["executorch-int8"]).run(x)).sqnr_db >= INT8.min_sqnr_db
    transposes = [summarize(f).op_dtypes.get(("xnnpack:StaticTranspose", "int8"), 0)
                  for f in (paths["executorch-int8"], made["executorch-int8"])]
    assert transposes[1] == transposes[0] - 1, transposes  # the input's NCHW -> NHWC is gone
    assert summarize(made["executorch-int8"]).details["input_dim_orders"] == [[0, 2, 3, 1]]
    shown = cli("inspect", made["executorch-int8"])
    assert shown.code == 0 and "channels-last" in shown.out and "takes NHWC" in shown.out
    assert "channels-last" not in cli("inspect", paths["executorch-int8"]).out


def test_bad_pte_layout_is_a_usage_error(cli, tmp_path):
    res = cli("export", "--model", "mobilenet_v2_x0_35", "--input-shape", "1,3,64,64", "--target", "onnx-fp32",
              "--pte-layout", "nwhc", "--out", tmp_path / "o")
    assert res.code == 2 and "nchw, nhwc" in res.err + res.out and "Traceback" not in res.err + res.out


@needs_executorch
def test_int8_io_computes_what_float_io_computes(prepared, exported, tmp_path):
    """The default int8 I/O takes the program's first quantize and last dequantize out (the runner does them with
    the scale/zero point of the program's constant methods): outputs equal --io-dtype float32's on the same inputs,
    one partition either way, and the float file has no I/O constants."""
    from edgeport.exporters import executorch as et
    from edgeport.formats.pte_program import read
    from edgeport.runtimes import open_runtime

    req, paths, x, _ = exported
    path = et.export_int8(ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, req.calibration,
                                        QuantOptions(io_dtype="float32"), {}, {"model": "byo"}))
    int8_io, float_io = open_runtime(paths["executorch-int8"]), open_runtime(path)
    assert int8_io.input_q is not None and int8_io.output_q is not None and float_io.input_q is float_io.output_q is None
    scale, zero = int8_io.output_q
    assert scale > 0 and -128 <= zero <= 127
    a, b = int8_io.run(x), float_io.run(x)
    assert np.abs(a).max() > 10 * scale  # outputs span many int8 steps: a wrong scale could not pass below
    assert np.abs(a - b).max() <= scale * 1.001, np.abs(a - b).max()  # measured equal; at most one output step
    assert read(path).inputs[0][1] == "float32" and read(path).partitions == read(paths["executorch-int8"]).partitions == 1
    assert format_of(path).metadata(path)["io"] == {"input": "float32", "output": "float32"}


@needs_executorch
def test_calibration_method_changes_the_ranges(prepared, exported, tmp_path):
    """percentile clips outliers that minmax keeps: the written program's quantization differs, and still runs."""
    from edgeport.exporters import executorch as et
    from edgeport.runtimes import open_runtime
    from edgeport.validation.parity import compare

    req, paths, x, ref = exported
    req2 = ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, req.calibration,
                         QuantOptions(method="percentile", percentile=99.0))
    path = et.export_int8(req2)
    assert path.read_bytes() != paths["executorch-int8"].read_bytes()
    assert compare(ref, open_runtime(path).run(x)).sqnr_db >= 10


@needs_executorch
def test_allow_float_keeps_that_layer_float_and_names_it(prepared, exported, tmp_path):
    from edgeport.exporters import executorch as et
    from edgeport.formats.int8_coverage import coverage_of

    req, _, _, _ = exported
    path = et.export_int8(ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, req.calibration,
                                        QuantOptions(float_fallback=("se_fc1",)), {}, {"model": "byo"}))
    cov = coverage_of(path)
    names = format_of(path).layer_names(path, None)
    assert {names.get(n, n) for n in cov.critical_float()} == {"se_fc1"}, (cov.line(), names)
    assert cov.int8_ops["Conv2d"] >= 2 and cov.int8_ops["FullyConnected"] == 1
    assert format_of(path).metadata(path)["quantization"]["float_fallback"] == ["se_fc1"]


@needs_executorch
def test_bad_requests_are_typed(prepared, tmp_path):
    from edgeport.exporters import executorch as et

    calib = sample_inputs.image_like((8, *SHAPE[1:]), 8, seed=1).numpy()
    base = ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, calib, QuantOptions())
    with pytest.raises(UserError, match="float32"):
        et.export_int8(ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, calib, QuantOptions(io_dtype="uint8")))
    with pytest.raises(UserError, match="calibration"):
        et.export_int8(ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, None, QuantOptions()))
    with pytest.raises(UserError, match="fixed batch"):
        et.export_fp32(ExportRequest("byo", prepared.program, prepared.example, tmp_path, True))
    with pytest.raises(UserError, match="matches no layer"):
        et.export_int8(ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, calib,
                                     QuantOptions(float_fallback=("no_such_layer",))))
    assert base.out_dir == tmp_path and not list(tmp_path.iterdir())


@needs_executorch
def test_converter_failure_is_one_line_with_a_log_and_no_file(prepared, tmp_path, monkeypatch):
    import executorch.exir

    def broken(*args, **kwargs):
        raise RuntimeError("Missing out variants: {'aten::frobnicate'}\nmore lines")

    monkeypatch.setattr(executorch.exir, "to_edge_transform_and_lower", broken)
    from edgeport.exporters import executorch as et

    with pytest.raises(UnsupportedOp) as err:
        et.export_fp32(ExportRequest("byo", prepared.program, prepared.example, tmp_path, False))
    text = str(err.value)
    assert "\n" not in text and "aten::frobnicate" in text and "full log: " in text
    log = Path(text.split("full log: ")[1].rstrip(")"))
    assert "Traceback" in log.read_text() and "more lines" in log.read_text()
    log.unlink()
    assert not list(tmp_path.iterdir())  # nothing half-written


@needs_executorch
def test_damaged_pte_is_a_user_error(tmp_path, cli, exported):
    def exported_bytes() -> bytes:
        return exported[1]["executorch-int8"].read_bytes()

    bad = tmp_path / "broken.int8.pte"
    bad.write_bytes(b"\x00" * 64 + b"not a program")
    res = cli("inspect", bad)
    assert res.code == 1 and "Traceback" not in res.out + res.err and "not an ExecuTorch program" in res.err, res.err
    truncated = tmp_path / "cut.pte"
    truncated.write_bytes(exported_bytes()[:200])
    res = cli("inspect", truncated)
    assert res.code == 1 and "Traceback" not in res.out + res.err, res.err
    from edgeport.runtimes import open_runtime

    with pytest.raises(UserError):
        open_runtime(bad)


@needs_executorch
def test_per_layer_diagnoses_the_pte_in_executorch_and_names_layers_allow_float_takes(cli, prepared, exported, tmp_path):
    """--per-layer on executorch-int8: a twin of the program returning every int8 activation runs in ExecuTorch's
    runtime (XNNPACK), equals the written file's outputs, and gives one row per quantized op; the fallback name of
    the worst row is what --allow-float takes."""
    from edgeport.exporters import executorch as et
    from edgeport.formats.int8_coverage import coverage_of

    res = cli("export", "--model", f"{BYO}:build", "--input-shape", ",".join(map(str, SHAPE)), "--target", "executorch-int8",
              "--calib", "synthetic", "--calib-samples", "16", "--val-samples", "8", "--per-layer", "--out", tmp_path / "o")
    assert res.code == 0 and "Traceback" not in res.out + res.err, res.err + res.out
    record = json.loads((tmp_path / "o" / "per_layer.json").read_text())
    rows = record["targets"]["executorch-int8"]
    assert record["twin_max_abs"] == {"executorch-int8": 0.0}  # the diagnosed twin computes exactly what the file does
    assert len(rows) >= 10 and all(r["sqnr_db"] is None or r["sqnr_db"] < 80 for r in rows)
    assert {r["op"] for r in rows} >= {"conv2d", "linear"} and all(r["layer"] for r in rows)
    local = [r["error_to_scale"] for r in rows if r["error_to_scale"] is not None]
    assert len(local) >= len(rows) - 2 and 0.1 < float(np.median(local)) < 1.0, local  # about rounding, in steps
    worst = next(r for r in rows if r["op"] in ("conv2d", "linear"))
    req, _, _, _ = exported
    path = et.export_int8(ExportRequest("byo", prepared.program, prepared.example, tmp_path, False, req.calibration,
                                        QuantOptions(float_fallback=(worst["fallback"],)), {}, {"model": "byo"}))
    assert coverage_of(path).float_total >= 1


@pytest.mark.slow
@needs_executorch
def test_accuracy_control_backend_ranks_by_diagnosis_and_keeps_layers_float(exported, tmp_path):
    """executorch-int8 accuracy control: candidates ranked by one per-layer diagnosis (largest layer-local error
    first, no build per candidate); a zero budget on agreement with float ends within budget or says why, and what
    it keeps float is float in the written program."""
    from edgeport.formats.int8_coverage import coverage_of
    from edgeport.quantization.accuracy_backends import backend_for
    from edgeport.quantization.accuracy_control import ControlSet, control

    req, _, x, ref = exported
    backend = backend_for("executorch-int8", req)
    ranked, scores = backend.rank(ControlSet(x, None, ref, "held-out"), None, tmp_path, lambda s: None)
    finite = [v for v in scores if np.isfinite(v)]
    assert ranked and finite == sorted(finite, reverse=True) and {c.op for c in ranked} >= {"conv2d", "linear"}
    result = control(backend_for("executorch-int8", req), ControlSet(x, None, ref, "held-out"), 0.0,
                     tmp_path / "final.pte", bench=False)
    assert result.within_budget or result.unreachable, result.summary()
    assert all("error_to_scale" in r for r in result.ranking)
    if result.kept_float:
        assert coverage_of(tmp_path / "final.pte").float_total >= 1


def test_metadata_entry_is_the_shared_one():
    text = metadata.for_target({"model": "m"}, "executorch-int8", "NCHW", io_dtype="float32")
    assert json.loads(text) == {"model": "m", "target": "executorch-int8", "input_layout": "NCHW", "io_dtype": "float32"}


# --- zoo models, CLI end to end (slow) -----------------------------------------------------------------------------

WEIGHTS = Path(__file__).resolve().parents[2] / "edgeport" / "weights"


@pytest.mark.slow
@needs_executorch
@pytest.mark.parametrize("name", ["mobilenet_v2", "mobilenet_v3_small"])
def test_zoo_family_exports_both_targets(name, cli, tmp_path):
    """Random weights (as tests/exporters/test_zoo_all_targets.py): fp32 parity judged; int8 coverage read from the
    program: every compute op int8 inside one XNNPACK partition (MobileNetV3's h-swish included)."""
    res = cli("export", "--model", name, "--input-shape", "1,3,96,96", "--target", "executorch-fp32,executorch-int8",
              "--calib", "synthetic", "--calib-samples", "16", "--val-samples", "8", "--out", tmp_path)
    assert res.code == 0, res.err + res.out
    parity = json.loads((tmp_path / "parity.json").read_text())
    assert not parity["int8_problems"]
    arts = {a["target"]: a for a in parity["artifacts"]}
    assert arts["executorch-int8"]["dtypes"]["float"] == 0 and arts["executorch-int8"]["dtypes"]["int8"] > 50
    judged = {c["stage"]: c for c in parity["validation"]["checks"] if c["against"] == "torch"}
    assert judged["executorch-fp32"]["judged"] and judged["executorch-fp32"]["passed"], judged["executorch-fp32"]
    _assert_all_int8_in_xnnpack(tmp_path / f"{name}.int8.pte")
    from edgeport.formats.delegation import delegation_of

    fast = delegation_of(tmp_path / f"{name}.int8.pte").fast
    # every ReLU6 (MobileNetV2's after a conv, V3's hard-sigmoid relu6(x + 3) after its add or conv) is fused into
    # the op before it: no Clamp node; V3's h-swish is one int8 Hardswish, not an add/clamp/mul chain
    assert "Clamp:int8" not in fast, fast
    assert ("Hardswish:int8" in fast) == (name == "mobilenet_v3_small"), fast


def _assert_all_int8_in_xnnpack(path: Path) -> None:
    from edgeport.formats.delegation import delegation_of
    from edgeport.formats.int8_coverage import coverage_of

    cov = coverage_of(path)
    assert cov.float_total == 0 and not cov.critical_float(), cov.line()
    d = delegation_of(path)
    assert d.partitions == 1 and not d.slow, d.lines()
    assert all(k.endswith(":int8") for k in d.fast), d.fast  # h-swish in int8 too, no fp32 Hardswish


@pytest.mark.slow
@needs_executorch
@pytest.mark.parametrize("zoo, ckpt", [("mobilenet_v2", "fmnist_mobilenet_v2_x0_5.pt"),
                                       ("mobilenet_v3_small", "fmnist_mobilenet_v3_small.pt"),
                                       # the channel shuffles all int8 (no Convert pair around their reshapes)
                                       ("shufflenet_v2_x0_5", "fmnist_shufflenet_v2_x0_5.pt")])
def test_trained_model_int8_parity_in_executorch(zoo, ckpt, cli, tmp_path):
    from tests.datasets import have_fashion_mnist

    if not have_fashion_mnist():
        pytest.skip("Debian dataset-fashion-mnist not installed")
    res = cli("export", "--model", zoo, "--weights", WEIGHTS / ckpt, "--target", "executorch-fp32,executorch-int8",
              "--calib", "fashion-mnist", "--val-samples", "500", "--out", tmp_path)
    assert res.code == 0, res.err + res.out
    parity = json.loads((tmp_path / "parity.json").read_text())
    judged = {c["stage"]: c for c in parity["validation"]["checks"] if c["against"] == "torch"}
    for t in ("executorch-fp32", "executorch-int8"):
        assert judged[t]["judged"] and judged[t]["passed"], judged[t]  # int8: SQNR >= 15 dB, top-1 agreement >= 0.9
    torch_acc = parity["validation"]["accuracy"]["torch"]
    assert torch_acc - judged["executorch-int8"]["accuracy"] <= 0.01, (torch_acc, judged["executorch-int8"]["accuracy"])
    _assert_all_int8_in_xnnpack(tmp_path / f"{zoo}.int8.pte")
