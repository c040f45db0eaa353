"""Run .pte programs in ExecuTorch's own runtime: the ``executorch`` wheel's Python runtime
(``executorch.runtime.Runtime``, the portable/optimized kernels and the XNNPACK backend built into the wheel).

Inputs arrive as float NCHW, as PyTorch takes them, and outputs leave as float. A program with int8 I/O (the
executorch-int8 default) gets its input quantized and its output dequantized here with the scale/zero point of
ExecuTorch's constant methods (``forward_input0_scale``, ... : edgeport.exporters.executorch.IO_KEYS), rounding
half to even as XNNPACK's own quantize does (measured: outputs equal to the float-I/O program's). A program
exported with ``--pte-layout nhwc`` reads its input in channels-last memory (dim order 0, 2, 3, 1, read from the
program): the runner lays the batch out that way, since ExecuTorch's runtime does not check an input's dim order
(measured: a contiguous tensor is read as if it were channels-last, silently wrong). A program has a fixed batch: a
larger batch is run in chunks of it. Threads: the wheel's XNNPACK threadpool is process-wide and only reset by
``portable_lib._unsafe_reset_threadpool``; the runner sets it when it is opened (the last runner opened wins).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.errors import REEXPORT_HINT, ArtifactFailed, UserError
from edgeport.formats.pte_program import import_executorch
from edgeport.util import native_logs

FLOAT32, INT8 = 6, 1  # ExecuTorch ScalarType codes (TensorInfo.dtype())


class ExecuTorchRunner:
    name = "executorch"

    def __init__(self, path: Path, threads: int = 1):
        import_executorch()
        from importlib.metadata import version

        from executorch.runtime import Runtime

        self.version = version("executorch")
        self.path = Path(path)
        with native_logs.captured() as log:  # cpuinfo's lines about /sys files; the reason a program fails to load
            failure, stage = None, "program"
            try:
                runtime = Runtime.get()
                self._set_threads(threads)
                self.program = runtime.load_program(str(self.path))
                stage = "method"  # the file is a program; its method (the XNNPACK graph) is compiled now
                self.method = self.program.load_method("forward")
            except (RuntimeError, ValueError) as exc:
                failure = exc
        if failure is None:
            log.unlink(missing_ok=True)
        else:
            native = [line.strip() for line in log.read_text(errors="replace").splitlines()
                      if "fail" in line.lower() and "cpuinfo" not in line]  # cpuinfo's /sys probes are not the reason
            why = native[0] if native else (str(failure).splitlines()[0][:200] if str(failure) else type(failure).__name__)
            with open(log, "a") as fh:
                fh.write(f"\n{failure}\n")
            if stage == "program":
                raise UserError(f"ExecuTorch cannot load {self.path}: {why[:200]}", f"{REEXPORT_HINT}; log: {log}")
            raise ArtifactFailed(f"ExecuTorch cannot load {self.path.name}: {why[:240]}",
                                 f"the program does not run in executorch {self.version}; log: {log}")
        if self.method is None:
            raise UserError(f"{self.path} has no forward method", REEXPORT_HINT)
        meta = self.method.metadata
        self._shape = [int(d) for d in meta.input_tensor_meta(0).sizes()]
        from edgeport.formats.pte_program import input_dim_orders, reads_nhwc

        self.nhwc = reads_nhwc(input_dim_orders(self.path))
        self.input_q = self._io_quantization("input", meta.input_tensor_meta(0).dtype())
        self.output_q = self._io_quantization("output", meta.output_tensor_meta(0).dtype())

    def _io_quantization(self, side: str, dtype: int) -> tuple[float, int] | None:
        """(scale, zero point) of an int8 input/output, from the program's constant methods; None for float."""
        if dtype == INT8:
            from executorch.exir.passes.quantize_io_pass import get_config_method_name

            methods = [get_config_method_name("forward", side, 0, key) for key in ("scale", "zp")]
            if not set(methods) <= self.program.method_names:
                raise UserError(f"{self.path.name} has an int8 {side} but no {' / '.join(methods)} method to "
                                "(de)quantize it with", REEXPORT_HINT)
            scale, zero = (self.program.load_method(m).execute([])[0] for m in methods)
            return float(scale), int(zero)
        if dtype != FLOAT32:
            raise UserError(f"{self.path.name}'s {side} has ScalarType {dtype}; edgeport runs float32 or int8 I/O",
                            REEXPORT_HINT)
        return None

    def _tensor(self, x: np.ndarray):
        """``x`` (float NCHW) as a torch tensor of the program's input dtype, in the memory layout it reads."""
        import torch

        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.input_q is not None:
            scale, zero = self.input_q
            x = np.clip(np.rint(x / np.float32(scale)) + zero, -128, 127).astype(np.int8)
        t = torch.from_numpy(x)
        return t.contiguous(memory_format=torch.channels_last) if self.nhwc else t

    def _output(self, y) -> np.ndarray:
        out = y.numpy().astype(np.float32, copy=True)
        if self.output_q is not None:
            scale, zero = self.output_q
            out = (out - zero) * np.float32(scale)
        return out

    @staticmethod
    def _set_threads(threads: int) -> None:
        try:
            from executorch.extension.pybindings import portable_lib
        except ImportError:
            return
        reset = getattr(portable_lib, "_unsafe_reset_threadpool", None)
        if reset is not None and threads and threads > 0:
            reset(int(threads))

    @property
    def input_shape(self) -> list[int]:
        return list(self._shape)

    @property
    def batch(self) -> int:
        return self._shape[0]

    def _execute(self, x: np.ndarray) -> np.ndarray:

        if tuple(x.shape) != tuple(self._shape):
            raise UserError(f"input of shape {x.shape} does not fit the .pte input {tuple(self._shape)}")
        return self._output(self.method.execute([self._tensor(x)])[0])

    def invoker(self, batch: np.ndarray | None = None):
        """A no-argument callable running one inference on a fixed input (seeded noise without ``batch``)."""

        if batch is None:
            batch = np.random.default_rng(0).standard_normal(self._shape).astype(np.float32)
        x = np.asarray(batch, dtype=np.float32)[: self.batch]
        if tuple(x.shape) != tuple(self._shape):
            raise UserError(f"input of shape {x.shape} does not fit the .pte input {tuple(self._shape)}")
        inputs = [self._tensor(x)]
        method = self.method
        return lambda: method.execute(inputs)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Outputs for a float NCHW batch, in chunks of the program's batch; a runtime failure is an ArtifactFailed
        naming a log file that keeps ExecuTorch's own messages."""
        batch = np.asarray(batch, dtype=np.float32)
        with native_logs.captured() as log:  # ExecuTorch logs a failing kernel's reason to stderr
            try:
                out = np.concatenate([self._execute(batch[i : i + self.batch]) for i in range(0, len(batch), self.batch)])
            except (RuntimeError, ValueError) as exc:
                failure = exc
            else:
                failure = None
        if failure is None:
            log.unlink(missing_ok=True)
            return out
        with open(log, "a") as fh:
            fh.write(f"\n{failure}\n")
        why = str(failure).splitlines()[0][:200] if str(failure) else type(failure).__name__
        raise ArtifactFailed(f"ExecuTorch failed to run {self.path.name}: {why}", f"log: {log}") from None
