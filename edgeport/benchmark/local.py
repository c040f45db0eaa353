"""Benchmark artifacts in-process on this machine: load time, warm-up, then adaptive timed runs.

Timing is adaptive: runs continue until the median's 95 % confidence interval (order-statistic bounds,
distribution-free) is within ``rel_ci`` of the median, with at least ``min_runs``, or until the time
budget is spent. Only the inference call is timed; inputs are prepared once before.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgeport.runtimes import open_runtime


@dataclass(frozen=True)
class Timing:
    artifact: str
    target: str  # e.g. "tflite-int8" (from the file name) or the format
    runtime: str
    runtime_version: str
    threads: int
    runs: int
    load_ms: float
    rss_mb: float  # resident memory added by loading and running the artifact
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    ci95_ms: tuple[float, float]  # confidence interval of the median
    converged: bool  # the CI met the tolerance before the budget ran out

    @property
    def throughput(self) -> float:
        return 1000.0 / self.p50_ms if self.p50_ms > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "throughput_per_s": self.throughput}


def _rss_mb() -> float:
    try:
        import psutil

        return psutil.Process(os.getpid()).memory_info().rss / 2**20
    except ImportError:
        return float("nan")


def median_ci(samples: list[float], z: float = 1.96) -> tuple[float, float]:
    """Distribution-free 95 % CI of the median from order statistics."""
    s = sorted(samples)
    n = len(s)
    lo = max(0, int(math.floor(n / 2 - z * math.sqrt(n) / 2)))
    hi = min(n - 1, int(math.ceil(n / 2 + z * math.sqrt(n) / 2)))
    return s[lo], s[hi]


def target_of_name(path: Path) -> str:
    """``model.int8.tflite`` -> ``tflite-int8`` (edgeport's naming: a registered target); otherwise the format."""
    from edgeport.exporters import TARGETS, load_all
    from edgeport.formats import format_of

    load_all()
    fmt = format_of(path).name
    parts = path.name.split(".")
    if len(parts) >= 3 and f"{fmt}-{parts[-2]}" in TARGETS:
        return f"{fmt}-{parts[-2]}"
    return fmt


def time_calls(invoke, warmup: int = 5, min_runs: int = 30, budget_s: float = 5.0,
               rel_ci: float = 0.02) -> tuple[list[float], bool]:
    """Warm up, then time ``invoke()`` until the median's CI is within ``rel_ci`` (or the budget is spent).
    Returns the samples in ms and whether the CI converged."""
    for _ in range(warmup):
        invoke()
    samples: list[float] = []
    start = time.perf_counter()
    converged = False
    while True:
        t = time.perf_counter()
        invoke()
        samples.append((time.perf_counter() - t) * 1000)
        if len(samples) >= min_runs and len(samples) % 10 == 0:
            lo, hi = median_ci(samples)
            med = statistics.median(samples)
            if (hi - lo) / 2 <= rel_ci * med:
                converged = True
                break
        if time.perf_counter() - start > budget_s and len(samples) >= 5:
            break
    return samples, converged


def timing_from(samples: list[float], converged: bool, **fields) -> Timing:
    """A Timing from measured samples; ``fields`` are the descriptive ones (artifact, runtime, load_ms...)."""
    arr = np.asarray(samples)
    return Timing(
        **fields, runs=len(samples),
        p50_ms=float(np.percentile(arr, 50)), p90_ms=float(np.percentile(arr, 90)), p99_ms=float(np.percentile(arr, 99)),
        mean_ms=float(arr.mean()), std_ms=float(arr.std()), min_ms=float(arr.min()),
        ci95_ms=median_ci(samples), converged=converged,
    )


def bench_artifact(
    path: Path,
    threads: int = 1,
    warmup: int = 5,
    min_runs: int = 30,
    budget_s: float = 5.0,
    rel_ci: float = 0.02,
) -> Timing:
    rss0 = _rss_mb()
    t0 = time.perf_counter()
    runner = open_runtime(path, threads=threads)
    invoke = runner.invoker()
    invoke()  # first inference finishes lazy initialisation (XNNPACK packing, ORT kernel selection)
    load_ms = (time.perf_counter() - t0) * 1000
    samples, converged = time_calls(invoke, warmup, min_runs, budget_s, rel_ci)
    return timing_from(
        samples, converged, artifact=str(path), target=target_of_name(Path(path)), runtime=runner.name,
        runtime_version=str(getattr(runner, "version", "?")), threads=threads, load_ms=load_ms, rss_mb=_rss_mb() - rss0,
    )


def bench_torch(
    module,
    example,
    label: str,
    threads: int = 1,
    load_ms: float = 0.0,
    warmup: int = 5,
    min_runs: int = 30,
    budget_s: float = 5.0,
    rel_ci: float = 0.02,
) -> Timing:
    """The PyTorch model itself in eager mode (inference_mode, ``threads`` intra-op threads), timed exactly
    like an artifact: the baseline the exported files are compared with. ``load_ms`` is the caller's model
    build + checkpoint time; the first inference is added to it."""
    import torch

    rss0 = _rss_mb()
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        module = module.eval()
        with torch.inference_mode():
            t0 = time.perf_counter()
            module(example)
            first_ms = (time.perf_counter() - t0) * 1000
            samples, converged = time_calls(lambda: module(example), warmup, min_runs, budget_s, rel_ci)
    finally:
        torch.set_num_threads(saved)
    return timing_from(
        samples, converged, artifact=label, target="torch-eager", runtime="torch", runtime_version=torch.__version__,
        threads=threads, load_ms=load_ms + first_ms, rss_mb=_rss_mb() - rss0,
    )


def model_of_name(artifact: str) -> str:
    """``dir/model.int8.onnx`` -> ``model`` (edgeport's naming ``<model>.<kind>.<ext>``); otherwise the file's stem."""
    parts = Path(artifact).name.split(".")
    return ".".join(parts[:-2]) if len(parts) >= 3 else Path(artifact).stem


def fp32_ratios(items: list[tuple[str, str, object, float]]) -> dict[tuple[str, object], float]:
    """(artifact, target, group, cost) -> {(artifact, group): cost over the cost of the fp32 file of the same model,
    format and group (threads; device and threads)}; when no fp32 file of that model was measured, the format's only
    fp32 file (several: no ratio, rather than a wrong one)."""
    def fmt(target: str) -> str:
        return target.split("-")[0]

    fp32 = [(model_of_name(a), fmt(t), g, v) for a, t, g, v in items if t.endswith("fp32")]
    same_model = {(m, f, g): v for m, f, g, v in fp32}
    per_format: dict[tuple[str, object], list[float]] = {}
    for _m, f, g, v in fp32:
        per_format.setdefault((f, g), []).append(v)
    out = {}
    for a, t, g, v in items:
        only = per_format.get((fmt(t), g), [])
        b = same_model.get((model_of_name(a), fmt(t), g)) or (only[0] if len(only) == 1 else None)
        if b:
            out[(a, g)] = v / b
    return out


def ratios_vs_fp32(timings: list[Timing]) -> dict[tuple[str, int], float]:
    """p50 of each artifact over the p50 of its model's fp32 artifact of the same format and thread count."""
    return fp32_ratios([(t.artifact, t.target, t.threads, t.p50_ms) for t in timings])


def vnni_explanation(vnni: bool, arch: str) -> str:
    if arch not in ("x86_64", "x86"):
        return "ARM: int8 runs on NEON/dot-product kernels; int8/fp32 depends on the core (see the Pi numbers)"
    if vnni:
        return "AVX-512 VNNI / AVX-VNNI present: int8 dot products are native, so int8 is expected near 0.5x fp32 under XNNPACK"
    return ("no VNNI (AVX2 only): int8 dot products are emulated, so int8 is often as slow as or slower than fp32; "
            "ORT's U8S8 kernels can saturate here (edgeport quantizes ONNX weights to 7 bits on such CPUs)")
