"""--allow-float / [quantize] allow_float with PyTorch layer names, on the trained MobileNetV2-0.5: both int8
targets keep exactly the named layers float, the int8 check accepts them, and a misspelt layer is a user error
that suggests the right name. (Before edgeport.formats.layer_names, tflite-int8 ignored module names and the int8 check
refused the float conv that onnx-int8 had correctly kept.)"""

from __future__ import annotations

import pytest

from edgeport.errors import UserError
from tests.datasets import needs_fashion_mnist

pytestmark = [pytest.mark.slow, needs_fashion_mnist]

MODEL = "fmnist_mobilenet_v2_x0_5"


@pytest.fixture(scope="module")
def prepared():
    from edgeport.data import calibration
    from edgeport.models import source as model_source
    from edgeport.pipeline.export_flow import prepare

    loaded = model_source.load(MODEL)
    data = calibration.load("fashion-mnist", loaded.data_preprocess(), loaded.input_shape, 64, 16, 0)
    return loaded, prepare(loaded), data


def _export(prepared, out, allow, targets="onnx-int8,tflite-int8"):
    from edgeport.exporters import QuantOptions, parse_targets
    from edgeport.pipeline.export_flow import run_export

    loaded, prep, data = prepared
    return run_export(loaded, parse_targets(targets), out, data=data, validate=False,
                      quant=QuantOptions(float_fallback=allow), prepared=prep, cache={})


def test_named_layers_stay_float_in_both_targets_and_pass_the_int8_check(prepared, tmp_path):
    from edgeport.exporters.onnx_fp32 import to_onnx
    from edgeport.formats.int8_coverage import coverage_of
    from edgeport.formats.layer_names import artifact_names

    run = _export(prepared, tmp_path, ("features.0.0", "features.3.conv.1"))
    assert run.int8_problems == []
    fp32 = to_onnx(run.request)
    for art in run.artifacts:
        names = artifact_names(art.path, fp32)
        floats = {names[n] for n in coverage_of(art.path).critical_float()}
        assert floats == {"features.0.0", "features.3.conv.1.0"}, (art.target, floats)


@pytest.mark.parametrize("target", ["onnx-int8", "tflite-int8"])
def test_a_misspelt_layer_is_a_user_error_with_a_suggestion(prepared, tmp_path, target):
    with pytest.raises(UserError, match="features.3.conv.1") as err:
        _export(prepared, tmp_path, ("features.3.conv.1.O",), target)
    assert "--allow-float" in str(err.value) and "did you mean" in err.value.hint


def test_a_float_layer_nobody_allowed_is_reported_by_its_layer_name(prepared, tmp_path, monkeypatch):
    """The int8 check names what stayed float the way --allow-float takes it (not tf.nn.convolution_N)."""
    import dataclasses

    from edgeport.exporters import tflite

    own = tflite.float_fallback_nodes

    def other_layer(req):  # the exporter keeps features.3.conv.1 float although only features.0.0 is allowed
        return own(dataclasses.replace(req, quant=dataclasses.replace(req.quant, float_fallback=("features.3.conv.1",))))

    monkeypatch.setattr(tflite, "float_fallback_nodes", other_layer)
    run = _export(prepared, tmp_path, ("features.0.0",), "tflite-int8")
    assert run.int8_problems == ["tflite-int8: 1 compute ops left float: features.3.conv.1.0"]
