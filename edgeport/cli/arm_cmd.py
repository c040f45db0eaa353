"""``edgeport arm setup``: build (once) the arm64 userland and the instruction-counting plugin that
``edgeport bench --device qemu-pi4|qemu-pi5`` runs in, and say what is inside. bench does this itself on
first use; this command lets CI or a user do it up front. ``--check`` only says what is needed and whether this
machine has it (edgeport.benchmark.arm_check): exit 0 when everything to build and run is there, 4 otherwise."""

from __future__ import annotations

import time

import typer

from edgeport.cli.console import make as make_console

console = make_console()
arm_app = typer.Typer(help="arm64 emulation (qemu-pi4 / qemu-pi5 bench devices).", no_args_is_help=True)


@arm_app.command("setup")
def setup(
    check: bool = typer.Option(False, "--check", help="Only say what the qemu devices need and whether this machine has it "
                               "(no build, no download); exit 4 naming what to install."),
) -> None:
    """Build the arm64 Debian userland (~/.cache/edgeport/arm64, apt + PyPI, a few minutes once) and the plugin."""
    from edgeport.benchmark import arm_rootfs, qemu

    if check:
        _check()
        return
    t0 = time.monotonic()
    rootfs = arm_rootfs.ensure(console.print)
    plugin = qemu.ensure_plugin(console.print)
    stamp = rootfs.stamp
    guest = stamp.get("guest", {})
    console.print(f"arm64 userland: {rootfs.path} (Debian {stamp.get('suite')}, Python {guest.get('python')}, "
                  f"{guest.get('machine')})")
    console.print("  wheels: " + ", ".join(f"{k} {v}" for k, v in stamp.get("wheels", {}).items()))
    console.print(f"  built in {rootfs.build_seconds:.0f} s on {stamp.get('built_at')}; {stamp.get('qemu')}")
    console.print(f"  insn plugin: {plugin}")
    console.print(f"ready ({time.monotonic() - t0:.1f} s this time)")


def _check() -> None:
    from edgeport.benchmark import arm_check

    pre = arm_check.check()
    for r in pre.items:
        mark = "ok" if r.ok else ("missing" if r.required else "not yet")
        console.print(f"  {mark:8} {r.name}: {r.detail}", markup=False, highlight=False, soft_wrap=True)
    failure = pre.error()
    if failure is not None:
        raise failure
    console.print("ready: everything qemu-pi4/qemu-pi5 need to build and run is here")


def register(app: typer.Typer) -> None:
    app.add_typer(arm_app, name="arm")
