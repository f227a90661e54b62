"""Work that runs in a forked child process beside the caller's own, for a command whose steps
are independent and each bound to one core (DVC's are: Python under one GIL).

``modelops-ci evaluate`` reads the base and head commits with DVC (the comparison, about 0.45 s
on the example) while it reproduces the pipeline in the workspace (0.8-1.1 s): the comparison
reads git objects and the DVC cache only, so it does not depend on the reproduction, and a
runner has at least two cores. :func:`start` forks after the suite's own imports, which the
child shares copy-on-write; each process imports DVC's repository code as it needs it
(importing it before the fork measured slower: the parent then copies the pages it touches).

The child's value comes back pickled through a pipe; what it printed is captured and printed by
the parent when it takes the value, so the job's log reads in order. There is no fork where
the platform has none, where another thread runs (a fork copies only the calling thread, and
a lock another thread held stays held in the child), or under ``MODELOPS_NO_FORK=1``; then the
work runs in the caller when it asks for the value, which is the serial order. The value is
``None`` when the child failed in any way (an exception, a value that does not pickle, a child
that died): the caller then does the work itself, and its errors are raised where they always
were, exactly as without the child.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

DISABLE_ENV = "MODELOPS_NO_FORK"


def _other_threads() -> int:
    return threading.active_count() - 1


def can_fork() -> bool:
    """Whether :func:`start` would fork here and now."""
    return (hasattr(os, "fork") and sys.platform != "darwin"  # macOS: fork after imports of
            # system frameworks is unsafe, as multiprocessing's own default says
            and _other_threads() == 0 and os.environ.get(DISABLE_ENV) != "1")


class Pending(Generic[T]):
    """The value of work started by :func:`start`."""

    def __init__(self, fn: Callable[[], T], process: Any = None, conn: Any = None) -> None:
        self._fn, self._process, self._conn = fn, process, conn
        self._taken = False

    @property
    def forked(self) -> bool:
        return self._process is not None

    def result(self) -> T | None:
        """The child's value (printing what it printed), or ``None`` when it failed; without a
        child, ``fn()`` run here (its exceptions raised)."""
        if self._taken:
            raise RuntimeError("the value was already taken")
        self._taken = True
        if self._process is None:
            return self._fn()
        try:
            ok, value, printed = self._conn.recv()
        except Exception:  # it died (EOFError), or its value would not unpickle
            ok, value, printed = False, None, ""
        finally:
            self._conn.close()
            self._process.join()
        if printed:
            print(printed, end="", file=sys.stderr, flush=True)
        return value if ok and self._process.exitcode == 0 else None

    def cancel(self) -> None:
        """Stop the child when its value is not wanted (the caller failed first)."""
        if self._process is not None and not self._taken:
            self._taken = True
            self._process.kill()
            self._process.join()
            self._conn.close()


def _child(fn: Callable[[], Any], conn: Any) -> None:
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            value = fn()
        conn.send((True, value, printed.getvalue()))
    except BaseException:  # noqa: BLE001 - any failure: the parent does the work itself
        with contextlib.suppress(Exception):
            conn.send((False, None, ""))
    finally:
        conn.close()


def start(fn: Callable[[], T]) -> Pending[T]:
    """Run ``fn`` in a forked child now (see the module's notes), or later in the caller."""
    if not can_fork():
        return Pending(fn)
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(fn, send), daemon=True)
    sys.stdout.flush()
    sys.stderr.flush()
    process.start()
    send.close()
    return Pending(fn, process, receive)
