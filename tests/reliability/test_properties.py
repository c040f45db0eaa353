"""Property-based tests (hypothesis) of the tensor and preprocessing helpers every command relies on."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeport.data.preprocess import Preprocess, apply
from edgeport.errors import UsageError, UserError
from edgeport.models.source import parse_shape
from edgeport.validation.parity import compare

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def images(draw):
    n = draw(st.integers(1, 4))
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    c = draw(st.sampled_from([None, 1, 3, 4]))
    shape = (n, h, w) if c is None else (n, h, w, c)
    return draw(hnp.arrays(np.uint8, shape))


@st.composite
def preprocesses(draw):
    channels = draw(st.sampled_from([1, 3]))
    size = draw(st.integers(1, 48))
    resize = draw(st.one_of(st.none(), st.integers(size, 64)))
    stat = st.floats(0.05, 0.95, allow_nan=False)
    return Preprocess(
        size=size, resize=resize, channels=channels,
        mean=tuple(draw(st.lists(stat, min_size=3, max_size=3))),
        std=tuple(draw(st.lists(stat, min_size=3, max_size=3))),
        scale=draw(st.sampled_from(["meanstd", "127"])), bgr=draw(st.booleans()),
    )


def _bounds(p: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    if p.scale == "127":
        return np.full(p.channels, -127 / 128), np.full(p.channels, 128 / 128)
    mean, std = np.array(p.mean[: p.channels]), np.array(p.std[: p.channels])
    return (0 - mean) / std, (1 - mean) / std


@SETTINGS
@given(images(), preprocesses())
def test_preprocess_shape_dtype_range(imgs, p):
    out = apply(p, imgs)
    assert out.shape == (len(imgs), p.channels, p.size, p.size) and out.dtype == np.float32
    assert np.isfinite(out).all()
    lo, hi = _bounds(p)
    per_channel = out.transpose(1, 0, 2, 3).reshape(p.channels, -1)
    # bilinear resizing is a convex combination of pixels, so every value stays inside the scaled pixel range
    # (BGR flips the pixels, not mean/std: each output channel is normalised with its own mean/std)
    assert (per_channel.min(1) >= lo - 1e-4).all() and (per_channel.max(1) <= hi + 1e-4).all()


@SETTINGS
@given(images(), preprocesses(), st.integers(1, 3))
def test_preprocess_does_not_depend_on_batching(imgs, p, batch):
    np.testing.assert_array_equal(apply(p, imgs, batch=batch), apply(p, imgs, batch=256))


@SETTINGS
@given(preprocesses())
def test_preprocess_round_trips_through_its_dict(p):
    assert Preprocess.from_dict(p.to_dict()) == p


@SETTINGS
@given(hnp.arrays(st.sampled_from([np.float32, np.int16, np.float64]), hnp.array_shapes(min_dims=3, max_dims=4, max_side=6)))
def test_preprocess_refuses_non_uint8_pixels(arr):
    with pytest.raises(UserError, match="uint8"):
        apply(Preprocess(size=4), arr)


@SETTINGS
@given(st.lists(st.integers(1, 4096), min_size=2, max_size=5), st.sampled_from([",", "x"]))
def test_parse_shape_round_trip(dims, sep):
    assert parse_shape(sep.join(map(str, dims))) == tuple(dims)


@SETTINGS
@given(st.text(max_size=20))
def test_parse_shape_is_total(text):
    """Any text is either a shape of >= 2 positive ints or a UsageError: never another exception."""
    try:
        shape = parse_shape(text)
    except UsageError:
        return
    assert len(shape) >= 2 and all(isinstance(d, int) and d > 0 for d in shape)


@SETTINGS
@given(hnp.arrays(np.float32, st.tuples(st.integers(1, 8), st.integers(2, 12)), elements=st.floats(-50, 50, width=32)))
def test_compare_identical_outputs_is_perfect(y):
    p = compare(y, y.copy())
    assert p.max_abs == 0 and p.mean_abs == 0 and p.top1_agreement == 1.0
    assert p.sqnr_db == float("inf") or p.sqnr_db > 100


@SETTINGS
@given(
    # whole-number logits, distinct within a row: adding eps cannot create a tie through float32 rounding
    # (hypothesis found [0, 4e-31] + 1.0 -> [1.0, 1.0])
    st.integers(1, 8).flatmap(lambda n: hnp.arrays(
        np.float32, (n, 6), elements=st.integers(-50, 50).map(float), unique=False).filter(
            lambda a: all(len(set(row)) == len(row) for row in a.tolist()))),
    st.floats(1e-3, 10),
)
def test_compare_error_metrics_scale_with_the_error(y, eps):
    noisy = y + np.float32(eps)
    p = compare(y, noisy)
    assert p.max_abs == pytest.approx(eps, rel=1e-2, abs=1e-4)
    assert p.top1_agreement == 1.0  # a constant shift never changes the arg-max
