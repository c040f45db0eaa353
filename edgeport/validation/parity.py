"""Numerical parity metrics between a reference output and an artifact's output.

Classification outputs (N, classes) compare top-1/top-5 per sample. Dense outputs (N, C, H, W: segmentation
logits, detection maps) compare them per pixel: the class axis is C, and top-1 agreement is the fraction of
pixels whose argmax over C matches (the per-pixel agreement segmentation users read); SQNR and max error are
over every element either way. Outputs arrive in the PyTorch model's layout (runners map a file's NHWC back)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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
    )
