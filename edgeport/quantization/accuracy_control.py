"""Accuracy control: keep the fewest layers float until an int8 artifact is within an accuracy budget.

``--max-accuracy-drop 0.5`` means: the int8 artifact's score on the control set may be at most 0.5 points
below the float model's. The score is top-1 accuracy in % when the control set has labels, else top-1
agreement with the float model in % (the float model then scores 100 by definition).

The search, every step measured in the artifact's own runtime:

1. quantize everything (the default PTQ); within budget -> done, nothing kept float;
2. rank the candidate layers (every quantized compute op: conv, depthwise, FC, add, mul, pooling) by
   *sensitivity*: the gain in output SQNR against the float model when that one layer alone stays float,
   on a small ranking subset (``RANK_SAMPLES``). This is the direct measure the per-layer diagnosis
   approximates; it costs one quantization + a few hundred inferences per layer (TFLite re-quantizes the
   calibrated model in ~0.1 s; ONNX reuses its calibration ranges);
3. keep the top-k float for k = 1, 2, 4, ... until the full control score is within budget, then bisect
   k, then try dropping each kept layer again (the last-added first) while the budget still holds: the
   result is a set no member of which can be removed.

Single-layer sensitivity can miss damage that only a pair repairs: a clipped activation range is used both by
its producer's output and by the QUANTIZE that feeds the int8 consumer, so keeping one of them float changes
little (measured on MobileNetV2-0.5 with one range shrunk 100x: ranking gains all < 0.05 dB, yet the growth
and pruning steps still ended at exactly the producer conv and the residual ADD reading it, 2 layers).

Float layers mean float islands with QUANTIZE/DEQUANTIZE around them: the artifact's int8 verification
allows exactly these layers, and the report says what they cost in size and latency (measured here).
TFLite's int16x8 mode is whole-model only and XNNPACK does not run it, so the fallback is float.

Why hand-written: ORT and TFLite give the mechanisms (``nodes_to_exclude``, ``denylisted_nodes``) but no
search; Intel Neural Compressor does one, but brings its own framework adapters for this one loop.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgeport.validation.parity import compare

RANK_SAMPLES = 256  # control samples used to rank layers by sensitivity


@dataclass(frozen=True)
class Candidate:
    fallback: str  # what the backend's float fallback takes: ONNX node name / TFLite op-output tensor name
    layer: str  # readable name
    op: str


@dataclass
class Trial:
    kept_float: list[str]  # layer names
    score: float
    drop: float


@dataclass
class ControlResult:
    target: str
    metric: str  # "top-1 accuracy %" | "top-1 agreement with float %"
    budget: float
    samples: int
    float_score: float
    int8_score: float  # default PTQ, nothing float
    final_score: float
    kept_float: list[Candidate]
    within_budget: bool
    ranking: list[dict] = field(default_factory=list)  # [{layer, op, sqnr_gain_db}] best first
    trials: list[Trial] = field(default_factory=list)
    size_bytes: tuple[int, int] = (0, 0)  # (all int8, with the kept layers float)
    latency_ms: tuple[float, float] | None = None  # p50 on this machine, same order
    float_ops: tuple[int, int] = (0, 0)  # compute ops running float, same order
    seconds: float = 0.0
    unreachable: str | None = None  # why no float set meets the budget, when none does

    @property
    def drop(self) -> float:
        return self.float_score - self.final_score

    def to_dict(self) -> dict:
        d = asdict(self)
        d["kept_float"] = [asdict(c) for c in self.kept_float]
        d["drop"] = self.drop
        return d

    def summary(self) -> str:
        kept = ", ".join(c.layer for c in self.kept_float) or "none"
        line = (f"{self.target}: float {self.float_score:.2f}, int8 {self.int8_score:.2f} "
                f"(drop {self.float_score - self.int8_score:.2f}) -> {self.final_score:.2f} (drop {self.drop:.2f}, "
                f"budget {self.budget:.2f}) with {len(self.kept_float)} layer(s) float: {kept}")
        if self.within_budget:
            return line
        return line + " -- NOT within budget" + (f" ({self.unreachable})" if self.unreachable else "")


@dataclass
class ControlSet:
    """Inputs (float32 NCHW, preprocessed), labels (or None) and the float model's logits on them."""

    inputs: np.ndarray
    labels: np.ndarray | None
    float_logits: np.ndarray
    source: str

    @property
    def metric(self) -> str:
        return "top-1 accuracy %" if self.labels is not None else "top-1 agreement with float %"

    def score(self, logits: np.ndarray) -> float:
        pred = np.asarray(logits).reshape(len(logits), -1).argmax(1)
        truth = self.labels if self.labels is not None else self.float_logits.reshape(len(logits), -1).argmax(1)
        return float(100.0 * np.mean(pred == truth))


class Backend:
    """One int8 target: ``build(fallbacks, dest)`` writes the artifact with those layers float; ``rank`` orders the
    candidates (by default by measuring each one kept float alone, :func:`rank`)."""

    target = ""
    rank_metric = "sqnr_gain_db"  # what ``rank``'s scores are (the ranking record's key)

    def rank(self, data: "ControlSet", run, work: Path, on_step) -> tuple[list[Candidate], list[float]]:
        return rank(self, data, run, work, on_step)

    def candidates(self) -> list[Candidate]:
        raise NotImplementedError

    def build(self, fallbacks: Sequence[str], dest: Path) -> Path:
        raise NotImplementedError

    def float_ops(self, path: Path) -> int:
        """Compute ops of the artifact at ``path`` that run float (read from its graph)."""
        from edgeport.formats.int8_coverage import coverage_of

        return coverage_of(path).float_total


def control(backend: Backend, data: ControlSet, budget: float, out: Path,
            on_step: Callable[[str], None] = lambda s: None, bench: bool = True,
            runner: Callable[[Path], object] | None = None) -> ControlResult:
    """Search the fewest float layers for ``backend`` within ``budget`` points; the final artifact goes to ``out``.
    ``runner(path)`` opens an artifact (default: its real runtime, :func:`edgeport.runtimes.open_runtime`)."""
    if runner is None:
        from edgeport.runtimes import open_runtime as runner

    start = time.perf_counter()
    float_score = data.score(data.float_logits)
    work = Path(tempfile.mkdtemp(prefix="edgeport-accuracy-"))
    cache: dict[tuple[str, ...], tuple[float, Path]] = {}

    def run(path: Path, inputs: np.ndarray) -> np.ndarray:
        return runner(path).run(inputs)

    def trial(fallbacks: tuple[str, ...]) -> float:
        key = tuple(sorted(fallbacks))
        if key not in cache:
            path = backend.build(key, work / f"t{len(cache)}{_suffix(backend.target)}")
            cache[key] = (data.score(run(path, data.inputs)), path)
        return cache[key][0]

    try:
        on_step(f"{backend.target}: default PTQ")
        base = trial(())
        result = ControlResult(backend.target, data.metric, budget, len(data.inputs), float_score, base, base, [],
                               float_score - base <= budget)
        result.trials.append(Trial([], round(base, 4), round(float_score - base, 4)))
        chosen: list[Candidate] = []
        if not result.within_budget:
            ranked, gains = backend.rank(data, run, work, on_step)
            result.ranking = [{"layer": c.layer, "op": c.op, backend.rank_metric: round(float(g), 3)} for c, g in zip(ranked, gains)]
            chosen = _search(ranked, lambda cs: trial(tuple(c.fallback for c in cs)), float_score, budget,
                             result, on_step, backend.target)
        final_key = tuple(sorted(c.fallback for c in chosen))
        result.final_score = trial(final_key)
        result.kept_float = chosen
        result.within_budget = float_score - result.final_score <= budget
        final_path = cache[final_key][1]
        base_path = cache[()][1]
        result.size_bytes = (base_path.stat().st_size, final_path.stat().st_size)
        result.float_ops = (backend.float_ops(base_path), backend.float_ops(final_path))
        if bench:
            from edgeport.benchmark.local import bench_artifact

            on_step(f"{backend.target}: timing")
            result.latency_ms = (bench_artifact(base_path, budget_s=2.0).p50_ms,
                                 bench_artifact(final_path, budget_s=2.0).p50_ms if chosen else None)
            if result.latency_ms[1] is None:
                result.latency_ms = (result.latency_ms[0], result.latency_ms[0])
        from edgeport.util.atomic_file import write_bytes

        write_bytes(out, final_path.read_bytes())
        result.seconds = time.perf_counter() - start
        return result
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def rank(backend: Backend, data: ControlSet, run, work: Path, on_step) -> tuple[list[Candidate], list[float]]:
    """Candidates ordered by the output-SQNR gain (vs the float model) of keeping each one alone float."""
    n = min(RANK_SAMPLES, len(data.inputs))
    x, ref = data.inputs[:n], data.float_logits[:n]
    base = compare(ref, run(backend.build((), work / f"rank_base{_suffix(backend.target)}"), x)).sqnr_db
    cands = backend.candidates()
    gains = []
    for i, c in enumerate(cands):
        on_step(f"{backend.target}: sensitivity {i + 1}/{len(cands)}")
        path = backend.build((c.fallback,), work / f"rank{_suffix(backend.target)}")
        gains.append(compare(ref, run(path, x)).sqnr_db - base)
    order = sorted(range(len(cands)), key=lambda i: -gains[i])
    return [cands[i] for i in order], [gains[i] for i in order]


def _search(ranked: list[Candidate], score: Callable[[list[Candidate]], float], float_score: float, budget: float,
            result: ControlResult, on_step, target: str) -> list[Candidate]:
    def ok(cs: list[Candidate]) -> bool:
        s = score(cs)
        result.trials.append(Trial([c.layer for c in cs], round(s, 4), round(float_score - s, 4)))
        return float_score - s <= budget

    on_step(f"{target}: growing the float set")
    k, good = 1, None
    while k <= len(ranked):
        if ok(ranked[:k]):
            good = k
            break
        k *= 2
    if good is None:
        if not ranked or not ok(ranked):
            result.unreachable = (f"with all {len(ranked)} candidate layers float the drop is still "
                                  f"{result.trials[-1].drop:.2f}: what remains is the int8 input/output and the "
                                  "int8 data-movement ops (pad, pooling, reshape)")
            return []  # keep the default PTQ artifact and say the budget cannot be met by float layers
        good = len(ranked)
    lo, hi = good // 2, good  # ranked[:lo] failed (or lo == 0), ranked[:hi] passes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(ranked[:mid]):
            hi = mid
        else:
            lo = mid
    chosen = list(ranked[:hi])
    on_step(f"{target}: pruning {len(chosen)} float layers")
    for c in reversed(list(chosen)):  # minimal: no kept layer can go back to int8
        if len(chosen) > 1 or c is not chosen[0]:
            trial_set = [x for x in chosen if x is not c]
            if trial_set != chosen and ok(trial_set):
                chosen = trial_set
    return chosen


def _suffix(target: str) -> str:
    """The file suffix of ``target``'s format (edgeport.formats)."""
    from edgeport.exporters import TARGETS, load_all
    from edgeport.formats import FORMATS

    load_all()
    return FORMATS.get(TARGETS.get(target).format).suffix

