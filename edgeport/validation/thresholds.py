"""Parity thresholds: the bounds an artifact's outputs must meet against the PyTorch model's."""

from __future__ import annotations

from dataclasses import dataclass

from edgeport.validation.parity import Parity


@dataclass(frozen=True)
class Thresholds:
    """A check passes when (max_abs OK or max_rel OK) and SQNR and top-1 agreement are high enough.

    Any bound left as None is not checked. ``min_top1`` bounds the top-1 agreement with near ties counted as
    agreeing (edgeport.validation.parity: the artifact picked a class PyTorch found at least half as likely as
    its own top-1), and fails only when more than one row disagrees decisively: on fewer than 1 / (1 - min_top1)
    validation samples (10 for 0.9) the bound cannot be met with a single disagreement (docs/real-weights.md,
    "Thresholds").
    """

    max_abs: float | None = None
    max_rel: float | None = None
    min_sqnr_db: float | None = None
    min_top1: float | None = None

    def failures(self, p: Parity) -> list[str]:
        out = []
        if self.max_abs is not None or self.max_rel is not None:
            abs_ok = self.max_abs is not None and p.max_abs <= self.max_abs
            rel_ok = self.max_rel is not None and p.max_rel <= self.max_rel
            if not (abs_ok or rel_ok):
                out.append(f"max abs error {p.max_abs:.2e} > {self.max_abs:.0e} (relative {p.max_rel:.2e} > {self.max_rel:.0e})")
        if self.min_sqnr_db is not None and not p.sqnr_db >= self.min_sqnr_db:
            out.append(f"SQNR {p.sqnr_db:.1f} dB < {self.min_sqnr_db:g} dB")
        if self.min_top1 is not None and not p.top1_decisive >= self.min_top1:
            rows = p.top1_rows or p.samples
            decisive = round((1 - p.top1_agreement) * rows) - p.top1_ties
            if decisive > 1 or rows < 1:
                ties = f" ({p.top1_ties} near ties not counted)" if p.top1_ties else ""
                out.append(f"top-1 agreement {p.top1_decisive:.3f} < {self.min_top1:g}{ties}")
        return out

    def describe(self) -> str:
        parts = []
        if self.max_abs is not None:
            parts.append(f"max|Δ| ≤ {self.max_abs:.0e} or rel ≤ {self.max_rel:.0e}")
        if self.min_sqnr_db is not None:
            parts.append(f"SQNR ≥ {self.min_sqnr_db:g} dB")
        if self.min_top1 is not None:
            parts.append(f"top-1 ≥ {self.min_top1:g}")
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}
