"""The ``edgeport`` command: a typer app whose commands live one per module in this package."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from edgeport import __version__
from edgeport.errors import EXIT_INTERNAL, EXIT_USER, EdgeportError

app = typer.Typer(
    name="edgeport",
    help="Take efficient PyTorch vision models to edge devices: fuse, quantize, export, validate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgeport {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """edgeport: fusion, int8 quantization, ONNX/TFLite export, parity and latency validation."""


_registered = False


def _register_commands() -> None:
    global _registered
    if _registered:
        return
    from edgeport.cli import bench_cmd, eval_cmd, export_cmd, inspect_cmd, models_cmd, validate_cmd

    for module in (models_cmd, export_cmd, validate_cmd, eval_cmd, bench_cmd, inspect_cmd):
        module.register(app)
    from edgeport.cli import ci_cmd, recipe_cmd, report_cmd, run_cmd  # run / recipe new / report merge / ci matrix

    for module in (run_cmd, recipe_cmd, report_cmd, ci_cmd):
        module.register(app)
    from edgeport.cli import arm_cmd  # edgeport arm setup (qemu-pi4/pi5 userland)

    arm_cmd.register(app)
    from edgeport.cli import quantize_cmd  # edgeport quantize [--compare-methods]

    quantize_cmd.register(app)
    _registered = True


def report_error(exc: EdgeportError) -> int:
    """One line on stderr: what was wrong and, where known, what to do. Returns the exit code."""
    hint = f" — {exc.hint}" if exc.hint else ""
    # the message is plain text: brackets in it ('edgeport[tflite]', a layer [0]) are not rich markup
    err_console.print(f"[bold red]error:[/] {escape(exc.message + hint)}", markup=True, highlight=False)
    return exc.exit_code


def main() -> None:
    _register_commands()
    try:
        app()
    except EdgeportError as exc:
        sys.exit(report_error(exc))
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    except MemoryError:
        err_console.print("[bold red]error:[/] out of memory — try a smaller --input-shape or batch")
        sys.exit(EXIT_USER)
    except Exception as exc:  # noqa: BLE001 - the last resort: no traceback on the terminal, ever
        sys.exit(report_internal(exc))


def report_internal(exc: BaseException) -> int:
    """An exception no layer turned into a typed error (a bug in edgeport, or a library failing in a way we have
    not met): one line naming it, the traceback kept in a file for the bug report. Returns EXIT_INTERNAL."""
    import tempfile
    import traceback

    with tempfile.NamedTemporaryFile("w", prefix="edgeport-crash-", suffix=".log", delete=False) as log:
        traceback.print_exception(exc, file=log)
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    err_console.print(f"[bold red]error:[/] {escape(f'internal error: {type(exc).__name__}: {first}')} — "
                      f"{escape(f'this is a bug in edgeport; please report it with {log.name}')}", markup=True, highlight=False)
    return EXIT_INTERNAL
