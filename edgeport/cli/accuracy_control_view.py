"""``edgeport quantize --max-accuracy-drop``: run accuracy control after the quantization and show what it kept float."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from edgeport.errors import ParityFailed

RESULTS_FILE = "accuracy_control.json"


def step(targets, split, quant, budget: float, control_labelled, samples: int, pre, out: Path, test_labelled,
         results: list, on_stage):
    """The ``then`` step for method_comparison.compare_methods: control each target, then (with --data) measure the
    final artifacts' accuracy on --data; appends (ControlResult, test accuracy or None) to ``results``."""

    def run(prep, cache) -> None:
        from edgeport.pipeline.export_flow import with_data
        from edgeport.quantization.accuracy_backends import control_set, control_targets
        from edgeport.validation import evaluation

        on_stage("accuracy control: scoring data")
        cset = control_set(prep, control_labelled, samples, split.validation if split else None, pre)
        calibration = split.calibration.inputs if split else None
        for r in control_targets(prep, [t.name for t in targets], calibration, with_data(quant, split), cset, budget, out, cache, on_stage):
            test = None
            if test_labelled is not None:
                path = Path(out) / _filename(r.target, prep.loaded.name)
                on_stage(f"accuracy of the controlled {r.target} on {test_labelled.source}")
                test = evaluation.evaluate(evaluation.open_artifact(path, 1, (pre, "--model"), lambda _: pre), test_labelled).top1
            results.append((r, cset.source, test))

    return run


def allow_float_args(kept) -> str:
    """--allow-float options that rebuild a controlled artifact, by layer name (edgeport.formats.layer_names): the
    backend's own keys are not stable across runs (onnx2tf's tensor names carry a per-process model_N prefix)."""
    import shlex

    return " ".join(f"--allow-float {shlex.quote(c.layer)}" for c in kept)


def _filename(target: str, model: str) -> str:
    from edgeport.exporters import TARGETS

    return TARGETS.get(target).filename(model)


def finish(console, results: list, out: Path) -> None:
    """Print the table, write accuracy_control.json; exit 3 when a target cannot meet the budget."""
    from edgeport.util.atomic_file import write_text

    if not results:
        return
    table = Table(box=None, pad_edge=False, title="accuracy control", title_justify="left")
    for col in ("target", "float", "int8", "controlled", "drop", "budget", "float layers", "size KB", "p50 ms", "float ops"):
        table.add_column(col, no_wrap=col != "float layers", justify="left" if col in ("target", "float layers") else "right")
    for r, _, _ in results:
        lat = "—" if r.latency_ms is None else f"{r.latency_ms[0]:.2f} → {r.latency_ms[1]:.2f}"
        table.add_row(r.target, f"{r.float_score:.2f}", f"{r.int8_score:.2f}", f"{r.final_score:.2f}",
                      f"[{'green' if r.within_budget else 'red'}]{r.drop:.2f}[/]", f"{r.budget:.2f}",
                      ", ".join(c.layer for c in r.kept_float) or "none",
                      f"{r.size_bytes[0] / 1024:.0f} → {r.size_bytes[1] / 1024:.0f}", lat,
                      f"{r.float_ops[0]} → {r.float_ops[1]}")
    console.print(table)
    r0, source, _ = results[0]
    console.print(f"scores: {r0.metric} on {source}; drop = float - controlled, in points; p50 measured on this machine")
    for r, _, test in results:
        if test is not None:
            console.print(f"{r.target} (controlled): top-1 {100 * test:.2f} % on --data")
        if r.unreachable:
            console.print(f"[red]{r.target}: {r.unreachable}[/]")
        elif r.kept_float:
            console.print(f"{r.target}: same file from `edgeport export`: {allow_float_args(r.kept_float)}",
                          soft_wrap=True, markup=False, highlight=False)  # one line, to copy as it is
    path = Path(out) / RESULTS_FILE
    write_text(path, json.dumps([{**r.to_dict(), "control_data": source, "data_top1": test} for r, source, test in results],
                                indent=2, default=float))
    console.print(f"wrote {path}")
    failed = [r for r, _, _ in results if not r.within_budget]
    if failed:
        raise ParityFailed(f"{failed[0].target}: drop {failed[0].drop:.2f} points exceeds --max-accuracy-drop "
                           f"{failed[0].budget:.2f}", f"see {path}")
