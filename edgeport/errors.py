"""Typed errors and the exit codes the CLI maps them to.

Exit codes: 0 ok, 1 user error, 2 usage, 3 parity/accuracy threshold failed (or the artifact does not run in its
runtime), 4 runtime or tool missing, 5 internal error (the CLI's last resort: one line, the traceback in a file).
Every error carries a one-line message saying what was wrong and, where we know it, what to do.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_USER = 1
EXIT_USAGE = 2
EXIT_THRESHOLD = 3
EXIT_RUNTIME = 4
EXIT_INTERNAL = 5  # a bug in edgeport (or an unforeseen failure inside a library): one line, traceback in a file

LITERT_HINT = "pip install 'ai-edge-litert==2.3.*' (or 'edgeport[tflite]' to export TFLite too)"
REEXPORT_HINT = "re-export it with `edgeport export` (the file is damaged or another format)"


class EdgeportError(Exception):
    """Base class: a problem we can explain to the user without a stack trace."""

    exit_code = EXIT_USER

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UserError(EdgeportError):
    """Bad input from the user: unknown model, missing file, wrong shape..."""

    exit_code = EXIT_USER


class UsageError(EdgeportError):
    """A malformed command line (bad option value, unknown target)."""

    exit_code = EXIT_USAGE


class BadOption(UsageError, UserError):
    """An option (CLI flag, recipe key or API argument) outside its closed set of values: a usage error
    (exit 2) that ``except UserError`` also catches, since the value came from the user."""


class UnsupportedOp(EdgeportError):
    """The model uses an op that a target cannot express."""

    exit_code = EXIT_USER


class ParityFailed(EdgeportError):
    """An artifact does not compute what the PyTorch model computes, within thresholds."""

    exit_code = EXIT_THRESHOLD


class ArtifactFailed(EdgeportError):
    """An artifact does not run in its own runtime: a kernel refused its inputs (e.g. an int8 DIV whose
    denominator quantizes to zero). Like a failed threshold, the file cannot ship: exit 3."""

    exit_code = EXIT_THRESHOLD


class InternalError(EdgeportError):
    """edgeport broke its own guarantee (e.g. fusion changed what the model computes): a bug to report."""

    exit_code = EXIT_INTERNAL


class RuntimeMissing(EdgeportError):
    """A runtime or tool that this step needs is not installed."""

    exit_code = EXIT_RUNTIME
