"""executorch-fp32, executorch-int8: the run's fused graph -> ExecuTorch program (.pte) with the XNNPACK delegate.

Both come from ``req.program`` (the captured, fused, equivalence-checked graph every target starts from, with
``--cle``/``--bias-correction`` already applied by the export flow) through ExecuTorch's documented flow:
``to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])`` -> ``to_executorch()``.

int8 is PT2E static quantization with ExecuTorch's ``XNNPACKQuantizer`` (per-channel symmetric int8 weights,
per-tensor affine int8 activations, int32 biases): ``prepare_pt2e`` -> calibration on the run's calibration
inputs (``req.calibration``, the same array every int8 target uses, one batch of the program's size at a time)
-> ``convert_pt2e`` -> re-export -> lower. Before quantization the graph gets the hard-sigmoid rewrite the tflite
targets use (relu6(x + 3), the 1/6 folded into the next weights), and both targets get a spatial mean that keeps
its dims (:func:`edgeport.graph.rewrites.for_executorch`). h-swish stays one op, quantized by edgeport's
annotation and run by XNNPACK as an int8 Hardswish (:func:`partitioner`).
Measured on MobileNetV3-Small (96x96, random weights, 16 samples): ExecuTorch's quantizer has no int8 pattern
for hardswish / hardsigmoid, so as ExecuTorch's documented flow leaves them 19 Hardswish, 18 Clamp, 9 Add and
9 Div run in fp32 inside the XNNPACK partition (with a Convert pair around each); here every compute op of the
partition is int8 (see tests/exporters/test_executorch.py and docs/executorch.md for the numbers).

The user's options:

* calibration method: ``minmax`` uses torchao's MinMaxObserver (the observed min/max; ExecuTorch's default
  observer is a HistogramObserver, which is not what "minmax" means); ``percentile``, ``entropy`` and ``mse``
  take their ranges from :class:`edgeport.quantization.ranges.RangeCollector` (the code the tflite target uses)
  fed by every activation observer during calibration, and written into the observers before ``convert_pt2e``.
* ``--cle`` / ``--bias-correction``: applied to the fused graph before any target (edgeport.pipeline.export_flow).
* ``--allow-float LAYER``: nodes under that module path are left out of the quantizer's annotation
  (``set_filter_function``), so they stay float; a name matching nothing is a UserError.
* ``--io-dtype int8`` (the default, as for tflite-int8): executorch-int8 takes an int8 input and returns an int8
  output. ExecuTorch's ``quantize_input`` / ``quantize_output`` (exir.passes.quantize_io_pass) take the first
  quantize and the last dequantize out of the program before lowering, so XNNPACK reads and writes int8 external
  tensors; their scale/zero point ride along as ExecuTorch's constant methods (``forward_input0_scale``, ...,
  :data:`IO_KEYS`), which edgeport's runners read to quantize/dequantize. Measured on MobileNetV3-Small (224x224):
  outputs equal to the float-I/O program's on the same inputs (max|Δ| 0), still one partition. A side whose first
  or last op is kept float (``--allow-float``) stays float32 (recorded in the metadata's ``io``). ``float32``
  keeps both float; ``uint8`` is refused (typed error).
* ``--dynamic-batch``: not supported yet (a fixed batch, like the tflite targets): typed error.
* automatic float fallbacks (ops the runtime refuses in int8) are not implemented for .pte: an int8 op that
  XNNPACK cannot take stays in the file as found, and the int8 check after export names it.
"""

from __future__ import annotations

import dataclasses
import traceback
from pathlib import Path

import numpy as np

from edgeport.errors import UnsupportedOp, UserError
from edgeport.exporters import FP32, INT8, TARGETS, ExportRequest, Target, metadata, register_target
from edgeport.formats.pte_program import EXECUTORCH_HINT, METADATA_METHOD, import_executorch
from edgeport.util import native_logs
from edgeport.util.atomic_file import write_bytes


def _check(req: ExportRequest) -> None:
    if req.dynamic_batch:
        raise UserError("ExecuTorch targets need a fixed batch size", "drop --dynamic-batch for executorch-* targets")
    if req.pte_layout == "nhwc" and len(req.example.shape) != 4:
        raise UserError(f"--pte-layout nhwc is for image inputs (N, C, H, W); this model takes {tuple(req.example.shape)}",
                        "drop --pte-layout")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200]}" if text else type(exc).__name__


def _keep_log(log: Path, exc: BaseException) -> Path:
    """The captured native output plus the Python traceback, kept in the log file the error names."""
    with open(log, "a") as fh:
        fh.write("\n" + "".join(traceback.format_exception(exc)))
    return log


def _nhwc_input(inputs: set[str]):
    """An edge-dialect pass: the graph's 4-D image input (a placeholder named in ``inputs``, the program's user
    inputs) is read in channels-last memory (dim order 0, 2, 3, 1), its shape still NCHW. ExecuTorch takes a
    placeholder's dim order from the strides of its value, and XNNPACK's layout pass (ChannelsLastTaggedReshapePass)
    then feeds the first conv without the NCHW -> NHWC transpose it otherwise puts at the input. It runs on the
    edge program, after the decompositions' re-tracing: marked before ``to_edge``, the strides spread through the
    graph, and MobileNetV3-Small's 10 means became as_strided copies in portable kernels (11 partitions).
    Measured on cortex-a76 (qemu, 224x224x3 input): the input transpose cost 0.75 M instructions per inference."""
    import torch
    from executorch.exir.pass_base import PassResult

    def mark(gm):
        changed = False
        for node in gm.graph.nodes:
            val = node.meta.get("val") if node.op == "placeholder" and node.name in inputs else None
            if isinstance(val, torch.Tensor) and val.dim() == 4:
                with val.fake_mode:
                    node.meta["val"] = val.to(memory_format=torch.channels_last)
                changed = True
        return PassResult(gm, changed)

    return mark


def lower(req: ExportRequest, program, target: str, io_constants: dict | None = None, **facts) -> bytes:
    """``program`` lowered to XNNPACK and serialized; edgeport's metadata rides along as a constant method, as do
    ``io_constants`` (the int8 I/O's quantization, :func:`int8_io`)."""
    import_executorch()
    from executorch.exir import to_edge_transform_and_lower

    layout = req.pte_layout.upper()
    passes = [_nhwc_input(set(program.graph_signature.user_inputs))] if req.pte_layout == "nhwc" else None
    constants = {METADATA_METHOD: metadata.for_target(req.metadata, target, layout, **facts)} if req.metadata else None
    if io_constants:
        constants = {**(constants or {}), **io_constants}
    with native_logs.captured() as log:
        try:
            edge = to_edge_transform_and_lower(program, transform_passes=passes, partitioner=[partitioner()],
                                               constant_methods=constants)
            config = getattr(edge, "_config_methods", None)  # the constant methods to_executorch will emit
            if constants and isinstance(config, dict) and METADATA_METHOD in config:
                layers = delegated_layers(edge.exported_program())
                config[METADATA_METHOD] = metadata.for_target(req.metadata, target, layout, **facts, layers=layers)
            data = bytes(edge.to_executorch().buffer)
        except Exception as exc:  # noqa: BLE001 - ExecuTorch's passes raise anything; one line here, all of it in the log
            kept = _keep_log(log, exc)
            raise UnsupportedOp(f"ExecuTorch could not lower the model for {target}: {_one_line(exc)}",
                                f"export the onnx/tflite targets, or replace that op in the model; full log: {kept}") from None
    log.unlink(missing_ok=True)
    return data


def partitioner():
    """ExecuTorch's XnnpackPartitioner with every default config, and two that take more in int8:

    * Hardswish: ExecuTorch's config takes it in fp32 only, but XNNPACK runs an int8 Hardswish (a unary op on
      int8 tensors). Measured on cortex-a76 (qemu, 1 thread, 224x224): MobileNetV3-Small's .pte went from 18.47 M
      instructions, with h-swish as the int8 Add + Clamp + Multiply of the tflite targets' rewrite, to 15.22 M; in a
      one-h-swish model the h-swish cost 0.92 M that way and 0.12 M as one int8 Hardswish. It also keeps the
      exact function instead of a product of two rounded int8 tensors.
    * an int8 add may carry a ReLU6 (hardtanh) as its fused activation, as it may carry a ReLU and as a conv/linear
      may carry either (ExecuTorch's AddConfig lists only ``relu.default``): the hard-sigmoid relu6(x + 3) of
      :func:`edgeport.graph.rewrites.relu6_hard_activations`, which :func:`_fused_clamp_quantizer` observes once,
      after the clamp ([0, 6], not the add's range). ExecuTorch's FuseActivationPass then folds the clamp into the
      add, where before XNNPACK got a separate int8 Clamp (19 in MobileNetV3-Small)."""
    from executorch.backends.xnnpack.partition.config import ALL_PARTITIONER_CONFIGS
    from executorch.backends.xnnpack.partition.config.generic_node_configs import AddConfig, HardswishConfig
    from executorch.backends.xnnpack.partition.config.xnnpack_config import ConfigPrecisionType
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

    class AddClampConfig(AddConfig):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.fused_acts = [*self.fused_acts, "hardtanh.default"]

    class Int8HardswishConfig(HardswishConfig):
        def supported_precision_types(self):
            return [ConfigPrecisionType.FP32, ConfigPrecisionType.STATIC_QUANT]

    swap = {AddConfig: AddClampConfig, HardswishConfig: Int8HardswishConfig}
    return XnnpackPartitioner(configs=[swap.get(c, c) for c in ALL_PARTITIONER_CONFIGS])


def delegated_layers(edge_program) -> dict[str, str]:
    """debug handle -> PyTorch module path of every op handed to a delegate (the handle each XNNPACK node keeps in
    the .pte), so reports name a program's ops the way the model does (edgeport.formats.pte_file.layer_names)."""
    from edgeport.graph.fuse import module_path

    out: dict[str, str] = {}
    for _, module in edge_program.graph_module.named_modules():
        original = getattr(module, "original_module", None)
        if original is None:
            continue
        for node in original.graph.nodes:
            handle = node.meta.get("debug_handle")
            if node.op == "call_function" and handle is not None and module_path(node) != node.name:  # a real module path
                out.setdefault(str(handle), module_path(node))
    return out


CHECK_SAMPLES = 8  # inputs each program is run on in ExecuTorch's runtime before it is written


def _runs(req: ExportRequest, data: bytes) -> None:
    """Load the program in ExecuTorch's runtime and run it on a few calibration inputs (the example input for a
    float target without them): XNNPACK compiles the delegate at load time and can refuse a node the partitioner
    took (measured: int8 ShuffleNetV2's zero pad before a max pool, "Failed to create StaticConstantPad node").
    An ArtifactFailed (exit 3) naming the runtime's reason and its log; nothing is written."""
    import tempfile

    from edgeport.runtimes.executorch_runner import ExecuTorchRunner

    batch = int(req.example.shape[0])
    enough = req.calibration is not None and len(req.calibration) >= batch
    inputs = req.calibration[: max(batch, CHECK_SAMPLES // batch * batch)] if enough else req.example.numpy()
    with tempfile.TemporaryDirectory(prefix="edgeport-pte-check-") as tmp:
        path = Path(tmp) / "program.pte"
        path.write_bytes(data)
        ExecuTorchRunner(path).run(np.ascontiguousarray(inputs, dtype=np.float32))


def _write(req: ExportRequest, target: str, data: bytes) -> Path:
    _runs(req, data)
    dest = req.out_dir / TARGETS.get(target).filename(req.name)
    write_bytes(dest, data)  # atomic: a failed export never leaves a half-written .pte
    return dest


def export_fp32(req: ExportRequest) -> Path:
    from edgeport.graph.rewrites import for_executorch

    _check(req)
    program, rewrites = for_executorch(req.program, req.example, int8=False)
    return _write(req, "executorch-fp32", lower(req, program, "executorch-fp32", rewrites=rewrites))


# --- int8 ---------------------------------------------------------------------------------------------------------

def _check_int8(req: ExportRequest) -> np.ndarray:
    _check(req)
    from edgeport.exporters.onnx_int8 import check_calibration

    if req.quant.io_dtype not in PTE_IO_DTYPES:
        raise UserError(f"executorch-int8 takes and returns {' or '.join(PTE_IO_DTYPES)}; --io-dtype {req.quant.io_dtype} is "
                        "a tflite-int8 choice", f"export executorch-int8 with --io-dtype {PTE_IO_DTYPES[0]} (the default) or "
                        f"{PTE_IO_DTYPES[1]}, in a separate run")
    return check_calibration(req.calibration, tuple(req.example.shape))


def quantizer_config(method: str):
    """ExecuTorch's per-channel symmetric XNNPACK config, with a MinMaxObserver on activations (see the module
    docstring: the observed range, which the other methods then replace)."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    config = get_symmetric_quantization_config(is_per_channel=True)
    act = dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=act, output_activation=act)


def _fused_clamp_quantizer():
    """XNNPACKQuantizer that quantizes a conv/linear/add followed by ReLU6 (hardtanh) the way it quantizes conv + ReLU:
    no observer between the two, one on the clamp's output; and h-swish as an int8 op (input and output observed;
    see :func:`partitioner`), which ExecuTorch's quantizer leaves float.

    ExecuTorch's quantizer treats hardtanh as an op that shares its input's observer, so the int8 program ran
    conv -> quantize -> clamp -> quantize, with the conv's pre-activation range as the clamp's scale: XNNPACK got a
    separate int8 Clamp after every conv (measured: 35 Clamp nodes in MobileNetV2) while its partitioner fuses a
    hardtanh into the conv when nothing stands between them (gemm_configs ``fused_acts``), as it does for ReLU.
    Here the conv's output annotation moves to the clamp, so the conv output is observed after the clamp (the
    range the int8 tensor really holds: ReLU6's [0, 6] instead of the pre-activation's) and XNNPACK fuses it."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation
    from torchao.quantization.pt2e.quantizer.quantizer import Q_ANNOTATION_KEY

    from edgeport.graph.rewrites import HARDSWISH_OPS

    aten = torch.ops.aten
    producers = {aten.conv2d.default, aten.conv1d.default, aten.linear.default, aten.add.Tensor}  # add: see partitioner
    clamps = {aten.hardtanh.default, aten.hardtanh_.default}

    class FusedClampQuantizer(XNNPACKQuantizer):
        def annotate(self, model):
            model = super().annotate(model)
            for node in model.graph.nodes:
                if node.op == "call_function" and node.target in clamps:
                    self._fuse_clamp(node)
                elif node.op == "call_function" and node.target in HARDSWISH_OPS:
                    self._int8_hardswish(node)
            return model

        @staticmethod
        def _fuse_clamp(node) -> None:
            producer = node.args[0]
            if getattr(producer, "target", None) not in producers or len(producer.users) != 1:
                return
            before, after = producer.meta.get(Q_ANNOTATION_KEY), node.meta.get(Q_ANNOTATION_KEY)
            spec = getattr(before, "output_qspec", None)
            if before is None or after is None or spec is None or type(spec).__name__ != "QuantizationSpec":
                return  # left float (--allow-float) or annotated some other way: as the quantizer made it
            before.output_qspec = None
            node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map={}, output_qspec=spec, _annotated=True)

        def _int8_hardswish(self, node) -> None:
            spec = self.global_config.input_activation if self.global_config else None
            if spec is None or Q_ANNOTATION_KEY in node.meta or (self.filter_fn is not None and not self.filter_fn(node)):
                return  # no global config, already annotated, or kept float (--allow-float)
            node.meta[Q_ANNOTATION_KEY] = QuantizationAnnotation(input_qspec_map={node.args[0]: spec}, output_qspec=spec,
                                                                 _annotated=True)

    return FusedClampQuantizer()


def _float_filter(gm, requests: tuple[str, ...]):
    """A node filter for XNNPACKQuantizer.set_filter_function: False for nodes under the requested module paths."""
    from edgeport.formats.layer_names import requested, resolve
    from edgeport.graph.fuse import module_path

    names = {n.name: module_path(n) for n in gm.graph.nodes if n.op == "call_function"}
    kept = set(resolve(names, requests))  # a UserError naming close layer names when a request matches nothing
    return lambda node: node.name not in kept and not requested(node.name, module_path(node), requests)


def quantize(req: ExportRequest):
    """The int8 program (torch.export of the PT2E-converted graph), ready for :func:`lower`, and the rewrites
    :func:`edgeport.graph.rewrites.for_executorch` made before quantizing."""
    import torch

    calibration = _check_int8(req)  # before any import: a bad request fails fast, with or without executorch
    import_executorch()
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from edgeport.graph.rewrites import for_executorch

    program, rewrites = for_executorch(req.program, req.example, int8=True)
    gm = program.module()
    quantizer = _fused_clamp_quantizer().set_global(quantizer_config(req.quant.method))
    if req.quant.float_fallback:
        quantizer.set_filter_function(_float_filter(gm, req.quant.float_fallback))
    batch = int(req.example.shape[0])
    usable = len(calibration) // batch * batch
    if usable == 0:
        raise UserError(f"{len(calibration)} calibration samples cannot fill one batch of {batch}", f"pass at least {batch}")
    with native_logs.captured() as log:
        try:
            prepared = prepare_pt2e(gm, quantizer)
            collector = _collector(prepared, req.quant)
            with torch.no_grad():
                for i in range(0, usable, batch):
                    prepared(torch.from_numpy(calibration[i : i + batch]))
            if collector is not None:
                collector.apply()
            converted = convert_pt2e(prepared)
            quantized = torch.export.export(converted, (req.example,), strict=False)
        except Exception as exc:  # noqa: BLE001
            kept = _keep_log(log, exc)
            raise UnsupportedOp(f"ExecuTorch's XNNPACKQuantizer could not quantize the model: {_one_line(exc)}",
                                f"export executorch-fp32, or keep that layer float (--allow-float); full log: {kept}") from None
    log.unlink(missing_ok=True)
    return quantized, rewrites


class _MethodRanges:
    """Feeds every activation observer's input to a RangeCollector during calibration; ``apply`` then writes the
    method's (min, max) into the observers, whose calculate_qparams turns them into scale/zero point."""

    def __init__(self, observers: dict, method: str, percentile: float):
        from edgeport.quantization.ranges import RangeCollector

        self.observers = observers
        self.collector = RangeCollector(method, percentile)
        self.hooks = [obs.register_forward_hook(self._hook(name)) for name, obs in observers.items()]

    def _hook(self, name: str):
        def hook(module, args, output):
            self.collector.collect({name: args[0].detach().float().numpy()})
        return hook

    def apply(self) -> None:
        import torch

        for h in self.hooks:
            h.remove()
        for name, (lo, hi) in self.collector.ranges().items():
            obs = self.observers[name]
            obs.min_val = torch.tensor(float(lo))
            obs.max_val = torch.tensor(float(hi))


def _collector(prepared, quant) -> _MethodRanges | None:
    """None for minmax (the observers are the method); else the collector of ``quant.method``'s ranges."""
    if quant.method == "minmax":
        return None
    from torchao.quantization.pt2e import MinMaxObserver

    observers = {name: m for name, m in prepared.named_modules() if type(m) is MinMaxObserver}
    return _MethodRanges(observers, quant.method, quant.percentile)


PTE_IO_DTYPES = ("int8", "float32")  # the --io-dtype values executorch-int8 takes (of IO_DTYPES)
IO_KEYS = ("scale", "zp", "quant_min", "quant_max", "dtype")  # ExecuTorch's constant methods per quantized I/O


def int8_io(program) -> tuple[dict[str, str], dict]:
    """Make ``program`` (the quantized, not yet lowered program) read an int8 input and write an int8 output where
    its first op quantizes the input and its last dequantizes the output; the other side stays float32.
    Returns ({"input": dtype, "output": dtype}, the constant methods holding each int8 side's quantization, named
    as ExecuTorch's QuantizeInputs/QuantizeOutputs name them)."""
    import torch
    from executorch.exir.passes.quantize_io_pass import get_config_method_name, quantize_input, quantize_output
    from executorch.exir.scalar_type import ScalarType

    io, constants = {"input": "float32", "output": "float32"}, {}
    for side, change in (("input", quantize_input), ("output", quantize_output)):
        try:
            args = change(program, 0)
        except ValueError:  # not quantized at that end (a float first/last layer): it stays float32
            continue
        scale, zero, qmin, qmax, dtype = args[:5]
        if dtype != torch.int8:  # XNNPACKQuantizer's activations are int8; anything else is not ours to name
            raise UnsupportedOp(f"executorch-int8's {side} is quantized to {dtype}, not int8", "export with --io-dtype float32")
        values = (float(scale), int(zero), int(qmin), int(qmax), int(ScalarType.CHAR))
        constants.update({get_config_method_name("forward", side, 0, key): v for key, v in zip(IO_KEYS, values)})
        io[side] = "int8"
    return io, constants


def export_int8(req: ExportRequest) -> Path:
    quantized, rewrites = quantize(req)
    q = req.quant
    io, io_constants = int8_io(quantized) if q.io_dtype == "int8" else ({"input": "float32", "output": "float32"}, {})
    facts = {"io_dtype": io["input"] if io["input"] == io["output"] else "mixed", "io": io, "rewrites": rewrites,
             "quantization": {"method": q.method, "float_fallback": list(q.float_fallback), "cle": q.cle,
                              "bias_correction": q.bias_correction, "adaround": q.adaround,
                              "quantizer": "XNNPACKQuantizer per-channel symmetric"}}
    return _write(req, "executorch-int8", lower(req, quantized, "executorch-int8", io_constants, **facts))


_NEEDS = {"requires": ("executorch",), "install_hint": EXECUTORCH_HINT}  # the executorch extra
register_target(Target("executorch-fp32", "executorch", "fp32", export_fp32, FP32, parent="torch-fused",
                       writer="executorch to_edge_transform_and_lower (XNNPACK)", **_NEEDS))
register_target(Target("executorch-int8", "executorch", "int8", export_int8, INT8, parent="executorch-fp32",
                       writer="executorch XNNPACKQuantizer (PT2E) + XNNPACK", **_NEEDS))
