"""``edgeport bench ARTIFACT...``: latency of each artifact in its own runtime on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from edgeport.cli import model_options as opt
from edgeport.cli.console import make as make_console
from edgeport.errors import UsageError, UserError

console = make_console()


def _threads(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--threads {text!r} is not a list of integers", "e.g. --threads 1,2") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"--threads {text!r} needs positive integers")
    return values


def bench(
    artifacts: list[Path] = typer.Argument(None, help=".onnx/.tflite files to time."),
    device: str = typer.Option("local", "--device", help="Where to run: local (this machine)."),
    threads: str = typer.Option("1", "--threads", help="Comma-separated thread counts, e.g. 1,2."),
    budget: float = typer.Option(5.0, "--budget", help="Seconds of timed runs per artifact and thread count (at most)."),
    out: Path = typer.Option(None, "--json", help="Write the measurements to this JSON file."),
    model: str = typer.Option(None, "--model", "-m", help="Also time this PyTorch model in eager mode (zoo name, pkg.module:factory or file.py:factory): the baseline."),
    weights: Path = opt.WEIGHTS,
    input_shape: str = opt.INPUT_SHAPE,
    num_classes: int = opt.NUM_CLASSES,
    width: float = opt.WIDTH,
) -> None:
    """Time each artifact (warm-up, then adaptive runs until the median is stable); p50/p90/p99, the ratio to
    fp32 of the same format, load time, memory, and the CPU features that explain the int8/fp32 ratio."""
    from edgeport import artifact as artifact_info
    from edgeport.bench.local import bench_artifact, ratios_vs_fp32, vnni_explanation
    from edgeport.cpu_features import detect

    if device != "local":
        raise UsageError(f"unknown --device {device!r}", "only 'local' is available so far")
    counts = _threads(threads)
    artifacts = list(artifacts or [])
    if not artifacts and model is None:
        raise UsageError("nothing to time", "pass .onnx/.tflite files and/or --model NAME")
    for a in artifacts:
        if not a.is_file():
            raise UserError(f"{a} does not exist")
    cpu = detect()
    console.print(f"CPU: {cpu.describe()}")
    console.print(f"  {vnni_explanation(cpu.vnni, cpu.arch)}")
    timings = _torch_timings(model, weights, input_shape, num_classes, width, counts, budget) if model else []
    for a in artifacts:
        for n in counts:
            console.print(f"[dim]timing {a.name} with {n} thread(s)…[/]")
            timings.append(bench_artifact(a, threads=n, budget_s=budget))
    ratios = ratios_vs_fp32(timings)
    eager = {t.threads: t.p50_ms for t in timings if t.target == "torch-eager"}
    table = Table(box=None, pad_edge=False)
    for col in ("artifact", "runtime", "thr", "p50 ms", "p90 ms", "p99 ms", "mean", "std", "min", "runs", "×fp32", "×torch", "load ms", "+RSS MB"):
        table.add_column(col, justify="left" if col in ("artifact", "runtime") else "right", no_wrap=True)
    for t in timings:
        r = ratios.get((t.artifact, t.threads))
        table.add_row(
            Path(t.artifact).name, f"{t.runtime} {t.runtime_version}", str(t.threads), f"{t.p50_ms:.3f}", f"{t.p90_ms:.3f}",
            f"{t.p99_ms:.3f}", f"{t.mean_ms:.3f}", f"{t.std_ms:.3f}", f"{t.min_ms:.3f}",
            f"{t.runs}{'' if t.converged else '*'}", f"{r:.2f}" if r else "—",
            f"{t.p50_ms / eager[t.threads]:.2f}" if t.threads in eager else "—", f"{t.load_ms:.0f}", f"{t.rss_mb:.0f}",
        )
    console.print(table)
    if any(not t.converged for t in timings):
        console.print("[dim]* the median's 95 % CI did not reach ±2 % within the budget (noisy machine?)[/]")
    delegations = _delegations(artifacts)
    record = {
        "device": device,
        "host": {"cpu": cpu.describe(), "arch": cpu.arch, "vnni": cpu.vnni, "explanation": vnni_explanation(cpu.vnni, cpu.arch)},
        "tools": artifact_info.tool_versions(("onnxruntime", "ai-edge-litert", "numpy")),
        "timings": [{**t.to_dict(), "x_fp32": ratios.get((t.artifact, t.threads)),
                     "x_torch": t.p50_ms / eager[t.threads] if t.threads in eager else None} for t in timings],
        "delegation": [d.to_dict() for d in delegations],
    }
    if out is not None:
        from edgeport.atomic_file import write_text

        write_text(out, json.dumps(record, indent=2))
        console.print(f"wrote {out}")


def _torch_timings(model, weights, input_shape, num_classes, width, counts, budget) -> list:
    """The PyTorch model in eager mode, one Timing per thread count (load = build + checkpoint + first run)."""
    import time

    from edgeport import sample_inputs
    from edgeport.bench.local import bench_torch

    t0 = time.perf_counter()
    loaded = opt.load_model(model, weights, input_shape, num_classes, width)
    load_ms = (time.perf_counter() - t0) * 1000
    example = sample_inputs.image_like(loaded.input_shape, loaded.input_shape[0])
    out = []
    for n in counts:
        console.print(f"[dim]timing {loaded.name} (torch eager) with {n} thread(s)…[/]")
        out.append(bench_torch(loaded.module, example, f"{loaded.name} (torch eager)", threads=n, load_ms=load_ms, budget_s=budget))
    return out


def _delegations(artifacts: list[Path]) -> list:
    """Print and return each artifact's delegation report (XNNPACK partitions / ORT integer kernels)."""
    from edgeport.delegation import delegation_of

    out = []
    for a in artifacts:
        d = delegation_of(a)
        out.append(d)
        console.print(f"[bold]{a.name}[/] " + "\n".join(d.lines()))
        if d.warning():
            console.print(f"[yellow]  left out of the fast path: {sum(d.left_out.values())} op(s)[/]")
    return out


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
