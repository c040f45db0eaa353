"""``edgeport run --shard K/N``, ``edgeport report merge`` and ``edgeport ci matrix`` (edgeport.pipeline.shards,
edgeport.report.merge): the split is deterministic, disjoint, covering and balanced; two shards plus a merge write
what one unsharded run writes; a missing, conflicting or foreign shard is a typed error naming it."""

from __future__ import annotations

import json
import random
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest

from edgeport.pipeline import shards
from edgeport.pipeline.artifact import sha256_of
from edgeport.pipeline.recipe import BenchSection

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "byo_model.py"
RECIPE = """\
[model]
name = "byo_model.py:build"
input_shape = [1, 3, 32, 32]
num_classes = {classes}

[data]
calib = "synthetic"
calib_samples = 16
val_samples = 16

[export]
targets = {targets}

[bench]
budget_s = 0.05
"""
# three small recipes with different models and targets, so no recipe can restore another's stages from the cache
RECIPES = {"alpha": (10, '["onnx-fp32"]'), "beta": (10, '["onnx-fp32", "onnx-int8"]'), "gamma": (5, '["onnx-fp32", "onnx-int8"]')}


def write_recipes(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURE, folder / FIXTURE.name)
    paths = []
    for name, (classes, targets) in RECIPES.items():
        (folder / f"{name}.toml").write_text(RECIPE.format(classes=classes, targets=targets))
        paths.append(folder / f"{name}.toml")
    return paths


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    """Seventeen parsed recipes of unequal cost (targets, devices, threads vary), in a scrambled name order."""
    from edgeport.pipeline.recipe_run import parse_recipes

    (base,) = parse_recipes([write_recipes(tmp_path_factory.mktemp("many"))[0]])
    names = ["onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16", "tflite-int8"]
    out = []
    for i in range(17):
        targets = tuple(names[: 1 + i % 5]) if i % 3 else ("tflite-int8",)
        bench = BenchSection(("local", "qemu-pi5")[: 1 + i % 2], tuple(range(1, 1 + i % 3 + 1)), 1.0)
        out.append(replace(base, name=f"r{(i * 7) % 17:02d}", targets=targets, bench=bench))
    return out


def test_cost_counts_the_stages_a_target_is_made_from():
    assert shards.export_stages(("tflite-int8",)) == ["torch-fused", "onnx-fp32", "tflite-fp32", "tflite-int8"]
    assert shards.export_stages(("onnx-int8", "tflite-fp16", "onnx-fp32")) == [
        "torch-fused", "onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16"]


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 17, 20])
def test_split_is_deterministic_disjoint_covering_and_balanced(many, count):
    parts = shards.split(many, count)
    assert len(parts) == count
    names = [r.name for part in parts for r in part]
    assert sorted(names) == sorted(r.name for r in many) and len(set(names)) == len(names)  # covering, disjoint
    for part in parts:  # each shard runs its recipes in the order given
        assert [r.name for r in part] == [r.name for r in many if r in part]
    shuffled = many[:]
    random.Random(count).shuffle(shuffled)  # another shell, another order: the same shards
    assert [{r.name for r in p} for p in shards.split(shuffled, count)] == [{r.name for r in p} for p in parts]
    assert [shards.select(many, shards.ShardSpec(k, count)) for k in range(1, count + 1)] == parts
    loads = [sum(shards.cost(r) for r in p) for p in parts]
    assert max(loads) - min(loads) <= max(shards.cost(r) for r in many)  # longest-processing-time-first bound
    if count <= len(many):
        assert all(parts)


@pytest.mark.parametrize("costs,count,loads", [
    ({"a": 10, "b": 1, "c": 1, "d": 1}, 2, [10, 3]),  # by cost, not by count: the big recipe has a job to itself
    ({"a": 5, "b": 4, "c": 3, "d": 3, "e": 3}, 2, [8, 10]),  # round robin over the sorted list would give 11 / 7
    ({"a": 3, "b": 3, "c": 3, "d": 3}, 3, [6, 3, 3]),  # ties: lowest shard number first, names in order
])
def test_split_gives_each_recipe_to_the_least_loaded_shard(monkeypatch, costs, count, loads):
    from types import SimpleNamespace

    monkeypatch.setattr(shards, "cost", lambda r: costs[r.name])
    recipes = [SimpleNamespace(name=n) for n in sorted(costs, reverse=True)]
    parts = shards.split(recipes, count)
    assert [sum(costs[r.name] for r in p) for p in parts] == loads
    if count == 3:
        assert [[r.name for r in p] for p in parts] == [["d", "a"], ["b"], ["c"]]  # run order kept inside a shard


@pytest.mark.parametrize("spec", ["0/2", "3/2", "2", "a/b", "1/0", "-1/2", "1/2/3", ""])
def test_bad_shard_specs_are_usage_errors(cli, tmp_path, spec):
    recipe = write_recipes(tmp_path / "r")[0]
    res = cli("run", recipe, "--shard", spec, "--out", tmp_path / "out", "--cache-dir", tmp_path / "cache")
    assert res.code == 2, res.err
    assert res.err.startswith("error:") and "K/N" in res.err and len(res.err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # refused before anything ran


def test_bad_shard_in_the_api_and_matrix_are_usage_errors(cli, tmp_path):
    import edgeport

    recipe = write_recipes(tmp_path / "r")[0]
    for bad in ((3, 2), (0, 0), "x", (1.0, 2)):
        with pytest.raises(shards.BadShardSpec) as err:
            edgeport.run(recipe, out=tmp_path / "out", shard=bad)
        assert err.value.exit_code == 2 and isinstance(err.value, edgeport.UsageError)
    res = cli("ci", "matrix", recipe, "--shards", "0")
    assert res.code == 2 and "at least one job" in res.err


def test_ci_matrix_lists_each_shard_once(cli, tmp_path):
    paths = write_recipes(tmp_path / "r")
    res = cli("ci", "matrix", *paths, "--shards", "2")
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    assert [e["shard"] for e in plan["include"]] == ["1/2", "2/2"] and [e["id"] for e in plan["include"]] == ["1-of-2", "2-of-2"]
    assert sorted(n for e in plan["include"] for n in e["recipes"]) == sorted(RECIPES)
    res = cli("ci", "matrix", *paths, "--shards", "5")  # never more jobs than recipes
    assert res.code == 0 and [e["shard"] for e in json.loads(res.out)["include"]] == ["1/3", "2/3", "3/3"]
    assert "only 3 recipe(s)" in res.err


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The three recipes run once unsharded and as two shards, each with a cold cache of its own (as separate jobs)."""
    import edgeport

    root = tmp_path_factory.mktemp("shards")
    paths = write_recipes(root / "recipes")
    edgeport.run(paths, out=root / "all", cache_dir=root / "cache-all")
    for k in (1, 2):
        edgeport.run(paths, out=root / f"s{k}", cache_dir=root / f"cache-s{k}", shard=(k, 2))
    return root


def _manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


def _without_timings(m: dict) -> dict:
    """The manifest apart from timings and host lines."""
    m = {k: v for k, v in m.items() if k not in ("started", "wall_s", "cache")}
    m["environment"] = {k: v for k, v in m["environment"].items() if k != "host"}
    m["recipes"] = [{**r, "durations_s": None, "latency": [{k: x[k] for k in ("artifact", "target", "device", "threads", "cached")}
                                                          for x in r["latency"]]} for r in m["recipes"]]
    return m


def _cases(junit: Path) -> list[tuple[str, str, str]]:
    verdict = lambda c: next((t for t in ("failure", "error", "skipped") if c.find(t) is not None), "passed")  # noqa: E731
    return [(c.get("classname"), c.get("name"), verdict(c)) for c in ET.parse(junit).getroot().iter("testcase")]


@pytest.mark.slow
def test_two_shards_merged_equal_one_unsharded_run(runs, cli, tmp_path):
    split = [[r["name"] for r in _manifest(runs / f"s{k}")["recipes"]] for k in (1, 2)]
    assert all(split) and sorted(split[0] + split[1]) == sorted(RECIPES)  # both shards worked, on disjoint recipes
    assert _manifest(runs / "s1")["shard"]["assigned"] == split[0]
    assert "Shard 1/2" in (runs / "s1" / "report.md").read_text()
    res = cli("report", "merge", runs / "s2", runs / "s1", runs / "s1", "--out", tmp_path / "merged")  # any order, twice
    assert res.code == 0, res.err
    merged, alone = _manifest(tmp_path / "merged"), _manifest(runs / "all")
    assert "shard" not in merged and [r["name"] for r in merged["recipes"]] == list(RECIPES)
    shas = {(r["name"], a["target"]): a["sha256"] for r in alone["recipes"] for a in r["artifacts"]}
    assert len(shas) == 5 and shas == {(r["name"], a["target"]): a["sha256"] for r in merged["recipes"] for a in r["artifacts"]}
    for r in merged["recipes"]:  # the merged folder holds the files its manifest describes
        for a in r["artifacts"]:
            assert sha256_of(tmp_path / "merged" / a["path"]) == a["sha256"]
            assert json.loads((tmp_path / "merged" / a["sidecar"]).read_text())["sha256"] == a["sha256"]
        assert (tmp_path / "merged" / r["name"] / "parity.json").is_file()
    assert _cases(tmp_path / "merged" / "junit.xml") == _cases(runs / "all" / "junit.xml")
    assert len(_cases(runs / "all" / "junit.xml")) >= 10
    assert _without_timings(merged) == _without_timings(alone)
    headings = lambda p: [line for line in p.read_text().splitlines() if line.startswith("## ")]  # noqa: E731
    assert headings(tmp_path / "merged" / "report.md") == headings(runs / "all" / "report.md")
    assert (tmp_path / "merged" / "report.html").read_text().count("<svg") == (runs / "all" / "report.html").read_text().count("<svg")


def fake_shard(folder: Path, index: int, count: int, built: dict[str, str], recipes=("alpha", "beta", "gamma")) -> Path:
    """A shard's output as far as the merge checks read it: manifest.json with the split and, per recipe built,
    one artifact whose bytes are ``built[name]``."""
    entries = []
    for name, data in built.items():
        (folder / name).mkdir(parents=True)
        (folder / name / "m.fp32.onnx").write_text(data)
        entries.append({"name": name, "passed": True, "error": None, "artifacts": [
            {"target": "onnx-fp32", "path": f"{name}/m.fp32.onnx", "sha256": sha256_of(folder / name / "m.fp32.onnx")}]})
    manifest = {"edgeport": "0", "started": "2026", "wall_s": 1.0, "force": False, "environment": {"tools": {"torch": "2"}},
                "recipes": entries, "shard": {"index": index, "count": count, "assigned": list(built),
                                              "recipes": [{"name": n, "sha256": n * 2} for n in recipes]}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_merge_names_the_missing_shard(cli, tmp_path):
    one = fake_shard(tmp_path / "one", 1, 3, {"alpha": "a"})
    three = fake_shard(tmp_path / "three", 3, 3, {"gamma": "c"})
    res = cli("report", "merge", one, three, "--out", tmp_path / "merged")
    assert res.code == 1 and "shard 2/3 is missing" in res.err and str(one) in res.err and str(three) in res.err
    assert not (tmp_path / "merged").exists()


def test_merge_names_both_shards_that_built_one_recipe_differently(tmp_path):
    from edgeport.report.merge import ShardConflict, check

    one = fake_shard(tmp_path / "one", 1, 2, {"alpha": "a", "beta": "b"})
    two = fake_shard(tmp_path / "two", 2, 2, {"gamma": "c"})
    again = fake_shard(tmp_path / "again", 2, 2, {"gamma": "c"})  # the same shard downloaded twice: fine
    assert sorted(check([one, two, again])[1]) == ["alpha", "beta", "gamma"]
    other = fake_shard(tmp_path / "other", 2, 2, {"beta": "B", "gamma": "c"})  # beta again, other bytes
    with pytest.raises(ShardConflict) as err:
        check([one, other])
    assert "'beta'" in str(err.value) and str(one) in str(err.value) and str(other) in str(err.value)
    assert err.value.exit_code == 1


def test_merge_refuses_shards_of_different_runs(cli, tmp_path):
    from edgeport.report.merge import ShardMismatch, check

    one = fake_shard(tmp_path / "one", 1, 2, {"alpha": "a", "beta": "b"})
    of_three = fake_shard(tmp_path / "of3", 2, 3, {"gamma": "c"})
    res = cli("report", "merge", one, of_three, "--out", tmp_path / "merged")
    assert res.code == 1 and "different number of shards" in res.err and str(of_three) in res.err
    fewer = fake_shard(tmp_path / "fewer", 2, 2, {"gamma": "c"}, recipes=("alpha", "gamma"))
    with pytest.raises(ShardMismatch, match="different set of recipes"):
        check([one, fewer])
    unsharded = tmp_path / "unsharded"
    unsharded.mkdir()
    (unsharded / "manifest.json").write_text(json.dumps({"recipes": []}))
    with pytest.raises(ShardMismatch, match="unsharded"):
        check([one, unsharded])
    with pytest.raises(ShardMismatch, match="no manifest.json"):
        check([one, tmp_path / "nowhere"])


@pytest.mark.slow
def test_merge_refuses_a_damaged_artifact(runs, tmp_path):
    from edgeport.report.merge import ShardConflict, merge

    damaged = tmp_path / "s1"
    shutil.copytree(runs / "s1", damaged)
    art = _manifest(damaged)["recipes"][0]["artifacts"][0]["path"]
    (damaged / art).write_bytes(b"not an onnx file")
    with pytest.raises(ShardConflict, match="not the file its manifest.json describes"):
        merge([damaged, runs / "s2"], tmp_path / "merged")


def test_a_merged_run_fails_as_the_unsharded_run_would(tmp_path):
    from edgeport.pipeline.recipe_run import run_failure

    ok = {"name": "alpha", "error": None, "error_code": None, "passed": True, "failures": []}
    bad = {"name": "beta", "error": None, "error_code": None, "passed": False, "failures": ["onnx-int8: sqnr 9 < 15"]}
    broken = {"name": "gamma", "error": "tflite-int8 needs tensorflow", "error_code": 4, "passed": False, "failures": []}
    assert run_failure([ok], tmp_path) is None
    assert run_failure([ok, bad], tmp_path).exit_code == 3
    err = run_failure([ok, bad, broken], tmp_path)
    assert err.exit_code == 4 and err.message.startswith("gamma: tflite-int8 needs tensorflow")


def test_merge_reports_is_the_library_call_behind_the_cli(tmp_path):
    """edgeport.merge_reports: the same checks as `edgeport report merge` (a missing shard is named, nothing is
    written) without the CLI."""
    import edgeport
    from edgeport.report.merge import ShardMissing

    one = fake_shard(tmp_path / "one", 1, 3, {"alpha": "a"})
    three = fake_shard(tmp_path / "three", 3, 3, {"gamma": "c"})
    with pytest.raises(ShardMissing, match="shard 2/3 is missing"):
        edgeport.merge_reports([one, three], out=tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    with pytest.raises(edgeport.UsageError, match="no shard folder"):
        edgeport.merge_reports([], out=tmp_path / "merged")
