"""``edgeport recipe new NAME``: write a commented recipe template that parses as it is."""

from __future__ import annotations

from pathlib import Path

import typer

from edgeport.cli.console import make as make_console
from edgeport.errors import UserError

console = make_console()
recipe_app = typer.Typer(help="Recipes for `edgeport run`: one TOML per model.", no_args_is_help=True)

TEMPLATE = '''# edgeport recipe: {name}
# Run it with: edgeport run {file} --out artifacts/
# Paths are relative to this file's folder and must stay inside it.

[model]
name = "{model}"            # zoo name (edgeport models), pkg.module:factory, or file.py:factory
# weights = "{name}.pt"     # state dict (torch.save), loaded with weights_only=True
# input_shape = [1, 3, 224, 224]   # needed for module:factory models; zoo models know theirs
# num_classes = 1000
# width = 1.0               # zoo width multiplier

# [preprocess]              # overrides of the model's own preprocessing
# mean = [0.485, 0.456, 0.406]
# std = [0.229, 0.224, 0.225]
# scale = "meanstd"         # or "127": (x - 127) / 128
# bgr = false

[data]
calib = "synthetic"         # image folder, .npy/.npz, "fashion-mnist", or "synthetic" (says nothing about accuracy)
# val_data = "val/"         # held-out validation data of its own: calibration then takes all of calib
calib_samples = {calib_samples}         # calibration samples (seeded)
val_samples = {val_samples}           # held-out validation samples, disjoint from calibration (a calib set
                            # too small to halve is calibrated whole and validated in-sample, with a warning)
seed = 0

[quantize]
method = "{method}"              # {methods}
# bias_correction = true    # default: on with real [data] calib, off with synthetic
io_dtype = "int8"           # tflite-int8 / executorch-int8 input/output: {io_dtypes}
allow_float = []            # layer names allowed to stay float in int8 targets
no_float = false            # true: any float op in an int8 file fails (automatic fallbacks included)

[export]
targets = [{targets}]
dynamic_batch = false
pte_layout = "nchw"         # executorch-* input memory: {pte_layouts}

# Parity with PyTorch; a group is a target (onnx-int8) or a precision (fp32, fp16, int8).
[thresholds.fp32]
max_abs = 1e-4
min_sqnr_db = 60

[thresholds.int8]
min_sqnr_db = 15            # dB; at most 200
min_top1 = 0.9              # top-1 agreement with PyTorch, 0..1

# [accuracy]                # on labelled validation data only
# min_top1 = 0.88
# max_drop = 0.02           # at most this far below the PyTorch model

[bench]
devices = ["local"]         # {devices}
threads = [1]
budget_s = 2.0              # seconds of timed runs per artifact and thread count
'''


@recipe_app.command("new")
def new(
    name: str = typer.Argument(..., help="Recipe name; also the model if it is a zoo name."),
    out: Path = typer.Option(None, "--out", "-o", help="File to write (default NAME.toml in the current folder)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write a commented recipe template."""
    from edgeport.models import MODELS
    from edgeport.util.atomic_file import write_text

    path = out or Path(f"{name}.toml")
    if path.exists() and not force:
        raise UserError(f"{path} already exists", "pass --force to overwrite it, or choose another --out")
    model = name if name in MODELS.names() else "mobilenet_v2"
    from edgeport.benchmark.devices import VALID
    from edgeport.data import DEFAULT_CALIBRATION, DEFAULT_VALIDATION
    from edgeport.exporters import PTE_LAYOUTS, target_names
    from edgeport.quantization.options import CALIBRATION_METHODS, DEFAULT_METHOD, IO_DTYPES

    write_text(path, TEMPLATE.format(  # the closed sets as edgeport defines them, not a copy that can fall behind
        name=name, file=path, model=model, method=DEFAULT_METHOD, methods=" | ".join(CALIBRATION_METHODS), io_dtypes=" | ".join(IO_DTYPES),
        pte_layouts=" | ".join(PTE_LAYOUTS),
        targets=", ".join(f'"{t}"' for t in target_names()), devices=VALID, calib_samples=DEFAULT_CALIBRATION,
        val_samples=DEFAULT_VALIDATION))
    console.print(f"wrote {path}" + ("" if model == name else f" (model set to {model}: edit [model] name)"))


def register(app: typer.Typer) -> None:
    app.add_typer(recipe_app, name="recipe")
