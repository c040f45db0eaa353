"""One writer per output folder: ``edgeport run`` holds fcntl.flock on ``<out>/.edgeport.lock`` so two runs
into the same folder never interleave their artifacts and reports. The kernel drops the lock when the
process dies, so a crashed run never leaves a stale lock behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from edgeport.errors import UserError

LOCK_NAME = ".edgeport.lock"


@contextlib.contextmanager
def locked(out: Path, wait: bool = False) -> Iterator[Path]:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise UserError(f"cannot use {out} as the output folder: {exc.strerror}", "choose a writable --out") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            raise UserError(
                f"{out} is in use by another edgeport run (pid {holder})",
                "wait for it to finish, pass --wait to queue behind it, or choose another --out",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield out
    finally:
        os.close(fd)  # releases the lock
