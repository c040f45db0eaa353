"""``edgeport arm setup --check``: what the qemu-pi4/qemu-pi5 devices need and whether this machine has it, in
well under a second: no build, no download, no emulation.

It reads the requirements from where the build and the run define them (edgeport.benchmark.arm_rootfs: the
host tools of the debootstrap userland and the host wheels the guest mirrors; edgeport.benchmark.qemu: the tools
that build the instruction-counting plugin and its source; edgeport.benchmark.devices: the guest-side runner),
so a requirement added there is checked here. The cached userland is reported but not required: the first
``edgeport arm setup`` or ``bench --device qemu-pi*`` builds it (a few minutes, network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from importlib import metadata

from edgeport.errors import RuntimeMissing


@dataclass(frozen=True)
class Requirement:
    name: str  # what is needed: an executable, a header, a host package, a packaged file
    ok: bool
    detail: str  # where it was found, or what is missing
    install: str | None = None  # how to get it: "apt:<debian package>" or "pip:<requirement>"; None: nothing to install
    required: bool = True  # False: reported only (made on first use)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Preflight:
    items: tuple[Requirement, ...]

    @property
    def missing(self) -> list[Requirement]:
        return [r for r in self.items if r.required and not r.ok]

    @property
    def ready(self) -> bool:
        return not self.missing

    def install_hint(self) -> str:
        apt = sorted({r.install[4:] for r in self.missing if r.install and r.install.startswith("apt:")})
        pip = sorted({r.install[4:] for r in self.missing if r.install and r.install.startswith("pip:")})
        other = [f"reinstall edgeport ({r.detail})" for r in self.missing if not r.install]
        parts = ([f"apt-get install {' '.join(apt)}"] if apt else []) + ([f"pip install {' '.join(pip)}"] if pip else []) + other
        return "; ".join(parts)

    def error(self) -> RuntimeMissing | None:
        """The typed error (exit 4) naming every missing requirement, or None when the devices can be built and run."""
        if self.ready:
            return None
        return RuntimeMissing(f"qemu-pi4/qemu-pi5 cannot run on this machine: missing {', '.join(r.name for r in self.missing)}",
                              self.install_hint())


def _tool(exe: str, package: str) -> Requirement:
    where = shutil.which(exe)
    return Requirement(exe, where is not None, where or f"not on PATH (Debian package {package})", f"apt:{package}")


def _host_wheel(dist: str) -> Requirement:
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        extra = "'edgeport[tflite]'" if dist == "ai-edge-litert" else dist
        return Requirement(f"{dist} (host)", False, f"{dist} is not installed here: the guest gets the host's version",
                           f"pip:{extra}")
    return Requirement(f"{dist} (host)", True, f"{dist} {version}: the guest gets the same aarch64 wheel")


def check() -> Preflight:
    """Every requirement of the qemu devices, checked on this machine without building or downloading anything."""
    from edgeport.benchmark import arm_rootfs, devices, qemu

    tools = {**arm_rootfs.HOST_TOOLS, **qemu.PLUGIN_TOOLS}
    items = [_tool(exe, pkg) for exe, pkg in tools.items()]
    if shutil.which("pkg-config"):
        glib = subprocess.run(["pkg-config", "--exists", "glib-2.0"]).returncode == 0
        items.append(Requirement("glib-2.0 headers", glib, "found by pkg-config" if glib else "pkg-config finds no glib-2.0",
                                 "apt:libglib2.0-dev"))
    else:
        items.append(Requirement("glib-2.0 headers", False, "unknown: pkg-config is missing", "apt:libglib2.0-dev"))
    root = os.geteuid() == 0
    items.append(Requirement("root or fakeroot (debootstrap)", root or shutil.which("fakeroot") is not None,
                             "running as root" if root else (shutil.which("fakeroot") or "not root, and no fakeroot"),
                             "apt:fakeroot"))
    for name, path in (("insn_counter.c (plugin source)", qemu.PLUGIN_SOURCE), ("device_runner.py (guest runner)", devices.RUNNER_SCRIPT)):
        items.append(Requirement(name, path.is_file(), str(path) if path.is_file() else f"{path} is not in the installed package",
                                 None))
    items += [_host_wheel(dist) for dist in arm_rootfs.WHEELS]
    try:
        built = arm_rootfs.current()
    except RuntimeMissing:  # a host wheel is missing: reported above
        built = None
    items.append(Requirement("arm64 userland (cache)", built is not None,
                             str(built.path) if built is not None else
                             f"not built in {arm_rootfs.cache_dir()}: `edgeport arm setup` builds it once (a few minutes, network)",
                             None, required=False))
    return Preflight(tuple(items))
