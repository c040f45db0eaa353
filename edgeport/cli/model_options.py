"""Options shared by the commands that take a model, data, quantization settings and thresholds: each is
defined once here (help grouped in panels so ``--help`` reads at 80 columns) and turned into the keyword
arguments of the edgeport API (edgeport.api)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from edgeport.data import DEFAULT_CALIBRATION, DEFAULT_VALIDATION, MIN_CALIBRATION
from edgeport.errors import UsageError
from edgeport.exporters import PTE_LAYOUTS
from edgeport.quantization.options import (
    DEPLOY_CHOICES,
    IO_DTYPES,
    ONNX_ACTIVATIONS,
    ONNX_FORMATS,
    ONNX_HARD_ACTIVATIONS,
    REDUCE_RANGE,
    help_list,
)

MODEL_PANEL = "Model"
DATA_PANEL = "Data and preprocessing"
QUANT_PANEL = "Quantization (int8 targets)"
CHECK_PANEL = "Thresholds"


def _target_help() -> str:
    from edgeport.exporters import target_names

    return f"Comma-separated targets: {', '.join(target_names())}."


MODEL = typer.Option(..., "--model", "-m", help="Zoo name (see `edgeport models`), pkg.module:factory, path/file.py:factory or a "
    "torch.export .pt2.",
                     rich_help_panel=MODEL_PANEL)
WEIGHTS = typer.Option(None, "--weights", "-w", help="Checkpoint (state dict, or dict with state_dict/model), loaded with "
    "weights_only=True.",
                       rich_help_panel=MODEL_PANEL)
INPUT_SHAPE = typer.Option(None, "--input-shape", help="N,C,H,W (default: the zoo model's or checkpoint's own).",
                           rich_help_panel=MODEL_PANEL)
NUM_CLASSES = typer.Option(None, "--num-classes", help="Build a zoo model with this many classes.", rich_help_panel=MODEL_PANEL)
WIDTH = typer.Option(None, "--width", help="Width multiplier for a zoo model (its builder's width_mult).", rich_help_panel=MODEL_PANEL)
TARGET = typer.Option("onnx-fp32", "--target", "-t", help=_target_help())
CALIB = typer.Option(None, "--calib", help="Calibration/validation data: image folder, .npy/.npz, fashion-mnist, or synthetic.",
                     rich_help_panel=DATA_PANEL)
VAL_DATA = typer.Option(None, "--val-data", help="Held-out validation data of its own (same kinds as --calib): calibration then "
                        "takes all of --calib (up to --calib-samples) instead of sharing it.", rich_help_panel=DATA_PANEL)
CALIB_SAMPLES = typer.Option(DEFAULT_CALIBRATION, "--calib-samples",
                             help="Calibration samples (seeded, deterministic).", rich_help_panel=DATA_PANEL)
VAL_SAMPLES = typer.Option(DEFAULT_VALIDATION, "--val-samples",
                           help="Held-out validation samples, disjoint from calibration. A single --calib source too small for "
                           f"both, whose half would be under {MIN_CALIBRATION} samples, is calibrated whole and validated "
                           "on the same samples (in-sample, with a warning).", rich_help_panel=DATA_PANEL)
SEED = typer.Option(0, "--seed", help="Seed for choosing samples.", rich_help_panel=DATA_PANEL)
MEAN = typer.Option(None, "--mean", help="Preprocessing mean per channel on [0,1], e.g. 0.485,0.456,0.406.", rich_help_panel=DATA_PANEL)
STD = typer.Option(None, "--std", help="Preprocessing std per channel, e.g. 0.229,0.224,0.225.", rich_help_panel=DATA_PANEL)
SCALE_127 = typer.Option(False, "--scale-127", help="Preprocess as (x - 127) / 128 instead of mean/std.", rich_help_panel=DATA_PANEL)
BGR = typer.Option(False, "--bgr", help="Feed channels in BGR order.", rich_help_panel=DATA_PANEL)
CLE = typer.Option(False, "--cle/--no-cle", help="Cross-layer equalization (DFQ) of the fused graph before export; ReLU6 in equalized "
    "pairs becomes ReLU.",
                   rich_help_panel=QUANT_PANEL)
BIAS_CORRECTION = typer.Option(None, "--bias-correction/--no-bias-correction",
                               help="Correct each layer's bias for the mean error of its int8 weights, measured on --calib data "
                                    "[default: on with real --calib data, off with synthetic].",
                               rich_help_panel=QUANT_PANEL)
ADAROUND = typer.Option(False, "--adaround/--no-adaround",
                        help="AdaRound: learn each conv/linear weight's rounding (up or down) on --calib data, onto the grid "
                        "the int8 converters reproduce exactly (minutes on a CPU).",
                        rich_help_panel=QUANT_PANEL)
RANGE_SEARCH = typer.Option(False, "--range-search/--no-range-search",
                            help="Output-aware int8 ranges: narrow the ranges of the activations the output is most "
                            "sensitive to where a simulation of the int8 network on --calib data says it helps (tflite-int8, "
                            "onnx-int8; a minute or two at 224x224).",
                            rich_help_panel=QUANT_PANEL)
IO_DTYPE = typer.Option("int8", "--io-dtype", help=f"tflite-int8 / executorch-int8 input and output: {help_list(IO_DTYPES)} "
                        "(int8 inside; .pte: int8 or float32).",
                        rich_help_panel=QUANT_PANEL)
ALLOW_FLOAT = typer.Option([], "--allow-float", help="Layer allowed to stay float in int8 targets (repeatable).",
                           rich_help_panel=QUANT_PANEL)
NO_FLOAT = typer.Option(False, "--no-float", help="Fail (exit 3) when an int8 file computes any op in float, including ops edgeport "
                        "keeps float automatically because int8 cannot run them (GELU's Erf, a DIV by a zero-quantized value).",
                        rich_help_panel=QUANT_PANEL)
DEPLOY = typer.Option(None, "--deploy", help=f"onnx-int8 settings measured best on that architecture: {help_list(DEPLOY_CHOICES)} "
                      "(x86: x86-vnni or x86-avx2 from this machine's CPU, printed; arm64: dot-product cores, Pi 5; "
                      "arm64-nodot: Pi 4); docs/quantization.md, docs/arm.md.", rich_help_panel=QUANT_PANEL)
ONNX_FORMAT = typer.Option(None, "--onnx-format", help=f"onnx-int8 format: {help_list(ONNX_FORMATS)} (default qdq); overrides --deploy.",
                           rich_help_panel=QUANT_PANEL)
ONNX_ACTIVATIONS = typer.Option(None, "--onnx-activations", help=f"onnx-int8 activations: {help_list(ONNX_ACTIVATIONS)} (default s8); "
                                "weights stay int8; overrides --deploy.", rich_help_panel=QUANT_PANEL)
ONNX_REDUCE_RANGE = typer.Option(None, "--onnx-reduce-range", help=f"onnx-int8 weight grid: {help_list(REDUCE_RANGE)} "
                                 "(on: 7-bit everywhere; off: 8-bit; pairs: 8-bit with scales no x86 kernel without VNNI "
                                 "can saturate; auto, the default: pairs on such a CPU, else off); overrides --deploy.",
                                 rich_help_panel=QUANT_PANEL)
ONNX_HARD_ACTIVATIONS_OPT = typer.Option(None, "--onnx-hard-activations", help=f"onnx-int8 h-swish/hard-sigmoid: "
                                         f"{help_list(ONNX_HARD_ACTIVATIONS)} (default float: ORT has no integer kernel for "
                                         "them; int8: as x*relu6(x+3), every op an integer kernel); overrides --deploy.",
                                         rich_help_panel=QUANT_PANEL)
PTE_LAYOUT = typer.Option("nchw", "--pte-layout", help=f"executorch-* input memory: {help_list(PTE_LAYOUTS)} (nhwc: "
                          "channels-last, as camera frames come; XNNPACK then skips its input transpose).")
MIN_SQNR = typer.Option(None, "--min-sqnr", help="int8 threshold: minimum SQNR in dB vs PyTorch (default 15).", rich_help_panel=CHECK_PANEL)
MIN_TOP1 = typer.Option(None, "--min-top1", help="int8 threshold: minimum top-1 agreement with PyTorch (default 0.9).",
                        rich_help_panel=CHECK_PANEL)
MAX_ABS = typer.Option(None, "--max-abs", help="fp32 threshold: maximum abs error vs PyTorch (default 1e-4).", rich_help_panel=CHECK_PANEL)


def _floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"{flag} {text!r} is not a comma-separated list of numbers") from None


def shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape 1,3,224,224`` -> a tuple (None if not given)."""
    from edgeport.models import source

    return source.parse_shape(text) if text else None


def load_model(model: str, weights: Path | None, input_shape: str | None, num_classes: int | None, width: float | None):
    from edgeport import api

    return api.load_model(model, weights=weights, input_shape=shape(input_shape), num_classes=num_classes, width=width)


def preprocess_changes(mean, std, scale_127, bgr) -> dict:
    """The --mean/--std/--scale-127/--bgr flags as Preprocess field changes (only the flags given)."""
    changes = {"mean": _floats(mean, "--mean"), "std": _floats(std, "--std")}
    changes = {k: v for k, v in changes.items() if v is not None}
    if scale_127:
        changes["scale"] = "127"
    if bgr:
        changes["bgr"] = True
    return changes


def preprocess_overrides(pre, mean, std, scale_127, bgr):
    """``pre`` with the --mean/--std/--scale-127/--bgr flags applied (unchanged where a flag is not given)."""
    from dataclasses import replace

    return replace(pre, **preprocess_changes(mean, std, scale_127, bgr))


def warn_data(console: Console, warnings: list[str]) -> None:
    """What the data could not give (edgeport.data.calibration.DataSplit.warnings), one line each."""
    for w in warnings:
        console.print(f"[bold yellow]WARNING:[/] {w}")


def warn_synthetic(console: Console) -> None:
    console.print("[bold yellow]WARNING: --calib synthetic: calibration and validation use generated images; "
                  "int8 scales and every accuracy number below say nothing about real data.[/]")


def threshold_overrides(min_sqnr, min_top1, max_abs) -> dict:
    from dataclasses import replace

    from edgeport.exporters import FP32, INT8

    out = {}
    if min_sqnr is not None or min_top1 is not None:
        out["int8"] = replace(INT8, **{k: v for k, v in {"min_sqnr_db": min_sqnr, "min_top1": min_top1}.items() if v is not None})
    if max_abs is not None:
        out["fp32"] = replace(FP32, max_abs=max_abs, max_rel=max_abs)
    return out
