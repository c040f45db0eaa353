#!/usr/bin/env python3
"""Run one .onnx/.tflite/.pte artifact on the machine this script is on, and write result.json.

SELF-CONTAINED on purpose: it is copied to the device (qemu arm64 guest, docker, a Pi over ssh) and needs only
the standard library, numpy and onnxruntime or ai_edge_litert there (.pte: ExecuTorch's C++ runtime, see below);
it must not import edgeport.

    python3 device_runner.py --artifact F --inputs X.npy --threads N --warmup W --runs R --out result.json
                             [--outputs-npy Y.npy] [--no-xnnpack] [--insn-markers] [--pte-runtime DIR]

X.npy is the float32 NCHW batch edgeport uses. Input handling matches edgeport/runtimes/litert_runner.py and
onnxruntime_runner.py: for .tflite, NCHW -> NHWC when the file wants NHWC, int8/uint8 inputs quantized with the
file's own scale/zero point, int8/uint8 outputs dequantized; .onnx gets float32 as is. Every sample of X is
run (the outputs, float32, go to Y.npy); then the first batch is invoked W times (warm-up) and R times timed,
with Python's cyclic garbage collector paused during the timed runs (as timeit does).

.pte: ExecuTorch's C++ runtime (the aarch64 executorch wheel's shared libraries plus edgeport's small C ABI over
its Module API, libedgeport_pte.so from pte_runner.cpp) loaded in this process with ctypes, from --pte-runtime DIR
(default: the folder ``pte`` next to this script). In-process, not a subprocess: under qemu-user a guest cannot
exec another aarch64 binary without binfmt_misc, and the instruction counter sees only its own process. The
library takes float32 NCHW and quantizes it once, before timing, for a program with int8 input (the scale / zero
point of its forward_input0_* constant methods; an int8 output is dequantized the same way); its warm-up and timed
runs, and their markers, happen inside the library around each forward() call, so the count is ExecuTorch's alone.

load_ms: runtime session/interpreter creation and tensor allocation (no inference).
--insn-markers: before and after each timed inference, issue lseek(-1, MARK, 0) -- a syscall that fails
at once with EBADF and does nothing -- so a QEMU TCG plugin watching syscalls can cut the instruction
count at exactly those points. Harmless on real hardware.

Exit status 0 on success; otherwise non-zero with one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import hashlib
import json
import os
import platform
import sys
import time

RUNNER_VERSION = "2"
INSN_MARK = 0x6564676570  # "edgep": the offset argument that tells the insn plugin "cut here"
ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55", "0xd07": "Cortex-A57",
             "0xd08": "Cortex-A72", "0xd09": "Cortex-A73", "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76",
             "0xd0c": "Neoverse-N1", "0xd0d": "Cortex-A77", "0xd41": "Cortex-A78", "0xd44": "Cortex-X1",
             "0xd46": "Cortex-A510", "0xd47": "Cortex-A710", "0xd4b": "Cortex-A78C", "0xd80": "Cortex-A520",
             "0xd81": "Cortex-A720"}


class RunnerError(Exception):
    pass


def cpuinfo_model() -> str | None:
    """A readable CPU name from /proc/cpuinfo: board model, x86 model name, or the ARM core from its part number."""
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
    except OSError:
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    part = fields.get("cpu part", "").lower()
    core = ARM_PARTS.get(part, f"ARM part {part}") if part else None
    board = fields.get("model") or fields.get("hardware")
    name = fields.get("model name")
    if core:
        return f"{board} ({core})" if board else core
    return name or board


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def native_stderr_silenced():
    """Hide what C++ runtimes print on fd 2 while loading ("INFO: Created TensorFlow Lite XNNPACK delegate"),
    so stderr stays the one line of an error."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def mark() -> None:
    try:
        os.lseek(-1, INSN_MARK, 0)
    except OSError:
        pass


class TfliteModel:
    runtime = "ai-edge-litert"

    def __init__(self, path: str, threads: int, xnnpack: bool):
        import numpy as np
        try:
            import ai_edge_litert
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            raise RunnerError("ai_edge_litert is not installed here (pip install 'ai-edge-litert==2.3.*')") from None
        self.np = np
        resolver = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        with native_stderr_silenced():
            self.interpreter = Interpreter(model_path=path, num_threads=threads, experimental_op_resolver_type=resolver)
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.version = getattr(ai_edge_litert, "__version__", "?")
        self.batch = int(self.input["shape"][0])

    def _to_input(self, x):
        np = self.np
        want = tuple(int(d) for d in self.input["shape"])
        if x.ndim == 4 and tuple(x.shape) != want and (x.shape[0], x.shape[2], x.shape[3], x.shape[1]) == want:
            x = x.transpose(0, 2, 3, 1)  # NCHW -> NHWC
        if tuple(x.shape) != want:
            raise RunnerError(f"input of shape {x.shape} does not fit the .tflite input {want}")
        dtype = self.input["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zero = self.input["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero, info.min, info.max)
        return np.ascontiguousarray(x.astype(dtype))

    def _from_output(self, y):
        np = self.np
        if self.output["dtype"] in (np.int8, np.uint8):
            scale, zero = self.output["quantization"]
            return (y.astype(np.float32) - zero) * scale
        return y.astype(np.float32)

    def prepare(self, batch):
        self.interpreter.set_tensor(self.input["index"], self._to_input(batch[: self.batch]))
        return self.interpreter.invoke

    def run_all(self, inputs):
        outs = []
        for i in range(0, len(inputs), self.batch):
            self.interpreter.set_tensor(self.input["index"], self._to_input(inputs[i : i + self.batch]))
            self.interpreter.invoke()
            outs.append(self._from_output(self.interpreter.get_tensor(self.output["index"])))
        return self.np.concatenate(outs)


class PteModel:
    runtime = "executorch"
    LIBRARY = "libedgeport_pte.so"

    def __init__(self, path: str, threads: int, runtime_dir: str | None):
        import ctypes

        import numpy as np
        self.np, self.ct = np, ctypes
        folder = runtime_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "pte")
        lib_path = os.path.join(folder, self.LIBRARY)
        if not os.path.isfile(lib_path):
            raise RunnerError(f"ExecuTorch's arm64 runtime is not staged here ({lib_path} is missing)")
        try:
            with native_stderr_silenced():
                lib = ctypes.CDLL(lib_path)
        except OSError as exc:
            raise RunnerError(f"cannot load {lib_path}: {str(exc)[:200]}") from None
        lib.edgeport_pte_open.restype = ctypes.c_void_p
        lib.edgeport_pte_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t]
        for name in ("edgeport_pte_input_shape", "edgeport_pte_output_shape", "edgeport_pte_input_dim_order"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_int]
        lib.edgeport_pte_run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.edgeport_pte_time.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                          ctypes.POINTER(ctypes.c_double), ctypes.c_char_p, ctypes.c_size_t]
        lib.edgeport_pte_set_threads.argtypes = [ctypes.c_uint32]
        lib.edgeport_pte_close.argtypes = [ctypes.c_void_p]
        self.lib, self.err = lib, ctypes.create_string_buffer(512)
        with native_stderr_silenced():  # ExecuTorch logs its cpuinfo probes and the threadpool reset on fd 2
            if lib.edgeport_pte_set_threads(threads) != 0:
                raise RunnerError(f"cannot set ExecuTorch's threadpool to {threads} threads")
            self.handle = lib.edgeport_pte_open(path.encode(), self.err, len(self.err))
        if not self.handle:
            raise RunnerError(f"ExecuTorch cannot load {path}: {self.err.value.decode(errors='replace')}")
        self.input_shape, self.output_shape = self._shape(lib.edgeport_pte_input_shape), self._shape(lib.edgeport_pte_output_shape)
        self.batch = self.input_shape[0] if self.input_shape else 1
        # memory order of the input's dims: (0, 2, 3, 1) for a file exported with --pte-layout nhwc, whose input is
        # handed over channels-last (ExecuTorch reads the memory as the program says, it checks nothing)
        self.dim_order = self._shape(lib.edgeport_pte_input_dim_order)
        try:
            with open(os.path.join(folder, "VERSION")) as fh:
                self.version = fh.read().strip()
        except OSError:
            self.version = "?"

    def _shape(self, fn) -> tuple[int, ...]:
        dims = (self.ct.c_int64 * 8)()
        rank = fn(self.handle, dims, 8)
        return tuple(int(dims[i]) for i in range(min(rank, 8)))

    def _check(self, status: int, what: str) -> None:
        if status != 0:
            raise RunnerError(f"ExecuTorch {what} failed: {self.err.value.decode(errors='replace')}")

    def _input(self, x):
        x = self.np.asarray(x, dtype=self.np.float32)
        if tuple(x.shape) != self.input_shape:
            raise RunnerError(f"input of shape {x.shape} does not fit the .pte input {self.input_shape}")
        if self.dim_order and self.dim_order != tuple(range(len(self.dim_order))):
            x = x.transpose(self.dim_order)  # the memory order the program reads (NCHW data -> NHWC memory)
        return self.np.ascontiguousarray(x)

    def prepare(self, batch):
        x = self._input(batch[: self.batch])
        ct, lib = self.ct, self.lib

        def timed(warmup: int, runs: int, markers: bool) -> list[float]:
            ms = (ct.c_double * runs)()
            self._check(lib.edgeport_pte_time(self.handle, x.ctypes.data, warmup, runs, int(markers), ms, self.err,
                                              len(self.err)), "timing")
            return list(ms)
        return timed

    def run_all(self, inputs):
        np = self.np
        outs = []
        for i in range(0, len(inputs), self.batch):
            x = self._input(inputs[i : i + self.batch])
            y = np.empty(self.output_shape, dtype=np.float32)
            self._check(self.lib.edgeport_pte_run(self.handle, x.ctypes.data, y.ctypes.data, self.err, len(self.err)),
                        "inference")
            outs.append(y)
        return np.concatenate(outs)


class OnnxModel:
    runtime = "onnxruntime"

    def __init__(self, path: str, threads: int):
        import numpy as np
        try:
            import onnxruntime as ort
        except ImportError:
            raise RunnerError("onnxruntime is not installed here (pip install 'onnxruntime==1.32.*')") from None
        self.np = np
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        with native_stderr_silenced():
            self.session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        inp = self.session.get_inputs()[0]
        self.name = inp.name
        first = inp.shape[0] if inp.shape else None
        self.fixed_batch = first if isinstance(first, int) else None
        self.version = ort.__version__

    def prepare(self, batch):
        step = self.fixed_batch or len(batch)
        feed = {self.name: self.np.ascontiguousarray(batch[:step], dtype=self.np.float32)}
        run = self.session.run
        return lambda: run(None, feed)

    def run_all(self, inputs):
        np = self.np
        inputs = np.ascontiguousarray(inputs, dtype=np.float32)
        if self.fixed_batch is None or self.fixed_batch == len(inputs):
            return self.session.run(None, {self.name: inputs})[0].astype(np.float32)
        step = self.fixed_batch
        return np.concatenate(
            [self.session.run(None, {self.name: inputs[i : i + step]})[0] for i in range(0, len(inputs), step)]
        ).astype(np.float32)


def time_python(invoke, warmup: int, runs: int, markers: bool) -> list[float]:
    for _ in range(warmup):
        invoke()
    timings = []
    gc.collect()
    gc.disable()  # as timeit does: a cyclic-GC pass landing inside one run would add to its time and count
    for _ in range(runs):
        t = time.perf_counter()
        if markers:  # the marks hug invoke(): nothing else of the loop is counted
            mark()
        invoke()
        if markers:
            mark()
        timings.append((time.perf_counter() - t) * 1000)
    gc.enable()
    return timings


def run(args: argparse.Namespace) -> dict:
    try:
        import numpy as np
    except ImportError:
        raise RunnerError("numpy is not installed here") from None
    if not os.path.isfile(args.artifact):
        raise RunnerError(f"artifact {args.artifact} does not exist")
    if not os.path.isfile(args.inputs):
        raise RunnerError(f"inputs {args.inputs} do not exist")
    inputs = np.load(args.inputs).astype(np.float32, copy=False)
    if inputs.ndim < 2 or len(inputs) == 0:
        raise RunnerError(f"inputs {args.inputs} have shape {inputs.shape}; expected a non-empty float32 batch (N, C, H, W)")
    suffix = os.path.splitext(args.artifact)[1].lower()
    t0 = time.perf_counter()
    try:
        if suffix == ".tflite":
            model = TfliteModel(args.artifact, args.threads, xnnpack=not args.no_xnnpack)
        elif suffix == ".onnx":
            model = OnnxModel(args.artifact, args.threads)
        elif suffix == ".pte":
            model = PteModel(args.artifact, args.threads, args.pte_runtime)
        else:
            raise RunnerError(f"no runtime for {args.artifact} (expected .onnx, .tflite or .pte)")
    except RunnerError:
        raise
    except Exception as exc:  # the runtimes raise their own types (ValueError, RuntimeError, ORT's Fail...)
        raise RunnerError(f"cannot load {args.artifact}: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    load_ms = (time.perf_counter() - t0) * 1000
    try:
        outputs = model.run_all(inputs)
    except RunnerError:
        raise
    except Exception as exc:  # e.g. ORT's InvalidArgument for a wrong input shape
        raise RunnerError(f"inference failed on {args.artifact}: "
                          f"{str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}") from None
    outputs_path = None
    if args.outputs_npy:
        with open(args.outputs_npy, "wb") as fh:  # np.save(path) would append .npy to other names
            np.save(fh, outputs)
        outputs_path = args.outputs_npy
    invoke = model.prepare(inputs)
    if isinstance(model, PteModel):  # warm-up, timing and markers inside the runtime library (see above)
        timings = invoke(args.warmup, args.runs, args.insn_markers)
    else:
        timings = time_python(invoke, args.warmup, args.runs, args.insn_markers)
    return {
        "runner_version": RUNNER_VERSION, "artifact": args.artifact, "sha256": sha256(args.artifact),
        "runtime": model.runtime, "runtime_version": str(model.version), "numpy_version": np.__version__,
        "python": platform.python_version(), "machine": platform.machine(), "cpuinfo_model": cpuinfo_model(),
        "threads": args.threads, "xnnpack": suffix == ".pte" or (suffix == ".tflite" and not args.no_xnnpack), "load_ms": load_ms,
        "timings_ms": timings, "outputs_npy": outputs_path,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact", required=True)
    parser.add_argument("--inputs", required=True, help="float32 NCHW batch (.npy)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", required=True, help="result.json to write")
    parser.add_argument("--outputs-npy", default=None, help="write the float32 outputs of every input sample here")
    parser.add_argument("--no-xnnpack", action="store_true", help=".tflite: builtin kernels only")
    parser.add_argument("--insn-markers", action="store_true", help="bracket each timed inference with marker syscalls")
    parser.add_argument("--pte-runtime", default=None, help=".pte: folder with libedgeport_pte.so and ExecuTorch's "
                        "aarch64 libraries (default: ./pte next to this script)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.warmup < 0 or args.runs < 1:
        print("device_runner: --threads and --runs must be >= 1, --warmup >= 0", file=sys.stderr)
        return 2
    try:
        result = run(args)
        tmp = f"{args.out}.part"
        with open(tmp, "w") as fh:
            json.dump(result, fh, indent=2)
        os.replace(tmp, args.out)
    except RunnerError as exc:
        print(f"device_runner: {exc}", file=sys.stderr)
        return 1
    except (OSError, MemoryError) as exc:
        print(f"device_runner: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
