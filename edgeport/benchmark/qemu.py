"""The qemu-pi4 / qemu-pi5 devices: device_runner.py in the arm64 userland under qemu user-mode emulation.

Pi 4 is QEMU_CPU=cortex-a72, Pi 5 is QEMU_CPU=cortex-a76 (never ``max``: it advertises features whose
emulation gives wrong int8 results). The guest sees a fake ARM /proc/cpuinfo for that core (onnxruntime
segfaults and LiteRT fails on the host's x86 one): ``qemu-aarch64 -L PREFIX`` looks every absolute path up
under PREFIX first, so PREFIX is a per-run "view" folder holding symlinks to the rootfs's top-level folders
plus its own ``proc/cpuinfo``; /proc, /sys, /dev and /tmp stay the host's.

The cost measure is guest instructions per inference, counted by our TCG plugin (insn_counter.c, built once
against the installed qemu's plugin header) between marker syscalls that device_runner.py issues around each
timed inference; the wall time is emulated wall time, NOT device latency.

A .pte runs in ExecuTorch's C++ runtime (edgeport.benchmark.executorch_arm, built by the setup step), copied
into the run's folder next to device_runner.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from edgeport.benchmark import arm_rootfs
from edgeport.benchmark.arm_rootfs import (  # noqa: F401  (how the userland's Python runs under qemu; re-exported)
    BOARDS,
    CORES,
    CPUINFO,
    HOST_ONLY,
    core_view,
    cpuinfo_text,
    guest_command,
    guest_env,
)
from edgeport.benchmark.devices import RUNNER_SCRIPT, STAGED_RUNTIME, DeviceRun, DeviceSpec
from edgeport.errors import RuntimeMissing, UserError
from edgeport.formats import format_of

PLUGIN_SOURCE = Path(__file__).with_name("insn_counter.c")
PLUGIN_TOOLS = {"gcc": "gcc", "pkg-config": "pkg-config", "dpkg-query": "dpkg", "apt-get": "apt", "tar": "tar"}
GUEST_TIMEOUT_S = 3600


def qemu_source_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${source:Version}", "qemu-user"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        raise RuntimeMissing("qemu-user is not installed (Debian package)", arm_rootfs.APT_HINT)
    return out.stdout.strip()


def ensure_plugin(say: Callable[[str], None] = print) -> Path:
    """libinsn_counter.so for the installed qemu, built once (header from Debian's qemu source package)."""
    arm_rootfs.require_tools({**arm_rootfs.HOST_TOOLS, **PLUGIN_TOOLS})
    version = qemu_source_version()
    import hashlib

    tag = hashlib.sha256(PLUGIN_SOURCE.read_bytes() + version.encode()).hexdigest()[:12]
    folder = arm_rootfs.cache_dir() / "plugin"
    so = folder / f"libinsn_counter-{tag}.so"
    if so.is_file():
        return so
    with arm_rootfs.rootfs_lock(say):
        if so.is_file():
            return so
        if subprocess.run(["pkg-config", "--exists", "glib-2.0"]).returncode != 0:
            raise RuntimeMissing("glib headers are missing (needed to build the qemu plugin)", arm_rootfs.APT_HINT)
        say(f"building the qemu instruction-counting plugin for qemu {version} (once)…")
        folder.mkdir(parents=True, exist_ok=True)
        header = _plugin_header(folder, version)
        cflags = subprocess.run(["pkg-config", "--cflags", "glib-2.0"], capture_output=True, text=True).stdout.split()
        tmp = folder / f".{so.name}.{os.getpid()}"
        proc = subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", f"-I{header.parent}", *cflags,
                               str(PLUGIN_SOURCE), "-o", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeMissing(f"building the qemu plugin failed: {(proc.stderr.strip().splitlines() or ['?'])[0][:200]}")
        os.replace(tmp, so)
        return so


def _plugin_header(folder: Path, version: str) -> Path:
    """include/qemu/qemu-plugin.h of exactly the installed qemu, from Debian's source package (apt)."""
    header = folder / f"include-{version.replace(':', '_')}" / "qemu-plugin.h"
    if header.is_file():
        return header
    apt = folder / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    mirror = arm_rootfs.mirror()
    security = os.environ.get("EDGEPORT_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
    (apt / "sources.list").write_text(
        f"deb-src {mirror} {arm_rootfs.SUITE} main\ndeb-src {mirror} {arm_rootfs.SUITE}-updates main\n"
        f"deb-src {security} {arm_rootfs.SUITE}-security main\n")
    opts = ["-o", f"Dir::Etc::SourceList={apt / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", "APT::Sandbox::User=root"]
    log = arm_rootfs.cache_dir() / "plugin.log"
    log.write_text("")
    arm_rootfs.run_logged(["apt-get", *opts, "-q", "update"], log, "apt-get update (deb-src, for the qemu plugin header)")
    src = apt / "src"
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir()
    proc = subprocess.run(["apt-get", *opts, "-q", "source", "--download-only", f"qemu={version}"], cwd=src,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeMissing(f"cannot download Debian's qemu {version} source for the plugin header",
                             f"apt-get source failed: {(proc.stderr.strip().splitlines() or ['?'])[-1][:160]}")
    origs = sorted(src.glob("qemu_*.orig.tar.*"))
    if not origs:
        raise RuntimeMissing(f"Debian's qemu {version} source has no orig tarball")
    members = subprocess.run(["tar", "-tf", str(origs[0])], capture_output=True, text=True).stdout.splitlines()
    wanted = [m for m in members if m.endswith("include/qemu/qemu-plugin.h")]
    if not wanted:
        raise RuntimeMissing(f"qemu {version} has no plugin header (built without TCG plugins?)")
    subprocess.run(["tar", "-xf", str(origs[0]), "-C", str(src), wanted[0]], check=True)
    header.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / wanted[0], header)
    shutil.rmtree(src, ignore_errors=True)  # 24 MB of source we no longer need
    return header


def parse_counts(text: str) -> tuple[int, list[int]]:
    """The plugin's file -> (total instructions, instructions between each pair of marks)."""
    total, marks = 0, []
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "total":
            total = int(value)
        elif key == "mark":
            marks.append(int(value))
    return total, [b - a for a, b in zip(marks[0::2], marks[1::2])]


class QemuDevice:
    emulated = True

    def __init__(self, name: str, warmup: int = 1, runs: int = 3, say: Callable[[str], None] = print):
        if name not in CORES:
            raise UserError(f"unknown qemu device {name!r}", f"one of {', '.join(CORES)}")
        self.name, self.core = name, CORES[name]
        self.warmup, self.runs, self.say = warmup, runs, say

    def run(self, artifact: Path, inputs: np.ndarray, threads: int = 1) -> DeviceRun:
        artifact = Path(artifact).resolve()
        if not artifact.is_file():
            raise UserError(f"{artifact} does not exist")
        native = format_of(artifact).device_runtime(self.say)  # before any other build
        rootfs = arm_rootfs.ensure(self.say)
        plugin = ensure_plugin(self.say)
        work = Path(tempfile.mkdtemp(prefix="edgeport-qemu-"))  # host /tmp: the view never shadows it
        view = core_view(rootfs.path, self.core)
        try:
            if native is not None:  # e.g. ExecuTorch's C++ runtime, where device_runner.py looks for it
                shutil.copytree(native, work / STAGED_RUNTIME)
            return self._run(plugin, work, artifact, np.asarray(inputs, dtype=np.float32), threads,
                             lambda args, counts: guest_command(rootfs.path, view, args, plugin=plugin, counts=counts),
                             guest_env(self.core, threads), rootfs_build_s=rootfs.build_seconds)
        finally:
            shutil.rmtree(view, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)

    def _run(self, plugin: Path, work: Path, artifact: Path, inputs: np.ndarray, threads: int,
             command: Callable[[list[str], Path], list[str]], env: dict[str, str], **extra) -> DeviceRun:
        """device_runner.py on ``artifact`` in ``work``, launched by ``command(runner args, counts file)`` under the
        instruction-counting plugin; ``extra`` goes into the DeviceRun's extra facts."""
        runner = work / "device_runner.py"
        shutil.copyfile(RUNNER_SCRIPT, runner)
        link = work / f"model{artifact.suffix}"
        link.symlink_to(artifact)
        np.save(work / "inputs.npy", inputs)
        counts, result, outputs = work / "counts.txt", work / "result.json", work / "outputs.npy"
        args = [str(runner), "--artifact", str(link), "--inputs", str(work / "inputs.npy"), "--threads", str(threads),
                "--warmup", str(self.warmup), "--runs", str(self.runs), "--out", str(result),
                "--outputs-npy", str(outputs), "--insn-markers"]
        cmd = command(args, counts)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=GUEST_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeMissing(f"{self.name}: {artifact.name} did not finish within {GUEST_TIMEOUT_S} s of emulation") from None
        guest_s = time.monotonic() - t0
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            if proc.returncode < 0:
                raise RuntimeMissing(f"{self.name}: the guest crashed on {artifact.name} "
                                     f"({signal.Signals(-proc.returncode).name})", (lines or [""])[-1][:200] or None)
            raise UserError(f"{self.name}: {(lines or ['device_runner failed'])[-1][:300]}")
        total, per_run = parse_counts(counts.read_text()) if counts.is_file() else (0, [])
        ipi = float(statistics.median(per_run)) if per_run else None
        run = DeviceRun.from_result(
            json.loads(result.read_text()), device=self.name, outputs=np.load(outputs),
            instructions_per_inference=ipi, emulated=True,
            core=self.core, insn_per_run=per_run, insn_total=total, guest_process_s=round(guest_s, 2),
            counts_exact=threads == 1, **extra,
        )
        run.artifact = str(artifact)
        return run


def make_device(spec: DeviceSpec, warmup: int = 1, runs: int = 3, **_ignored) -> QemuDevice:
    """Few inferences: each costs seconds under emulation. The count repeats to a few hundred instructions,
    except that onnxruntime now and then spends 0.3-0.8 % more in one run (cause not pinned down; not Python's
    GC, which the runner pauses): the median of 3 is used."""
    return QemuDevice(spec.kind, warmup=warmup, runs=runs)
