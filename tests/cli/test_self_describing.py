"""Artifacts that describe themselves and parity records that survive several exports (issue 17), on the
trained Fashion-MNIST MobileNetV2 (slow: real int8 exports)."""

from __future__ import annotations

import json

import pytest

from edgeport.formats import format_of
from tests.datasets import needs_fashion_mnist

pytestmark = [pytest.mark.slow, needs_fashion_mnist]
MODEL = "fmnist_mobilenet_v2_x0_5"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """tflite-int8 exported first, onnx-fp32 and onnx-int8 then into the same folder."""
    import edgeport

    out = tmp_path_factory.mktemp("two-exports")
    kw = dict(calib="fashion-mnist", calib_samples=64, val_samples=200, out=out)
    edgeport.export(MODEL, ["tflite-int8"], **kw)
    edgeport.export(MODEL, ["onnx-fp32", "onnx-int8"], **kw)
    return out


def test_two_exports_leave_one_parity_json_with_every_record(folder):
    record = json.loads((folder / "parity.json").read_text())
    assert record["schema"] == 2 and record["passed"]
    assert sorted(a["target"] for a in record["artifacts"]) == ["onnx-fp32", "onnx-int8", "tflite-int8"]
    judged = {c["stage"] for c in record["validation"]["checks"] if c["against"] == "torch" and c["judged"] and c["passed"]}
    assert judged == {"onnx-fp32", "onnx-int8", "tflite-int8"}


@pytest.mark.parametrize("name", [f"{MODEL}.int8.tflite", f"{MODEL}.int8.onnx", f"{MODEL}.fp32.onnx"])
def test_each_file_carries_its_context(folder, name):
    path = folder / name
    meta = format_of(path).metadata(path)
    assert meta["model"] == MODEL and meta["target"] == ".".join(name.split(".")[-1:]) + "-" + name.split(".")[-2]
    assert meta["preprocess"]["size"] == 64 and meta["input_shape"] == [1, 3, 64, 64]
    assert meta["input_layout"] == ("NHWC" if name.endswith("tflite") else "NCHW")
    assert len(meta["weights_sha256"]) == 64 and "/" not in json.dumps(meta)  # no local paths in the file


@pytest.mark.parametrize("name", [f"{MODEL}.int8.tflite", f"{MODEL}.int8.onnx"])
def test_eval_without_model_reads_the_file_and_matches_eval_with_model(cli, folder, tmp_path, name):
    (tmp_path / name).write_bytes((folder / name).read_bytes())  # alone: no parity.json beside it to lean on
    alone = cli("eval", tmp_path / name, "--data", "fashion-mnist", "--limit", "500", "--json", tmp_path / "a.json")
    with_model = cli("eval", folder / name, "--data", "fashion-mnist", "--limit", "500", "--model", MODEL,
                     "--json", tmp_path / "b.json")
    assert alone.code == 0 and with_model.code == 0, alone.err + with_model.err
    a = json.loads((tmp_path / "a.json").read_text())["results"][0]
    b = [r for r in json.loads((tmp_path / "b.json").read_text())["results"] if r["name"].endswith(name)][0]
    assert a["top1"] == b["top1"] and a["top1"] > 0.85
    assert "own metadata" in " ".join(alone.out.split())


def test_inspect_shows_the_metadata_and_bench_finds_the_parity(cli, folder):
    res = cli("inspect", folder / f"{MODEL}.int8.tflite")
    assert res.code == 0 and "made by edgeport" in res.out and "tflite-int8 of fmnist_mobilenet_v2_x0_5" in res.out
    from edgeport.benchmark.recommend import reference_failures, reference_unjudged

    for name in (f"{MODEL}.int8.tflite", f"{MODEL}.int8.onnx"):
        failures, checked = reference_failures(folder / name)
        assert checked and not failures and not reference_unjudged(folder / name)
