"""The int8 defaults (edgeport.quantization.options): mse ranges, bias correction decided by the calibration data."""

import numpy as np

from edgeport.data.calibration import DataSplit, Samples
from edgeport.pipeline.export_flow import with_data
from edgeport.quantization.options import DEFAULT_METHOD, QuantOptions


def _split(synthetic: bool) -> DataSplit:
    x = np.zeros((4, 3, 8, 8), np.float32)
    return DataSplit(Samples(x, None, "synthetic" if synthetic else "photos", synthetic), Samples(x, None, "v"))


def test_bias_correction_follows_the_calibration_data_unless_chosen():
    auto = QuantOptions()
    assert auto.method == DEFAULT_METHOD == "mse" and auto.bias_correction is None
    assert not auto.needs_calibration  # nothing the user asked for needs data
    assert with_data(auto, _split(synthetic=False)).bias_correction is True
    assert with_data(auto, _split(synthetic=True)).bias_correction is False
    assert with_data(auto, None).bias_correction is False
    assert with_data(auto, _split(False)).transforms_graph and not with_data(auto, _split(True)).transforms_graph
    off, on = QuantOptions(bias_correction=False), QuantOptions(bias_correction=True)
    assert with_data(off, _split(False)).bias_correction is False
    assert with_data(on, _split(True)).bias_correction is True and on.needs_calibration


def test_onnx_weight_grid_follows_reduce_range_and_the_cpu():
    from edgeport.exporters.onnx_int8 import weight_grid
    from edgeport.runtimes.cpu_features import CpuFeatures

    avx2 = CpuFeatures("old Xeon", "x86_64", frozenset({"avx2"}))
    vnni = CpuFeatures("new Xeon", "x86_64", frozenset({"avx2", "avx512f", "avx512_vnni"}))
    arm = CpuFeatures("Cortex-A76", "aarch64", frozenset({"asimddp"}))
    assert weight_grid(QuantOptions(), avx2) == "int8-pairs" and weight_grid(QuantOptions(), vnni) == "int8"
    assert weight_grid(QuantOptions(), arm) == "int8"
    assert weight_grid(QuantOptions(onnx_reduce_range="on"), vnni) == "int7"
    assert weight_grid(QuantOptions(onnx_reduce_range="off"), avx2) == "int8"
    assert weight_grid(QuantOptions(onnx_reduce_range="pairs"), vnni) == "int8-pairs"
