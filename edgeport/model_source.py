"""Where a model comes from: a zoo name or ``module:factory`` / ``file.py:factory``, plus optional weights.

Checkpoints are loaded with ``torch.load(weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from edgeport.errors import UsageError, UserError
from edgeport.models import MODELS
from edgeport.registry import ModelSpec

CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "ema")


@dataclass
class LoadedModel:
    name: str
    module: torch.nn.Module
    input_shape: tuple[int, ...]
    spec: ModelSpec | None = None
    weights: Path | None = None


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``; rejects anything that is not positive integers."""
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise UsageError(f"input shape {text!r} is not a list of integers", "write it like 1,3,224,224") from None
    if len(shape) < 2 or any(d <= 0 for d in shape):
        raise UsageError(f"input shape {text!r} must have at least 2 positive dimensions", "e.g. 1,3,224,224")
    return shape


def _import_factory(ref: str):
    target, _, attr = ref.rpartition(":")
    if not target or not attr:
        raise UserError(f"{ref!r} is neither a zoo model nor module:factory", "run `edgeport models` to list the zoo")
    if target.endswith(".py") or "/" in target or "\\" in target:
        path = Path(target)
        if not path.is_file():
            raise UserError(f"model file {path} does not exist", f"tried to load {attr!r} from it")
        mod_name = f"edgeport_user_{abs(hash(path.resolve()))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise UserError(f"importing {path} failed: {type(exc).__name__}: {exc}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise UserError(
                f"cannot import module {target!r} ({exc})",
                "check the module is on PYTHONPATH, or pass a file path: path/to/file.py:factory",
            ) from None
    factory = getattr(module, attr, None)
    if factory is None:
        public = [n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise UserError(f"{target} has no attribute {attr!r}", f"callables there: {', '.join(public[:10]) or 'none'}")
    if not callable(factory):
        raise UserError(f"{target}:{attr} is not callable", "point at a function or class that returns an nn.Module")
    return factory


def build(ref: str, **kwargs) -> tuple[torch.nn.Module, ModelSpec | None]:
    """Build a zoo model by name, or call a user factory given as ``module:factory``/``file.py:factory``."""
    if ":" not in ref:
        spec = MODELS.get(ref)
        return spec.build(**kwargs), spec
    factory = _import_factory(ref)
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise UserError(f"calling {ref}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"{ref}() returned {type(model).__name__}, not a torch.nn.Module")
    return model, None


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint safely: a state dict, or a dict holding one under a usual key."""
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UserError(
            f"{path} holds Python objects that weights_only loading refuses ({str(exc).splitlines()[0][:120]})",
            "if you trust it, re-save only the tensors: torch.save(torch.load(p, weights_only=False).state_dict(), 'clean.pt')",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UserError(f"{path} is not a readable torch checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} does not hold a state dict", f"expected tensors by name, or one under {CHECKPOINT_KEYS}")
    prefix = "module."  # saved from DataParallel/DistributedDataParallel
    if obj and all(k.startswith(prefix) for k in obj):
        obj = {k[len(prefix):]: v for k, v in obj.items()}
    return obj


def apply_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in state and state[k].shape != own[k].shape]
    problems = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if items:
            more = f" (+{len(items) - 3} more)" if len(items) > 3 else ""
            problems.append(f"{label}: {', '.join(items[:3])}{more}")
    if problems:
        raise UserError(
            f"{source} does not fit the model: {'; '.join(problems)}",
            "check the model name/width/num_classes match the checkpoint",
        )
    model.load_state_dict(state, strict=True)


def check_runs(model: torch.nn.Module, example: torch.Tensor) -> None:
    """Run one eager forward pass; an exception here means the input shape does not suit the model."""
    try:
        with torch.no_grad():
            model(example)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"the model fails on an input of shape {tuple(example.shape)}: {first[:200]}",
            "pass the shape it expects with --input-shape N,C,H,W",
        ) from None


def load(ref: str, weights: Path | None = None, input_shape: tuple[int, ...] | None = None, **kwargs) -> LoadedModel:
    model, spec = build(ref, **kwargs)
    if weights is not None:
        apply_weights(model, load_state_dict(Path(weights)), Path(weights))
    model = model.float().eval()
    shape = input_shape or (spec.input_shape if spec else None)
    if shape is None:
        raise UsageError(f"{ref} is not a zoo model, so edgeport needs its input shape", "add --input-shape 1,3,224,224")
    check_runs(model, torch.zeros(shape))
    return LoadedModel(name=spec.name if spec else ref.rpartition(":")[2], module=model, input_shape=shape, spec=spec, weights=weights)
