"""manifest.json: one record of a whole ``edgeport run`` (recipes, artifacts, parity, accuracy, latency,
environment, durations), the single source the other reports are rendered from."""

from __future__ import annotations

import platform
import sys
import time

from edgeport import __version__
from edgeport.models.source import ZOO_SEED

SCHEMA = "edgeport.manifest/1"


def environment() -> dict:
    from edgeport.pipeline.artifact import ALL_TOOLS, tool_versions
    from edgeport.runtimes.cpu_features import describe_host

    return {"host": describe_host(), "platform": platform.platform(), "python": sys.version.split()[0],
            "tools": tool_versions(ALL_TOOLS)}


def recipe_entry(r) -> dict:
    """One RecipeResult (edgeport.pipeline.recipe_run) as plain data."""
    rec = r.recipe
    return {
        "name": rec.name,
        "recipe": str(rec.path),
        "model": r.model,
        "targets": list(rec.targets),
        # everything random in a run is seeded: these and the tool versions reproduce every artifact
        "seeds": {"data": rec.data.seed, "random_weights": ZOO_SEED, "calib_samples": rec.data.calib_samples,
                  "val_samples": rec.data.val_samples},
        "passed": r.passed,
        "failures": r.failures,
        "error": r.error,
        "error_code": getattr(r, "error_code", None),  # the exit code the error calls for (edgeport.errors)
        "warnings": r.warnings,
        "artifacts": r.artifacts,
        "fusion": r.fusion,
        "int8_problems": r.int8_problems,
        "validation": r.validation,
        "accuracy": r.accuracy,
        "latency": r.timings,
        "recommendation": getattr(r, "recommendation", []),  # per device (edgeport.benchmark.recommend), several devices only
        "per_layer_int8": r.per_layer,  # None until a per-layer diagnosis fills it; the HTML plots it when present
        "accuracy_control": getattr(r, "accuracy_control", None),  # [quantize] max_accuracy_drop: per int8 target
        "durations_s": r.durations,
        "reused_stages": r.reused,
        "nondeterministic": r.nondeterministic,
    }


def build(results: list, started: float, wall_s: float, force: bool, cache_root) -> dict:
    return {
        "schema": SCHEMA,
        "edgeport": __version__,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "wall_s": round(wall_s, 3),
        "force": force,
        "cache": str(cache_root),
        "environment": environment(),
        "passed": all(r.passed for r in results),
        "recipes": [recipe_entry(r) for r in results],
    }
