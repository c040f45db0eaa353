"""Build and cache the arm64 Debian bookworm userland the qemu-pi4/qemu-pi5 devices run in.

Where: ``$EDGEPORT_CACHE/arm64`` (default ``~/.cache/edgeport/arm64``): ``rootfs/``, ``stamp.json`` (what is
inside and how long the build took), ``build.log``, ``.lock``.

How (apt + PyPI only, no emulation of package scripts, no binfmt, no chroot):
1. ``debootstrap --foreign --arch=arm64 --variant=minbase`` downloads the arm64 .debs (with python3.11 and the
   C++ runtime) from the Debian mirror and unpacks the essential ones;
2. every downloaded .deb is unpacked with ``dpkg-deb -x`` (the maintainer scripts of the second stage are
   not needed to run Python under ``qemu-aarch64 -L rootfs``);
3. the host's pip installs the aarch64 cp311 manylinux wheels of numpy, onnxruntime and ai-edge-litert (the
   host's own versions when such a wheel exists, else the newest of the same minor) into
   ``rootfs/opt/edgeport/site``;
4. the host byte-compiles the guest's Python files (same 3.11 bytecode) and the guest imports the runtimes
   once under qemu, as proof that the userland works.
A build goes to a temporary folder that is renamed into place at the end, under an exclusive lock, so two
edgeport processes never build at once and a half-built rootfs is never used.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Iterator

from edgeport.errors import RuntimeMissing, UserError
from edgeport.util.atomic_file import write_text

RECIPE = 1  # bump when the build steps change: older caches are rebuilt
SUITE = "bookworm"
GUEST_PYTHON = "3.11"
GUEST_SITE = "/opt/edgeport/site"
DEBS = ["python3-minimal", "python3.11", "libstdc++6", "libgcc-s1"]
WHEELS = {"numpy": "numpy", "onnxruntime": "onnxruntime", "ai-edge-litert": "ai_edge_litert"}
AARCH64_PLATFORMS = [f"manylinux_2_{g}_aarch64" for g in (17, 24, 27, 28, 31, 34, 35, 36)] + ["manylinux2014_aarch64"]
HOST_TOOLS = {  # executable -> Debian package that provides it
    "debootstrap": "debootstrap",
    "dpkg-deb": "dpkg",
    "qemu-aarch64": "qemu-user",
}
APT_HINT = "apt-get install qemu-user debootstrap gcc libglib2.0-dev pkg-config (scripts/setup.sh does this)"


def cache_dir() -> Path:
    base = os.environ.get("EDGEPORT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "edgeport")
    return Path(base) / "arm64"


def mirror() -> str:
    return os.environ.get("EDGEPORT_DEBIAN_MIRROR", "http://deb.debian.org/debian")


@dataclass(frozen=True)
class Rootfs:
    path: Path
    stamp: dict

    @property
    def python(self) -> str:
        return f"/usr/bin/python{GUEST_PYTHON}"  # guest path

    @property
    def build_seconds(self) -> float:
        return float(self.stamp.get("build_seconds", float("nan")))


def require_tools(tools: dict[str, str]) -> None:
    missing = sorted({pkg for exe, pkg in tools.items() if shutil.which(exe) is None})
    if missing:
        raise RuntimeMissing(f"the arm64 emulation needs host packages that are missing: {' '.join(missing)}", APT_HINT)


def wanted_wheels() -> dict[str, str]:
    """Distribution -> the version the host has (the guest gets the same one, or the nearest)."""
    out = {}
    for dist in WHEELS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            raise RuntimeMissing(f"{dist} is not installed on the host", "run scripts/setup.sh") from None
    return out


def _stamp_path() -> Path:
    return cache_dir() / "stamp.json"


def current() -> Rootfs | None:
    """The cached rootfs if it is complete and matches this edgeport's recipe and the host's wheel versions."""
    root, stamp_file = cache_dir() / "rootfs", _stamp_path()
    if not (root / "usr" / "bin" / f"python{GUEST_PYTHON}").exists() or not stamp_file.is_file():
        return None
    try:
        stamp = json.loads(stamp_file.read_text())
    except (OSError, ValueError):
        return None
    if stamp.get("recipe") != RECIPE or stamp.get("wanted") != wanted_wheels():
        return None
    return Rootfs(root, stamp)


@contextlib.contextmanager
def rootfs_lock(on_wait: Callable[[str], None]) -> Iterator[None]:
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait(f"another edgeport process is building {cache_dir()}; waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure(say: Callable[[str], None] = print) -> Rootfs:
    """The cached rootfs, building it first (once; ~1-3 min, about 500 MB) if it is missing or stale."""
    found = current()
    if found is not None:
        return found
    require_tools(HOST_TOOLS)
    with rootfs_lock(say):
        found = current()  # built by another process while we waited
        if found is not None:
            return found
        say(f"building the arm64 Debian {SUITE} userland in {cache_dir()} (once; a few minutes, apt + PyPI)")
        return _build(say)


def run_logged(cmd: list[str], log: Path, what: str, env: dict | None = None) -> str:
    with open(log, "a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        fh.write(proc.stdout)
    if proc.returncode != 0:
        last = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or ["(no output)"]
        raise RuntimeMissing(f"{what} failed (exit {proc.returncode}): {last[0][:200]}", f"see {log}")
    return proc.stdout


def _build(say: Callable[[str], None]) -> Rootfs:
    start = time.monotonic()
    base = cache_dir()
    log = base / "build.log"
    log.write_text(f"edgeport arm64 rootfs build, recipe {RECIPE}, {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    work = base / f"rootfs.part-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    for stale in base.glob("rootfs.part-*"):  # left by a build that was killed (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        say("  debootstrap (arm64 .debs from the Debian mirror)…")
        cmd = ["debootstrap", "--foreign", "--arch=arm64", "--variant=minbase", f"--include={','.join(DEBS)}",
               SUITE, str(work), mirror()]
        if os.geteuid() != 0:
            if shutil.which("fakeroot") is None:
                raise RuntimeMissing("debootstrap needs root or fakeroot", "run as root, or apt-get install fakeroot")
            cmd = ["fakeroot", *cmd]
        run_logged(cmd, log, "debootstrap")
        archives = sorted((work / "var" / "cache" / "apt" / "archives").glob("*.deb"))
        say(f"  unpacking {len(archives)} packages…")
        debs = []
        for deb in archives:
            run_logged(["dpkg-deb", "-x", str(deb), str(work)], log, f"dpkg-deb -x {deb.name}")
            debs.append(deb.name)
        for deb in archives:
            deb.unlink()
        say("  aarch64 wheels (numpy, onnxruntime, ai-edge-litert) from PyPI…")
        wanted = wanted_wheels()
        installed = _install_wheels(work / GUEST_SITE.lstrip("/"), wanted, log)
        say("  checking the guest Python under qemu and byte-compiling it…")
        guest = _check_guest(work, log)
        stamp = {
            "recipe": RECIPE, "suite": SUITE, "arch": "arm64", "mirror": mirror(), "debs": debs,
            "wanted": wanted, "wheels": installed, "guest": guest,
            "qemu": _qemu_version(), "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        final = base / "rootfs"
        if final.exists():
            old = base / f"rootfs.old-{os.getpid()}"
            final.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        work.rename(final)
        stamp["build_seconds"] = round(time.monotonic() - start, 1)
        write_text(_stamp_path(), json.dumps(stamp, indent=2))
        say(f"  arm64 userland ready in {stamp['build_seconds']:.0f} s ({final})")
        return Rootfs(final, stamp)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def _install_wheels(target: Path, wanted: dict[str, str], log: Path) -> dict[str, str]:
    """pip on the host installs aarch64 wheels into the guest's site folder; same version as the host, else nearest."""
    platforms = [a for p in AARCH64_PLATFORMS for a in ("--platform", p)]
    base = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(target),
            "--only-binary=:all:", *platforms, "--python-version", GUEST_PYTHON, "--implementation", "cp",
            "--abi", "cp" + GUEST_PYTHON.replace(".", "")]
    exact = [f"{d}=={v}" for d, v in wanted.items()]
    try:
        run_logged([*base, *exact], log, "pip install (aarch64 wheels, host versions)")
    except RuntimeMissing:
        near = [f"{d}=={'.'.join(v.split('.')[:2])}.*" for d, v in wanted.items()]
        shutil.rmtree(target, ignore_errors=True)
        run_logged([*base, *near], log, "pip install (aarch64 wheels, nearest versions)")
    got = {}
    for dist in wanted:
        prefix = dist.replace("-", "_")
        infos = sorted(target.glob(f"{prefix}-*.dist-info"))
        got[dist] = infos[0].name[len(prefix) + 1 : -len(".dist-info")] if infos else "?"
    return got


def _check_guest(root: Path, log: Path) -> dict:
    """Byte-compile the guest's Python files, then import the runtimes in the guest (fake Cortex-A72 cpuinfo)."""
    if sys.version_info[:2] == tuple(int(v) for v in GUEST_PYTHON.split(".")):
        # On the host, into the rootfs: the guest must never write .pyc itself, because under qemu -L a file
        # that does not exist in the rootfs yet is created on the HOST at the same path.
        with contextlib.suppress(RuntimeMissing):  # a few test/data files in the stdlib never compile; fine
            run_logged([sys.executable, "-m", "compileall", "-q", "-j", "0", str(root / f"usr/lib/python{GUEST_PYTHON}"),
                  str(root / GUEST_SITE.lstrip("/"))], log, "byte-compiling the guest Python")
    view = core_view(root, "cortex-a72")
    probe = ("import json, platform, numpy, onnxruntime, ai_edge_litert.interpreter as i; print(json.dumps({"
             "'python': platform.python_version(), 'machine': platform.machine(), 'numpy': numpy.__version__, "
             "'onnxruntime': onnxruntime.__version__}))")
    try:
        out = run_logged(guest_command(root, view, ["-c", probe]), log, "importing the runtimes in the guest",
                   env=guest_env("cortex-a72", threads=1))
    finally:
        shutil.rmtree(view, ignore_errors=True)
    return json.loads(out.strip().splitlines()[-1])


def _qemu_version() -> str:
    try:
        out = subprocess.run(["qemu-aarch64", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "?"
    return out.splitlines()[0] if out else "?"


# --- running the userland's Python under qemu-user (used by the qemu-pi4/pi5 devices too) ------------------

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
    views = cache_dir() / "views"
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
        "PYTHONPATH": GUEST_SITE, "PYTHONHASHSEED": "0",
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
    return [*cmd, str(root / "usr" / "bin" / f"python{GUEST_PYTHON}"), "-S", *python_args]
