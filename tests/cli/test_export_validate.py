"""export with several targets and validate, through the CLI: parity.json, int8 verification, exit 3."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One multi-target export of the BYO model, shared by the tests below (run through the real CLI)."""
    import sys
    from pathlib import Path

    from edgeport.cli.app import main

    byo = Path(__file__).parent.parent / "fixtures" / "byo_model.py"
    out = tmp_path_factory.mktemp("export")
    argv = sys.argv
    sys.argv = ["edgeport", "export", "--model", f"{byo}:build", "--input-shape", "1,3,32,32",
                "--target", "onnx-fp32,onnx-int8,tflite-fp32,tflite-fp16,tflite-int8",
                "--calib", "synthetic", "--calib-samples", "32", "--val-samples", "24", "--out", str(out)]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return code, out, byo


def test_five_artifacts_and_parity_json(exported):
    code, out, _ = exported
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["build.fp16.tflite", "build.fp32.onnx", "build.fp32.tflite", "build.int8.onnx", "build.int8.tflite", "parity.json"]
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and not parity["int8_problems"]
    assert parity["data"]["calibration"]["synthetic"] is True
    checks = parity["validation"]["checks"]
    judged = {c["stage"]: c for c in checks if c["judged"]}
    assert set(judged) == {"onnx-fp32", "onnx-int8", "tflite-fp32", "tflite-fp16", "tflite-int8"}
    assert judged["tflite-fp32"]["max_abs"] <= 1e-4
    assert judged["tflite-int8"]["sqnr_db"] >= 15
    chain = {(c["stage"], c["against"]) for c in checks if not c["judged"]}
    assert {("onnx-fp32", "torch-fused"), ("tflite-fp32", "onnx-fp32"), ("tflite-int8", "tflite-fp32"),
            ("tflite-fp16", "tflite-fp32"), ("onnx-int8", "onnx-fp32")} <= chain
    by_target = {a["target"]: a for a in parity["artifacts"]}
    assert by_target["tflite-int8"]["dtypes"]["float"] == 0 and by_target["tflite-int8"]["dtypes"]["int8"] > 10


def test_validate_passes_on_good_and_exits_3_on_broken_artifact(exported, cli, tmp_path):
    code, out, byo = exported
    res = cli("validate", out / "build.fp32.onnx", out / "build.int8.tflite", "--model", f"{byo}:build",
              "--input-shape", "1,3,32,32", "--calib", "synthetic", "--report", tmp_path / "good.json")
    assert res.code == 0, res.err
    report = json.loads((tmp_path / "good.json").read_text())
    assert {c["stage"] for c in report["validation"]["checks"]} == {"onnx-fp32", "tflite-int8"}

    model = onnx.load(out / "build.fp32.onnx")
    conv_w = next(i for i in model.graph.initializer if len(i.dims) == 4)
    w = numpy_helper.to_array(conv_w) * 1.5  # a deliberately broken weight
    conv_w.CopyFrom(numpy_helper.from_array(w.astype(np.float32), conv_w.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, broken)
    res = cli("validate", broken, "--model", f"{byo}:build", "--input-shape", "1,3,32,32", "--calib", "synthetic")
    assert res.code == 3
    assert "onnx-fp32 vs torch: max abs error" in res.err and "Traceback" not in res.err
    assert (tmp_path / "parity.json").is_file()


def test_impossible_threshold_exits_3(exported, cli):
    _, out, byo = exported
    res = cli("validate", out / "build.int8.tflite", "--model", f"{byo}:build", "--input-shape", "1,3,32,32",
              "--calib", "synthetic", "--min-sqnr", "200", "--report", out / "strict.json")
    assert res.code == 3 and "SQNR" in res.err
