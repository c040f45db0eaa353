"""Options shared by commands that take a model and data: how they turn into a LoadedModel and a DataSplit."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from edgeport.errors import UsageError

MODEL = typer.Option(..., "--model", "-m", help="Zoo name (see `edgeport models`), pkg.module:factory or path/file.py:factory.")
WEIGHTS = typer.Option(None, "--weights", "-w", help="Checkpoint (state dict, or dict with state_dict/model), loaded with weights_only=True.")
INPUT_SHAPE = typer.Option(None, "--input-shape", help="N,C,H,W (default: the zoo model's or checkpoint's own).")
NUM_CLASSES = typer.Option(None, "--num-classes", help="Build a zoo model with this many classes.")
WIDTH = typer.Option(None, "--width", help="Width multiplier for a zoo model (its builder's width_mult).")
CALIB = typer.Option(None, "--calib", help="Calibration/validation data: image folder, .npy/.npz, fashion-mnist, or synthetic.")
CALIB_SAMPLES = typer.Option(200, "--calib-samples", help="Calibration samples (seeded, deterministic).")
VAL_SAMPLES = typer.Option(500, "--val-samples", help="Held-out validation samples, disjoint from calibration.")
SEED = typer.Option(0, "--seed", help="Seed for choosing samples.")
CLE = typer.Option(False, "--cle/--no-cle", help="Cross-layer equalization (DFQ) of the fused graph before export; ReLU6 in equalized pairs becomes ReLU.")
BIAS_CORRECTION = typer.Option(False, "--bias-correction/--no-bias-correction", help="Correct each layer's bias for the mean error of its int8 weights, measured on --calib data.")
MEAN = typer.Option(None, "--mean", help="Preprocessing mean per channel on [0,1], e.g. 0.485,0.456,0.406.")
STD = typer.Option(None, "--std", help="Preprocessing std per channel, e.g. 0.229,0.224,0.225.")
SCALE_127 = typer.Option(False, "--scale-127", help="Preprocess as (x - 127) / 128 instead of mean/std.")
BGR = typer.Option(False, "--bgr", help="Feed channels in BGR order.")
IO_DTYPE = typer.Option("int8", "--io-dtype", help="tflite-int8 input/output: int8, uint8 or float32 (int8 inside).")
MIN_SQNR = typer.Option(None, "--min-sqnr", help="int8 threshold: minimum SQNR in dB vs PyTorch (default 15).")
MIN_TOP1 = typer.Option(None, "--min-top1", help="int8 threshold: minimum top-1 agreement with PyTorch (default 0.9).")
MAX_ABS = typer.Option(None, "--max-abs", help="fp32 threshold: maximum abs error vs PyTorch (default 1e-4).")


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a comma-separated list of numbers") from None


def load_model(model: str, weights: Path | None, input_shape: str | None, num_classes: int | None, width: float | None):
    from edgeport.models import source as model_source

    shape = model_source.parse_shape(input_shape) if input_shape else None
    kwargs = {k: v for k, v in {"num_classes": num_classes, "width_mult": width}.items() if v is not None}
    return model_source.load(model, weights=weights, input_shape=shape, **kwargs)


def preprocess_overrides(pre, mean, std, scale_127, bgr):
    """``pre`` with the --mean/--std/--scale-127/--bgr flags applied (unchanged where a flag is not given)."""
    from dataclasses import replace

    changes = {"mean": _floats(mean, "--mean"), "std": _floats(std, "--std")}
    changes = {k: v for k, v in changes.items() if v is not None}
    if scale_127:
        changes["scale"] = "127"
    if bgr:
        changes["bgr"] = True
    return replace(pre, **changes)


def load_data(loaded, calib, calib_samples, val_samples, seed, mean, std, scale_127, bgr, console: Console):
    """The calibration/validation split for ``loaded`` (None without --calib), with the model's preprocessing."""
    from edgeport.data import calibration

    if calib is None:
        return None
    pre = preprocess_overrides(loaded.data_preprocess(), mean, std, scale_127, bgr)
    if calib == "synthetic":
        console.print("[bold yellow]WARNING: --calib synthetic: calibration and validation use generated images; "
                      "int8 scales and every accuracy number below say nothing about real data.[/]")
    split = calibration.load(calib, pre, loaded.input_shape, calib_samples, val_samples, seed)
    for part in (split.calibration, split.validation):
        calibration.check_fits(part, loaded.input_shape)
    return split


def threshold_overrides(min_sqnr, min_top1, max_abs) -> dict:
    from dataclasses import replace

    from edgeport.exporters import FP32, INT8

    out = {}
    if min_sqnr is not None or min_top1 is not None:
        out["int8"] = replace(INT8, **{k: v for k, v in {"min_sqnr_db": min_sqnr, "min_top1": min_top1}.items() if v is not None})
    if max_abs is not None:
        out["fp32"] = replace(FP32, max_abs=max_abs, max_rel=max_abs)
    return out
