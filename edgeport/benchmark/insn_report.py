"""The instruction-count view of device runs (qemu-pi4/qemu-pi5): guest instructions per inference, their
int8/fp32 ratio within one format, repeatability across the timed runs, emulated wall time (labelled as
such) and arm64-vs-x86 output parity."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from edgeport.benchmark.local import fp32_ratios, target_of_name

EMULATED_NOTE = "emulated ms: wall time of qemu on this machine -- emulated, NOT device latency"


def rows(results) -> list[dict]:
    """One dict per device_bench.DeviceResult that carries an instruction count."""
    out = []
    for r in results:
        run = r.run
        if not run.instructions_per_inference:
            continue
        per_run = run.extra.get("insn_per_run") or []
        spread = (max(per_run) - min(per_run)) / run.instructions_per_inference if len(per_run) > 1 else None
        out.append({
            "artifact": run.artifact, "target": target_of_name(Path(run.artifact)), "device": run.device,
            "core": run.extra.get("core"), "threads": run.threads, "runtime": f"{run.runtime} {run.runtime_version}",
            "instructions_per_inference": run.instructions_per_inference, "insn_per_run": per_run,
            "insn_spread_rel": spread, "exact_count": bool(run.extra.get("counts_exact", True)),
            "emulated_ms_median": run.median_ms, "emulated": run.emulated,
            "parity_max_abs": r.parity.max_abs, "parity_max_rel": r.parity.max_rel, "bit_exact": r.parity.max_abs == 0.0,
        })
    ratios = fp32_ratios([(d["artifact"], d["target"], (d["device"], d["threads"]), d["instructions_per_inference"]) for d in out])
    for d in out:
        d["x_fp32"] = ratios.get((d["artifact"], (d["device"], d["threads"])))
    return out


def table(data: list[dict]) -> Table:
    t = Table(box=None, pad_edge=False, title="guest instructions per inference (QEMU TCG plugin)", title_justify="left")
    for col in ("artifact", "core", "thr", "M insn/inf", "×fp32", "run spread", "emulated ms", "rel max|Δ| vs x86", "bit-exact"):
        t.add_column(col, justify="left" if col in ("artifact", "core") else "right", no_wrap=True)
    for d in data:
        spread = "—" if d["insn_spread_rel"] is None else f"{d['insn_spread_rel'] * 100:.4f} %"
        t.add_row(Path(d["artifact"]).name, d["core"] or d["device"], str(d["threads"]) + ("" if d["exact_count"] else "*"),
                  f"{d['instructions_per_inference'] / 1e6:.2f}", f"{d['x_fp32']:.2f}" if d["x_fp32"] else "—", spread,
                  f"{d['emulated_ms_median']:.0f}" if d["emulated_ms_median"] else "—", f"{d['parity_max_rel']:.1e}",
                  "yes" if d["bit_exact"] else "no")
    return t


def notes(data: list[dict]) -> list[str]:
    lines = [EMULATED_NOTE, "run spread: (max - min) / median of the per-inference counts of the timed runs",
             "rel max|Δ|: largest output difference over the largest |output| of this machine's run of the same file"]
    if any(not d["exact_count"] for d in data):
        lines.append("* more than one thread: guest threads share one counter, counts are approximate")
    return lines
