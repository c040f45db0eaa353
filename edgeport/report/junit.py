"""junit.xml: one test case per (model, target, check), so CI systems show failures natively.

Checks: ``int8-graph`` (compute ops left float), ``parity`` (vs PyTorch, the recipe's thresholds; skipped
when reported but not judged), ``accuracy`` (on labelled data, when the recipe sets [accuracy]) and
``bench`` (ran and produced a latency). A recipe that could not run is one errored test case.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET


def _case(suite: ET.Element, model: str, target: str, check: str, seconds: float = 0.0) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=f"edgeport.{model}.{target}", name=check, time=f"{seconds:.3f}")


def build(manifest: dict) -> str:
    root = ET.Element("testsuites", name="edgeport run")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for r in manifest["recipes"]:
        suite = ET.SubElement(root, "testsuite", name=r["name"])
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}

        def add(target, check, failure=None, skipped=None, error=None, seconds=0.0, out=None):
            case = _case(suite, r["name"], target, check, seconds)
            counts["tests"] += 1
            if error:
                ET.SubElement(case, "error", message=error[:300]).text = error
                counts["errors"] += 1
            elif failure:
                ET.SubElement(case, "failure", message=failure[:300]).text = failure
                counts["failures"] += 1
            elif skipped:
                ET.SubElement(case, "skipped", message=skipped)
                counts["skipped"] += 1
            if out:
                ET.SubElement(case, "system-out").text = out

        if r["error"]:
            add("recipe", "run", error=r["error"])
        checks = (r["validation"] or {}).get("checks", [])
        for a in r["artifacts"]:
            t = a["target"]
            if t.endswith("int8"):
                bad = [p for p in r["int8_problems"] if p.startswith(f"{t}:")]
                add(t, "int8-graph", failure="; ".join(bad) or None, out=f"dtypes: {a['dtypes']}")
            judged = [c for c in checks if c["stage"] == t and c["against"] == "torch"]
            for c in judged:
                metrics = f"max_abs={c.get('max_abs')} sqnr_db={c.get('sqnr_db')} top1_agreement={c.get('top1_agreement')}"
                if not c["judged"]:
                    add(t, "parity", skipped=f"reported, not judged: {metrics}")
                else:
                    add(t, "parity", failure="; ".join(c["failures"]) or None, out=metrics)
            for acc in (x for x in r["accuracy"] if x["target"] == t):
                add(t, "accuracy", failure="; ".join(acc["failures"]) or None, out=f"top1={acc['accuracy']:.4f}")
            for tm in (x for x in r["latency"] if x["target"] == t):
                p50 = tm.get("p50_ms")
                add(t, f"bench[{tm['device']},threads={tm['threads']}]", error=None if p50 else "no latency measured",
                    out=f"p50_ms={p50}")
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
