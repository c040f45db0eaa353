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
