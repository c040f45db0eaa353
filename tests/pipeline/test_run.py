"""``edgeport run`` on a small trained model (ONNX targets only, fast tier): outputs, cache, exit codes, lock."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from edgeport.quantization.options import DEFAULT_METHOD
from tests.pipeline.helpers import check_outputs, edgeport_run, png_is_nontrivial, screenshot

TARGETS = {"onnx-fp32", "onnx-int8"}
SMALL = """\
[model]
name = "fmnist_shufflenet_v2_x0_5"

[data]
calib = "fashion-mnist"
calib_samples = 32
val_samples = 64

[export]
targets = ["onnx-fp32", "onnx-int8"]

[thresholds.int8]
min_sqnr_db = 15
min_top1 = 0.9

[accuracy]
min_top1 = {min_top1}

[bench]
budget_s = 0.3
"""


@pytest.fixture
def run(cli):
    """``edgeport run ARGS`` in-process (the module's first, cold run is a real subprocess)."""
    class Proc:
        def __init__(self, res):
            self.returncode, self.stdout, self.stderr = res.code, res.out, res.err

    return lambda *args: Proc(cli("run", *args))


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    (root / "recipes").mkdir()
    (root / "recipes" / "small.toml").write_text(SMALL.format(min_top1=0.5))
    proc = edgeport_run(root / "recipes" / "small.toml", "--out", root / "out", "--cache-dir", root / "cache")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, proc


def test_first_run_writes_every_output(work):
    root, proc = work
    m = check_outputs(root / "out", "small", TARGETS)
    (r,) = m["recipes"]
    assert r["passed"] and r["reused_stages"] == []
    assert {"capture + fuse", "export onnx-fp32", "quantize + export onnx-int8", "validate"} <= set(r["durations_s"])
    assert [a["accuracy"] is not None for a in r["accuracy"]] == [True, True]
    assert "reused from cache" not in proc.stdout


def test_second_run_reuses_every_stage_and_says_so(work, tmp_path, run):
    root, _ = work
    before = json.loads((root / "out" / "manifest.json").read_text())["recipes"][0]["artifacts"]
    proc = run(root / "recipes" / "small.toml", "--out", tmp_path / "out2", "--cache-dir", root / "cache")
    assert proc.returncode == 0, proc.stderr
    assert "small: reused from cache: export, validate, bench" in proc.stdout
    m = check_outputs(tmp_path / "out2", "small", TARGETS)
    r = m["recipes"][0]
    assert r["reused_stages"] == ["export", "validate", "bench"]
    assert "capture + fuse" not in r["durations_s"]
    assert [a["sha256"] for a in r["artifacts"]] == [a["sha256"] for a in before]
    assert all(t["cached"] for t in r["latency"])


def test_a_runs_parity_records_match_an_exports_and_merge_with_them(work, tmp_path, run, cli):
    """parity.json of a run carries what an export's does (input shape, weights, data, quantization per artifact), from
    the built stage and from the cache alike, so an export of another target into the folder merges with it."""
    import shutil

    from edgeport.models import source

    root, _ = work
    shape = list(source.load("fmnist_shufflenet_v2_x0_5").input_shape)
    again = run(root / "recipes" / "small.toml", "--out", tmp_path / "again", "--cache-dir", root / "cache")  # every stage reused
    assert again.returncode == 0, again.stderr
    for out in (root / "out", tmp_path / "again"):
        ran = json.loads((out / "small" / "parity.json").read_text())
        assert ran["input_shape"] == shape and ran["weights"] and ran["recipe"] == "small"
        assert ran["data"]["calibration"] == {"source": "fashion-mnist:train", "samples": 32, "synthetic": False}
        assert ran["data"]["validation"] == {"source": "fashion-mnist:test", "samples": 64, "labelled": True, "held_out": True}
        assert {a["made_with"]["quantization"]["method"] for a in ran["artifacts"]} == {DEFAULT_METHOD}
    folder = tmp_path / "small"
    shutil.copytree(root / "out" / "small", folder)
    int8 = next(a for a in ran["artifacts"] if a["target"] == "onnx-int8")
    res = cli("export", "--model", "fmnist_shufflenet_v2_x0_5", "--target", "onnx-fp32", "--calib", "fashion-mnist",
              "--calib-samples", "32", "--val-samples", "64", "--out", folder)
    assert res.code == 0, res.err
    exported = json.loads((folder / "parity.json").read_text())
    assert set(exported) <= set(ran) and exported["input_shape"] == shape
    assert [a["sha256"] for a in exported["artifacts"] if a["target"] == "onnx-int8"] == [int8["sha256"]]  # the run's, kept
    assert {(c["stage"], c["against"]) for c in exported["validation"]["checks"]} >= {("onnx-int8", "torch"), ("onnx-fp32", "torch")}


def test_force_rebuilds_and_onnx_artifacts_are_reproducible(work, tmp_path, run):
    root, _ = work
    before = {a["target"]: a["sha256"] for a in json.loads((root / "out" / "manifest.json").read_text())["recipes"][0]["artifacts"]}
    proc = run(root / "recipes" / "small.toml", "--out", tmp_path / "out", "--cache-dir", root / "cache", "--force")
    assert proc.returncode == 0, proc.stderr
    r = json.loads((tmp_path / "out" / "manifest.json").read_text())["recipes"][0]
    assert r["reused_stages"] == [] and "capture + fuse" in r["durations_s"]
    assert {a["target"]: a["sha256"] for a in r["artifacts"]} == before
    assert r["nondeterministic"] == []


def test_threshold_failure_reports_every_recipe_then_exits_3(work, tmp_path, run):
    root, _ = work
    strict = root / "recipes" / "strict.toml"
    strict.write_text(SMALL.format(min_top1=0.999))  # same export: only the accuracy judgement differs
    proc = run(strict, root / "recipes" / "small.toml", "--out", tmp_path / "out", "--cache-dir", root / "cache")
    assert proc.returncode == 3, proc.stderr
    assert "strict" in proc.stderr and "accuracy" in proc.stderr and "Traceback" not in proc.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [r["name"] for r in m["recipes"]] == ["strict", "small"]
    assert m["recipes"][0]["seeds"]["data"] == 0 and "random_weights" in m["recipes"][0]["seeds"]
    assert m["environment"]["tools"].get("torch")
    assert not m["passed"] and not m["recipes"][0]["passed"] and m["recipes"][1]["passed"]
    failures = [c for c in ET.parse(tmp_path / "out" / "junit.xml").getroot().iter("testcase") if c.find("failure") is not None]
    assert {(c.get("classname"), c.get("name")) for c in failures} == {
        ("edgeport.strict.onnx-fp32", "accuracy"), ("edgeport.strict.onnx-int8", "accuracy")}
    assert "FAIL" in (tmp_path / "out" / "report.md").read_text().upper()


def test_a_second_run_into_the_same_out_is_refused_while_the_first_holds_it(work, tmp_path, run):
    from edgeport.pipeline.out_lock import locked

    root, _ = work
    with locked(tmp_path / "out"):
        proc = run(root / "recipes" / "small.toml", "--out", tmp_path / "out", "--cache-dir", root / "cache")
    assert proc.returncode == 1
    assert "in use by another edgeport run" in proc.stderr and "--wait" in proc.stderr
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_missing_weights_is_a_one_line_user_error(tmp_path, run):
    p = tmp_path / "r.toml"
    p.write_text('[model]\nname = "mobilenet_v2"\nweights = "missing.pt"\n')
    proc = run(p, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert proc.returncode == 1
    assert f"{p}:3:" in proc.stderr and "missing.pt" in proc.stderr and "Traceback" not in proc.stderr


def test_report_html_renders_in_headless_chromium(work, tmp_path):
    root, _ = work
    png = screenshot(root / "out" / "report.html", tmp_path / "report.png")
    png_is_nontrivial(png)


def test_a_recipe_that_fails_at_run_time_does_not_stop_the_others(work, tmp_path, run):
    root, _ = work
    (root / "recipes" / "empty").mkdir(exist_ok=True)
    broken = root / "recipes" / "broken.toml"
    broken.write_text('[model]\nname = "fmnist_shufflenet_v2_x0_5"\n[data]\ncalib = "empty"\n')  # no images inside
    proc = run(broken, root / "recipes" / "small.toml", "--out", tmp_path / "out", "--cache-dir", root / "cache")
    assert proc.returncode == 1 and "no images" in proc.stderr and "Traceback" not in proc.stderr
    m = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [r["name"] for r in m["recipes"]] == ["broken", "small"]
    assert "no images" in m["recipes"][0]["error"] and m["recipes"][1]["passed"]
    errors = [c for c in ET.parse(tmp_path / "out" / "junit.xml").getroot().iter("testcase") if c.find("error") is not None]
    assert [(c.get("classname"), c.get("name")) for c in errors] == [("edgeport.broken.recipe", "run")]


def test_wait_queues_behind_the_lock_holder(work, tmp_path, run):
    import threading
    import time

    from edgeport.pipeline.out_lock import locked

    root, _ = work
    release = threading.Event()

    def hold():
        with locked(tmp_path / "out"):
            release.wait(30)

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.2)
    timer = threading.Timer(3.0, release.set)
    timer.start()
    proc = run(root / "recipes" / "small.toml", "--out", tmp_path / "out", "--cache-dir", root / "cache", "--wait")
    holder.join()
    assert release.is_set()  # the run could only finish after the holder let go
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "manifest.json").is_file()


@pytest.mark.slow
def test_recipe_accuracy_control_reaches_manifest_and_report(tmp_path, run):
    """[quantize] max_accuracy_drop runs accuracy control on the int8 target after export; an impossible budget
    (-> exit 3) is not possible here, so a zero budget on the labelled validation split is used and checked."""
    recipe = tmp_path / "ctl.toml"
    recipe.write_text(SMALL.format(min_top1=0.5).replace("[export]", "[quantize]\nmax_accuracy_drop = 0.0\n\n[export]"))
    proc = run(str(recipe), "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    (entry,) = manifest["recipes"]
    (control,) = entry["accuracy_control"]
    assert control["target"] == "onnx-int8" and control["budget"] == 0.0 and control["metric"] == "top-1 accuracy %"
    assert control["samples"] == 64
    assert proc.returncode == (0 if control["within_budget"] else 3), proc.stdout[-2000:] + proc.stderr[-2000:]
    (art,) = [a for a in entry["artifacts"] if a["target"] == "onnx-int8"]
    assert art["dtypes"]["float"] >= len(control["kept_float"])  # re-read from the controlled file
    assert "Accuracy control (top-1 accuracy %" in (tmp_path / "out" / "report.md").read_text()
