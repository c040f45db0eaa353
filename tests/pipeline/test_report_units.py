"""Report rendering, junit structure, the stage cache and rebuild comparison, on hand-made records (fast)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from edgeport import report
from edgeport.pipeline import recipe_run as pipeline
from edgeport.pipeline import stage_cache
from tests.pipeline.helpers import png_is_nontrivial, screenshot


def _recipe_entry(name="m", per_layer=None, error=None, fail=False, nondet=()):
    check = lambda t, sq, judged=True: {"stage": t, "against": "torch", "judged": judged, "passed": not (fail and t == "onnx-int8"),  # noqa: E731
                                         "failures": ["SQNR 9.0 dB < 15 dB"] if fail and t == "onnx-int8" else [],
                                         "accuracy": 0.9, "max_abs": 1e-5, "sqnr_db": sq, "top1_agreement": 1.0}
    arts = [{"target": t, "path": f"{name}/x.{t}", "sidecar": f"{name}/x.{t}.json", "size": s, "sha256": "ab" * 32,
             "dtypes": {}} for t, s in (("onnx-fp32", 14_000_000), ("onnx-int8", 3_600_000))]
    return {
        "name": name, "recipe": f"{name}.toml", "model": name, "targets": ["onnx-fp32", "onnx-int8"],
        "passed": not fail and error is None, "failures": ["onnx-int8: SQNR 9.0 dB < 15 dB"] if fail else [],
        "error": error, "warnings": ["a [warning] with brackets"], "artifacts": [] if error else arts, "fusion": None,
        "int8_problems": [],
        "validation": None if error else {"checks": [check("onnx-fp32", 120.0), check("onnx-int8", 9.0 if fail else 30.0)],
                                          "accuracy": {"torch": 0.91}},
        "accuracy": [],
        "latency": [] if error else [{"target": "onnx-fp32", "device": "local", "threads": 1, "p50_ms": 40.0},
                                     {"target": "onnx-int8", "device": "local", "threads": 1, "p50_ms": 21.5, "cached": True}],
        "per_layer_int8": per_layer, "durations_s": {"capture + fuse": 7.2, "validate": 3.1},
        "reused_stages": [], "nondeterministic": list(nondet),
    }


def _manifest(*recipes):
    return {"schema": "edgeport.manifest/1", "edgeport": "0", "started": "", "wall_s": 12.5, "force": False, "cache": "",
            "environment": {"host": {"cpu": "test cpu"}, "python": "3.11", "tools": {}}, "passed": all(r["passed"] for r in recipes),
            "recipes": list(recipes)}


def test_reports_show_failures_errors_per_layer_and_nondeterminism(tmp_path):
    layers = {"onnx-int8": [{"layer": f"conv{i}", "sqnr_db": 40 - i} for i in range(20)]}
    nd = [{"target": "tflite-int8", "tool": "TFLiteConverter (full-integer int8)", "before": "a", "after": "b"}]
    m = _manifest(_recipe_entry("good", per_layer=layers, nondet=nd), _recipe_entry("bad", fail=True),
                  _recipe_entry("broken", error="weights file x.pt does not exist"))
    paths = report.write_all(tmp_path, m)
    assert [p.name for p in paths] == list(report.FILES)
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") == 2 + 1 + 2  # latency + size (+ per-layer) for good, latency + size for bad
    assert "per-layer int8 error" in html and "TFLiteConverter (full-integer int8)" in html
    assert "&lt;" not in json.dumps(m) and "weights file x.pt does not exist" in html
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# edgeport run: FAILED") and "❌ onnx-int8: SQNR 9.0 dB < 15 dB" in md
    assert "tflite-int8 is not reproducible" in md and "**error:** weights file x.pt does not exist" in md
    assert "21.50*" in md and "measured by an earlier run" in md
    suites = {s.get("name"): s for s in ET.parse(tmp_path / "junit.xml").getroot()}
    assert suites["bad"].get("failures") == "1" and suites["broken"].get("errors") == "1" and suites["good"].get("failures") == "0"
    failed = [c for c in suites["bad"] if c.find("failure") is not None]
    assert [(c.get("classname"), c.get("name")) for c in failed] == [("edgeport.bad.onnx-int8", "parity")]
    png_is_nontrivial(screenshot(tmp_path / "report.html", tmp_path / "r.png"))


def test_unjudged_parity_is_a_skipped_junit_case():
    entry = _recipe_entry()
    entry["validation"]["checks"][1]["judged"] = False
    root = ET.fromstring(report.junit.build(_manifest(entry)).split("\n", 1)[1])
    skipped = [c for c in root.iter("testcase") if c.find("skipped") is not None]
    assert [(c.get("classname"), c.get("name")) for c in skipped] == [("edgeport.m.onnx-int8", "parity")]


def test_svg_plots_are_reproducible():
    from edgeport.report import plots

    a = plots.bars(["x", "y"], [1.0, 2.0], "ms", "t")
    assert a == plots.bars(["x", "y"], [1.0, 2.0], "ms", "t") and a.startswith("<svg")


def test_stage_cache_store_load_force_and_damage(tmp_path):
    cache = stage_cache.StageCache(tmp_path)
    key = stage_cache.key_of({"stage": "export", "x": 1})
    assert key != stage_cache.key_of({"stage": "export", "x": 2}) and key == stage_cache.key_of({"x": 1, "stage": "export"})
    assert cache.load("export", key) is None
    staging = cache.staging("export")
    (staging / "a.onnx").write_bytes(b"abc")
    cache.store("export", key, {"files": ["a.onnx"], "n": 1}, staging)
    record, folder = cache.load("export", key)
    assert record["n"] == 1 and (folder / "a.onnx").read_bytes() == b"abc"
    assert stage_cache.StageCache(tmp_path, force=True).load("export", key) is None
    assert stage_cache.StageCache(tmp_path, force=True).peek("export", key) is not None
    (folder / "a.onnx").unlink()
    assert cache.load("export", key) is None  # incomplete entry: rebuilt, never half-used
    assert not [p for p in (tmp_path / "export").iterdir() if p.name.startswith(".building-")]


def test_export_key_follows_recipe_weights_and_model_code(tmp_path):
    from edgeport.pipeline import recipe

    base = '[model]\nname = "mobilenet_v2_x0_35"\n[export]\ntargets = ["onnx-fp32"]\n'
    p = tmp_path / "r.toml"
    p.write_text(base)
    k1 = pipeline.export_key(recipe.parse(p))
    p.write_text(base + "\n# a comment changes nothing\n")
    assert pipeline.export_key(recipe.parse(p)) == k1
    p.write_text(base.replace("[\"onnx-fp32\"]", "[\"onnx-fp32\", \"tflite-fp32\"]"))
    assert pipeline.export_key(recipe.parse(p)) != k1
    int8 = '[model]\nname = "mobilenet_v2_x0_35"\n[data]\ncalib = "synthetic"\n[export]\ntargets = ["onnx-int8"]\n'
    keys = set()
    for q in ("", "\n[quantize]\nbias_correction = true\n", "\n[quantize]\nadaround = true\n"):
        p.write_text(int8 + q)
        keys.add(pipeline.export_key(recipe.parse(p)))
    assert len(keys) == 3  # every [quantize] key is in the export stage's key
    (tmp_path / "w.pt").write_bytes(b"1")
    p.write_text(base.replace('x0_35"', 'x0_35"\nweights = "w.pt"'))
    k2 = pipeline.export_key(recipe.parse(p))
    (tmp_path / "w.pt").write_bytes(b"2")
    assert pipeline.export_key(recipe.parse(p)) != k2  # weights by content, not by name
    assert stage_cache.EDGEPORT_DIR / "models" in pipeline.model_code_files("mobilenet_v2")
    assert pipeline.model_code_files(f"{tmp_path}/m.py:f") == [Path(f"{tmp_path}/m.py")]


def test_changed_bytes_names_the_tool():
    before = [{"target": "onnx-fp32", "sha256": "1"}, {"target": "tflite-int8", "sha256": "2"}]
    after = [{"target": "onnx-fp32", "sha256": "1"}, {"target": "tflite-int8", "sha256": "3"}]
    (nd,) = pipeline.changed_bytes(before, after)
    assert nd["target"] == "tflite-int8" and "TFLiteConverter" in nd["tool"]


def test_code_hash_ignores_bytecode(tmp_path):
    (tmp_path / "pkg" / "__pycache__").mkdir(parents=True)
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    before = stage_cache.hash_files([tmp_path / "pkg"], stage_cache.CODE_SUFFIXES)
    (tmp_path / "pkg" / "__pycache__" / "m.cpython-311.pyc").write_bytes(b"new bytecode")
    assert stage_cache.hash_files([tmp_path / "pkg"], stage_cache.CODE_SUFFIXES) == before
    (tmp_path / "pkg" / "m.py").write_text("x = 2\n")
    assert stage_cache.hash_files([tmp_path / "pkg"], stage_cache.CODE_SUFFIXES) != before


def test_reports_show_accuracy_control_and_a_missed_budget_fails_the_recipe(tmp_path):
    from edgeport.pipeline.recipe import AccuracySection, BenchSection, DataSection, ModelSection, QuantSection, Recipe

    control = [{"target": "tflite-int8", "metric": "top-1 accuracy %", "control_data": "fashion-mnist:train, 2000 samples",
                "float_score": 92.7, "int8_score": 91.9, "final_score": 92.5, "drop": 0.2, "budget": 0.5,
                "within_budget": True, "unreachable": None,
                "kept_float": [{"fallback": "t/conv_15", "layer": "tf.nn.convolution_15", "op": "CONV_2D"}]},
               {"target": "onnx-int8", "metric": "top-1 accuracy %", "control_data": "fashion-mnist:train, 2000 samples",
                "float_score": 92.7, "int8_score": 91.0, "final_score": 91.5, "drop": 1.2, "budget": 0.5,
                "within_budget": False, "unreachable": "with all 60 candidate layers float the drop is still 1.20",
                "kept_float": []}]
    entry = {**_recipe_entry("ctl"), "accuracy_control": control}
    report.write_all(tmp_path, _manifest(entry))
    md = (tmp_path / "report.md").read_text()
    assert "Accuracy control (top-1 accuracy % on fashion-mnist:train, 2000 samples" in md
    assert "| tflite-int8 | 92.70 | 91.90 | 92.50 | 0.20 | 0.50 | tf.nn.convolution_15 |" in md
    assert "**1.20** ❌" in md
    assert "tf.nn.convolution_15" in (tmp_path / "report.html").read_text()
    recipe = Recipe("ctl", tmp_path / "r.toml", ModelSection("mobilenet_v2"), {}, DataSection(), QuantSection(),
                    ("onnx-int8",), False, {}, AccuracySection(), BenchSection())
    result = pipeline.RecipeResult(recipe, accuracy_control=control)
    assert not result.passed
    assert result.failures == ["onnx-int8: accuracy control: drop 1.20 points exceeds the budget 0.50 "
                               "(with all 60 candidate layers float the drop is still 1.20)"]


def test_cache_key_covers_every_producer_module(tmp_path):
    """The stage key hashes edgeport's own code from the tree: editing, adding or renaming any module that can
    change an artifact changes it; editing a presentation-only module (cli, report) does not."""
    import shutil

    pkg = tmp_path / "edgeport"
    shutil.copytree(stage_cache.EDGEPORT_DIR, pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    base = stage_cache.producer_sources(pkg)
    assert "runtimes/cpu_features.py" in base and "exporters/onnx_int8.py" in base and "graph/fuse.py" in base
    assert not any(k.startswith(("cli/", "report/")) for k in base)
    for rel in sorted(base):
        if not rel.endswith(".py"):
            continue
        f = pkg / rel
        text = f.read_text()
        f.write_text(text + "\n# edited\n")
        assert stage_cache.producer_sources(pkg) != base, rel
        f.write_text(text)
    assert stage_cache.producer_sources(pkg) == base
    (pkg / "runtimes" / "cpu_features.py").rename(pkg / "runtimes" / "cpu_caps.py")
    assert stage_cache.producer_sources(pkg) != base
    (pkg / "runtimes" / "cpu_caps.py").rename(pkg / "runtimes" / "cpu_features.py")
    (pkg / "cli" / "app.py").write_text("# edited\n")
    assert stage_cache.producer_sources(pkg) == base


def test_hash_files_refuses_a_missing_path(tmp_path):
    from edgeport.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        stage_cache.hash_files([tmp_path / "gone.npz"])
