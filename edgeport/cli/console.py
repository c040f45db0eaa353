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


class StageReporter:
    """Shows the current stage: a rich spinner in a terminal, a timestamped line per stage in a log."""

    def __init__(self, console: Console, first: str):
        import time

        self._time = time.monotonic
        self.console = console
        self.started = self._time()
        self.status = console.status(first) if console.is_terminal else None
        self.update(first)

    def update(self, text: str) -> None:
        if self.status is not None:
            self.status.update(text)
        else:
            self.console.print(f"[{self._time() - self.started:6.1f}s] {text}")

    def __enter__(self) -> "StageReporter":
        if self.status is not None:
            self.status.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.status is not None:
            self.status.__exit__(*exc)
