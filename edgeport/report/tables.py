"""The rows both human reports show, taken from the manifest: one per artifact, one per stage."""

from __future__ import annotations


def _fmt(v, spec: str, none: str = "—") -> str:
    return none if v is None else format(v, spec)


def artifact_rows(r: dict) -> list[dict]:
    checks = {c["stage"]: c for c in (r["validation"] or {}).get("checks", []) if c["against"] == "torch"}
    acc = {a["target"]: a for a in r["accuracy"]}
    rows = []
    for a in r["artifacts"]:
        t = a["target"]
        c = checks.get(t, {})
        lat = [x for x in r["latency"] if x["target"] == t]
        bad = [p for p in r["int8_problems"] if p.startswith(f"{t}:")]
        fails = bad + (c.get("failures") or []) + (acc.get(t, {}).get("failures") or [])
        status = "FAIL" if fails else ("ok" if c.get("judged", False) else "reported")
        rows.append({
            "target": t, "file": a["path"], "size_kb": a["size"] / 1024, "sha256": a["sha256"][:12],
            "sqnr": _fmt(c.get("sqnr_db"), ".1f", "exact" if c else "—"), "max_abs": _fmt(c.get("max_abs"), ".2e"),
            "top1": _fmt(c.get("top1_agreement"), ".3f"), "accuracy": _fmt(c.get("accuracy"), ".4f"),
            "p50": ", ".join(f"{x['p50_ms']:.2f}" + ("*" if x.get("cached") else "") for x in lat if x.get("p50_ms")) or "—",
            "p50_ms": next((x["p50_ms"] for x in lat if x.get("p50_ms")), None),
            "status": status, "failures": fails,
        })
    return rows


ARTIFACT_COLUMNS = (("target", "target"), ("size_kb", "size KiB"), ("sha256", "sha256"), ("sqnr", "SQNR dB vs torch"),
                    ("max_abs", "max abs err"), ("top1", "top-1 agree"), ("accuracy", "accuracy"), ("p50", "p50 ms"),
                    ("status", "status"))


def cell(row: dict, key: str) -> str:
    v = row[key]
    return f"{v:,.1f}" if key == "size_kb" else str(v)


def shard_line(shard: dict) -> str:
    """A sharded run's part (manifest ``shard``, edgeport.pipeline.shards.record) in one line."""
    return (f"{shard['index']}/{shard['count']}: {len(shard['assigned'])} of {len(shard['recipes'])} recipe(s) "
            f"({', '.join(shard['assigned']) or 'none'}); `edgeport report merge` joins the {shard['count']} shards")


def stage_rows(r: dict) -> list[tuple[str, str]]:
    return [(name, f"{s:.2f}") for name, s in r["durations_s"].items()]


PER_LAYER_SHOWN = 5
PER_LAYER_COLUMNS = (("target", "target"), ("layer", "layer"), ("op", "op"), ("sqnr", "SQNR dB"), ("rel_rmse", "rel RMSE"),
                     ("err_scale", "err/scale"), ("flag", "flag"))


def per_layer_rows(r: dict, shown: int = PER_LAYER_SHOWN) -> list[dict]:
    """The ``shown`` worst layers of each int8 target (manifest ``per_layer_int8``, edgeport.diagnose.per_layer), in its
    worst_first order: largest layer-local error in quantization steps, then lowest end-to-end SQNR."""
    def key(p: dict):
        e2s, sqnr = p.get("error_to_scale"), p.get("sqnr_db")
        return (e2s is None, -(e2s or 0.0), float("inf") if sqnr is None else sqnr)

    rows = []
    for target, points in (r.get("per_layer_int8") or {}).items():
        for p in sorted(points, key=key)[:shown]:
            rows.append({"target": target, "layer": p.get("layer", "?"), "op": p.get("op", "—"),
                         "sqnr": _fmt(p.get("sqnr_db"), ".1f", "exact"), "rel_rmse": _fmt(p.get("rel_rmse"), ".4f"),
                         "err_scale": _fmt(p.get("error_to_scale"), ".2f"), "flag": "> 0.7" if p.get("flagged") else ""})
    return rows


CONTROL_COLUMNS = (("target", "target"), ("float", "float"), ("int8", "int8"), ("controlled", "controlled"),
                   ("drop", "drop"), ("budget", "budget"), ("kept", "layers kept float"))


def control_rows(r: dict) -> list[dict]:
    """One row per int8 target of ``[quantize] max_accuracy_drop`` (manifest ``accuracy_control``): scores in the
    control metric, the drop in points and the layers edgeport.quantization.accuracy_control kept float."""
    rows = []
    for c in r.get("accuracy_control") or []:
        rows.append({"target": c["target"], "float": f"{c['float_score']:.2f}", "int8": f"{c['int8_score']:.2f}",
                     "controlled": f"{c['final_score']:.2f}", "drop": f"{c['drop']:.2f}", "budget": f"{c['budget']:.2f}",
                     "kept": ", ".join(k["layer"] for k in c["kept_float"]) or "none",
                     "ok": c["within_budget"], "metric": c["metric"], "data": c.get("control_data", "")})
    return rows
