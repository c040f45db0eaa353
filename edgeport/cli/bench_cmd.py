"""``edgeport bench ARTIFACT...``: latency of each artifact in its own runtime on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from edgeport.benchmark.devices import VALID
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
    device: list[str] = typer.Option(["local"], "--device", help=f"Where to run: {VALID} (local: this machine); several: repeat it or "
        f"comma-separate (local,qemu-pi5)."),
    threads: str = typer.Option("1", "--threads", help="Comma-separated thread counts, e.g. 1,2."),
    budget: float = typer.Option(5.0, "--budget", help="Seconds of timed runs per artifact and thread count (at most)."),
    out: Path = typer.Option(None, "--json", help="Write the measurements to this JSON file."),
    model: str = typer.Option(None, "--model", "-m", help="Also time this PyTorch model in eager mode (zoo name, pkg.module:factory or "
        "file.py:factory): the baseline."),
    weights: Path = opt.WEIGHTS,
    input_shape: str = opt.INPUT_SHAPE,
    num_classes: int = opt.NUM_CLASSES,
    width: float = opt.WIDTH,
    # --- remote devices (ssh://, docker-arm64) ---
    ssh_key: Path = typer.Option(None, "--ssh-key", help="ssh:// identity file (private key); default: your ssh config/agent."),
    remote_python: str = typer.Option(None, "--remote-python", help="Python on the device that has numpy + the runtime (.pte: numpy "
        "only, edgeport copies ExecuTorch's arm64 runtime there; ssh:// default python3)."),
    ssh_timeout: float = typer.Option(10.0, "--ssh-timeout", help="ssh:// connect timeout in seconds."),
    ssh_config: Path = typer.Option(None, "--ssh-config", help="ssh:// client config file (ssh -F), e.g. for ProxyJump."),
    runs: int = typer.Option(50, "--runs", help="Timed runs on a remote device (after 5 warm-up runs)."),
) -> None:
    """Time each artifact (warm-up, then adaptive runs until the median is stable); p50/p90/p99, the ratio to
    fp32 of the same format, load time, memory, and the CPU features that explain the int8/fp32 ratio.
    With several files of one model: which one to ship on each device (edgeport.benchmark.recommend)."""
    from edgeport.benchmark import recommend

    specs = _devices(device)
    counts = _threads(threads)
    has_local = any(s.kind == "local" for s in specs)
    records, measured = [], []
    for spec in specs:
        if spec.kind != "local":  # --model (torch eager) is timed once, with local, when local is in the list
            record, ms = _bench_remote(spec, artifacts, counts, None if has_local else model, ssh_key, remote_python,
                                       ssh_timeout, ssh_config, runs)
        else:
            record, ms = _bench_local(spec.text, artifacts, counts, budget, model, weights, input_shape, num_classes, width)
        records.append(record)
        measured += ms
    recs = recommend.recommend(measured)
    if recs:
        console.print(recommend.table(recs))
        for line in recommend.flag_lines(recs):
            console.print(f"[yellow]{line}[/]")
    if out is not None:
        from edgeport.util.atomic_file import write_text

        record = records[0] if len(records) == 1 else {"devices": records}
        write_text(out, json.dumps({**record, "recommendation": [r.to_dict() for r in recs]}, indent=2))
        console.print(f"wrote {out}")


def _devices(values: list[str]) -> list:
    """--device values (repeated and/or comma-separated) -> DeviceSpecs, in order, without repeats."""
    from edgeport.benchmark.devices import parse_device

    specs = []
    for value in values or ["local"]:
        for part in value.split(","):
            if part.strip() and all(s.text != part.strip() for s in specs):
                specs.append(parse_device(part))
    if not specs:
        raise UsageError("--device is empty", "e.g. --device local or --device local,qemu-pi5")
    return specs


def _bench_local(device, artifacts, counts, budget, model, weights, input_shape, num_classes, width):
    """Time on this machine; returns the JSON record and the recommendation inputs."""
    from edgeport.benchmark.local import bench_artifact, ratios_vs_fp32, vnni_explanation
    from edgeport.benchmark.recommend import from_local
    from edgeport.pipeline import artifact as artifact_info
    from edgeport.runtimes.cpu_features import detect

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
    columns = ["artifact", "runtime", "thr", "p50 ms", "p90 ms", "p99 ms", "mean", "std", "min", "runs", "×fp32"]
    columns += ["×torch"] if eager else []  # only with --model: the table must fit a 140-column log
    for col in columns + ["load ms", "+RSS MB"]:
        # the artifact name may wrap; numbers never do
        table.add_column(col, justify="left" if col in ("artifact", "runtime") else "right", no_wrap=col != "artifact",
                         overflow="fold" if col == "artifact" else "ellipsis")
    for t in timings:
        r = ratios.get((t.artifact, t.threads))
        versus_torch = [f"{t.p50_ms / eager[t.threads]:.2f}" if t.threads in eager else "—"] if eager else []
        table.add_row(
            Path(t.artifact).name, f"{t.runtime} {t.runtime_version}", str(t.threads), f"{t.p50_ms:.3f}", f"{t.p90_ms:.3f}",
            f"{t.p99_ms:.3f}", f"{t.mean_ms:.3f}", f"{t.std_ms:.3f}", f"{t.min_ms:.3f}",
            f"{t.runs}{'' if t.converged else '*'}", f"{r:.2f}" if r else "—", *versus_torch, f"{t.load_ms:.0f}", f"{t.rss_mb:.0f}",
        )
    console.print(table)
    if any(not t.converged for t in timings):
        console.print("[dim]* the median's 95 % CI did not reach ±2 % within the budget (noisy machine?)[/]")
    delegations = _delegations(artifacts)
    record = {
        "device": device,
        "host": {"cpu": cpu.describe(), "arch": cpu.arch, "vnni": cpu.vnni, "explanation": vnni_explanation(cpu.vnni, cpu.arch)},
        "tools": artifact_info.tool_versions(("onnxruntime", "ai-edge-litert", "executorch", "numpy")),
        "timings": [{**t.to_dict(), "x_fp32": ratios.get((t.artifact, t.threads)),
                     "x_torch": t.p50_ms / eager[t.threads] if t.threads in eager else None} for t in timings],
        "delegation": [d.to_dict() for d in delegations],
    }
    return record, from_local(timings, delegations, device)


def _torch_timings(model, weights, input_shape, num_classes, width, counts, budget) -> list:
    """The PyTorch model in eager mode, one Timing per thread count (load = build + checkpoint + first run)."""
    import time

    from edgeport.benchmark.local import bench_torch
    from edgeport.data import sample_inputs

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
    from edgeport.formats.delegation import delegation_of

    out = []
    for a in artifacts:
        d = delegation_of(a)
        out.append(d)
        _print_delegation(a.name, d)
    return out


def _print_delegation(name: str, d) -> None:
    if d is None:
        console.print(f"[bold]{name}[/] delegation not measured")
        return
    console.print(f"[bold]{name}[/] " + "\n".join(d.lines()))
    if d.warning():
        console.print(f"[yellow]  left out of the fast path: {sum(d.left_out.values())} op(s)[/]")


# --- remote devices (ssh://, docker-arm64, and any Device from edgeport.benchmark.devices) ---------------------
def _bench_remote(spec, artifacts, counts, model, ssh_key, remote_python, ssh_timeout, ssh_config, runs):
    """Run each artifact on the device, time it there, and compare its outputs with this machine's."""
    from edgeport.benchmark.device_bench import bench_on
    from edgeport.benchmark.devices import open_device

    if model is not None:
        raise UsageError("--model (the torch eager baseline) runs on this machine only", "drop --device or --model")
    artifacts = list(artifacts or [])
    if not artifacts:
        raise UsageError("nothing to time on the device", "pass .onnx/.tflite/.pte files")
    for a in artifacts:
        if not a.is_file():
            raise UserError(f"{a} does not exist")
    options: dict = {}
    if spec.kind == "ssh":
        options = {"identity": ssh_key, "remote_python": remote_python or "python3", "connect_timeout": ssh_timeout, "runs": runs,
                   "ssh_config": ssh_config}
    elif spec.kind == "docker-arm64":
        options = {"runs": runs, **({"remote_python": remote_python} if remote_python else {})}
    dev = open_device(spec, **options) if options else open_device(spec)
    if hasattr(dev, "preflight"):  # unreachable host / no engine: say so before loading anything here
        dev.preflight()
    results = []
    for a in artifacts:
        for n in counts:
            console.print(f"[dim]running {a.name} on {spec.text} with {n} thread(s)…[/]")
            results.append(bench_on(dev, a, n))
    seen = set()
    for r in results:  # where it ran: one line per distinct device/runtime, not repeated in every row
        where = (f"{spec.text}: {r.run.cpuinfo_model or r.run.machine}, {r.run.machine}, python {r.run.python}, "
                 f"{r.run.runtime} {r.run.runtime_version}, numpy {r.run.numpy_version}")
        if where not in seen:
            seen.add(where)
            console.print(where)
    table = Table(box=None, pad_edge=False)
    for col in ("artifact", "thr", "p50 ms", "p90 ms", "min ms", "runs", "load ms", "max|Δ| vs host", "SQNR dB", "top-1 agree"):
        table.add_column(col, justify="left" if col == "artifact" else "right", no_wrap=col != "artifact",
                         overflow="fold" if col == "artifact" else "ellipsis")
    for r in results:
        d = r.to_dict()
        table.add_row(Path(r.run.artifact).name, str(r.run.threads), f"{d['p50_ms']:.3f}", f"{d['p90_ms']:.3f}",
                      f"{d['min_ms']:.3f}", str(len(r.run.timings_ms)), f"{r.run.load_ms:.0f}", f"{r.parity.max_abs:.2e}",
                      f"{r.parity.sqnr_db:.1f}", f"{r.parity.top1_agreement:.2f}")
    console.print(table)
    from edgeport.benchmark import insn_report  # qemu-pi4/qemu-pi5: guest instructions per inference

    insn = insn_report.rows(results)
    if insn:
        console.print(insn_report.table(insn))
        for line in insn_report.notes(insn):
            console.print(f"[dim]{line}[/]")
    if any(r.run.emulated for r in results):
        console.print("[yellow]emulated: these are wall times of an emulator on this machine, NOT device latency[/]")
    else:
        console.print("measured on the device itself (its own runtime and cores); parity: device outputs vs this machine's")
    from edgeport.benchmark.recommend import from_device

    # Which ops take the fast path is decided by the delegate's op/dtype support rules, the same in the x86 and
    # aarch64 builds of one runtime version; the report is measured here, with the ARM fusion rules for ORT.
    console.print("[dim]delegation (measured on this machine; each line names its runtime version, the device's is "
                  "in the line above):[/]")
    delegations = _delegations_by_name(artifacts)
    for name, d in delegations.items():
        _print_delegation(name, d)
    record = {"device": spec.text, "runs": [r.to_dict() for r in results], **({"instructions": insn} if insn else {}),
              "delegation": [d.to_dict() for d in delegations.values() if d is not None]}
    return record, from_device(results, spec.text, delegations)


def _delegations_by_name(artifacts: list[Path]) -> dict:
    """Delegation reports by file name (None where one cannot be made: that loses a flag, not the run)."""
    from edgeport.formats.delegation import delegation_of

    out = {}
    for a in artifacts:
        try:
            out[a.name] = delegation_of(a)
        except Exception:  # a report we cannot make only loses a flag; the measurements stand
            out[a.name] = None
    return out


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
