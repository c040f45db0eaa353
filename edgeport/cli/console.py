"""The consoles commands print to: 120 columns at least when output goes to a file or CI log (rich
would assume 80 and cut the parity table), the terminal's own width otherwise."""

from __future__ import annotations

from rich.console import Console

LOG_WIDTH = 140


def make(stderr: bool = False) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:
        console = Console(stderr=stderr, highlight=False, width=LOG_WIDTH)
    return console
