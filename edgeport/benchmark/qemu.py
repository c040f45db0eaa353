"""The qemu-pi4 / qemu-pi5 devices: device_runner.py in the arm64 userland under qemu user-mode emulation.

Pi 4 is QEMU_CPU=cortex-a72, Pi 5 is QEMU_CPU=cortex-a76 (never ``max``: it advertises features whose
emulation gives wrong int8 results). The guest sees a fake ARM /proc/cpuinfo for that core (onnxruntime
segfaults and LiteRT fails on the host's x86 one): ``qemu-aarch64 -L PREFIX`` looks every absolute path up
under PREFIX first, so PREFIX is a per-run "view" folder holding symlinks to the rootfs's top-level folders
plus its own ``proc/cpuinfo``; /proc, /sys, /dev and /tmp stay the host's.

The cost measure is guest instructions per inference, counted by our TCG plugin (insn_counter.c, built once
against the installed qemu's plugin header) between marker syscalls that device_runner.py issues around each
timed inference; the wall time is emulated wall time, NOT device latency.
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
from edgeport.benchmark.devices import RUNNER_SCRIPT, DeviceRun, DeviceSpec
from edgeport.errors import RuntimeMissing, UserError

CORES = {"qemu-pi4": "cortex-a72", "qemu-pi5": "cortex-a76"}
BOARDS = {"cortex-a72": "Raspberry Pi 4", "cortex-a76": "Raspberry Pi 5"}
# What the Pi's kernel reports for each core (MIDR fields and hwcaps).
CPUINFO = {
    "cortex-a72": {"variant": "0x0", "part": "0xd08", "revision": "3",
                   "features": "fp asimd evtstrm crc32 cpuid"},
    "cortex-a76": {"variant": "0x4", "part": "0xd0b", "revision": "1",
                   "features": "fp asimd evtstrm crc32 cpuid atomics fphp asimdhp asimdrdm lrcpc dcpop asimddp"},
}
HOST_ONLY = {"proc", "sys", "dev", "tmp", "run", "debootstrap"}  # never shadowed by the rootfs
PLUGIN_SOURCE = Path(__file__).with_name("insn_counter.c")
PLUGIN_TOOLS = {"gcc": "gcc", "pkg-config": "pkg-config", "dpkg-query": "dpkg", "apt-get": "apt", "tar": "tar"}
GUEST_TIMEOUT_S = 3600


def cpuinfo_text(core: str, processors: int) -> str:
    c = CPUINFO[core]
    block = ("processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: {variant}\nCPU part\t: {part}\nCPU revision\t: {revision}\n\n")
    text = "".join(block.format(n=n, **c) for n in range(processors))
    return text + f"Model\t\t: edgeport qemu emulation of a {BOARDS[core]}\n"


def core_view(root: Path, core: str) -> Path:
    """A fresh -L prefix for one run: symlinks to the rootfs plus a fake /proc/cpuinfo for ``core``."""
    if core not in CPUINFO:
        raise UserError(f"unknown emulated core {core!r}", f"one of {', '.join(CPUINFO)}")
    views = arm_rootfs.cache_dir() / "views"
    views.mkdir(parents=True, exist_ok=True)
    view = Path(tempfile.mkdtemp(prefix=f"{core}-", dir=views))
    for entry in root.iterdir():
        if entry.name not in HOST_ONLY:
            (view / entry.name).symlink_to(entry.resolve())
    (view / "proc").mkdir()
    # as many processors as the host's /sys (which the guest sees) says there are
    (view / "proc" / "cpuinfo").write_text(cpuinfo_text(core, os.cpu_count() or 1))
    return view


def guest_env(core: str, threads: int) -> dict[str, str]:
    """A clean environment: nothing of the host's Python setup leaks into the guest."""
    if core not in CPUINFO:
        raise UserError(f"unknown emulated core {core!r}")
    return {
        "QEMU_CPU": core, "PATH": "/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
        "PYTHONPATH": arm_rootfs.GUEST_SITE, "PYTHONHASHSEED": "0",
        # never write .pyc: under -L a new file would be created on the host, not in the rootfs
        "PYTHONDONTWRITEBYTECODE": "1",
        "OMP_NUM_THREADS": str(threads),
    }


def guest_command(root: Path, view: Path, python_args: list[str], plugin: Path | None = None,
                  counts: Path | None = None) -> list[str]:
    """qemu-aarch64 running the guest's Python with -S (no site: the host's site-packages stay out)."""
    cmd = ["qemu-aarch64", "-L", str(view)]
    if plugin is not None:
        cmd += ["-plugin", f"{plugin},out={counts}"]
    return [*cmd, str(root / "usr" / "bin" / f"python{arm_rootfs.GUEST_PYTHON}"), "-S", *python_args]


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
    with arm_rootfs._locked(say):
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
    arm_rootfs._run(["apt-get", *opts, "-q", "update"], log, "apt-get update (deb-src, for the qemu plugin header)")
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
        rootfs = arm_rootfs.ensure(self.say)
        plugin = ensure_plugin(self.say)
        work = Path(tempfile.mkdtemp(prefix="edgeport-qemu-"))  # host /tmp: the view never shadows it
        view = core_view(rootfs.path, self.core)
        try:
            return self._run(rootfs, plugin, view, work, artifact, np.asarray(inputs, dtype=np.float32), threads)
        finally:
            shutil.rmtree(view, ignore_errors=True)
            shutil.rmtree(work, ignore_errors=True)

    def _run(self, rootfs, plugin, view, work, artifact, inputs, threads) -> DeviceRun:
        runner = work / "device_runner.py"
        shutil.copyfile(RUNNER_SCRIPT, runner)
        link = work / f"model{artifact.suffix}"
        link.symlink_to(artifact)
        np.save(work / "inputs.npy", inputs)
        counts, result, outputs = work / "counts.txt", work / "result.json", work / "outputs.npy"
        args = [str(runner), "--artifact", str(link), "--inputs", str(work / "inputs.npy"), "--threads", str(threads),
                "--warmup", str(self.warmup), "--runs", str(self.runs), "--out", str(result),
                "--outputs-npy", str(outputs), "--insn-markers"]
        cmd = guest_command(rootfs.path, view, args, plugin=plugin, counts=counts)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, env=guest_env(self.core, threads), capture_output=True, text=True,
                                  timeout=GUEST_TIMEOUT_S)
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
            counts_exact=threads == 1, rootfs_build_s=rootfs.build_seconds,
        )
        run.artifact = str(artifact)
        return run


def make_device(spec: DeviceSpec, warmup: int = 1, runs: int = 3, **_ignored) -> QemuDevice:
    """Few inferences: each costs seconds under emulation. The count repeats to a few hundred instructions,
    except that onnxruntime now and then spends 0.3-0.8 % more in one run (cause not pinned down; not Python's
    GC, which the runner pauses): the median of 3 is used."""
    return QemuDevice(spec.kind, warmup=warmup, runs=runs)
