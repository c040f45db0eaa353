"""Property-based tests (hypothesis) of the recipe parser: generated valid recipes parse to what they say,
any unknown key or wrong-typed value is refused with its file, line and key, and arbitrary text never gets
past the parser as anything but a recipe or a RecipeError."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeport.errors import UserError
from edgeport.pipeline import recipe

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
KEY = st.from_regex(r"[a-z][a-z_]{2,12}", fullmatch=True)


@st.composite
def valid_recipes(draw):
    """(TOML text, expected values) for a recipe using only keys and values the schema allows."""
    targets = draw(st.lists(st.sampled_from(["onnx-fp32", "tflite-fp32", "tflite-fp16"]), min_size=1, max_size=3, unique=True))
    threads = draw(st.lists(st.integers(1, 8), min_size=1, max_size=3, unique=True))
    seed = draw(st.integers(0, 2**31 - 1))
    val = draw(st.integers(1, 5000))
    sqnr = draw(st.floats(0, 150, allow_nan=False))
    model = draw(st.sampled_from(["mobilenet_v1", "mobilenet_v2", "shufflenet_v2_x1_0", "mobilenet_v3_small"]))
    lines = [
        "[model]", f'name = "{model}"', "",
        "[data]", 'calib = "synthetic"', f"val_samples = {val}", f"seed = {seed}", "",
        "[export]", f"targets = [{', '.join(repr(t).replace(chr(39), chr(34)) for t in targets)}]", "",
        "[thresholds.fp32]", f"min_sqnr_db = {sqnr!r}", "",
        "[bench]", f"threads = {threads}",
    ]
    return "\n".join(lines) + "\n", {"model": model, "targets": tuple(targets), "threads": tuple(threads),
                                     "seed": seed, "val": val, "sqnr": sqnr}


def _write(text: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="edgeport-recipe-"))
    path = folder / "r.toml"
    path.write_text(text)
    return path


@SETTINGS
@given(valid_recipes())
def test_valid_recipes_parse_to_what_they_say(case):
    text, want = case
    r = recipe.parse(_write(text))
    assert r.model.ref == want["model"] and r.targets == want["targets"] and r.bench.threads == want["threads"]
    assert r.data.seed == want["seed"] and r.data.val_samples == want["val"]
    assert r.thresholds["fp32"].min_sqnr_db == want["sqnr"]


@SETTINGS
@given(valid_recipes(), KEY, st.integers(0, 4))
def test_an_unknown_key_is_refused_with_its_line(case, key, section_index):
    text, _ = case
    sections = ["[model]", "[data]", "[export]", "[thresholds.fp32]", "[bench]"]
    known = set(recipe.SCHEMA.get(sections[section_index].strip("[]"), {})) | set(recipe.THRESHOLD_KEYS)
    if key in known:
        return
    lines = text.splitlines()
    at = lines.index(sections[section_index]) + 1
    lines.insert(at, f"{key} = 1")
    path = _write("\n".join(lines) + "\n")
    try:
        recipe.parse(path)
    except UserError as exc:
        assert f"{path}:{at + 1}:" in exc.message and repr(key) in exc.message, exc.message
    else:
        raise AssertionError(f"unknown key {key!r} accepted")


@SETTINGS
@given(valid_recipes(), st.sampled_from(['"text"', "true", "[1, 2]", "{ a = 1 }"]))
def test_a_wrong_type_for_an_integer_is_refused_with_key_and_line(case, bad):
    text, _ = case
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("val_samples"))
    lines[at] = f"val_samples = {bad}"
    path = _write("\n".join(lines) + "\n")
    try:
        recipe.parse(path)
    except UserError as exc:
        assert f"{path}:{at + 1}:" in exc.message and "val_samples" in exc.message, exc.message
    else:
        raise AssertionError(f"val_samples = {bad} accepted")


@SETTINGS
@given(st.text(max_size=200))
def test_arbitrary_text_is_a_recipe_or_a_typed_error(text):
    try:
        recipe.parse(_write(text))
    except UserError:
        pass
