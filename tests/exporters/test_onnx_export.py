import numpy as np
import onnx
import pytest
import torch

from edgeport.data import sample_inputs
from edgeport.exporters import parse_targets
from edgeport.models import MODELS
from edgeport.models import source as model_source
from edgeport.pipeline.export_flow import run_export
from edgeport.runtimes.onnxruntime_runner import OrtRunner
from edgeport.util.atomic_file import atomic_path, write_bytes


def test_dynamic_batch_export_runs_any_batch(tmp_path, byo_file):
    loaded = model_source.load(f"{byo_file}:build", input_shape=(1, 3, 32, 32))
    run = run_export(loaded, parse_targets("onnx-fp32"), tmp_path, dynamic_batch=True)
    path = run.artifacts[0].path
    model = onnx.load(path)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    x = sample_inputs.image_like((3, 3, 32, 32), 3)
    out = OrtRunner(path).session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = loaded.module(x).numpy()
    assert out.shape == (3, 10)
    assert np.abs(out - ref).max() <= 1e-4
    assert run.passed


def test_artifact_records_hash_and_tools(tmp_path, byo_file):
    import hashlib

    loaded = model_source.load(f"{byo_file}:build", input_shape=(1, 3, 32, 32))
    run = run_export(loaded, parse_targets("onnx-fp32"), tmp_path, validate=False)
    a = run.artifacts[0]
    assert a.sha256 == hashlib.sha256(a.path.read_bytes()).hexdigest()
    assert a.size == a.path.stat().st_size and a.target == "onnx-fp32"
    assert {"torch", "onnx", "onnxruntime"} <= set(a.tools)
    assert run.validation is None


def test_atomic_write_keeps_previous_file_on_failure(tmp_path):
    dest = tmp_path / "model.onnx"
    write_bytes(dest, b"good")
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed mid-write")
    assert dest.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def _calibrated(name: str) -> model_source.LoadedModel:
    """A zoo model whose BN statistics come from image-like data, so its logits depend on the input."""
    spec = MODELS.get(name)
    torch.manual_seed(0)
    model = spec.build()
    batches = [sample_inputs.image_like((4, *spec.input_shape[1:]), 4, seed=s) for s in range(2)]
    sample_inputs.recalibrate_batchnorm(model, batches)
    return model_source.LoadedModel(name, model, spec.input_shape, spec)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS.names())
def test_every_zoo_model_exports_to_onnx_with_parity(name, tmp_path):
    loaded = _calibrated(name)
    run = run_export(loaded, parse_targets("onnx-fp32"), tmp_path)
    assert run.prep.equivalence.ok(1e-5), run.prep.equivalence
    assert not run.prep.report.unfused_bn
    first = run.validation.checks[0]
    assert (first.stage, first.against) == ("onnx-fp32", "torch")
    # max abs error <= 1e-4 on the logits, or <= 1e-4 relative to their scale (calibrated nets reach ~10)
    assert first.parity.max_abs <= 1e-4 or first.parity.max_rel <= 1e-4, first.parity
    assert first.parity.cosine > 0.99999
    assert run.passed
