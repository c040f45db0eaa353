"""The CI example workflow runs the command the docs describe and publishes every report file."""

from __future__ import annotations

from pathlib import Path

import yaml

from edgeport import report

ROOT = Path(__file__).resolve().parents[2]


def test_github_workflow_runs_all_recipes_and_publishes_reports():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "edgeport-artifacts.yml").read_text())
    steps = wf["jobs"]["artifacts"]["steps"]
    runs = [s.get("run", "") for s in steps]
    assert any("bash scripts/setup.sh" in r for r in runs)
    assert any("edgeport run recipes/*.toml --out artifacts/" in r for r in runs)
    upload = next(s for s in steps if s.get("uses", "").startswith("actions/upload-artifact"))
    for name in report.FILES[1:]:
        assert f"artifacts/{name}" in upload["with"]["path"]
    assert upload["if"] == "always()"
    junit = next(s for s in steps if "publish-unit-test-result" in s.get("uses", ""))
    assert junit["with"]["files"] == "artifacts/junit.xml"
    cache = next(s for s in steps if s.get("uses", "").startswith("actions/cache"))
    assert cache["with"]["path"] == "~/.cache/edgeport"


def test_ci_doc_covers_github_and_gitlab():
    doc = (ROOT / "docs" / "ci.md").read_text()
    assert "edgeport-artifacts.yml" in doc and "junit: artifacts/junit.xml" in doc
    gitlab = doc.split("```yaml", 1)[1].split("```", 1)[0]
    job = yaml.safe_load(gitlab)["edgeport-artifacts"]
    assert job["artifacts"]["reports"]["junit"] == "artifacts/junit.xml" and job["artifacts"]["when"] == "always"


def test_sharded_github_workflow_plans_builds_each_shard_then_merges():
    wf = yaml.safe_load((ROOT / ".github" / "workflows" / "edgeport-sharded.yml").read_text())
    plan, build, merge = (wf["jobs"][j] for j in ("plan", "build", "report"))
    assert any("edgeport ci matrix recipes/*.toml --shards" in s.get("run", "") for s in plan["steps"])
    assert build["needs"] == "plan" and "fromJSON(needs.plan.outputs.matrix)" in build["strategy"]["matrix"]
    assert build["strategy"]["fail-fast"] is False
    runs = [s.get("run", "") for s in build["steps"]]
    assert any("edgeport run recipes/*.toml --shard ${{ matrix.shard }} --out artifacts/" in r for r in runs)
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-artifact"))
    assert upload["if"] == "always()" and upload["with"]["name"] == "edgeport-shard-${{ matrix.id }}"
    assert merge["needs"] == "build" and merge["if"] == "always()"
    download = next(s for s in merge["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["pattern"] == "edgeport-shard-*"
    assert any("edgeport report merge shards/* --out artifacts/" in s.get("run", "") for s in merge["steps"])
    junit = next(s for s in merge["steps"] if "publish-unit-test-result" in s.get("uses", ""))
    assert junit["with"]["files"] == "artifacts/junit.xml"


def test_ci_doc_has_a_gitlab_matrix_and_a_merge_job_that_needs_it():
    doc = (ROOT / "docs" / "ci.md").read_text()
    (block,) = [b.split("```", 1)[0] for b in doc.split("```yaml")[1:] if "parallel:" in b.split("```", 1)[0]]
    jobs = yaml.safe_load(block)
    shard, merge = jobs["edgeport-shard"], jobs["edgeport-report"]
    (entry,) = shard["parallel"]["matrix"]
    assert entry["SHARD"] == ["1/3", "2/3", "3/3"] and any('--shard "$SHARD"' in line for line in shard["script"])
    assert shard["artifacts"]["when"] == "always"
    assert merge["needs"] == ["edgeport-shard"] and merge["when"] == "always"
    assert any("edgeport report merge shards/* --out artifacts/" in line for line in merge["script"])
    assert merge["artifacts"]["reports"]["junit"] == "artifacts/junit.xml"
