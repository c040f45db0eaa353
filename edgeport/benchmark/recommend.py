"""Which artifact to ship on each device, from what ``edgeport bench`` measured there.

The rule (kept small on purpose; README "Recommendation per device"):

1. Cost is what was measured on that device: guest instructions per inference on an emulated device
   (qemu-pi4/qemu-pi5: emulated wall time says nothing about the board), the p50 latency elsewhere
   (local, ssh://, docker-arm64). Only the smallest thread count measured on a device is compared.
2. An artifact whose outputs are outside its target's thresholds (edgeport.exporters FP32/FP16/INT8) — on the
   device vs this machine, or vs PyTorch in the parity.json written beside it by ``edgeport export`` — is
   flagged and never recommended.
3. An artifact whose delegation report leaves ops out of the fast path (XNNPACK / ORT integer kernels) is
   flagged; it stays eligible, because its measured cost already includes the slow path.
4. int8 is recommended only if the cheapest eligible int8 file costs at most INT8_MARGIN (0.90) times the
   cheapest eligible float (fp32/fp16) file on that device; otherwise the cheapest float file is, and the
   reason gives the int8/float cost range. With only int8 or only float files, the cheapest eligible one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

INT8_MARGIN = 0.90  # int8 must cost <= 0.90x the cheapest float file (>= 10 % cheaper) to be worth its error


@dataclass(frozen=True)
class Measured:
    """One artifact measured on one device."""

    device: str  # as given to --device, e.g. "qemu-pi4"
    artifact: str
    target: str  # "tflite-int8", "onnx-fp32", ... (edgeport.benchmark.local.target_of_name)
    cost: float
    unit: str  # "M insn/inf" or "p50 ms"
    core: str | None = None  # e.g. "cortex-a72"
    parity_failures: tuple[str, ...] = ()  # why its outputs are out of its thresholds
    parity_checked: bool = True
    left_out: int = 0  # ops the delegation report puts off the fast path
    unjudged: bool = False  # its parity record compared it with PyTorch without judging it: never recommended

    @property
    def precision(self) -> str:
        return self.target.rsplit("-", 1)[-1] if "-" in self.target else "unknown"

    @property
    def model(self) -> str:
        return Path(self.artifact).name.split(".")[0]

    def flags(self) -> list[str]:
        out = [f"parity: {f}" for f in self.parity_failures]
        if self.unjudged:
            out.append("not judged vs PyTorch (random weights?): not recommended; export with --weights to judge it")
        if not self.parity_checked:
            out.append("parity not checked (no device-vs-host run and no parity.json beside it)")
        if self.left_out:
            out.append(f"{self.left_out} op(s) off the fast path (delegation report)")
        return out


@dataclass
class Recommendation:
    device: str
    model: str
    unit: str
    artifact: str | None  # None: nothing passed parity
    target: str | None
    reason: str
    int8_vs_float: dict[str, float] = field(default_factory=dict)  # int8 file name -> cost / cheapest float's
    flags: dict[str, list[str]] = field(default_factory=dict)  # file name -> flags

    def to_dict(self) -> dict:
        return asdict(self)


def recommend(measured: list[Measured]) -> list[Recommendation]:
    """One Recommendation per (device, model) that has at least two artifacts measured."""
    groups: dict[tuple[str, str], list[Measured]] = {}
    for m in measured:
        groups.setdefault((m.device, m.model), []).append(m)
    return [_one(device, model, ms) for (device, model), ms in groups.items() if len({m.artifact for m in ms}) > 1]


def _one(device: str, model: str, ms: list[Measured]) -> Recommendation:
    where = ms[0].core or device
    unit = ms[0].unit
    flags = {Path(m.artifact).name: m.flags() for m in ms if m.flags()}
    ok = [m for m in ms if not m.parity_failures and not m.unjudged]
    floats = [m for m in ok if m.precision != "int8"]
    ints = [m for m in ok if m.precision == "int8"]
    rec = Recommendation(device, model, unit, None, None, "", flags=flags)
    if not ok:
        unjudged = sum(m.unjudged for m in ms)
        rec.reason = ("no artifact is within its parity thresholds: ship none of these"
                      + (f" ({unjudged} not judged vs PyTorch)" if unjudged else ""))
        return rec
    best_float = min(floats, key=lambda m: m.cost) if floats else None
    best_int8 = min(ints, key=lambda m: m.cost) if ints else None
    if best_float and best_int8:
        ratios = {Path(m.artifact).name: m.cost / best_float.cost for m in sorted(ints, key=lambda m: m.cost)}
        rec.int8_vs_float = ratios
        lo, hi = min(ratios.values()), max(ratios.values())
        span = f"{lo:.2f}×" if len(ratios) == 1 else f"{lo:.2f}–{hi:.2f}×"
        if best_int8.cost <= INT8_MARGIN * best_float.cost:
            pick = best_int8
            rec.reason = (f"on {where} int8 costs {span} {best_float.target} ({unit}): "
                          f"{best_int8.target} is ≥ {1 - INT8_MARGIN:.0%} cheaper")
        else:
            pick = best_float
            rec.reason = (f"on {where} int8 costs {span} {best_float.target} ({unit}), not ≤ {INT8_MARGIN:.2f}×: "
                          f"ship {best_float.target} (fp32 or fp16), int8's error buys too little")
    else:
        pick = best_float or best_int8
        rec.reason = (f"cheapest of the {pick.precision} files within parity on {where} ({unit}); "
                      f"no {'int8' if best_float else 'float'} file to compare")
    rec.artifact, rec.target = pick.artifact, pick.target
    if flags.get(Path(pick.artifact).name):
        rec.reason += f"; note: {'; '.join(flags[Path(pick.artifact).name])}"
    return rec


# --- building Measured from what bench_cmd collects ------------------------------------------------------
def _reference_checks(artifact: Path) -> list[dict] | None:
    """The checks vs PyTorch that the parity.json beside ``artifact`` holds for it (found by sha256), or None."""
    from edgeport.validation import parity_file

    found = parity_file.record_of(Path(artifact))
    if found is None:
        return None
    record, entry = found
    return [c for c in (record.get("validation") or {}).get("checks", []) if c.get("stage") == entry.get("target")]


def reference(artifact: Path) -> tuple[tuple[str, ...], bool, bool]:
    """What the parity.json beside ``artifact`` says of it, read once: the failures of its judged checks,
    whether a judged check exists, and whether it was compared with PyTorch without being judged."""
    checks = _reference_checks(artifact) or []
    judged = [c for c in checks if c.get("judged")]
    failures = tuple(f"vs {c.get('against')}: {f}" for c in judged for f in c.get("failures", []))
    unjudged = any(c.get("against") == "torch" and not c.get("judged") for c in checks)
    return failures, bool(judged), unjudged


def reference_unjudged(artifact: Path) -> bool:
    """Whether the parity.json beside ``artifact`` compared it with PyTorch without judging it."""
    return reference(artifact)[2]


def reference_failures(artifact: Path) -> tuple[tuple[str, ...], bool]:
    """Failures of ``artifact``'s judged checks in the parity.json beside it, and whether a judged one exists."""
    return reference(artifact)[:2]


def from_local(timings: list, delegations: list, device: str = "local") -> list[Measured]:
    """Measured from edgeport.benchmark.local Timings (torch eager rows skipped) and their Delegation reports."""
    left = {Path(d.path).name: sum(d.left_out.values()) for d in delegations}
    rows = [t for t in timings if t.target != "torch-eager"]
    if not rows:
        return []
    threads = min(t.threads for t in rows)
    out = []
    for t in rows:
        if t.threads != threads:
            continue
        failures, checked, unjudged = reference(Path(t.artifact))  # one read and hash of the file per artifact
        out.append(Measured(device, str(t.artifact), t.target, float(t.p50_ms), "p50 ms", None, failures, checked,
                            left.get(Path(t.artifact).name, 0), unjudged))
    return out


def from_device(results: list, device: str, delegations: dict[str, object] | None = None) -> list[Measured]:
    """Measured from edgeport.benchmark.device_bench.DeviceResults: instructions when counted, else p50 ms.
    Parity: device vs this machine, judged with the target's thresholds, plus parity.json vs PyTorch."""
    from edgeport.benchmark.local import target_of_name

    if not results:
        return []
    threads = min(r.run.threads for r in results)
    out = []
    for r in results:
        if r.run.threads != threads:
            continue
        path = Path(r.run.artifact)
        target = target_of_name(path)
        failures = tuple(f"{device} vs this machine: {f}" for f in thresholds_for(target).failures(r.parity))
        ref, _, unjudged = reference(path)
        counted = r.run.instructions_per_inference
        cost, unit = (counted / 1e6, "M insn/inf") if counted else (float(r.to_dict()["p50_ms"]), "p50 ms")
        d = (delegations or {}).get(path.name)
        out.append(Measured(device, str(path), target, cost, unit, r.run.extra.get("core"), failures + ref, True,
                            _left_out(d, arm=r.run.machine in ("aarch64", "arm64")), unjudged))
    return out


def from_timings(timings: list[dict], validation: dict | None) -> list[Measured]:
    """Measured from ``edgeport run``'s timing dicts (edgeport.pipeline.recipe_run) and its validation record (checks vs
    PyTorch). No delegation report there: left_out stays 0."""
    from edgeport.validation.parity import Parity

    checks = [c for c in (validation or {}).get("checks", []) if c.get("judged")]
    unjudged = {c["stage"] for c in (validation or {}).get("checks", []) if c.get("against") == "torch" and not c.get("judged")}
    out = []
    for device in dict.fromkeys(t["device"] for t in timings):
        rows = [t for t in timings if t["device"] == device]
        threads = min(t["threads"] for t in rows)
        for t in rows:
            if t["threads"] != threads:
                continue
            failures = tuple(f"vs {c['against']}: {f}" for c in checks if c["stage"] == t["target"] for f in c.get("failures", []))
            host = t.get("parity_vs_host")
            if host:
                failures += tuple(f"{device} vs this machine: {f}" for f in thresholds_for(t["target"]).failures(Parity(**host)))
            counted = t.get("instructions_per_inference")
            cost, unit = (counted / 1e6, "M insn/inf") if counted else (t.get("p50_ms"), "p50 ms")
            if cost is None:
                continue
            out.append(Measured(device, t["artifact"], t["target"], float(cost), unit, (t.get("extra") or {}).get("core"),
                                failures, bool(checks) or bool(host), unjudged=t["target"] in unjudged))
    return out


def thresholds_for(target: str):
    from edgeport.exporters import FP16, FP32, INT8

    return {"fp16": FP16, "int8": INT8}.get(target.rsplit("-", 1)[-1], FP32)


def _left_out(delegation, arm: bool) -> int:
    """Ops off the fast path; for ONNX on an arm64 device, ORT's ARM view (arm_preview) when there is one."""
    if delegation is None:
        return 0
    view = delegation.arm_preview if arm and getattr(delegation, "arm_preview", None) is not None else delegation
    return int(sum(view.left_out.values()))


def table(recs: list[Recommendation]):
    from rich.table import Table

    t = Table(box=None, pad_edge=False, title="recommendation per device (edgeport.benchmark.recommend)", title_justify="left")
    for col in ("device", "model", "ship", "why"):
        t.add_column(col, no_wrap=col in ("device", "model", "ship"), overflow="fold")
    for r in recs:
        t.add_row(r.device, r.model, Path(r.artifact).name if r.artifact else "—", r.reason)
    return t


def flag_lines(recs: list[Recommendation]) -> list[str]:
    seen, out = set(), []
    for r in recs:
        for name, fl in r.flags.items():
            for f in fl:
                if (r.device, name, f) not in seen:
                    seen.add((r.device, name, f))
                    out.append(f"flagged on {r.device}: {name}: {f}")
    return out
