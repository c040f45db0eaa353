"""report.html: one self-contained page (inline CSS and SVG plots, no scripts, no external files)."""

from __future__ import annotations

from html import escape

from edgeport.report import plots
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

CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#176f2c;font-weight:600}.FAIL{color:#b00020;font-weight:700}.reported{color:#8a6d00}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plots svg{max-width:540px;height:auto}
.note{color:#555;font-size:13px}li.fail{color:#b00020}
"""


def _table(header: list[str], rows: list[list[str]], num: set[int] = frozenset(), classes: dict | None = None) -> str:
    out = ["<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>"]
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            cls = [c for c in (("num" if i in num else ""), (classes or {}).get((i, v), "")) if c]
            cells.append(f"<td{' class=' + chr(34) + ' '.join(cls) + chr(34) if cls else ''}>{escape(v)}</td>")
        out.append("<tr>" + "".join(cells) + "</tr>")
    return "\n".join(out) + "</table>"


def _recipe(r: dict) -> str:
    badge = "<span class=ok>PASS</span>" if r["passed"] else "<span class=FAIL>FAIL</span>"
    parts = [f"<h2>{badge} {escape(r['name'])} <small>({escape(r['model'])})</small></h2>"]
    if r["reused_stages"]:
        parts.append(f"<p class=note>reused from the stage cache: {escape(', '.join(r['reused_stages']))}</p>")
    if r["error"]:
        parts.append(f"<p class=FAIL>error: {escape(r['error'])}</p>")
    rows = artifact_rows(r)
    if rows:
        status_col = len(ARTIFACT_COLUMNS) - 1
        parts.append(_table([h for _, h in ARTIFACT_COLUMNS], [[cell(row, k) for k, _ in ARTIFACT_COLUMNS] for row in rows],
                            num={1, 3, 4, 5, 6, 7}, classes={(status_col, s): s for s in ("ok", "FAIL", "reported")}))
        if any(x.get("cached") for x in r["latency"]):
            parts.append("<p class=note>* latency measured by an earlier run on this host (bench stage reused from the cache)</p>")
        plots_html = []
        timed = [row for row in rows if row["p50_ms"]]
        if timed:
            plots_html.append(plots.bars([row["target"] for row in timed], [row["p50_ms"] for row in timed],
                                         "p50 latency (ms)", f"{r['name']}: latency per target"))
        plots_html.append(plots.bars([row["target"] for row in rows], [row["size_kb"] for row in rows],
                                     "size (KiB)", f"{r['name']}: size per target"))
        if r.get("per_layer_int8"):
            plots_html.append(plots.per_layer(r["per_layer_int8"], f"{r['name']}: per-layer int8 error"))
        parts.append("<div class=plots>" + "\n".join(plots_html) + "</div>")
        worst = per_layer_rows(r)
        if worst:
            parts.append("<p class=note>per-layer int8 error, worst first (err/scale: the layer's own error in quantization "
                         "steps, ~0.29 is rounding, flagged above 0.7; SQNR end to end vs the float model)</p>")
            parts.append(_table([h for _, h in PER_LAYER_COLUMNS], [[str(w[k]) for k, _ in PER_LAYER_COLUMNS] for w in worst],
                                num={3, 4, 5}, classes={(6, "> 0.7"): "FAIL"}))
    control = control_rows(r)
    if control:
        parts.append(f"<p class=note>accuracy control: {escape(control[0]['metric'])} on {escape(control[0]['data'])}; "
                     "drop in points; the layers kept float are the fewest found within the budget</p>")
        parts.append(_table([h for _, h in CONTROL_COLUMNS], [[str(c[k]) for k, _ in CONTROL_COLUMNS] for c in control],
                            num={1, 2, 3, 4, 5}))
    items = [f"<li class=fail>{escape(f)}</li>" for f in r["failures"]]
    items += [f"<li>⚠ {escape(w)}</li>" for w in r["warnings"]]
    items += [f"<li>⚠ {escape(n['target'])} is not reproducible: {escape(n['tool'])} wrote different bytes for the same inputs</li>"
              for n in r["nondeterministic"]]
    if items:
        parts.append("<ul>" + "".join(items) + "</ul>")
    stages = stage_rows(r)
    if stages:
        parts.append("<details open><summary>time per stage (this run)</summary>"
                     + _table(["stage", "seconds"], [list(s) for s in stages], num={1}) + "</details>")
    return "\n".join(parts)


def build(m: dict) -> str:
    env = m["environment"]
    status = "PASSED" if m["passed"] else "FAILED"
    head = (f"<h1>edgeport run: <span class={'ok' if m['passed'] else 'FAIL'}>{status}</span></h1>"
            f"<p class=note>{len(m['recipes'])} recipe(s) · wall time {m['wall_s']:.1f} s · edgeport {escape(m['edgeport'])} · "
            f"{escape(env['host']['cpu'])} · Python {escape(env['python'])}</p>")
    if m.get("shard"):  # edgeport run --shard K/N: one part of a run; `edgeport report merge` joins the parts
        head += f"<p class=note>shard {escape(shard_line(m['shard']))}</p>"
    body = head + "\n".join(_recipe(r) for r in m["recipes"])
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>edgeport report</title>"
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
