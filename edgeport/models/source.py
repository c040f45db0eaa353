"""Where a model comes from: a zoo name or ``module:factory`` / ``file.py:factory``, plus optional weights.

Checkpoints are loaded with ``torch.load(weights_only=True)``: a checkpoint can never run code.
"""

from __future__ import annotations

import importlib
import importlib.util
import pickle
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edgeport.data.preprocess import Preprocess
from edgeport.errors import UnsupportedOp, UsageError, UserError
from edgeport.models import MODELS
from edgeport.registry import ModelSpec

CHECKPOINT_KEYS = ("state_dict", "model", "model_state_dict", "ema")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")  # torch.save files: weights (--weights), never a --model
ZOO_SEED = 0


@dataclass
class LoadedModel:
    name: str
    module: torch.nn.Module
    input_shape: tuple[int, ...]
    spec: ModelSpec | None = None
    weights: Path | None = None
    preprocess: Preprocess | None = None
    build_kwargs: dict = field(default_factory=dict)

    @property
    def random_weights(self) -> bool:
        """A zoo model built without a checkpoint: its outputs barely depend on the input."""
        return self.spec is not None and self.weights is None

    def data_preprocess(self) -> Preprocess:
        """The model's preprocessing, sized to its input (ImageNet mean/std, resize 1/0.875, centre crop by default)."""
        if self.preprocess is not None:
            return self.preprocess
        c, h = self.input_shape[1], self.input_shape[-1]
        return Preprocess(size=h, resize=round(h / 0.875), channels=c)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` -> ``(1, 3, 224, 224)``; rejects anything that is not positive integers."""
    try:
        shape = tuple(int(p) for p in re.split(r"[,x]", text.strip()))
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
        # Seeded, so a zoo model without a checkpoint has the same random weights in every command:
        # `validate` then compares an artifact with the very network that `export` exported.
        with torch.random.fork_rng():
            torch.manual_seed(ZOO_SEED)
            return spec.build(**kwargs), spec
    factory = _import_factory(ref)
    try:
        model = factory(**kwargs)
    except Exception as exc:
        raise UserError(f"calling {ref}() failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch.nn.Module):
        raise UserError(f"{ref}() returned {type(model).__name__}, not a torch.nn.Module")
    return model, None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a checkpoint safely: (state dict, edgeport metadata or {}).

    A checkpoint is a state dict, or a dict holding one under a usual key; edgeport's own checkpoints also
    carry ``"edgeport": {"model", "kwargs", "input_shape", "preprocess"}`` (plain data, no code).
    """
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is a paragraph with terminal bold codes; the class it refused is what the user needs
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f"a pickled {found.group(1)}" if found else "pickled Python objects"
        raise UserError(
            f"{path} holds {what}, which loading with weights_only=True refuses (it could run code)",
            f"if you trust the file, save only its tensors: torch.save(torch.load('{path.name}', weights_only=False)"
            ".state_dict(), 'clean.pt')",
        ) from None
    except Exception as exc:  # noqa: BLE001 - on arbitrary bytes the unpickler fails in unbounded ways
        # (KeyError, IndexError, struct.error, UnicodeDecodeError, ... measured with text and truncated files)
        detail = (str(exc).splitlines() or [""])[0][:160] or type(exc).__name__
        raise UserError(
            f"{path} is not a readable torch checkpoint ({detail})",
            "pass a file written by torch.save (a state dict); it may be truncated or another format",
        ) from None
    meta = obj.get("edgeport") if isinstance(obj, dict) and isinstance(obj.get("edgeport"), dict) else {}
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
    return obj, meta


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


def check_runs(model: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    """Run one eager forward pass; an exception here means the input shape does not suit the model.

    Returns the model to export: itself when it returns a tensor, wrapped in :class:`OneOutput` when it returns
    one tensor inside a container (torchvision's segmentation models return ``{"out": tensor}``)."""
    try:
        with torch.no_grad():
            result = model(example)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"the model fails on an input of shape {tuple(example.shape)}: {first[:200]}",
            "pass the shape it expects with --input-shape N,C,H,W",
        ) from None
    return one_output(model, result)


def one_output(model: torch.nn.Module, result) -> torch.nn.Module:
    """``model`` with exactly one tensor output, or a typed error naming what it returns instead.

    Every runner, metric and per-layer diagnosis compares one output tensor; a model returning several (a
    detection head's boxes and scores) is refused here, before any work, rather than half-exported."""
    if isinstance(result, torch.Tensor):
        return model
    from torch.utils import _pytree

    leaves, _ = _pytree.tree_flatten_with_path(result)
    tensors = [(_pytree.keystr(path), leaf) for path, leaf in leaves if isinstance(leaf, torch.Tensor)]
    if len(tensors) == 1:
        return OneOutput(model, tensors[0][0])
    shown = ", ".join(f"{k or 'output'} {tuple(t.shape)}" for k, t in tensors[:4]) or type(result).__name__
    raise UnsupportedOp(
        f"the model returns {len(tensors)} tensors ({shown}{', ...' if len(tensors) > 4 else ''}); "
        "edgeport exports models with one output tensor",
        "wrap the model so forward returns one tensor (e.g. torch.cat of the flattened heads, or the one you deploy)",
    )


class OneOutput(torch.nn.Module):
    """A model whose single output tensor sits in a container (``result["out"]``): forward returns the tensor."""

    def __init__(self, model: torch.nn.Module, key: str):
        super().__init__()
        self.model, self.key = model, key

    def forward(self, x):
        from torch.utils import _pytree

        return next(leaf for leaf in _pytree.tree_leaves(self.model(x)) if isinstance(leaf, torch.Tensor))


def load(ref: str, weights: Path | None = None, input_shape: tuple[int, ...] | None = None, **kwargs) -> LoadedModel:
    """Build ``ref``, load ``weights`` (or the zoo entry's shipped checkpoint), check it runs on the input shape.

    Builder kwargs, input shape and preprocessing come from the user first, then from the checkpoint's
    edgeport metadata, then from the zoo entry.
    """
    if ":" not in ref and Path(ref).suffix.lower() in CHECKPOINT_SUFFIXES:
        raise UserError(f"{ref} is a checkpoint, not a model", f"name the architecture with --model (a zoo name, "
                        f"pkg.module:factory or file.py:factory) and pass the file with --weights {ref}")
    spec = MODELS.get(ref) if ":" not in ref else None
    if weights is None and spec is not None and spec.weights:
        weights = Path(__file__).resolve().parents[1] / spec.weights
    state, meta = load_checkpoint(Path(weights)) if weights is not None else (None, {})
    build_kwargs = {**(meta.get("kwargs") or {}), **kwargs}
    model, spec = build(ref, **build_kwargs)
    if state is not None:
        apply_weights(model, state, Path(weights))
    model = model.float().eval()
    shape = input_shape or (tuple(meta["input_shape"]) if meta.get("input_shape") else None) or (spec.input_shape if spec else None)
    if shape is None:
        raise UsageError(f"{ref} is not a zoo model, so edgeport needs its input shape", "add --input-shape 1,3,224,224")
    model = check_runs(model, torch.zeros(shape))
    pre = Preprocess.from_dict(meta["preprocess"]) if meta.get("preprocess") else (spec.preprocess if spec else None)
    if pre is not None and (pre.size != shape[-1] or pre.channels != shape[1]):
        if meta.get("preprocess"):  # trained weights: feeding them other images than they learned from is never silent
            raise UserError(
                f"{Path(weights).name} was trained on {pre.channels}x{pre.size}x{pre.size} inputs ({pre.describe()}); "
                f"--input-shape {','.join(map(str, shape))} does not match",
                f"drop --input-shape (the checkpoint's own is {','.join(map(str, meta.get('input_shape') or []))}), or "
                "export an untrained model for another size",
            )
        pre = None  # a zoo recipe at another input size: the default preprocessing at the new size
    name = spec.name if spec else ref.rpartition(":")[2]
    return LoadedModel(name, model, shape, spec, weights, pre, build_kwargs)


def from_module(module, input_shape: tuple[int, ...] | None = None, weights: Path | None = None, name: str | None = None,
                **kwargs) -> LoadedModel:
    """A model the caller already holds (an ``nn.Module`` instance), used as it is (eval mode, float32);
    ``weights`` are loaded into it like a checkpoint given with a zoo name."""
    if not isinstance(module, torch.nn.Module):
        raise UserError(
            f"model is a {type(module).__name__}, not a torch.nn.Module",
            "pass an nn.Module, a zoo name, 'pkg.module:factory', 'file.py:factory' or a torch.export .pt2 file",
        )
    if kwargs:
        raise UsageError(f"{', '.join(kwargs)} rebuild a zoo model; an nn.Module instance is used as it is")
    if input_shape is None:
        raise UsageError("an nn.Module instance needs its input shape", "pass input_shape=(1, 3, 224, 224)")
    if weights is not None:
        state, _ = load_checkpoint(Path(weights))
        apply_weights(module, state, Path(weights))
    module = module.float().eval()
    name = name or _snake(type(module).__name__)
    module = check_runs(module, torch.zeros(input_shape))
    return LoadedModel(name, module, tuple(input_shape), None, weights, None, {})


def load_program(path: Path, input_shape: tuple[int, ...] | None = None) -> LoadedModel:
    """A program saved with ``torch.export.save`` (.pt2): its module, with the input shape it was exported with.

    Loading a .pt2 deserializes a graph and tensors (no pickled code objects run)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # noqa: BLE001 - torch.export.load fails in many ways on a foreign or damaged file
        detail = (str(exc).splitlines() or [""])[0][:160] or type(exc).__name__
        raise UserError(f"{path} is not a torch.export program ({detail})", "write it with torch.export.save(ep, 'model.pt2')") from None
    user_inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    if len(user_inputs) != 1:
        raise UserError(f"{path.name} takes {len(user_inputs)} inputs; edgeport exports image models with one input")
    dims = tuple(user_inputs[0].meta["val"].shape)
    saved = tuple(d if isinstance(d, int) else 1 for d in dims)
    shape = tuple(input_shape) if input_shape is not None else saved
    # a static batch is guarded by the program, so larger batches run in slices of it
    module = _Program(program.module(), dims[0] if isinstance(dims[0], int) else None)
    module = check_runs(module, torch.zeros(shape))
    return LoadedModel(path.stem, module, shape, None, None, None, {})


class _Program(torch.nn.Module):
    """A loaded torch.export program as a module edgeport can run and capture again: the mode it was exported
    in is kept (its GraphModule refuses train()/eval()), and a static batch dimension runs larger batches in
    slices of that size (captured at that batch size, it is the program itself)."""

    def __init__(self, inner: torch.nn.Module, batch: int | None):
        super().__init__()
        self.inner, self.batch = inner, batch

    def train(self, mode: bool = True):
        self.training = mode
        return self

    def forward(self, x):
        if self.batch is None or x.shape[0] == self.batch:
            return self.inner(x)
        return torch.cat([self.inner(x[i:i + self.batch]) for i in range(0, x.shape[0], self.batch)])


def _snake(name: str) -> str:
    """``TinyNet`` -> ``tiny_net``: an artifact base name for an in-memory module."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() or "model"
