import numpy as np
import pytest

from edgeport.data import calibration, fashion_mnist
from edgeport.data.preprocess import FASHION_MNIST, Preprocess
from edgeport.errors import UserError

SHAPE = (1, 3, 32, 32)
PRE = Preprocess(size=32)


def _fashion_available():
    try:
        fashion_mnist.load("test")
        return True
    except UserError:
        return False


def test_npy_uint8_images_are_preprocessed_and_split_disjoint(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (30, 40, 48, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(30)  # tag each image so we can tell them apart after preprocessing
    np.save(tmp_path / "x.npy", images)
    split = calibration.load(str(tmp_path / "x.npy"), PRE, SHAPE, n_calib=10, n_val=12, seed=3)
    assert split.calibration.inputs.shape == (10, 3, 32, 32) and split.validation.inputs.shape == (12, 3, 32, 32)
    assert split.calibration.inputs.dtype == np.float32
    calib = {a.tobytes() for a in split.calibration.inputs}
    assert not calib & {a.tobytes() for a in split.validation.inputs}
    again = calibration.load(str(tmp_path / "x.npy"), PRE, SHAPE, n_calib=10, n_val=12, seed=3)
    assert np.array_equal(again.calibration.inputs, split.calibration.inputs)  # seeded, deterministic


def test_npz_with_labels_and_preprocessed_float(tmp_path):
    x = np.random.default_rng(1).standard_normal((8, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(8))
    split = calibration.load(str(tmp_path / "d.npz"), PRE, SHAPE, n_calib=3, n_val=5)
    assert split.validation.labels is not None and len(split.validation.labels) == 5
    # float32 NCHW is taken as-is
    assert any(np.array_equal(split.calibration.inputs[0], row) for row in x)


def test_image_folder_with_class_subfolders(tmp_path):
    from PIL import Image

    for cls, colour in (("cat", (200, 10, 10)), ("dog", (10, 200, 10))):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (50 + i, 40), colour).save(tmp_path / cls / f"{i}.png")
    split = calibration.load(str(tmp_path), PRE, SHAPE, n_calib=2, n_val=4)
    assert split.validation.labels is not None
    assert set(split.validation.labels) <= {0, 1}
    assert split.calibration.inputs.shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.mkdir(), "no images"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((5, 2), np.float32)), "fits neither"),
        (lambda p: p.with_suffix(".npy").write_bytes(b"not numpy"), "cannot read"),
        (lambda p: np.save(p.with_suffix(".npy"), np.zeros((0, 32, 32), np.uint8)), "no samples"),
    ],
)
def test_bad_calibration_sources(tmp_path, make, message):
    target = tmp_path / "calib"
    make(target)
    spec = str(target if target.exists() else target.with_suffix(".npy"))
    with pytest.raises(UserError, match=message):
        calibration.load(spec, PRE, SHAPE)


def test_missing_source_and_nan():
    with pytest.raises(UserError, match="not found"):
        calibration.load("/nonexistent/calib", PRE, SHAPE)
    bad = calibration.Samples(np.full((2, 3, 32, 32), np.nan, np.float32), None, "x")
    with pytest.raises(UserError, match="NaN"):
        calibration.check_fits(bad, SHAPE)
    with pytest.raises(UserError, match="shape"):
        calibration.check_fits(calibration.Samples(np.zeros((2, 1, 32, 32), np.float32), None, "x"), SHAPE)


def test_synthetic_is_flagged():
    split = calibration.load("synthetic", PRE, SHAPE, n_calib=4, n_val=4)
    assert split.calibration.synthetic and split.validation.synthetic


@pytest.mark.skipif(not _fashion_available(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_calibrates_on_train_validates_on_test():
    split = calibration.load("fashion-mnist", FASHION_MNIST, (1, 3, 64, 64), n_calib=50, n_val=100, seed=0)
    assert split.calibration.source == "fashion-mnist:train" and split.validation.source == "fashion-mnist:test"
    assert split.validation.labels.shape == (100,)
    assert split.calibration.inputs.shape == (50, 3, 64, 64)
    assert -1.0 <= split.calibration.inputs.min() and split.calibration.inputs.max() <= 1.0


def test_counts_are_described_and_a_small_set_is_said_to_be_small(tmp_path):
    from edgeport.data.calibration import load
    from edgeport.data.preprocess import Preprocess

    arr = np.random.default_rng(0).integers(0, 255, (10, 32, 32, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", arr)
    split = load(str(tmp_path / "x.npy"), Preprocess(size=32, resize=32), (1, 3, 32, 32), 200, 500, 0)
    assert "calibration 5 samples" in split.describe() and "validation 5 samples" in split.describe()
    assert "only 5 calibration + 5 validation samples (200 + 500 asked for)" in split.shortfall(200, 500)
    assert split.shortfall(5, 5) is None
