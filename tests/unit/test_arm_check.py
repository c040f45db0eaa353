"""``edgeport arm setup --check``: the qemu devices' requirements, checked without building or downloading."""

from __future__ import annotations

import shutil

import pytest

from edgeport.benchmark import arm_check, arm_rootfs, qemu


def _without(monkeypatch, *gone):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda exe, *a, **k: None if exe in gone else real(exe, *a, **k))


def test_every_tool_the_build_and_the_plugin_need_is_checked():
    names = {r.name for r in arm_check.check().items}
    assert set(arm_rootfs.HOST_TOOLS) | set(qemu.PLUGIN_TOOLS) <= names  # read from where they are defined
    assert {"glib-2.0 headers", "insn_counter.c (plugin source)", "arm64 userland (cache)"} <= names
    assert {f"{d} (host)" for d in arm_rootfs.WHEELS} <= names


def test_a_missing_tool_is_named_with_its_package_and_exits_4(monkeypatch):
    _without(monkeypatch, "qemu-aarch64", "debootstrap")
    pre = arm_check.check()
    assert not pre.ready and [r.name for r in pre.missing][:2] == ["debootstrap", "qemu-aarch64"]
    err = pre.error()
    assert err.exit_code == 4 and "missing debootstrap, qemu-aarch64" in str(err)
    assert "apt-get install debootstrap qemu-user" in err.hint


def test_the_cached_userland_is_reported_not_required(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path))  # an empty cache: nothing built yet
    pre = arm_check.check()
    cache = next(r for r in pre.items if r.name == "arm64 userland (cache)")
    assert not cache.ok and not cache.required and "edgeport arm setup" in cache.detail
    assert cache not in pre.missing


def test_check_command_lists_what_is_missing_and_exits_4_in_one_line(cli, monkeypatch):
    _without(monkeypatch, "gcc")
    res = cli("arm", "setup", "--check")
    assert res.code == 4 and "Traceback" not in res.out + res.err
    assert "missing  gcc: not on PATH (Debian package gcc)" in res.out
    lines = [line for line in res.err.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing gcc" in lines[0] and "apt-get install gcc" in lines[0]


@pytest.mark.skipif(not arm_check.check().ready, reason="this machine lacks a qemu requirement")
def test_check_command_exits_0_when_everything_is_here(cli):
    res = cli("arm", "setup", "--check")
    assert res.code == 0 and "ready:" in res.out and "missing " not in res.out


def test_an_onnx_only_install_is_told_to_add_the_tflite_extra(monkeypatch):
    from importlib import metadata

    real = metadata.version

    def version(dist):
        if dist == "ai-edge-litert":
            raise metadata.PackageNotFoundError(dist)
        return real(dist)

    monkeypatch.setattr(arm_check.metadata, "version", version)
    err = arm_check.check().error()
    assert err is not None and "ai-edge-litert (host)" in str(err) and "pip install 'edgeport[tflite]'" in err.hint
