"""ExecuTorch's C++ runtime for arm64 devices: the aarch64 executorch wheel's shared libraries plus our runner.

On arm64 the executorch wheel's Python extension wants a CUDA build of torch, so a .pte runs on the qemu-pi4 /
qemu-pi5 guest (and docker-arm64) through ExecuTorch's C++ runtime instead: ``pte_runner.cpp``, a small C ABI over
the Module API (load, one inference, warm-up + timed runs with the insn markers), compiled with Debian's
``aarch64-linux-gnu-g++`` against the headers and shared libraries (libexecutorch, the optimized and quantized
kernels, the XNNPACK backend, its threadpool) that the PyPI wheel ships, linked ``--no-as-needed`` so the
kernels' and the backend's static registrations run. device_runner.py loads it with ctypes (see there why).

Where: ``$EDGEPORT_CACHE/arm64/executorch`` (next to the rootfs): ``wheels/`` (the wheel, sha256-pinned),
``runtime-<tag>/`` (our library, the wheel's libraries, VERSION, stamp.json), ``build.log``. The tag hashes the
runner source, the wheel's sha256 and the compile line: a change rebuilds (stamp.json records the compiler).

Downloads happen only in ``setup`` (``python -m edgeport.benchmark.executorch_arm setup``, called by
scripts/setup.sh); at run time :func:`ensure` builds from the cached wheel (no network) or says what to run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

from edgeport.benchmark import arm_rootfs
from edgeport.errors import RuntimeMissing
from edgeport.pipeline.artifact import sha256_of
from edgeport.util.atomic_file import write_text

VERSION = "1.5.1"  # the executorch the host exports with (constraints.txt)
WHEEL = f"executorch-{VERSION}-cp311-cp311-manylinux_2_28_aarch64.whl"
WHEEL_SHA256 = "8ee02348a3ea80ddf770822911ebf78da616b73afce0fbaaa79f23311c88c66a"
LIBS = ["libexecutorch.so", "libexecutorch_kernels_optimized.so", "libexecutorch_kernels_quantized.so",
        "libexecutorch_backend_xnnpack.so", "libexecutorch_threadpool.so"]
RUNNER_LIB = "libedgeport_pte.so"
SOURCE = Path(__file__).with_name("pte_runner.cpp")
CXX = "aarch64-linux-gnu-g++"
CXX_PACKAGE = "g++-aarch64-linux-gnu"
# The defines the wheel's executorch-config.cmake gives consumers (c10 headers, the tracer layout the libraries
# were built with, the shared threadpool).
CXXFLAGS = ["-std=c++17", "-O2", "-fPIC", "-shared", "-Wall", "-Wno-deprecated-declarations",
            "-DC10_USING_CUSTOM_GENERATED_MACROS", "-DET_EVENT_TRACER_ENABLED", "-DET_USE_THREADPOOL"]
LDFLAGS = ["-Wl,--no-as-needed", *(f"-l{lib[3:-3]}" for lib in LIBS), "-Wl,--as-needed", "-Wl,-rpath,$ORIGIN",
           "-Wl,--no-undefined"]
SETUP_HINT = "run scripts/setup.sh (or: .venv/bin/python -m edgeport.benchmark.executorch_arm setup)"


def folder() -> Path:
    return arm_rootfs.cache_dir() / "executorch"


def wheel_path() -> Path:
    return folder() / "wheels" / WHEEL


def _compiler_version() -> str:
    try:
        out = subprocess.run([CXX, "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    return out.splitlines()[0] if out else ""


def tag() -> str:
    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(" ".join([WHEEL_SHA256, *CXXFLAGS, *LDFLAGS]).encode())
    return h.hexdigest()[:12]


def find() -> Path | None:
    """The built runtime folder for this source, wheel and compile line, or None."""
    path = folder() / f"runtime-{tag()}"
    return path if _complete(path) else None


def _complete(path: Path) -> bool:
    return all((path / name).is_file() for name in [RUNNER_LIB, *LIBS, "VERSION", "stamp.json"])


def ensure(say: Callable[[str], None] = print) -> Path:
    """The runtime folder to stage next to device_runner.py; built from the cached wheel if needed (no network)."""
    found = find()
    if found is not None:
        return found
    wheel = wheel_path()
    if not wheel.is_file():
        raise RuntimeMissing(f"ExecuTorch's arm64 runtime is not set up (no {WHEEL} in {wheel.parent})", SETUP_HINT)
    return build(say)


def download(say: Callable[[str], None] = print) -> Path:
    """The pinned aarch64 wheel from PyPI (pip download), checked against WHEEL_SHA256. Setup only."""
    wheel = wheel_path()
    if wheel.is_file() and sha256_of(wheel) == WHEEL_SHA256:
        return wheel
    wheel.parent.mkdir(parents=True, exist_ok=True)
    say(f"downloading {WHEEL} (pip, PyPI)…")
    log = folder() / "build.log"
    arm_rootfs.run_logged([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                           "--only-binary=:all:", "--platform", "manylinux_2_28_aarch64", "--python-version", "311",
                           "--implementation", "cp", "--abi", "cp311", "-d", str(wheel.parent), f"executorch=={VERSION}"],
                          log, "pip download (aarch64 executorch wheel)")
    got = sha256_of(wheel) if wheel.is_file() else "missing"
    if got != WHEEL_SHA256:
        wheel.unlink(missing_ok=True)
        raise RuntimeMissing(f"{WHEEL} has sha256 {got[:16]}…, expected {WHEEL_SHA256[:16]}…", "the download was not the pinned file")
    return wheel


def build(say: Callable[[str], None] = print) -> Path:
    """Compile pte_runner.cpp against the cached wheel into runtime-<tag>/ (atomic, under the rootfs lock)."""
    if shutil.which(CXX) is None:
        raise RuntimeMissing(f"{CXX} is missing (needed to build the arm64 .pte runner)",
                             f"apt-get install {CXX_PACKAGE} ({SETUP_HINT})")
    wheel = wheel_path()
    with arm_rootfs.rootfs_lock(say):
        final = folder() / f"runtime-{tag()}"
        if _complete(final):
            return final
        if not wheel.is_file() or sha256_of(wheel) != WHEEL_SHA256:
            raise RuntimeMissing(f"the cached {WHEEL} is missing or not the pinned file", SETUP_HINT)
        say("building edgeport's arm64 .pte runner against the executorch wheel (once)…")
        work = folder() / f"runtime.part-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        try:
            with zipfile.ZipFile(wheel) as zf:
                members = [m for m in zf.namelist()
                           if m.startswith("executorch/include/") or m in {f"executorch/lib/{lib}" for lib in LIBS}]
                zf.extractall(work / "wheel", members)
            root = work / "wheel" / "executorch"
            out = work / "runtime"
            out.mkdir()
            for lib in LIBS:
                shutil.copyfile(root / "lib" / lib, out / lib)
            include = root / "include"
            cmd = [CXX, *CXXFLAGS, f"-I{include}", f"-I{include / 'executorch/runtime/core/portable_type/c10'}",
                   str(SOURCE), "-o", str(out / RUNNER_LIB), f"-L{out}", *LDFLAGS]
            arm_rootfs.run_logged(cmd, folder() / "build.log", f"{CXX} (the .pte runner)")
            (out / "VERSION").write_text(VERSION + "\n")
            stamp = {"executorch": VERSION, "wheel": WHEEL, "wheel_sha256": WHEEL_SHA256, "compiler": _compiler_version(),
                     "cxxflags": CXXFLAGS, "ldflags": LDFLAGS, "source_sha256": sha256_of(SOURCE), "libs": LIBS}
            write_text(out / "stamp.json", json.dumps(stamp, indent=2))
            shutil.rmtree(final, ignore_errors=True)
            out.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        say(f"  .pte runner ready: {final}")
        return final


def stage(into: Path, say: Callable[[str], None] = print) -> Path:
    """Copy the runtime folder to ``into`` (the folder device_runner.py looks in: ``pte`` next to it)."""
    src = ensure(say)
    shutil.copytree(src, into, dirs_exist_ok=True)
    return into


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["setup"]:
        print("usage: python -m edgeport.benchmark.executorch_arm setup", file=sys.stderr)
        return 2
    try:
        download()
        print(build())
    except RuntimeMissing as exc:
        print(f"error: {exc}" + (f" ({exc.hint})" if getattr(exc, "hint", None) else ""), file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main())
