"""The per-layer int8 diagnosis (edgeport.diagnose.per_layer) as rich tables: the worst layers of each int8 target."""

from __future__ import annotations

import math

from rich.console import Console
from rich.table import Table

from edgeport.diagnose.per_layer import FLAG_ERROR_TO_SCALE, Diagnosis, short_name, worst_first

SHOWN = 10


def _num(v: float, fmt: str) -> str:
    return "—" if v is None or math.isnan(v) else ("inf" if math.isinf(v) else format(v, fmt))


def table(target: str, rows, shown: int = SHOWN, seconds: float | None = None) -> Table:
    took = f", {seconds:.1f} s" if seconds is not None else ""
    t = Table(title=f"{target}: {min(shown, len(rows))} worst of {len(rows)} quantized tensors{took}", title_justify="left")
    for name, justify in (("#", "right"), ("layer", "left"), ("op", "left"), ("SQNR dB", "right"), ("rel RMSE", "right"),
                          ("err/scale", "right"), ("flag", "left"), ("fallback name", "left")):
        t.add_column(name, justify=justify, overflow="fold" if name == "fallback name" else "ellipsis")
    for r in worst_first(rows)[:shown]:
        flag = f"[bold red]> {FLAG_ERROR_TO_SCALE:g}[/]" if r.flagged else ""
        t.add_row(str(r.position), short_name(r.layer, 36), r.op, _num(r.sqnr_db, ".1f"), _num(r.rel_rmse, ".4f"),
                  _num(r.error_to_scale, ".2f"), flag, short_name(r.fallback, 60))
    return t


def show(console: Console, diagnosis: Diagnosis, shown: int = SHOWN) -> None:
    """One table per int8 target, worst first (largest layer-local error, then lowest end-to-end SQNR)."""
    for target, rows in diagnosis.per_target.items():
        console.print(table(target, rows, shown, diagnosis.seconds.get(target)))
        gap = diagnosis.twin_max_abs.get(target)
        if gap:  # the diagnosed twin did not compute what the artifact computes: say the rows may not describe it
            console.print(f"[yellow]WARNING: {target}: the diagnosed program's outputs differ from the artifact's by up to "
                          f"{gap:.3g}; the rows describe a re-quantized twin, not exactly the file[/]")
    console.print(f"[dim]per-layer: {diagnosis.samples} validation samples; SQNR/rel RMSE end to end vs the float model, "
                  f"err/scale = this layer's own error in quantization steps (~0.29 rounding, flagged > {FLAG_ERROR_TO_SCALE:g}); "
                  "fallback name = what keeps that op float: an ONNX node name (--allow-float), a TFLite op-output tensor name "
                  "(tflite_ptq denylisted_nodes), an ExecuTorch graph node name (--allow-float)[/]")
