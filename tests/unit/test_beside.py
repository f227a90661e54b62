"""``modelops.beside``: work in a forked child, its value and its output back in the parent,
and the caller's own run of it whenever the child cannot be trusted to have done it."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

from modelops import beside

pytestmark = pytest.mark.skipif(not hasattr(os, "fork") or sys.platform == "darwin",
                                reason="fork is the point of these tests (Linux runners)")


@pytest.fixture(autouse=True)
def _fork_allowed(monkeypatch, request):
    """Fork allowed; threads another test left behind (idle servers of the test process) are
    not counted, except by the test of that rule."""
    monkeypatch.delenv(beside.DISABLE_ENV, raising=False)
    if request.node.originalname != "test_no_fork_while_another_thread_runs":
        monkeypatch.setattr(beside, "_other_threads", lambda: 0)


def test_the_value_comes_from_a_child_and_what_it_printed_comes_after(capsys):
    parent = os.getpid()

    def work():
        print("child says hello")
        print("and on stderr", file=sys.stderr)
        return {"pid": os.getpid(), "rows": list(range(5))}

    pending = beside.start(work)
    assert pending.forked
    print("parent goes on")
    value = pending.result()
    assert value["pid"] != parent and value["rows"] == [0, 1, 2, 3, 4]
    out, err = capsys.readouterr()
    assert out == "parent goes on\n"
    assert err == "child says hello\nand on stderr\n"


def test_the_child_runs_while_the_parent_works(tmp_path):
    """The child is at work before the parent asks for its value: it says so with a file the
    parent waits for first (a child that ran only when asked would never write it in time)."""
    started = tmp_path / "child-started"

    def work():
        started.write_text("started")
        return "done"

    pending = beside.start(work)
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert started.exists(), "the child did not run beside the parent"
    assert pending.result() == "done"


@pytest.mark.parametrize("work", [
    lambda: 1 / 0,                      # an exception
    lambda: threading.Lock(),           # a value that does not pickle
    lambda: os._exit(7),                # a child that dies
], ids=["raises", "unpicklable", "dies"])
def test_a_failed_child_gives_none_and_prints_nothing(work, capsys):
    pending = beside.start(work)
    assert pending.forked
    assert pending.result() is None
    assert capsys.readouterr().err == ""


def test_without_fork_the_work_runs_in_the_caller_when_asked(monkeypatch):
    monkeypatch.setenv(beside.DISABLE_ENV, "1")
    ran = []
    pending = beside.start(lambda: ran.append(os.getpid()) or "value")
    assert not pending.forked and ran == []
    assert pending.result() == "value" and ran == [os.getpid()]
    with pytest.raises(ZeroDivisionError):
        beside.start(lambda: 1 / 0).result()


def test_no_fork_while_another_thread_runs():
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        assert not beside.can_fork()
        assert not beside.start(lambda: 1).forked
    finally:
        stop.set()
        other.join()
    assert beside.can_fork() == (threading.active_count() == 1)


def test_cancel_stops_the_child_and_the_value_cannot_be_taken_twice():
    pending = beside.start(lambda: time.sleep(30))
    started = time.monotonic()
    pending.cancel()
    assert time.monotonic() - started < 5
    assert not pending._process.is_alive()
    done = beside.start(lambda: 2)
    assert done.result() == 2
    with pytest.raises(RuntimeError):
        done.result()
