"""Train zoo models on Fashion-MNIST on the CPU, reproducibly, with the project's own data path.

Data and preprocessing are exactly what calibration and validation use: :func:`edgeport.data.fashion_mnist.load`
and :data:`edgeport.data.preprocess.FASHION_MNIST` (uint8 28x28 -> float32 3x64x64 in [-1, 1]). The training
set is preprocessed once up front; because FASHION_MNIST turns grayscale into three identical channels with
the same mean/std, only one channel is kept in memory (1 GB instead of 3 GB) and expanded at batch time, so
the tensors fed to the model are bit-for-bit FASHION_MNIST's output (checked on every chunk). Augmentation
works on those tensors: random horizontal flip and a random shift of up to ``max_shift`` pixels (the border
filled with the value of a black pixel, -1).

Recipe: SGD with Nesterov momentum, linear warmup then cosine decay (per step), label smoothing, weight decay
on conv/linear weights only, channels_last. Everything random (init, data order, augmentation) comes from
``seed``. The result's accuracy is measured on the model *reloaded* from the fp16 checkpoint into a float32
model with ``strict=True`` (that is what gets committed and reported), not on the live training model.

On a 2-core machine shared with other jobs, run with ``GOMP_SPINCOUNT=1000`` in the environment (the script
scripts/train_fashion_mnist.py sets it): with libgomp's default spinning a 2-thread step was ~5-25x slower
whenever another process wanted a core.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeport.data import fashion_mnist
from edgeport.data.preprocess import FASHION_MNIST

__all__ = [
    "NUM_CLASSES",
    "INPUT_SHAPE",
    "build_model",
    "builder_kwargs",
    "evaluate",
    "fp16_state_dict",
    "load_checkpoint",
    "preprocess_train",
    "train",
]

NUM_CLASSES = 10
INPUT_SHAPE = (1, 3, FASHION_MNIST.size, FASHION_MNIST.size)
_BLACK = -1.0  # FASHION_MNIST value of pixel 0: (0 / 255 - 0.5) / 0.5


def builder_kwargs(width_mult: float | None = None) -> dict:
    kw: dict = {"num_classes": NUM_CLASSES}
    if width_mult is not None:
        kw["width_mult"] = width_mult
    return kw


def build_model(model_name: str, *, width_mult: float | None = None) -> nn.Module:
    """The zoo model ``model_name`` with 10 classes (and ``width_mult`` when given)."""
    from edgeport.models import MODELS

    return MODELS.get(model_name).build(**builder_kwargs(width_mult))


def fp16_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with floating tensors in fp16 (BN ``num_batches_tracked`` stays int64)."""
    sd = model.state_dict()
    return {k: (v.detach().half() if v.is_floating_point() else v.detach()).clone() for k, v in sd.items()}


CHECKPOINT_FORMAT = (
    "torch.save of {'state_dict': fp16 floating tensors, 'edgeport': {model, kwargs, input_shape, preprocess}}; "
    "load into a float32 model strict=True"
)


def checkpoint_payload(state_dict: dict, zoo_name: str, kwargs: dict) -> dict:
    """What the checkpoint file holds: the weights plus the plain-data recipe edgeport needs to use them,
    so ``edgeport export --model mobilenet_v2 --weights fmnist.pt`` needs no further flags."""
    return {
        "state_dict": state_dict,
        "edgeport": {"model": zoo_name, "kwargs": dict(kwargs), "input_shape": [1, 3, FASHION_MNIST.size, FASHION_MNIST.size],
                     "preprocess": FASHION_MNIST.to_dict()},
    }


def load_checkpoint(path_or_sd, model_name: str, *, width_mult: float | None = None) -> nn.Module:
    """A float32 zoo model in eval mode with the (fp16) checkpoint loaded ``strict=True``."""
    sd = path_or_sd
    if not isinstance(sd, dict):
        sd = torch.load(Path(path_or_sd), map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    model = build_model(model_name, width_mult=width_mult)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return model.eval()


def preprocess_train(images: np.ndarray, chunk: int = 4096) -> torch.Tensor:
    """FASHION_MNIST(images) as one channel, (N, 1, 64, 64) float32; the three output channels are checked equal."""
    n, s = len(images), FASHION_MNIST.size
    out = torch.empty((n, 1, s, s), dtype=torch.float32)
    for i in range(0, n, chunk):
        x = torch.from_numpy(FASHION_MNIST(images[i : i + chunk]))
        if not (torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])):
            raise AssertionError("FASHION_MNIST channels differ; cannot store one channel")
        out[i : i + chunk] = x[:, :1]
    return out


@torch.no_grad()
def evaluate(model: nn.Module, images_uint8: np.ndarray, labels, batch: int = 512) -> float:
    """Top-1 accuracy of ``model`` (put in eval mode) on uint8 images through FASHION_MNIST preprocessing."""
    model.eval()
    labels = torch.as_tensor(np.asarray(labels))
    correct = 0
    for i in range(0, len(images_uint8), batch):
        x = torch.from_numpy(FASHION_MNIST(images_uint8[i : i + batch])).contiguous(memory_format=torch.channels_last)
        correct += int((model(x).argmax(1) == labels[i : i + batch]).sum())
    return correct / max(1, len(images_uint8))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _augment(x: torch.Tensor, gen: torch.Generator, flip: bool, max_shift: int) -> torch.Tensor:
    """Random horizontal flip and random translation by up to ``max_shift`` px, per sample; (B, 1, H, W)."""
    b, _, h, w = x.shape
    if flip:
        m = torch.rand(b, generator=gen) < 0.5
        x = torch.where(m.view(b, 1, 1, 1), x.flip(3), x)
    if max_shift > 0:
        p = max_shift
        padded = F.pad(x, (p, p, p, p), value=_BLACK)
        off = torch.randint(0, 2 * p + 1, (b, 2), generator=gen).tolist()
        x = torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(off)])
    return x


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        (decay if p.ndim > 1 else no_decay).append(p)  # no decay on BN affine and biases
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_at(progress: float, warmup_frac: float, peak: float, final_frac: float) -> float:
    """LR at ``progress`` in [0, 1] of the run: linear warmup from 0.1*peak, then cosine to ``final_frac``*peak."""
    if progress < warmup_frac:
        return peak * (0.1 + 0.9 * progress / warmup_frac)
    t = min(1.0, (progress - warmup_frac) / max(1e-12, 1.0 - warmup_frac))
    lo = peak * final_frac
    return lo + (peak - lo) * 0.5 * (1.0 + math.cos(math.pi * t))


# Kept back from ``time_budget_s`` for the final evaluations (two passes over the test set) and saving.
_EVAL_RESERVE_S = 60.0
# The time budget takes over the schedule only once the run is this fraction of the budget behind the plan
# (not for the slow first steps, which would make every run budget-bound and timing-dependent).
_BUDGET_SLACK = 0.02


def train(
    model_name: str,
    *,
    width_mult: float | None = None,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    threads: int = 2,
    time_budget_s: float | None = None,
    log: Callable[[str], None] = print,
    momentum: float = 0.9,
    weight_decay: float = 5e-5,
    label_smoothing: float = 0.1,
    warmup_epochs: float = 0.5,
    final_lr_frac: float = 0.0,
    flip: bool = True,
    max_shift: int = 4,
    train_limit: int | None = None,
    test_limit: int | None = None,
    monitor_test: int = 2000,
    data_root: Path | None = None,
    bn_momentum: float | None = None,
) -> dict:
    """Train ``model_name`` (10 classes) on Fashion-MNIST train; return accuracy, timings and the fp16 state dict.

    The schedule runs on *progress* in [0, 1]: ``step / total_steps``, or -- with ``time_budget_s``, once the
    run falls ``_BUDGET_SLACK`` behind the plan -- the larger of that and the fraction of the training-loop
    time budget used (the budget less data preparation and ``_EVAL_RESERVE_S`` for the final evaluation).
    While the machine is fast enough the run is the planned, step-based and reproducible one; on a slower or
    busier machine the warmup/cosine schedule is compressed onto the time left and training stops when it is
    done, so the run still ends annealed and within budget (``budget_bound`` in the result,
    ``epochs_completed`` then fractional, and the weights then depend on timing).

    ``bn_momentum`` overrides the BatchNorm running-statistics momentum during training only (it is not part
    of the checkpoint): MobileNetV3's 0.01 suits 600-epoch ImageNet runs, but over a few hundred steps the
    running statistics still remember the first, wildly different activations -- measured: a 300-step
    MobileNetV3-Small run scored 68.5 % on its training batches and 10 % (chance) in eval mode, 86.8 % after
    re-estimating the statistics.

    ``threads`` is set for the call and restored afterwards. ``train_limit`` / ``test_limit`` use the first N
    images (for tests). ``monitor_test`` images of the test set are evaluated
    after each epoch for the log only (nothing is selected on them); 0 turns it off.

    Returned keys: model_name, builder_kwargs, epochs (planned), epochs_completed, steps, batch_size, lr,
    seed, threads, test_top1 (fp16 checkpoint reloaded into float32, strict), test_top1_live (the training
    model before the fp16 round trip), test_images, train_images, train_time_s (the training loop),
    prep_time_s, eval_time_s, wall_time_s (all of train()), epoch_times_s, history, budget_bound, recipe,
    state_dict (fp16).
    """
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(
            model_name, width_mult=width_mult, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
            threads=threads, time_budget_s=time_budget_s, log=log, momentum=momentum, weight_decay=weight_decay,
            label_smoothing=label_smoothing, warmup_epochs=warmup_epochs, final_lr_frac=final_lr_frac, flip=flip,
            max_shift=max_shift, train_limit=train_limit, test_limit=test_limit, monitor_test=monitor_test,
            data_root=data_root, bn_momentum=bn_momentum,
        )
    finally:
        torch.set_num_threads(prev_threads)  # a library call leaves the process as it found it


def _train(
    model_name, *, width_mult, epochs, batch_size, lr, seed, threads, time_budget_s, log, momentum, weight_decay,
    label_smoothing, warmup_epochs, final_lr_frac, flip, max_shift, train_limit, test_limit, monitor_test, data_root,
    bn_momentum,
) -> dict:
    t_start = time.perf_counter()
    _seed_everything(seed)

    tr_images, tr_labels = fashion_mnist.load("train", data_root)
    te_images, te_labels = fashion_mnist.load("test", data_root)
    if train_limit is not None:
        tr_images, tr_labels = tr_images[:train_limit], tr_labels[:train_limit]
    if test_limit is not None:
        te_images, te_labels = te_images[:test_limit], te_labels[:test_limit]
    x_train = preprocess_train(tr_images)
    y_train = torch.from_numpy(np.asarray(tr_labels, dtype=np.int64))
    n = len(x_train)
    prep_time = time.perf_counter() - t_start
    log(f"data: {n} train / {len(te_images)} test images, preprocessed in {prep_time:.1f}s")

    model = build_model(model_name, width_mult=width_mult).to(memory_format=torch.channels_last)
    if bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.momentum = bn_momentum
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.SGD(_param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=True)
    bs = min(batch_size, n)
    steps_per_epoch = n // bs  # drop the last partial batch: BatchNorm sees equal-sized batches
    total = steps_per_epoch * epochs
    gen = torch.Generator().manual_seed(seed)
    log(
        f"{model_name} {builder_kwargs(width_mult)}: {n_params:,} params; {epochs} epochs x {steps_per_epoch} "
        f"steps of {bs}, lr {lr} (warmup {warmup_epochs} epochs, cosine), wd {weight_decay}, "
        f"ls {label_smoothing}, threads {threads}"
    )

    history: list[dict] = []
    epoch_times: list[float] = []
    step = 0
    budget_bound = False
    done = False
    t_train = time.perf_counter()
    loop_budget = None
    if time_budget_s is not None:
        loop_budget = time_budget_s - (t_train - t_start) - _EVAL_RESERVE_S
        if loop_budget <= 0:
            raise ValueError(f"time budget {time_budget_s}s leaves no time to train")
    warmup_frac = min(0.5, warmup_epochs / epochs)
    for epoch in range(epochs):
        t_ep = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(steps_per_epoch):
            progress = step / total
            if loop_budget is not None:
                by_time = (time.perf_counter() - t_train) / loop_budget
                if not budget_bound and by_time > progress + _BUDGET_SLACK:
                    log(f"time budget binds at step {step}/{total}: compressing the schedule onto the time left")
                    budget_bound = True
                if budget_bound:
                    progress = max(progress, by_time)
                if progress >= 1.0:
                    done = True
                    break
            idx = perm[i * bs : (i + 1) * bs]
            x = _augment(x_train[idx], gen, flip, max_shift)
            x = x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
            y = y_train[idx]
            cur_lr = _lr_at(progress, warmup_frac, lr, final_lr_frac)
            for g in opt.param_groups:
                g["lr"] = cur_lr
            out = model(x)
            loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower the learning rate")
        ep_time = time.perf_counter() - t_ep
        epoch_times.append(ep_time)
        if seen:
            rec = {"epoch": epoch + 1, "steps": seen // bs, "loss": loss_sum / seen, "train_top1": correct / seen,
                   "lr_end": cur_lr, "time_s": round(ep_time, 2)}
            msg = (f"epoch {epoch + 1}/{epochs}: loss {rec['loss']:.4f} train {rec['train_top1']:.4f} "
                   f"lr {cur_lr:.4g} ({ep_time:.1f}s)")
            if monitor_test:
                rec["test_top1_monitor"] = evaluate(model, te_images[:monitor_test], te_labels[:monitor_test])
                msg += f" test[:{min(monitor_test, len(te_images))}] {rec['test_top1_monitor']:.4f}"
            history.append(rec)
            log(msg + f" [{time.perf_counter() - t_start:.0f}s elapsed]")
        if done:
            break
    train_time = time.perf_counter() - t_train

    t_eval = time.perf_counter()
    model.eval()  # BatchNorm uses its running statistics from here on
    live_top1 = evaluate(model, te_images, te_labels)
    sd16 = fp16_state_dict(model)
    reloaded = load_checkpoint(sd16, model_name, width_mult=width_mult)
    top1 = evaluate(reloaded, te_images, te_labels)
    eval_time = time.perf_counter() - t_eval
    wall = time.perf_counter() - t_start
    log(f"test top-1 {top1:.4f} (fp16 checkpoint reloaded; live fp32 model {live_top1:.4f}); wall {wall:.0f}s")

    return {
        "model_name": model_name,
        "builder_kwargs": builder_kwargs(width_mult),
        "params": n_params,
        "epochs": epochs,
        "epochs_completed": round(step / steps_per_epoch, 3),
        "steps": step,
        "batch_size": bs,
        "lr": lr,
        "seed": seed,
        "threads": threads,
        "test_top1": top1,
        "test_top1_live": live_top1,
        "test_images": len(te_images),
        "train_images": n,
        "train_time_s": train_time,
        "prep_time_s": prep_time,
        "eval_time_s": eval_time,
        "wall_time_s": wall,
        "epoch_times_s": [round(t, 2) for t in epoch_times],
        "history": history,
        "budget_bound": budget_bound,
        "time_budget_s": time_budget_s,
        "recipe": {
            "optimizer": "SGD",
            "momentum": momentum,
            "nesterov": True,
            "weight_decay": weight_decay,
            "weight_decay_on": "conv/linear weights only",
            "label_smoothing": label_smoothing,
            "schedule": "linear warmup from 0.1*lr, then per-step cosine decay to final_lr_frac*lr",
            "warmup_epochs": warmup_epochs,
            "final_lr_frac": final_lr_frac,
            "augment": {"hflip": flip, "max_shift_px": max_shift, "fill": _BLACK},
            "bn_momentum": bn_momentum if bn_momentum is not None else "the model's own",
            "memory_format": "channels_last",
            "drop_last": True,
        },
        "state_dict": sd16,
    }
