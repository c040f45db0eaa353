"""Accuracy control's search on a fake backend whose accuracy is a known function of the float layer set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeport.quantization.accuracy_control import Backend, Candidate, ControlSet, control

N, CLASSES = 400, 10
LABELS = np.arange(N) % CLASSES


class FakeBackend(Backend):
    """Each layer, when int8, misclassifies its own share of samples; keeping it float fixes them.
    The artifact file just records which layers are float."""

    target = "tflite-int8"

    def __init__(self, damage: dict[str, int]):
        self.damage = damage  # layer -> samples it gets wrong when int8
        self.builds = 0

    def candidates(self):
        return [Candidate(f"t/{name}", name, "CONV_2D") for name in self.damage]

    def build(self, fallbacks, dest: Path) -> Path:
        self.builds += 1
        dest.write_text(json.dumps(sorted(fallbacks)))
        return dest

    def float_ops(self, path: Path) -> int:
        return len(json.loads(path.read_text()))


class FakeRunner:
    def __init__(self, backend: FakeBackend, path: Path):
        floats = {f.split("/", 1)[1] for f in json.loads(Path(path).read_text())}
        self.wrong = np.zeros(N, bool)
        start = 0
        for name, count in backend.damage.items():
            if name not in floats:
                self.wrong[start : start + count] = True
            start += count

    def run(self, x: np.ndarray) -> np.ndarray:
        idx = x[:, 0].astype(int)
        pred = np.where(self.wrong[idx], (LABELS[idx] + 1) % CLASSES, LABELS[idx])
        return np.eye(CLASSES, dtype=np.float32)[pred] * 5 + 0.01 * np.arange(CLASSES)


def _data() -> ControlSet:
    x = np.arange(N, dtype=np.float32)[:, None]
    return ControlSet(x, LABELS.copy(), np.eye(CLASSES, dtype=np.float32)[LABELS] * 5, "fake")


def _run(damage, budget, tmp_path):
    backend = FakeBackend(damage)
    out = tmp_path / "final.tflite"
    result = control(backend, _data(), budget, out, bench=False, runner=lambda p: FakeRunner(backend, p))
    return result, out


def test_within_budget_keeps_nothing_float(tmp_path):
    result, out = _run({"a": 1, "b": 1}, budget=1.0, tmp_path=tmp_path)  # 2/400 = 0.5 points
    assert result.within_budget and result.kept_float == []
    assert result.int8_score == pytest.approx(99.5) and result.float_score == 100.0
    assert json.loads(out.read_text()) == []


def test_keeps_the_fewest_damaging_layers(tmp_path):
    # c costs 4 points, e 2 points, the rest 0.25 each: a 1-point budget needs exactly c and e float
    damage = {"a": 1, "b": 1, "c": 16, "d": 1, "e": 8, "f": 0}
    result, out = _run(damage, budget=1.0, tmp_path=tmp_path)
    assert result.within_budget
    assert sorted(c.layer for c in result.kept_float) == ["c", "e"]
    assert result.final_score == pytest.approx(100 - 100 * 3 / N)
    assert result.ranking[0]["layer"] == "c" and result.ranking[1]["layer"] == "e"
    assert sorted(json.loads(out.read_text())) == ["t/c", "t/e"]
    assert result.float_ops == (0, 2)


def test_minimal_set_has_no_removable_member(tmp_path):
    damage = {"a": 2, "b": 2, "c": 2, "d": 2, "e": 2}  # 0.5 points each; budget 1.2 allows two int8-damaged layers
    result, _ = _run(damage, budget=1.2, tmp_path=tmp_path)
    assert result.within_budget and len(result.kept_float) == 3


def test_unreachable_budget_is_reported_not_faked(tmp_path):
    backend = FakeBackend({"a": 4})
    data = _data()
    data.labels[:10] = (data.labels[:10] + 3) % CLASSES  # 10 samples even the float model gets wrong... and int8 too
    out = tmp_path / "final.tflite"

    class Worse(FakeRunner):
        def run(self, x):
            y = super().run(x)
            y[200:210] = np.roll(y[200:210], 1, axis=1)  # 10 samples int8 always gets wrong: no layer owns them
            return y

    result = control(backend, data, 0.5, out, bench=False, runner=lambda p: Worse(backend, p))
    assert not result.within_budget and result.unreachable and result.kept_float == []
    assert "NOT within budget" in result.summary()


def test_agreement_metric_without_labels(tmp_path):
    backend = FakeBackend({"a": 8})
    data = _data()
    data = ControlSet(data.inputs, None, data.float_logits, "fake")
    result = control(backend, data, 0.5, tmp_path / "f.tflite", bench=False, runner=lambda p: FakeRunner(backend, p))
    assert result.metric.startswith("top-1 agreement") and result.float_score == 100.0
    assert [c.layer for c in result.kept_float] == ["a"]
