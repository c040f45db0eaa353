"""onnx-fp32: torch.onnx.export(dynamo=True) -> onnxsim -> onnx.checker, written atomically."""

from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from edgeport.errors import UnsupportedOp
from edgeport.exporters import FP32, TARGETS, ExportRequest, Target, metadata, register_target
from edgeport.util.atomic_file import write_bytes

if TYPE_CHECKING:  # imported when a model is converted: registering the target stays light
    import onnx

OPSET = 18
# A graph with an exact (erf) GELU is exported at opset 20, where ONNX has a Gelu op: onnx2tf turns it into
# TFLite's GELU builtin, which TFLiteConverter quantizes; at opset 18 GELU is spelled with Erf, for which TFLite
# has no builtin ("Could not translate MLIR to FlatBuffer" on tf.math.erf), so no int8 .tflite could be written.
# Other graphs keep opset 18, so their files stay byte-identical.
GELU_OPSET = 20
INPUT_NAME, OUTPUT_NAME = "input", "output"


def to_onnx(req: ExportRequest) -> onnx.ModelProto:
    """The fused program as a simplified, checked ONNX model (in memory), made once per export run."""
    if "onnx-fp32" not in req.cache:
        req.cache["onnx-fp32"] = _convert(req)
    return req.cache["onnx-fp32"]


def opset_for(program) -> int:
    """OPSET, or GELU_OPSET when the captured graph computes an exact GELU (see GELU_OPSET)."""
    import torch

    gelu = torch.ops.aten.gelu.default
    for node in program.graph.nodes:
        if node.op == "call_function" and node.target is gelu and node.kwargs.get("approximate", "none") == "none":
            return GELU_OPSET
    return OPSET


def _convert(req: ExportRequest) -> onnx.ModelProto:
    import onnx
    import onnxsim
    import torch

    # The exporter logs a warning per torchvision op it cannot register when torchvision is absent.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                req.program,
                (req.example,),
                dynamo=True,
                opset_version=opset_for(req.program),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter wraps failures in several internal types
        op, node = _failed_op(exc)
        if op:
            raise UnsupportedOp(
                f"op {op} (graph node {node or '?'}) has no ONNX translation, so no target can express it",
                "replace it with standard ops in the model, or run that part outside the exported graph",
            ) from None
        raise UnsupportedOp(
            f"torch.onnx.export failed: {_first_line(exc)}",
            "an op in the model has no ONNX translation; see the message for its name",
        ) from None
    model = program.model_proto
    model, ok = onnxsim.simplify(model)
    if not ok:
        raise UnsupportedOp("onnxsim could not verify the simplified graph against the original")
    if req.dynamic_batch:
        _name_batch_dim(model)
    model.producer_name = "edgeport"
    onnx.checker.check_model(model, full_check=True)
    return model


def export(req: ExportRequest) -> Path:
    model = to_onnx(req)
    if req.metadata:  # on a copy: the cached model feeds onnx-int8 and onnx2tf unchanged
        model = type(model).FromString(model.SerializeToString())
        metadata.set_onnx(model, metadata.for_target(req.metadata, "onnx-fp32", "NCHW"))
    dest = req.out_dir / TARGETS.get("onnx-fp32").filename(req.name)
    write_bytes(dest, model.SerializeToString())
    return dest


def _name_batch_dim(model: onnx.ModelProto) -> None:
    """Give the symbolic batch dimension a readable name (the exporter calls it s0, s31, ...)."""
    for value in list(model.graph.input) + list(model.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.dim_param:
            dim.dim_param = "batch"


def _failed_op(exc: BaseException) -> tuple[str | None, str | None]:
    """(op, FX node) named in the exporter's error text, e.g. ``prims.bessel_j0`` / ``bessel_j0``.

    The exporter has no structured field for them: its ConversionError summary says "No ONNX function
    found for <OpOverload(op='prims.bessel_j0', ...)>" and "Error when translating node %bessel_j0"."""
    text = " ".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e is not None)
    op = re.search(r"OpOverload\(op='([\w.]+)'", text)
    node = re.search(r"translating node %(\w+)", text)
    return (op.group(1) if op else None), (node.group(1) if node else None)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


register_target(Target("onnx-fp32", "onnx", "fp32", export, FP32, parent="torch-fused", writer="torch.onnx export (+ onnxsim)"))
