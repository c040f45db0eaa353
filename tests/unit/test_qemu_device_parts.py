"""Pieces of the qemu-pi4/qemu-pi5 devices that need no emulator: device names, the fake cpuinfo, the
-L view, the plugin's count file, the guest environment."""

from __future__ import annotations

import pytest

from edgeport.benchmark import qemu
from edgeport.benchmark.devices import parse_device
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


def test_missing_host_tools_name_the_apt_packages(monkeypatch):
    from edgeport.benchmark import arm_rootfs
    from edgeport.errors import EXIT_RUNTIME, RuntimeMissing

    monkeypatch.setattr(arm_rootfs.shutil, "which", lambda exe: None if exe in ("debootstrap", "qemu-aarch64") else "/bin/x")
    with pytest.raises(RuntimeMissing) as info:
        arm_rootfs.require_tools(arm_rootfs.HOST_TOOLS)
    assert info.value.exit_code == EXIT_RUNTIME
    assert "debootstrap qemu-user" in info.value.message and "apt-get install" in info.value.hint


def test_stamp_decides_whether_the_cache_is_current(tmp_path, monkeypatch):
    import json

    from edgeport.benchmark import arm_rootfs

    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path))
    base = arm_rootfs.cache_dir()
    assert arm_rootfs.current() is None  # nothing built
    (base / "rootfs/usr/bin").mkdir(parents=True)
    (base / "rootfs/usr/bin/python3.11").write_text("")
    stamp = {"recipe": arm_rootfs.RECIPE, "wanted": arm_rootfs.wanted_wheels(), "build_seconds": 12.5}
    (base / "stamp.json").write_text(json.dumps(stamp))
    found = arm_rootfs.current()
    assert found is not None and found.build_seconds == 12.5
    (base / "stamp.json").write_text(json.dumps({**stamp, "wanted": {**stamp["wanted"], "numpy": "0.0"}}))
    assert arm_rootfs.current() is None  # the host's numpy changed: rebuild
    (base / "stamp.json").write_text(json.dumps({**stamp, "recipe": arm_rootfs.RECIPE + 1}))
    assert arm_rootfs.current() is None


def test_second_builder_waits_for_the_lock(tmp_path, monkeypatch):
    import threading

    from edgeport.benchmark import arm_rootfs

    monkeypatch.setenv("EDGEPORT_CACHE", str(tmp_path))
    held, release = threading.Event(), threading.Event()

    def holder():
        with arm_rootfs.rootfs_lock(lambda msg: None):
            held.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(30)
    said = []

    def on_wait(msg):
        said.append(msg)
        release.set()  # let the holder go once we are known to be waiting

    with arm_rootfs.rootfs_lock(on_wait):
        pass
    t.join(30)
    assert said and "another edgeport process is building" in said[0]
