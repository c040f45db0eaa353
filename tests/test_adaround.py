"""AdaRound (edgeport.quantization.adaround) on fused graphs, and the check that the int8 files keep its rounding."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from edgeport.graph.capture import capture
from edgeport.graph.fuse import attr_tensor, fuse, get_attr
from edgeport.quantization import adaround as ada
from edgeport.quantization import adaround_check


class Tiny(nn.Module):
    """conv-BN-ReLU -> depthwise-ReLU6 -> 1x1 conv -> linear: every kind of layer AdaRound meets."""

    def __init__(self):
        super().__init__()
        self.c1, self.bn = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 8, 1)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        x = torch.relu(self.bn(self.c1(x)))
        x = self.pw(torch.clamp(self.dw(x), 0, 6))
        return self.fc(x.flatten(1))


def _fused():
    torch.manual_seed(0)
    model = Tiny().eval()
    with torch.no_grad():
        model.bn.running_var.uniform_(0.5, 2)
        model.bn.running_mean.uniform_(-0.2, 0.2)
        model.bn.weight[3] = 0  # a dead channel, as BN folding leaves in real checkpoints: q must be 0 there
        model.dw.weight[5] = 0
    gm, _ = fuse(capture(model, torch.zeros(2, 3, 8, 8), dynamic_batch=True).module())
    return gm


def _weights(gm):
    return {n.args[1].target: attr_tensor(gm, n.args[1]).detach().clone() for n in gm.graph.nodes
            if n.op == "call_function" and n.target in ada.WEIGHTED}


def test_adaround_weights_are_on_the_converters_grid_and_beat_nearest_rounding():
    gm = _fused()
    before = _weights(gm)
    x = torch.randn(48, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    report = ada.adaround(gm, x.numpy(), iterations=300)
    assert [layer.weight for layer in report.layers] == list(before) and not report.skipped
    for name, w in before.items():
        new = get_attr(gm, name).detach()
        q = torch.from_numpy(report.chosen[name]).float()
        # the max-|w| element of each channel is kept bit for bit, so a converter derives the same scale...
        flat, flat_new = w.reshape(len(w), -1), new.reshape(len(new), -1)
        assert torch.equal(flat.abs().amax(1), flat_new.abs().amax(1))
        # ...and its own round(w / s) gives back exactly the q chosen (the converters' rule, as numpy computes it)
        scale = (flat.abs().amax(1, keepdim=True) / 127).numpy()
        scale[scale == 0] = 1  # both converters' rule for a zero channel
        redone = np.clip(np.round(flat_new.numpy() / scale), -127, 127)
        assert np.array_equal(redone, q.reshape(len(q), -1).numpy()), name
        assert torch.equal(ada.quantized(new, 127), q)
        assert torch.equal(q.reshape(len(q), -1)[flat.abs().amax(1) == 0], torch.zeros_like(q.reshape(len(q), -1)[flat.abs().amax(1) == 0]))
        # every weight is rounded down or up, never further
        ratio = flat.numpy() / scale
        assert np.all(np.abs(q.reshape(len(q), -1).numpy() - ratio) < 1)
    for layer in report.layers:  # each layer's output error on the calibration data is at most nearest rounding's
        assert layer.error_adaround <= layer.error_nearest, layer
    assert sum(layer.changed for layer in report.layers) > 0
    assert any(layer.error_adaround < 0.95 * layer.error_nearest for layer in report.layers)
    assert "AdaRound: 4 layers" in report.summary()


def test_adaround_keeps_nearest_rounding_when_it_is_better():
    # no optimisation at all: h(V) starts at the fraction, so the hard rounding is nearest rounding except where
    # a fraction is exactly 0.5; the result is never worse than nearest on the calibration data
    gm = _fused()
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    report = ada.adaround(gm, x.numpy(), iterations=0)
    for layer in report.layers:
        assert layer.error_adaround <= layer.error_nearest


def test_adaround_bias_correction_zeroes_the_mean_output_error():
    gm = _fused()
    x = torch.randn(32, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    reference = gm(x).detach()
    report = ada.adaround(gm, x.numpy(), iterations=50, bias_correction=True)
    assert report.bias_corrected == 4
    out = gm(x).detach()
    # the last layer's mean error over the calibration samples is corrected away (up to float rounding)
    assert torch.allclose((reference - out).mean(0), torch.zeros(10), atol=1e-5)


def test_compare_finds_weights_in_file_layouts():
    rng = np.random.default_rng(0)
    conv = rng.integers(-127, 128, (8, 4, 3, 3), dtype=np.int8)
    dw = rng.integers(-127, 128, (6, 1, 3, 3), dtype=np.int8)
    fc = rng.integers(-127, 128, (10, 32), dtype=np.int8)
    chosen = {"conv": conv, "dw": dw, "fc": fc}
    tflite_like = [(conv.transpose(0, 2, 3, 1), None), (dw.transpose(1, 2, 3, 0), None), (fc, None)]
    exact = {"layers": 3, "bit_exact": 3, "rescaled_channels": 0, "missing": []}
    assert adaround_check.compare(chosen, tflite_like) == exact
    assert adaround_check.compare(chosen, [(conv, None), (dw, None), (fc.T, None)]) == exact
    moved = conv.copy()
    moved[0, 0, 0, 0] += 1
    ours = {"conv": np.full(8, 0.01, np.float32)}
    assert adaround_check.compare(chosen, [(moved, np.full(8, 0.01)), (dw, None), (fc, None)], ours)["missing"] == ["conv"]
    # a channel the converter gave a larger scale (its int32 bias would overflow) is counted apart, not a mismatch
    bigger = np.full(8, 0.01)
    bigger[0] = 0.5
    got = adaround_check.compare(chosen, [(moved, bigger), (dw, None), (fc, None)], ours)
    assert got == {"layers": 3, "bit_exact": 3, "rescaled_channels": 1, "missing": []}


def test_adaround_without_calibration_is_a_one_line_user_error(cli, tmp_path):
    res = cli("export", "--model", "fmnist_mobilenet_v2_x0_5", "--target", "onnx-int8", "--adaround", "--out", tmp_path)
    assert res.code == 1
    message = (res.err + res.out).strip()
    assert "--adaround needs calibration data" in message and "Traceback" not in message


@pytest.mark.slow  # ~1-2 min on the shared 2-core machine (AdaRound of ~50 layers, onnx2tf, two int8 exports)
def test_int8_files_hold_exactly_the_weights_adaround_chose(tmp_path, monkeypatch):
    import onnx
    from ai_edge_litert.interpreter import Interpreter
    from onnx import numpy_helper

    import edgeport
    from edgeport.formats import format_of

    monkeypatch.setattr(ada, "ITERATIONS", 100)
    chosen = {}
    real = ada.adaround

    def spy(*args, **kwargs):
        report = real(*args, **kwargs)
        chosen.update(report.chosen)
        return report

    monkeypatch.setattr(ada, "adaround", spy)
    quant = edgeport.QuantOptions(adaround=True, onnx_reduce_range="off")  # ORT's 7-bit weights are another grid
    r = edgeport.export("fmnist_mobilenet_v2_x0_5", ["tflite-int8", "onnx-int8"], calib="fashion-mnist", calib_samples=64,
                        val_samples=64, quant=quant, out=tmp_path, strict=False)
    parity = json.loads((tmp_path / "parity.json").read_text())
    layers = parity["equalization"]["adaround"]["layers"]
    assert len(layers) == len(chosen) > 40 and sum(layer["changed"] for layer in layers) > 0
    paths = {a.target: a.path for a in r.artifacts}
    for path in paths.values():  # the exporters' own check, recorded in each file
        facts = json.loads(format_of(path).metadata_text(path))["quantization"]
        check = facts["adaround_check"]
        assert facts["adaround"] is True and check["missing"] == [] and check["bit_exact"] == check["layers"] == len(chosen)
    # and here, read by other means: LiteRT's interpreter for the .tflite, the QDQ initializers of the .onnx
    interp = Interpreter(model_path=str(paths["tflite-int8"]))
    tflite = []
    for d in interp.get_tensor_details():
        if d["dtype"] == np.int8 and len(d["shape"]) >= 2 and len(d["quantization_parameters"]["scales"]) > 1:
            try:
                tflite.append((interp.get_tensor(d["index"]), None))
            except ValueError:
                pass
    model = onnx.load(str(paths["onnx-int8"]))
    qdq = [(numpy_helper.to_array(t), None) for t in model.graph.initializer if t.name.endswith("_quantized")]
    for weights in (tflite, qdq):
        assert adaround_check.compare(chosen, weights)["bit_exact"] == len(chosen)
    # nearest rounding of the same float weights would not match: AdaRound changed something the file keeps
    assert sum(layer["changed"] > 0 for layer in layers) > len(layers) // 2
