"""edgeport.models.training: a tiny run end to end, and the committed Fashion-MNIST checkpoints (when present)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from edgeport.data import fashion_mnist
from edgeport.data.preprocess import FASHION_MNIST
from edgeport.models import training
from edgeport.models.training import INPUT_SHAPE, _lr_at, evaluate, load_checkpoint, preprocess_train, train

pytestmark = pytest.mark.skipif(
    not (fashion_mnist.DEFAULT_DIR / "t10k-images-idx3-ubyte.gz").is_file(),
    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)",
)

WEIGHTS = Path(__file__).resolve().parents[2] / "edgeport" / "weights"
# CLI name -> (zoo name, width_mult)
CHECKPOINTS = {
    "mobilenet_v2_x0_5": ("mobilenet_v2", 0.5),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", None),
    "mobilenet_v3_small": ("mobilenet_v3_small", None),
    "shufflenet_v1_g3_x0_5": ("shufflenet_v1_g3_x0_5", None),
}
MIN_TOP1 = 0.89


def _tiny(**kw):
    args = dict(
        epochs=1, batch_size=64, lr=0.05, seed=0, threads=1, train_limit=256, test_limit=128, monitor_test=64,
        log=lambda s: None,
    )
    return train("shufflenet_v2_x0_5", **{**args, **kw})


def test_tiny_run_returns_sane_fields_and_a_loadable_fp16_state_dict():
    threads_before = torch.get_num_threads()
    r = _tiny()
    assert torch.get_num_threads() == threads_before
    assert r["model_name"] == "shufflenet_v2_x0_5" and r["builder_kwargs"] == {"num_classes": 10}
    assert r["epochs"] == r["epochs_completed"] == 1 and not r["budget_bound"]
    assert r["train_images"] == 256 and r["test_images"] == 128 and r["steps"] == 256 // 64
    assert 0.0 <= r["test_top1"] <= 1.0 and 0.0 <= r["test_top1_live"] <= 1.0
    assert 0 < r["train_time_s"] <= r["wall_time_s"]
    assert len(r["history"]) == 1 and r["history"][0]["loss"] > 0 and "test_top1_monitor" in r["history"][0]
    sd = r["state_dict"]
    assert all(v.dtype == torch.float16 for v in sd.values() if v.is_floating_point())
    nbt = [v for k, v in sd.items() if k.endswith("num_batches_tracked")]
    assert nbt and all(v.dtype == torch.int64 and int(v) == r["steps"] for v in nbt)
    model = load_checkpoint(sd, "shufflenet_v2_x0_5")  # strict=True inside
    assert not model.training and next(model.parameters()).dtype == torch.float32
    images, labels = fashion_mnist.load("test")
    assert evaluate(model, images[:128], labels[:128]) == r["test_top1"]


def test_bn_momentum_override_changes_running_statistics_only():
    base, fast = _tiny(), _tiny(bn_momentum=0.5)
    assert fast["recipe"]["bn_momentum"] == 0.5 and base["recipe"]["bn_momentum"] == "the model's own"
    stats = [k for k in base["state_dict"] if k.endswith("running_mean")]
    assert stats and any(not torch.equal(base["state_dict"][k], fast["state_dict"][k]) for k in stats)
    # training normalizes with batch statistics, so the learned weights are the same bit for bit
    learned = [k for k in base["state_dict"] if "running_" not in k and "num_batches" not in k]
    assert all(torch.equal(base["state_dict"][k], fast["state_dict"][k]) for k in learned)


def test_same_seed_same_weights():
    a, b = _tiny(monitor_test=0), _tiny(monitor_test=0)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])


def test_time_budget_compresses_the_schedule_and_stops(monkeypatch):
    monkeypatch.setattr(training, "_EVAL_RESERVE_S", 0.0)
    r = _tiny(epochs=100, train_limit=2048, time_budget_s=4.0, monitor_test=0)
    assert r["budget_bound"] and 0 < r["epochs_completed"] < 100
    assert r["history"][-1]["lr_end"] < 0.05 * 0.2  # annealed by the end, not cut off mid-schedule
    assert r["wall_time_s"] < 4.0 + 5.0


def test_lr_schedule_warms_up_then_anneals():
    assert _lr_at(0.0, 0.1, 1.0, 0.0) == pytest.approx(0.1)
    assert _lr_at(0.1, 0.1, 1.0, 0.0) == pytest.approx(1.0)
    assert _lr_at(0.55, 0.1, 1.0, 0.0) == pytest.approx(0.5)
    assert _lr_at(1.0, 0.1, 1.0, 0.0) == pytest.approx(0.0, abs=1e-12)
    assert _lr_at(2.0, 0.1, 1.0, 0.01) == pytest.approx(0.01)


def test_training_tensors_are_fashion_mnist_preprocessing():
    images, _ = fashion_mnist.load("test")
    one = preprocess_train(images[:64], chunk=16)
    assert one.shape == (64, 1, 64, 64)
    assert torch.equal(one.expand(-1, 3, -1, -1), torch.from_numpy(FASHION_MNIST(images[:64])))


# --- the committed checkpoints -------------------------------------------------------------------------------


@pytest.fixture
def one_thread():
    """Evaluate on one thread: on a shared 2-core machine a 2-thread forward pass can be many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _committed(name: str) -> tuple[Path, dict]:
    pt = WEIGHTS / f"fmnist_{name}.pt"
    if not pt.is_file():
        pytest.skip(f"{pt.name} not present")
    return pt, json.loads(pt.with_suffix(".json").read_text())


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_committed_checkpoint_record_matches(name):
    pt, meta = _committed(name)
    zoo, width = CHECKPOINTS[name]
    assert meta["zoo_name"] == zoo
    assert meta["builder_kwargs"] == ({"num_classes": 10} | ({"width_mult": width} if width else {}))
    assert meta["input_shape"] == list(INPUT_SHAPE)
    assert meta["preprocessing"] == json.loads(json.dumps(FASHION_MNIST.to_dict()))
    assert meta["checkpoint_sha256"] == hashlib.sha256(pt.read_bytes()).hexdigest()
    assert meta["test_top1"] >= MIN_TOP1 and meta["test_images"] == 10000
    assert pt.stat().st_size < 2 * meta["params"] * 1.05 + 200_000  # fp16: ~2 bytes a parameter (+ BN stats, names)
    ckpt = torch.load(pt, map_location="cpu", weights_only=True)
    assert all(v.dtype == torch.float16 for v in ckpt["state_dict"].values() if v.is_floating_point())
    embedded = ckpt["edgeport"]  # what `edgeport export --model <zoo> --weights <pt>` builds from
    assert embedded["model"] == zoo and embedded["kwargs"] == meta["builder_kwargs"]
    assert embedded["input_shape"] == list(INPUT_SHAPE) and embedded["preprocess"] == FASHION_MNIST.to_dict()


@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_committed_checkpoint_accuracy_first_2000(name, one_thread):
    pt, _ = _committed(name)
    zoo, width = CHECKPOINTS[name]
    model = load_checkpoint(pt, zoo, width_mult=width)
    images, labels = fashion_mnist.load("test")
    assert evaluate(model, images[:2000], labels[:2000]) >= MIN_TOP1


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECKPOINTS))
def test_committed_checkpoint_accuracy_full_test_set(name, one_thread):
    pt, meta = _committed(name)
    zoo, width = CHECKPOINTS[name]
    model = load_checkpoint(pt, zoo, width_mult=width)
    images, labels = fashion_mnist.load("test")
    top1 = evaluate(model, images, labels)
    assert top1 >= MIN_TOP1
    # The recorded figure, up to a couple of flipped predictions from another CPU's kernels.
    assert abs(top1 - meta["test_top1"]) <= 0.002
