"""edgeport eval: accuracy in the artifact's runtime equals accuracy computed independently, and its errors.

The labels are built from the PyTorch model's own predictions (half of them right, half shifted by one
class), so the expected top-1 is known exactly and top-5 is computed here with torch.topk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeport.data.preprocess import Preprocess

BYO = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
SIZE = 32
# The documented default for a model without a recipe: ImageNet mean/std, resize 1/0.875, centre crop.
DEFAULT_PRE = Preprocess(size=SIZE, resize=round(SIZE / 0.875), channels=3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from edgeport.exporters import parse_targets
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import run_export

    out = tmp_path_factory.mktemp("eval")
    loaded = model_source.load(f"{BYO}:build", input_shape=(1, 3, SIZE, SIZE))
    run = run_export(loaded, parse_targets("onnx-fp32,tflite-fp32"), out, validate=False)
    return {a.target: a.path for a in run.artifacts}


@pytest.fixture(scope="module")
def labelled_npz(tmp_path_factory):
    """48 uint8 images (different sizes than the model's) whose labels make torch's top-1 exactly 0.5."""
    from edgeport.models import source as model_source

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(48, 40, 44, 3), dtype=np.uint8)
    model = model_source.load(f"{BYO}:build", input_shape=(1, 3, SIZE, SIZE)).module
    with torch.no_grad():
        logits = model(torch.from_numpy(DEFAULT_PRE(images)))
    pred = logits.argmax(1).numpy()
    labels = np.where(np.arange(48) < 24, pred, (pred + 1) % 10).astype(np.int64)
    top5 = logits.topk(5, dim=1).indices.numpy()
    expected_top5 = float(np.mean([labels[i] in top5[i] for i in range(48)]))
    path = tmp_path_factory.mktemp("npz") / "set.npz"
    np.savez(path, x=images, y=labels)
    return path, expected_top5


def test_eval_matches_independent_accuracy_in_each_runtime(cli, exported, labelled_npz, tmp_path):
    path, expected_top5 = labelled_npz
    res = cli("eval", exported["onnx-fp32"], exported["tflite-fp32"], "--model", f"{BYO}:build",
              "--input-shape", f"1,3,{SIZE},{SIZE}", "--data", path, "--batch", "7", "--json", tmp_path / "e.json")
    assert res.code == 0, res.err
    record = json.loads((tmp_path / "e.json").read_text())
    results = record["results"]
    assert [r["format"] for r in results] == ["torch", "onnx", "tflite"]
    assert [r["runtime"].split()[0] for r in results] == ["torch", "onnxruntime", "ai-edge-litert"]
    for r in results:
        assert r["samples"] == 48
        assert r["top1"] == 0.5, r
        assert r["top5"] == pytest.approx(expected_top5), r
        assert Preprocess.from_dict(r["preprocess"]) == DEFAULT_PRE
    assert "50.00 %" in res.out


def test_eval_without_model_reads_the_files_metadata(cli, exported, labelled_npz):
    res = cli("eval", exported["onnx-fp32"], "--data", labelled_npz[0])
    assert res.code == 0, res.err
    assert "50.00 %" in res.out and "own metadata" in res.out and "preprocessing guessed" not in res.out


def test_eval_of_a_file_without_metadata_guesses_preprocessing_and_says_so(cli, exported, labelled_npz, tmp_path):
    import onnx

    model = onnx.load(str(exported["onnx-fp32"]))
    del model.metadata_props[:]  # a file from another tool: nothing says how it was fed
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    res = cli("eval", tmp_path / "foreign.onnx", "--data", labelled_npz[0])
    assert res.code == 0, res.err
    assert "50.00 %" in res.out  # the guess is the same default here
    assert "preprocessing guessed" in res.out


def test_eval_flags_change_preprocessing(cli, exported, labelled_npz, tmp_path):
    res = cli("eval", exported["onnx-fp32"], "--data", labelled_npz[0], "--scale-127", "--json", tmp_path / "e.json")
    assert res.code == 0, res.err
    assert json.loads((tmp_path / "e.json").read_text())["results"][0]["preprocess"]["scale"] == "127"


def _image_folder(root: Path, classes: list[str], per_class: int = 2) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def test_image_folder_class_indices_are_sorted_names(tmp_path):
    from edgeport.data import labelled

    data = labelled.load(str(_image_folder(tmp_path / "set", ["zebra", "ant", "moth"])))
    assert data.classes == ("ant", "moth", "zebra")
    assert [p.parent.name for p in data.files] == ["ant", "ant", "moth", "moth", "zebra", "zebra"]
    assert data.labels.tolist() == [0, 0, 1, 1, 2, 2]
    (x, y), = list(data.batches(DEFAULT_PRE, (1, 3, SIZE, SIZE), 100))
    assert x.shape == (6, 3, SIZE, SIZE) and x.dtype == np.float32 and y.tolist() == [0, 0, 1, 1, 2, 2]


def test_image_folder_with_matching_class_count(cli, tmp_path):
    folder = _image_folder(tmp_path / "set", ["a", "b", "c"])
    res = cli("eval", "--model", f"{BYO}:build", "--num-classes", "3", "--input-shape", f"1,3,{SIZE},{SIZE}",
              "--data", folder, "--json", tmp_path / "e.json")
    assert res.code == 0, res.err
    r = json.loads((tmp_path / "e.json").read_text())["results"][0]
    assert r["samples"] == 6 and r["top5"] is None  # 3 outputs: top-5 would say nothing
    assert len(r["per_class_top1"]) == 3


def test_class_count_mismatch_is_a_user_error(cli, exported, tmp_path):
    res = cli("eval", exported["onnx-fp32"], "--data", _image_folder(tmp_path / "set", ["a", "b", "c"]))
    assert res.code == 1
    assert "3 classes" in res.err and "outputs 10" in res.err


def test_unlabelled_and_missing_sources(cli, exported, tmp_path):
    onnx = exported["onnx-fp32"]
    np.save(tmp_path / "x.npy", np.zeros((4, 8, 8), np.uint8))
    np.savez(tmp_path / "x_only.npz", x=np.zeros((4, 8, 8), np.uint8))
    np.savez(tmp_path / "big_label.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.array([0, 1, 2, 12]))
    loose = tmp_path / "loose"
    loose.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(loose / "img.png")
    cases = [
        (tmp_path / "nope", "not found"),
        (tmp_path / "x.npy", "unlabelled"),
        (tmp_path / "x_only.npz", "unlabelled"),
        (loose, "unlabelled"),
        ("synthetic", "no labels"),
        (tmp_path / "big_label.npz", "label 12"),
    ]
    for source, message in cases:
        res = cli("eval", onnx, "--data", source)
        assert res.code == 1, (source, res.out)
        assert message in res.err, (source, res.err)
        assert "Traceback" not in res.err
    assert cli("eval", "--data", tmp_path / "x.npy").code == 2  # nothing to evaluate


def test_missing_fashion_mnist_is_a_user_error(cli, exported, tmp_path):
    res = cli("eval", exported["onnx-fp32"], "--data", f"fashion-mnist:{tmp_path}")
    assert res.code == 1 and "Fashion-MNIST not found" in res.err


def test_fashion_mnist_and_digits_sources():
    from edgeport.data import labelled

    fm = labelled.load("fashion-mnist")
    assert len(fm) == 10_000 and len(fm.classes) == 10 and fm.images.dtype == np.uint8
    assert np.bincount(fm.labels).tolist() == [1000] * 10
    digits = labelled.load("digits")
    assert len(digits) == 1797 and digits.classes == tuple("0123456789")
    assert digits.images.shape == (1797, 8, 8) and digits.images.dtype == np.uint8 and digits.images.max() == 255
    (x, _), *_ = digits.batches(Preprocess(size=SIZE, channels=3), (1, 3, SIZE, SIZE), 64)
    assert x.shape == (64, 3, SIZE, SIZE)


def test_preprocessing_from_parity_json(tmp_path):
    from edgeport.data.preprocess import FASHION_MNIST
    from edgeport.validation.evaluation import preprocess_from_parity

    art = tmp_path / "m.int8.onnx"
    art.write_bytes(b"")
    empty = hashlib.sha256(b"").hexdigest()  # the record names the file by its content
    (tmp_path / "parity.json").write_text(json.dumps({"model": "fmnist_mobilenet_v2_x0_5", "weights": None,
                                                      "artifacts": [{"path": str(art), "sha256": empty}]}))
    pre, origin = preprocess_from_parity(art)
    assert pre == FASHION_MNIST and "parity.json" in origin
    assert preprocess_from_parity(tmp_path / "other.onnx") is None  # not there at all
    (tmp_path / "other.onnx").write_bytes(b"different bytes")
    assert preprocess_from_parity(tmp_path / "other.onnx") is None  # not listed there


def test_nchw_of_reads_tflite_nhwc():
    from edgeport.validation.evaluation import nchw_of

    assert nchw_of([1, 64, 64, 3], "tflite") == (1, 3, 64, 64)
    assert nchw_of(["batch", 3, 64, 64], "onnx") == (1, 3, 64, 64)
    assert nchw_of([1, 1, 28, 28], "tflite") == (1, 1, 28, 28)


def test_eval_min_top1_exits_3_naming_the_artifact(cli, exported, labelled_npz):
    res = cli("eval", exported["onnx-fp32"], "--data", labelled_npz[0], "--min-top1", "60")
    assert res.code == 3, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and "50.00 % < --min-top1 60" in lines[0] and Path(exported["onnx-fp32"]).name in lines[0]
    assert cli("eval", exported["onnx-fp32"], "--data", labelled_npz[0], "--min-top1", "40").code == 0


def test_eval_max_drop_needs_the_float_model(cli, exported, labelled_npz):
    res = cli("eval", exported["onnx-fp32"], "--data", labelled_npz[0], "--max-drop", "0.5")
    assert res.code == 2 and "--model" in res.err


def test_max_drop_is_measured_against_the_float_result():
    from edgeport.cli.eval_cmd import threshold_failures
    from edgeport.validation.evaluation import EvalResult

    def result(name, fmt, top1):
        return EvalResult(name, fmt, "rt", "src", 100, top1, None, [], 0.0, {}, "x")

    rs = [result("m (torch)", "torch", 0.910), result("a.int8.onnx", "onnx", 0.906), result("b.int8.tflite", "tflite", 0.900)]
    fails = threshold_failures(rs, None, 0.5)
    assert len(fails) == 1 and fails[0].startswith("b.int8.tflite") and "1.00 points below" in fails[0]
    assert threshold_failures(rs, None, 1.5) == []
