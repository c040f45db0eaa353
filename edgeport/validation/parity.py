"""Numerical parity metrics between a reference output and an artifact's output.

Classification outputs (N, classes) compare top-1/top-5 per sample. Dense outputs (N, C, H, W: segmentation
logits, detection maps) compare them per pixel: the class axis is C, and top-1 agreement is the fraction of
pixels whose argmax over C matches (the per-pixel agreement segmentation users read); SQNR and max error are
over every element either way. Outputs arrive in the PyTorch model's layout (runners map a file's NHWC back).

A top-1 disagreement is a *near tie* when the class the artifact picks was, for the PyTorch model, at least
TIE_RATIO as likely as its own top-1 (softmax of the scores; rows that already are probabilities are taken as
they are): on ImageNet-trained networks and real photos every int8 flip measured was one (a cell micrograph,
PyTorch 0.07 vs 0.04; grace_hopper 0.20 vs 0.20; docs/real-weights.md, "Thresholds"), and a threshold should not
count a coin toss the float model itself could not call."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TIE_RATIO = 0.5


@dataclass(frozen=True)
class Parity:
    max_abs: float
    mean_abs: float
    max_rel: float  # max abs error relative to the reference's largest magnitude
    cosine: float
    sqnr_db: float
    top1_agreement: float
    top5_overlap: float
    samples: int
    top1_rows: int = 0  # rows of class scores top-1 was counted over: one per sample, or per pixel of a dense output
    top1_ties: int = 0  # of the rows whose top-1 differs, the near ties (see the module docstring)

    @property
    def top1_decisive(self) -> float:
        """Top-1 agreement with near ties counted as agreeing."""
        rows = self.top1_rows or self.samples
        return min(1.0, self.top1_agreement + self.top1_ties / rows) if rows else self.top1_agreement

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (
            f"max|Δ| {self.max_abs:.2e}  mean|Δ| {self.mean_abs:.2e}  cos {self.cosine:.6f}  "
            f"SQNR {self.sqnr_db:.1f} dB  top-1 {self.top1_agreement:.3f}  ({self.samples} samples)"
        )


def class_axis(shape: tuple[int, ...]) -> int:
    """The axis holding classes: C of a dense (N, C, H, W) output, else the last."""
    return 1 if len(shape) == 4 else -1


def near_ties(rows: np.ndarray, ref_top: np.ndarray, out_top: np.ndarray) -> int:
    """How many rows whose top-1 differs picked a class the reference scored at least TIE_RATIO as likely."""
    differ = np.flatnonzero(ref_top != out_top)
    if not len(differ):
        return 0
    r = rows[differ]
    if not (np.all(r >= 0) and np.allclose(r.sum(axis=1), 1.0, atol=1e-3)):  # scores, not probabilities
        r = np.exp(r - r.max(axis=1, keepdims=True))
        r = r / r.sum(axis=1, keepdims=True)
    idx = np.arange(len(differ))
    return int(np.sum(r[idx, out_top[differ]] >= TIE_RATIO * r[idx, ref_top[differ]]))


def compare(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    """Compare two (N, ...) outputs; classification metrics per sample, or per pixel for dense outputs."""
    from edgeport.errors import ArtifactFailed

    ref = np.asarray(reference, dtype=np.float64)
    out = np.asarray(candidate, dtype=np.float64)
    if ref.shape != out.shape:
        raise ArtifactFailed(f"the artifact's output has shape {out.shape[1:]}, the PyTorch model's {ref.shape[1:]}",
                             "its output layout is not recorded in the file: re-export it with edgeport")
    n = ref.shape[0] if ref.ndim > 1 else 1
    ref2, out2 = ref.reshape(n, -1), out.reshape(n, -1)
    diff = ref2 - out2
    noise = float(np.sum(diff**2))
    signal = float(np.sum(ref2**2))
    sqnr = float("inf") if noise == 0 else 10 * np.log10(max(signal, 1e-30) / noise)
    norms = np.linalg.norm(ref2, axis=1) * np.linalg.norm(out2, axis=1)
    cos = np.sum(ref2 * out2, axis=1) / np.where(norms == 0, 1, norms)
    cos = np.where(norms == 0, np.where(np.all(diff == 0, axis=1), 1.0, 0.0), cos)
    # rows of class scores: one per sample, or one per pixel of a dense output
    rows_ref, rows_out = (np.moveaxis(a, class_axis(ref.shape), -1).reshape(-1, a.shape[class_axis(ref.shape)])
                          if ref.ndim > 1 else a.reshape(1, -1) for a in (ref, out))
    k = min(5, rows_ref.shape[1])
    top_ref = np.argsort(-rows_ref, axis=1, kind="stable")[:, :k]
    top_out = np.argsort(-rows_out, axis=1, kind="stable")[:, :k]
    overlap = np.mean((top_ref[:, :, None] == top_out[:, None, :]).any(axis=2).sum(axis=1) / k)
    scale = float(np.max(np.abs(ref2))) or 1.0
    return Parity(
        max_abs=float(np.max(np.abs(diff))),
        mean_abs=float(np.mean(np.abs(diff))),
        max_rel=float(np.max(np.abs(diff))) / scale,
        cosine=float(np.mean(cos)),
        sqnr_db=sqnr,
        top1_agreement=float(np.mean(top_ref[:, 0] == top_out[:, 0])),
        top5_overlap=float(overlap),
        samples=n,
        top1_rows=len(rows_ref),
        top1_ties=near_ties(rows_ref, top_ref[:, 0], top_out[:, 0]),
    )
