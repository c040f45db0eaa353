"""``edgeport bench``'s x fp32 column: each int8 file over the fp32 file of the same model, format and threads."""

from edgeport.benchmark.local import Timing, model_of_name, ratios_vs_fp32


def _t(artifact: str, target: str, p50: float, threads: int = 1) -> Timing:
    return Timing(artifact, target, "onnxruntime", "1", threads, 30, 1.0, 0.0, p50, p50, p50, p50, 0.0, p50, (p50, p50), True)


def test_several_models_in_one_run_each_take_their_own_fp32():
    timings = [_t("d/a.fp32.onnx", "onnx-fp32", 10.0), _t("d/a.int8.onnx", "onnx-int8", 5.0),
               _t("d/b.fp32.onnx", "onnx-fp32", 20.0), _t("d/b.int8.onnx", "onnx-int8", 5.0),
               _t("d/b.fp32.onnx", "onnx-fp32", 40.0, threads=2), _t("d/b.int8.onnx", "onnx-int8", 8.0, threads=2)]
    r = ratios_vs_fp32(timings)
    assert r[("d/a.int8.onnx", 1)] == 0.5 and r[("d/b.int8.onnx", 1)] == 0.25 and r[("d/b.int8.onnx", 2)] == 0.2


def test_a_file_named_otherwise_takes_the_only_fp32_and_never_a_guess():
    one = ratios_vs_fp32([_t("a.fp32.onnx", "onnx-fp32", 10.0), _t("quantized.onnx", "onnx", 4.0)])
    assert one[("quantized.onnx", 1)] == 0.4
    two = ratios_vs_fp32([_t("a.fp32.onnx", "onnx-fp32", 10.0), _t("b.fp32.onnx", "onnx-fp32", 20.0), _t("q.onnx", "onnx", 4.0)])
    assert ("q.onnx", 1) not in two


def test_model_of_name():
    assert model_of_name("x/mobilenet_v2.int8.tflite") == "mobilenet_v2" and model_of_name("my.net.fp32.onnx") == "my.net"
    assert model_of_name("model.onnx") == "model"


def test_instruction_counts_take_their_own_models_fp32_per_device():
    from types import SimpleNamespace

    from edgeport.benchmark import insn_report

    def result(name: str, device: str, insn: float):
        run = SimpleNamespace(artifact=name, device=device, threads=1, instructions_per_inference=insn, extra={},
                              runtime="onnxruntime", runtime_version="1", median_ms=1.0, emulated=True)
        return SimpleNamespace(run=run, parity=SimpleNamespace(max_abs=0.0, max_rel=0.0))

    rows = insn_report.rows([result("a.fp32.onnx", "qemu-pi5", 100.0), result("a.int8.onnx", "qemu-pi5", 50.0),
                             result("b.fp32.onnx", "qemu-pi5", 10.0), result("b.int8.onnx", "qemu-pi5", 20.0),
                             result("b.fp32.onnx", "qemu-pi4", 40.0), result("b.int8.onnx", "qemu-pi4", 10.0)])
    got = {(r["artifact"], r["device"]): r["x_fp32"] for r in rows}
    assert got[("a.int8.onnx", "qemu-pi5")] == 0.5 and got[("b.int8.onnx", "qemu-pi5")] == 2.0
    assert got[("b.int8.onnx", "qemu-pi4")] == 0.25
