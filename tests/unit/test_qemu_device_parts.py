"""Pieces of the qemu-pi4/qemu-pi5 devices that need no emulator: device names, the fake cpuinfo, the
-L view, the plugin's count file, the guest environment."""

from __future__ import annotations

import pytest

from edgeport.bench import qemu
from edgeport.bench.devices import parse_device
from edgeport.errors import UsageError, UserError


def test_device_names():
    assert parse_device("qemu-pi4").kind == "qemu-pi4" and parse_device("QEMU-PI5").kind == "qemu-pi5"
    with pytest.raises(UsageError, match="qemu-pi4, qemu-pi5"):
        parse_device("qemu-max")
    assert qemu.CORES == {"qemu-pi4": "cortex-a72", "qemu-pi5": "cortex-a76"}
    with pytest.raises(UserError):
        qemu.QemuDevice("qemu-max")
    with pytest.raises(UserError):
        qemu.guest_env("max", 1)  # never QEMU_CPU=max: wrong int8 results


def test_cpuinfo_for_each_core():
    a72 = qemu.cpuinfo_text("cortex-a72", 4)
    assert a72.count("processor\t:") == 4 and "CPU part\t: 0xd08" in a72 and "asimddp" not in a72
    a76 = qemu.cpuinfo_text("cortex-a76", 1)
    assert "CPU part\t: 0xd0b" in a76 and "asimddp" in a76 and "CPU implementer\t: 0x41" in a76


def test_view_shadows_cpuinfo_but_not_host_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "rootfs"
    for name in ("usr", "etc", "lib", "proc", "sys", "tmp", "dev"):
        (root / name).mkdir(parents=True)
    view = qemu.core_view(root, "cortex-a76")
    names = {p.name for p in view.iterdir()}
    assert names == {"usr", "etc", "lib", "proc"}
    assert (view / "usr").resolve() == (root / "usr").resolve()
    assert "0xd0b" in (view / "proc" / "cpuinfo").read_text()
    env = qemu.guest_env("cortex-a76", 1)
    assert env["QEMU_CPU"] == "cortex-a76" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    cmd = qemu.guest_command(root, view, ["-c", "pass"], plugin=tmp_path / "p.so", counts=tmp_path / "c.txt")
    assert cmd[:3] == ["qemu-aarch64", "-L", str(view)] and "-S" in cmd and f"{tmp_path / 'p.so'},out={tmp_path / 'c.txt'}" in cmd


def test_parse_counts_pairs_marks():
    total, per = qemu.parse_counts("total 1000\nmark 100\nmark 350\nmark 400\nmark 651\n")
    assert total == 1000 and per == [250, 251]
    assert qemu.parse_counts("total 5\n") == (5, [])
