"""Temporary folders that a killed process leaves for the next one to remove.

A folder made by :func:`locked_tempdir` has a lock file beside it (``<folder>.lock``) that its
owner holds with ``flock`` for as long as it lives. The kernel drops the lock when the owner
dies, however it dies (SIGKILL included), so :func:`sweep` can tell a leftover (its lock can be
taken) from a folder in use (it cannot) without guessing from ages or process ids, across
processes and containers sharing the folder. Every :func:`locked_tempdir` sweeps its own prefix
first, so leftovers of killed runs disappear on the next run.

Order keeps the pair consistent: the lock file is made (and locked) before the folder and
removed after it, so a folder never exists without its lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK_SUFFIX = ".lock"


def _try_lock(path: Path) -> int | None:
    """An fd holding an exclusive lock on ``path``, or None when someone holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def sweep(base: str | Path, prefix: str) -> list[Path]:
    """Remove folders under ``base`` named ``prefix*`` whose owner is gone; return them."""
    removed: list[Path] = []
    try:
        entries = list(Path(base).iterdir())
    except OSError:
        return removed
    for lock in entries:
        if not (lock.name.startswith(prefix) and lock.name.endswith(LOCK_SUFFIX)):
            continue
        fd = _try_lock(lock)
        if fd is None:
            continue
        try:
            folder = lock.with_name(lock.name[:-len(LOCK_SUFFIX)])
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            lock.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def locked_tempdir(prefix: str, base: str | Path | None = None) -> Iterator[Path]:
    """A new folder ``base/prefix<random>`` removed on exit, and by the next run when this
    process is killed (``base``: the system's temporary folder by default)."""
    parent = Path(base) if base is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    sweep(parent, prefix)
    fd, lock_name = tempfile.mkstemp(prefix=prefix, suffix=LOCK_SUFFIX, dir=parent)
    lock = Path(lock_name)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = lock.with_name(lock.name[:-len(LOCK_SUFFIX)])
        folder.mkdir(mode=0o700)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
