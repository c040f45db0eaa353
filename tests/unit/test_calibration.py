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
    split = load(str(tmp_path / "x.npy"), Preprocess(size=32, resize=32), (1, 3, 32, 32), 5, 5, 0)  # asked to split
    assert "calibration 5 samples" in split.describe() and "validation 5 samples" in split.describe()
    assert split.shortfall(5, 5) is None and not split.in_sample
    assert "only 5 calibration + 5 validation samples (6 + 5 asked for)" in split.shortfall(6, 5)


def test_a_set_too_small_to_halve_is_calibrated_whole_and_validated_in_sample(tmp_path):
    from edgeport.data.calibration import MIN_CALIBRATION

    n = 2 * MIN_CALIBRATION - 2  # half of it would be under the measured minimum
    split = calibration.load(_npy(tmp_path / "x.npy", n), PRE, SHAPE, 200, 500, 0)
    assert split.in_sample and (len(split.calibration), len(split.validation), split.shared) == (n, n, n)
    assert np.array_equal(split.calibration.inputs, split.validation.inputs)
    assert split.calibration.held_out and not split.validation.held_out
    assert f"validation on the same {n} samples" in split.describe() and "in-sample" in split.describe()
    warning = split.shortfall(200, 500)
    assert "in-sample" in warning and "--val-data" in warning and f"--calib-samples {n // 2} --val-samples {n - n // 2}" in warning
    asked = calibration.load(_npy(tmp_path / "x.npy", n), PRE, SHAPE, n // 2, n - n // 2, 0)  # a split asked for is kept
    assert not asked.in_sample and (len(asked.calibration), len(asked.validation)) == (n // 2, n - n // 2)
    halved = calibration.load(_npy(tmp_path / "y.npy", 2 * MIN_CALIBRATION), PRE, SHAPE, 200, 500, 0)
    assert not halved.in_sample and len(halved.calibration) == MIN_CALIBRATION  # halves big enough: still disjoint


def _npy(path, n, seed=0, tag=0):
    images = np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = tag  # which file a sample came from, readable after preprocessing
    np.save(path, images)
    return str(path)


def test_a_small_set_is_split_and_the_warning_says_what_happened_and_how_to_avoid_it(tmp_path):
    split = calibration.load(_npy(tmp_path / "x.npy", 80), PRE, SHAPE, 200, 500, 0)
    assert (len(split.calibration), len(split.validation), split.shared) == (40, 40, 80)
    assert "one source of 80 samples split in two, disjoint" in split.describe()
    warning = split.shortfall(200, 500)
    assert "its 80 samples were split in two, disjoint" in warning
    assert "--val-data" in warning and "--calib-samples 40 --val-samples 40" in warning
    accepted = calibration.load(_npy(tmp_path / "x.npy", 80), PRE, SHAPE, 40, 40, 0)  # asked for what fits: no warning
    assert accepted.shortfall(40, 40) is None and accepted.warnings(40, 40, int8=False) == []


def test_val_data_gives_calibration_the_whole_calib_set(tmp_path):
    calib = _npy(tmp_path / "calib.npy", 80, seed=1, tag=1)
    x = np.random.default_rng(2).integers(0, 256, (30, 32, 32, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = 2
    np.savez(tmp_path / "val.npz", x=x, y=np.arange(30) % 10)
    split = calibration.load(calib, PRE, SHAPE, 200, 500, 0, val_spec=str(tmp_path / "val.npz"))
    assert (len(split.calibration), len(split.validation), split.shared) == (80, 30, None)
    assert split.calibration.source == calib and split.validation.source == str(tmp_path / "val.npz")
    assert split.validation.labels is not None and len(split.validation.labels) == 30
    tag = lambda s: set(np.round(s.inputs[:, 0, 0, 0], 4))  # noqa: E731
    assert len(tag(split.calibration)) == 1 and tag(split.calibration).isdisjoint(tag(split.validation))
    assert "split" not in split.describe()
    warning = split.shortfall(200, 500)
    assert warning == (f"{calib}: only 80 calibration samples (200 asked for); "
                       f"{tmp_path / 'val.npz'}: only 30 validation samples (500 asked for)")
    capped = calibration.load(calib, PRE, SHAPE, 50, 10, 0, val_spec=str(tmp_path / "val.npz"))
    assert (len(capped.calibration), len(capped.validation)) == (50, 10) and capped.shortfall(50, 10) is None
    again = calibration.load(calib, PRE, SHAPE, 50, 10, 0, val_spec=str(tmp_path / "val.npz"))
    assert np.array_equal(again.calibration.inputs, capped.calibration.inputs)  # seeded


def test_val_data_that_is_the_calib_data_is_refused(tmp_path):
    from edgeport.errors import UsageError

    calib = _npy(tmp_path / "x.npy", 10)
    with pytest.raises(UsageError, match="would not be held out"):
        calibration.load(calib, PRE, SHAPE, 5, 5, 0, val_spec=str(tmp_path / "." / "x.npy"))
    with pytest.raises(UserError, match=r"validation source .* not found \(--val-data\)"):
        calibration.load(calib, PRE, SHAPE, 5, 5, 0, val_spec=str(tmp_path / "missing"))


def test_too_few_calibration_samples_for_int8_names_the_measured_minimum():
    small = calibration.load("synthetic", PRE, SHAPE, n_calib=calibration.MIN_CALIBRATION - 1, n_val=4)
    warning = small.too_few_for_int8()
    assert f"fewer than {calibration.MIN_CALIBRATION}" in warning and calibration.MIN_CALIBRATION_DOC in warning
    assert small.warnings(calibration.MIN_CALIBRATION - 1, 4, int8=True) == [warning]
    assert small.warnings(calibration.MIN_CALIBRATION - 1, 4, int8=False) == []  # float targets are not calibrated
    enough = calibration.load("synthetic", PRE, SHAPE, n_calib=calibration.MIN_CALIBRATION, n_val=4)
    assert enough.too_few_for_int8() is None


def test_min_calibration_is_documented_with_its_measurement():
    from pathlib import Path

    doc = (Path(calibration.__file__).parents[2] / calibration.MIN_CALIBRATION_DOC.split("#")[0]).read_text()
    anchor = calibration.MIN_CALIBRATION_DOC.split("#")[1]
    assert "## How many calibration samples" in doc and anchor == "how-many-calibration-samples"
    assert f"MIN_CALIBRATION = {calibration.MIN_CALIBRATION}" in doc and "benchmarks/calibration_samples.py" in doc
    import json

    measured = json.loads((Path(calibration.__file__).parents[2] / "benchmarks/results/calibration_samples.json").read_text())
    assert measured["enough"] == calibration.MIN_CALIBRATION and len(measured["models"]) == 4


@pytest.mark.skipif(not _fashion_available(), reason="Debian dataset-fashion-mnist not installed")
def test_fashion_mnist_as_val_data_validates_on_labelled_test_images(tmp_path):
    split = calibration.load(_npy(tmp_path / "x.npy", 12), PRE, SHAPE, 200, 30, 0, val_spec="fashion-mnist")
    assert len(split.calibration) == 12 and split.validation.source == "fashion-mnist:test"
    assert split.validation.labels.shape == (30,)
    default = calibration.load("fashion-mnist", PRE, SHAPE, 50, 100, 0)  # no --val-data: the same draw as before
    rng = np.random.default_rng(0)
    rng.choice(60000, size=50, replace=False)
    assert np.array_equal(default.validation.labels, fashion_mnist.load("test")[1][np.sort(rng.choice(10000, size=100, replace=False))])


def test_val_data_without_calib_is_refused_by_the_api():
    from edgeport import api
    from edgeport.errors import UsageError

    with pytest.raises(UsageError, match="val_data without calib"):
        api.load_data(None, None, val_data="held_out/")
    assert api.load_data(None, None) is None
