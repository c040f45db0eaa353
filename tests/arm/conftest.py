"""Fixtures of the arm tier shared by several modules."""

from __future__ import annotations

import shutil
import stat

import pytest

from edgeport.benchmark import arm_rootfs, qemu
from tests.cli import local_sshd


@pytest.fixture(scope="module")
def qemu_python(tmp_path_factory):
    rootfs = arm_rootfs.ensure()
    view = qemu.core_view(rootfs.path, "cortex-a72")
    env = qemu.guest_env("cortex-a72", threads=1)
    command = qemu.guest_command(rootfs.path, view, [])
    script = tmp_path_factory.mktemp("qemu_python") / "python-arm64"
    exports = " ".join(f"{k}='{v}'" for k, v in env.items())
    script.write_text("#!/bin/sh\n" + f"export {exports}\n" + "exec " + " ".join(command) + ' "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    yield script
    shutil.rmtree(view, ignore_errors=True)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory):
    why = local_sshd.available()
    assert why is None, why
    server = local_sshd.start(tmp_path_factory.mktemp("sshd_qemu") / "s")
    yield server
    server.stop()
