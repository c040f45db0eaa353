"""The per-device recommendation rule (edgeport.benchmark.recommend) on synthetic measurements."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from edgeport.benchmark.recommend import INT8_MARGIN, Measured, from_device, recommend
from edgeport.validation.parity import Parity


def _m(device, name, cost, core=None, **kw):
    target = "-".join(reversed(name.split(".")[-2:]))  # mobilenet_v2.int8.tflite -> tflite-int8
    return Measured(device, f"/a/{name}", target, cost, "M insn/inf", core, **kw)


# Measured MobileNetV2 counts (README, ARM (QEMU)): a76 has SDOT, a72 does not.
A76 = [("mobilenet_v2.int8.tflite", 49.18), ("mobilenet_v2.fp32.tflite", 120.46),
       ("mobilenet_v2.int8.onnx", 58.40), ("mobilenet_v2.fp32.onnx", 178.59)]
A72 = [("mobilenet_v2.int8.tflite", 113.68), ("mobilenet_v2.fp32.tflite", 123.35),
       ("mobilenet_v2.int8.onnx", 127.42), ("mobilenet_v2.fp32.onnx", 178.60)]


def test_int8_recommended_where_it_is_clearly_cheaper():
    (rec,) = recommend([_m("qemu-pi5", n, c, "cortex-a76") for n, c in A76])
    assert rec.target == "tflite-int8"
    assert rec.int8_vs_float["mobilenet_v2.int8.tflite"] == pytest.approx(49.18 / 120.46)
    assert "cortex-a76" in rec.reason


def test_float_recommended_when_int8_is_within_the_margin():
    (rec,) = recommend([_m("qemu-pi4", n, c, "cortex-a72") for n, c in A72])
    assert rec.target == "tflite-fp32"  # int8 is 0.92x: not >= 10 % cheaper
    assert "0.92–1.03×" in rec.reason and "fp32 or fp16" in rec.reason


def test_margin_boundary():
    just = recommend([_m("d", "m.fp32.tflite", 100.0), _m("d", "m.int8.tflite", 100.0 * INT8_MARGIN)])
    over = recommend([_m("d", "m.fp32.tflite", 100.0), _m("d", "m.int8.tflite", 100.0 * INT8_MARGIN + 0.01)])
    assert just[0].target == "tflite-int8" and over[0].target == "tflite-fp32"


def test_parity_failure_is_flagged_and_never_recommended():
    ms = [_m("d", "m.fp32.tflite", 100.0), _m("d", "m.int8.tflite", 30.0, parity_failures=("SQNR 3.0 dB < 15 dB",)),
          _m("d", "m.fp16.tflite", 95.0)]
    (rec,) = recommend(ms)
    assert rec.target == "tflite-fp16"  # the cheapest float; the broken int8 is out
    assert rec.flags["m.int8.tflite"] == ["parity: SQNR 3.0 dB < 15 dB"]
    assert rec.int8_vs_float == {}


def test_nothing_within_parity_recommends_nothing():
    (rec,) = recommend([_m("d", n, 1.0, parity_failures=("x",)) for n in ("m.fp32.onnx", "m.int8.onnx")])
    assert rec.artifact is None and "ship none" in rec.reason


def test_left_out_ops_flag_but_keep_the_artifact_eligible():
    (rec,) = recommend([_m("d", "m.fp32.onnx", 100.0), _m("d", "m.int8.onnx", 50.0, left_out=25)])
    assert rec.target == "onnx-int8"
    assert "25 op(s) off the fast path" in rec.reason


def test_one_recommendation_per_device_and_model():
    ms = [_m("qemu-pi5", n, c, "cortex-a76") for n, c in A76] + [_m("qemu-pi4", n, c, "cortex-a72") for n, c in A72]
    ms += [_m("qemu-pi4", "other.fp32.onnx", 1.0)]  # one file of another model: nothing to choose between
    recs = {(r.device, r.model): r.target for r in recommend(ms)}
    assert recs == {("qemu-pi5", "mobilenet_v2"): "tflite-int8", ("qemu-pi4", "mobilenet_v2"): "tflite-fp32"}


def _result(name, insn, parity, threads=1):
    run = SimpleNamespace(artifact=f"/nowhere/{name}", threads=threads, instructions_per_inference=insn,
                          extra={"core": "cortex-a72"}, machine="aarch64")
    return SimpleNamespace(run=run, parity=parity, to_dict=lambda: {"p50_ms": 7.0})


def test_from_device_judges_device_vs_host_with_the_target_thresholds():
    exact = Parity(max_abs=0.0, mean_abs=0.0, max_rel=0.0, cosine=1.0, sqnr_db=float("inf"), top1_agreement=1.0, top5_overlap=1.0,
                   samples=4)
    off = Parity(max_abs=0.5, mean_abs=0.1, max_rel=0.5, cosine=0.5, sqnr_db=2.0, top1_agreement=0.25, top5_overlap=0.5, samples=4)
    ms = from_device([_result("m.int8.onnx", 50e6, off), _result("m.fp32.onnx", 100e6, exact),
                      _result("m.fp32.onnx", 60e6, exact, threads=2)], "qemu-pi4")
    assert [(m.target, m.cost, m.unit) for m in ms] == [("onnx-int8", 50.0, "M insn/inf"), ("onnx-fp32", 100.0, "M insn/inf")]
    assert any("SQNR" in f for f in ms[0].parity_failures) and ms[1].parity_failures == ()
    assert recommend(ms)[0].target == "onnx-fp32"


def test_from_timings_of_edgeport_run_and_the_markdown_report():
    from edgeport.benchmark.recommend import from_timings
    from edgeport.report import markdown

    exact = {"max_abs": 0.0, "mean_abs": 0.0, "max_rel": 0.0, "cosine": 1.0, "sqnr_db": float("inf"), "top1_agreement": 1.0,
             "top5_overlap": 1.0, "samples": 4}
    timings = [
        {"device": "local", "artifact": "m.fp32.tflite", "target": "tflite-fp32", "threads": 1, "p50_ms": 4.0},
        {"device": "local", "artifact": "m.int8.tflite", "target": "tflite-int8", "threads": 1, "p50_ms": 3.9},
        {"device": "qemu-pi5", "artifact": "m.fp32.tflite", "target": "tflite-fp32", "threads": 1, "p50_ms": 900.0,
         "instructions_per_inference": 120e6, "extra": {"core": "cortex-a76"}, "parity_vs_host": exact},
        {"device": "qemu-pi5", "artifact": "m.int8.tflite", "target": "tflite-int8", "threads": 1, "p50_ms": 300.0,
         "instructions_per_inference": 49e6, "extra": {"core": "cortex-a76"}, "parity_vs_host": exact},
    ]
    validation = {"checks": [{"stage": "tflite-int8", "against": "torch", "judged": True, "failures": []}]}
    recs = {r.device: r for r in recommend(from_timings(timings, validation))}
    assert recs["local"].target == "tflite-fp32" and recs["qemu-pi5"].target == "tflite-int8"
    assert recs["qemu-pi5"].unit == "M insn/inf"  # emulated: instructions, never the emulated wall time
    failing = {"checks": [{"stage": "tflite-int8", "against": "torch", "judged": True, "failures": ["SQNR 3 dB < 15 dB"]}]}
    assert all(r.target == "tflite-fp32" for r in recommend(from_timings(timings, failing)))
    entry = {"name": "r", "model": "m", "passed": True, "reused_stages": [], "error": None, "artifacts": [], "latency": [],
             "failures": [], "warnings": [], "nondeterministic": [], "durations_s": {}, "validation": None, "accuracy": [],
             "int8_problems": [], "recommendation": [r.to_dict() for r in recs.values()]}
    md = markdown.build({"environment": {"host": {"cpu": "x"}}, "passed": True, "recipes": [entry], "wall_s": 1.0, "edgeport": "0"})
    assert "| qemu-pi5 | m.int8.tflite |" in md and "| local | m.fp32.tflite |" in md


def test_unjudged_int8_is_never_recommended():
    """Random-weight int8 is reported vs PyTorch but not judged: the cheaper file is flagged, not shipped."""
    ms = [_m("qemu-pi5", n, c, "cortex-a76", unjudged=n.endswith("int8.tflite")) for n, c in A76]
    (rec,) = recommend(ms)
    assert rec.target != "tflite-int8" and rec.artifact.endswith("int8.onnx")
    assert any("not judged" in f for f in rec.flags["mobilenet_v2.int8.tflite"])
    (none,) = recommend([_m("d", "m.fp32.tflite", 1.0, unjudged=True), _m("d", "m.int8.tflite", 0.5, unjudged=True)])
    assert none.artifact is None and "2 not judged" in none.reason


def test_unjudged_is_read_from_parity_json(tmp_path):
    import hashlib
    import json

    from edgeport.benchmark.recommend import reference_unjudged

    art = tmp_path / "m.int8.tflite"
    art.write_bytes(b"x")
    record = {"artifacts": [{"path": str(art), "target": "tflite-int8", "sha256": hashlib.sha256(b"x").hexdigest()}],
              "validation": {"checks": [{"stage": "tflite-int8", "against": "torch", "judged": False, "passed": None}]}}
    (tmp_path / "parity.json").write_text(json.dumps(record))
    assert reference_unjudged(art)
    record["validation"]["checks"][0].update(judged=True, passed=True)
    (tmp_path / "parity.json").write_text(json.dumps(record))
    assert not reference_unjudged(art)
