"""``edgeport inspect FILE``: what is inside an .onnx or .tflite file, read from the file itself."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from edgeport.cli.console import make as make_console

console = make_console()


def _fmt_tensor(t) -> str:
    quant = f"  scale={t.scale:.6g} zero_point={t.zero_point}" if t.scale is not None else ""
    return f"{t.name}: {t.dtype}{list(t.shape)}{quant}"


def inspect(
    file: Path = typer.Argument(..., help="An .onnx or .tflite file."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Ops (with the dtype each computes in), weight dtypes, size, inputs and outputs of a model file."""
    from edgeport.errors import EdgeportError
    from edgeport.formats.delegation import delegation_of
    from edgeport.formats.graph_summary import summarize

    s = summarize(file)
    try:  # measured in the runtime: XNNPACK partitions / ORT integer kernels
        delegation, not_measured = delegation_of(file), None
    except EdgeportError as exc:  # the file is still worth describing when its runtime refuses it
        delegation, not_measured = None, str(exc)
    if as_json:
        record = delegation.to_dict() if delegation else {"error": not_measured}
        typer.echo(json.dumps({**s.to_dict(), "delegation": record}, indent=2))
        return
    console.print(f"[bold]{s.path}[/]  {s.format}  {s.size / 1e6:.3f} MB  {s.weight_count:,} weight values")
    for label, tensors in (("input", s.inputs), ("output", s.outputs)):
        for t in tensors:
            console.print(f"  {label:6} {_fmt_tensor(t)}")
    for i, order in enumerate(s.details.get("input_dim_orders", [])):  # .pte: the memory order the program reads
        if order != sorted(order):
            console.print(f"  input{i} memory: dim order {tuple(order)} (channels-last): pass "
                          "x.to(memory_format=torch.channels_last); ExecuTorch does not check it")
    console.print("  weights: " + ", ".join(f"{dt} {n:,}" for dt, n in s.weight_dtypes.most_common()))
    meta = s.details.get("edgeport")
    if meta:  # what the file says about itself (edgeport.exporters.metadata)
        pre = meta["preprocess"] if isinstance(meta.get("preprocess"), dict) else {}
        console.print(f"  made by edgeport {meta.get('edgeport')}: {meta.get('target')} of {meta.get('model')} (PyTorch input "
                      f"{meta.get('input_shape')} NCHW; this file takes {meta.get('input_layout')}), weights sha256 "
                      f"{str(meta.get('weights_sha256') or 'none (random)')[:12]}")
        values = "(x - 127) / 128" if pre.get("scale") == "127" else f"mean {pre.get('mean')} std {pre.get('std')}"
        console.print(f"  preprocessing: size {pre.get('size')}, resize {pre.get('resize')}, {pre.get('channels')} channel(s), "
                      f"{values}{', BGR' if pre.get('bgr') else ''}")
    else:
        console.print("  [dim]no edgeport metadata in this file[/]")
    table = Table(title=f"{sum(s.ops.values())} ops")
    table.add_column("op")
    table.add_column("computes in")
    table.add_column("count", justify="right")
    for (op, dt), n in sorted(s.op_dtypes.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(op, dt, str(n))
    console.print(table)
    for line in delegation.lines() if delegation else [f"delegation not measured: {not_measured}"]:
        console.print(line)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
