"""report.md: short enough for a CI job summary (GitHub $GITHUB_STEP_SUMMARY, GitLab artifacts)."""

from __future__ import annotations

from edgeport.report.tables import (
    ARTIFACT_COLUMNS,
    CONTROL_COLUMNS,
    PER_LAYER_COLUMNS,
    artifact_rows,
    cell,
    control_rows,
    per_layer_rows,
    shard_line,
    stage_rows,
)


def build(m: dict) -> str:
    env = m["environment"]
    status = "PASSED" if m["passed"] else "FAILED"
    lines = [f"# edgeport run: {status}", "",
             f"{len(m['recipes'])} recipe(s), wall time {m['wall_s']:.1f} s, edgeport {m['edgeport']}, "
             f"host: {env['host']['cpu']}", ""]
    if m.get("shard"):  # edgeport run --shard K/N: one part of a run; `edgeport report merge` joins the parts
        lines += [f"Shard {shard_line(m['shard'])}", ""]
    for r in m["recipes"]:
        mark = "✅" if r["passed"] else "❌"
        reused = f" — reused from cache: {', '.join(r['reused_stages'])}" if r["reused_stages"] else ""
        lines += [f"## {mark} {r['name']} ({r['model']}){reused}", ""]
        if r["error"]:
            lines += [f"**error:** {r['error']}", ""]
        rows = artifact_rows(r)
        if rows:
            lines.append("| " + " | ".join(h for _, h in ARTIFACT_COLUMNS) + " |")
            lines.append("|" + "|".join("---" if k in ("target", "status", "sha256") else "---:" for k, _ in ARTIFACT_COLUMNS) + "|")
            lines += ["| " + " | ".join(cell(row, k) for k, _ in ARTIFACT_COLUMNS) + " |" for row in rows]
            lines.append("")
            if any(x.get("cached") for x in r["latency"]):
                lines += ["\\* latency measured by an earlier run on this host (bench stage reused from the cache)", ""]
        worst = per_layer_rows(r)
        if worst:  # edgeport.diagnose.per_layer: where int8 error enters, worst first per target
            lines += ["Per-layer int8 error, worst first (err/scale: the layer's own error in quantization steps, "
                      "~0.29 is rounding; SQNR end to end vs the float model):", ""]
            lines.append("| " + " | ".join(h for _, h in PER_LAYER_COLUMNS) + " |")
            lines.append("|" + "|".join("---" if k in ("target", "layer", "op", "flag") else "---:" for k, _ in PER_LAYER_COLUMNS) + "|")
            lines += ["| " + " | ".join(str(w[k]) for k, _ in PER_LAYER_COLUMNS) + " |" for w in worst]
            lines.append("")
        control = control_rows(r)
        if control:  # edgeport.quantization.accuracy_control: the fewest layers kept float to stay within the budget
            lines += [f"Accuracy control ({control[0]['metric']} on {control[0]['data']}; drop in points):", ""]
            lines.append("| " + " | ".join(h for _, h in CONTROL_COLUMNS) + " |")
            lines.append("|" + "|".join("---" if k in ("target", "kept") else "---:" for k, _ in CONTROL_COLUMNS) + "|")
            lines += ["| " + " | ".join(str(c[k]) if k != "drop" or c["ok"] else f"**{c[k]}** ❌" for k, _ in CONTROL_COLUMNS)
                      + " |" for c in control]
            lines.append("")
        if r.get("recommendation"):  # several bench devices: which file to ship on each (edgeport.benchmark.recommend)
            lines += ["| device | ship | why |", "|---|---|---|"]
            lines += [f"| {x['device']} | {(x['artifact'] or '—').rsplit('/', 1)[-1]} | {x['reason']} |" for x in r["recommendation"]]
            lines.append("")
        for f in r["failures"]:
            lines.append(f"- ❌ {f}")
        for w in r["warnings"]:
            lines.append(f"- ⚠️ {w}")
        for n in r["nondeterministic"]:
            lines.append(f"- ⚠️ {n['target']} is not reproducible: {n['tool']} wrote different bytes for the same inputs")
        if r["failures"] or r["warnings"] or r["nondeterministic"]:
            lines.append("")
        stages = stage_rows(r)
        if stages:
            lines.append("<details><summary>time per stage</summary>\n")
            lines += ["| stage | seconds |", "|---|---:|"] + [f"| {n} | {s} |" for n, s in stages]
            lines += ["", "</details>", ""]
    return "\n".join(lines) + "\n"
