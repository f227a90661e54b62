"""Every network operation is bounded: against a listener on 127.0.0.1 that accepts the
connection and never answers, publish and history end with a clear, retryable error over
git:// (the overall timeout), http:// (git's low-speed limit), ssh:// with OpenSSH
(ConnectTimeout covers the banner exchange) and ssh:// through a custom ssh command (the overall
timeout, and the command is killed with git). The limits are shortened through the documented
environment variables; the subprocess timeout of each run is the hang detector."""

from __future__ import annotations

import os
import socket
import sys
import textwrap
import threading
import time

import pytest

from tests.conftest import require_tool
from tests.func.test_gitops_publish import cli_env, folder, gitops, write_rendered

HANG = 150  # seconds: a run still going after this is hanging (the bounds below are seconds)


@pytest.fixture
def silent():
    """A TCP listener on 127.0.0.1 that accepts connections and never sends a byte."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], held
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def bounded_env(tmp_path, **extra):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    limits = {"MODELOPS_GIT_TIMEOUT": "4", "MODELOPS_GIT_CONNECT_TIMEOUT": "2",
              "MODELOPS_GIT_LOW_SPEED_TIME": "2", **extra}
    return cli_env(HOME=str(home), **limits)


def run(tmp_path, env, *args):
    start = time.monotonic()
    proc = gitops(*args, cwd=tmp_path, env=env, timeout=HANG)
    return proc, time.monotonic() - start


def assert_retryable_stall(proc, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert "cloning: attempt 1/3 failed" in proc.stderr  # retried: a stall is transient
    assert "run the command again" in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


@pytest.fixture
def rendered(tmp_path):
    return write_rendered(tmp_path / "out", {"staging/m": folder("m", "v1")})


@pytest.mark.parametrize("command", ["publish", "history"])
def test_git_protocol_is_bounded_by_the_overall_timeout(silent, tmp_path, rendered, command):
    port, held = silent
    url = f"git://127.0.0.1:{port}/gitops.git"
    args = (["publish", "--rendered-dir", str(rendered)] if command == "publish"
            else ["history", "--env", "staging", "--model", "m"])
    proc, _took = run(tmp_path, bounded_env(tmp_path), *args, "--gitops-repo", url)
    assert_retryable_stall(proc, "did not finish within 4s")
    assert len(held) >= 3, "each attempt connected"


@pytest.mark.parametrize("command", ["publish", "history"])
def test_http_is_bounded_by_the_low_speed_limit(silent, tmp_path, rendered, command):
    port, held = silent
    url = f"http://127.0.0.1:{port}/gitops.git"
    args = (["publish", "--rendered-dir", str(rendered)] if command == "publish"
            else ["history", "--env", "staging", "--model", "m"])
    env = bounded_env(tmp_path, MODELOPS_GIT_TIMEOUT="120")  # the low-speed limit acts first
    proc, _took = run(tmp_path, env, *args, "--gitops-repo", url)
    assert_retryable_stall(proc, "Operation too slow")
    assert len(held) >= 3


def test_ssh_is_bounded_by_connect_timeout_during_the_banner_exchange(silent, tmp_path,
                                                                       rendered):
    require_tool("ssh")
    port, held = silent
    env = bounded_env(tmp_path, MODELOPS_GIT_TIMEOUT="120")  # OpenSSH's own bound acts first
    env.pop("GIT_SSH_COMMAND", None)
    proc, _took = run(tmp_path, env, "publish", "--rendered-dir", str(rendered),
                      "--gitops-repo", f"ssh://git@127.0.0.1:{port}/gitops.git")
    assert_retryable_stall(proc, "banner exchange")
    assert len(held) >= 3


FAKE_SSH = textwrap.dedent("""\
    import os, socket, sys, time
    with open(os.environ["FAKE_SSH_PIDS"], "a") as fh:
        fh.write(f"{os.getpid()}\\n")
    conn = socket.create_connection(("127.0.0.1", int(os.environ["FAKE_SSH_PORT"])))
    while True:  # an ssh that connected and waits for ever, ignoring its stdin
        time.sleep(1)
    """)


def test_a_custom_ssh_command_is_bounded_and_killed_with_git(silent, tmp_path, rendered):
    port, held = silent
    script = tmp_path / "fake_ssh.py"
    script.write_text(FAKE_SSH)
    pids = tmp_path / "pids"
    env = bounded_env(tmp_path, GIT_SSH_COMMAND=f"{sys.executable} {script}",
                      FAKE_SSH_PORT=str(port), FAKE_SSH_PIDS=str(pids))
    proc, _took = run(tmp_path, env, "publish", "--rendered-dir", str(rendered),
                      "--gitops-repo", f"ssh://git@127.0.0.1:{port}/gitops.git")
    assert_retryable_stall(proc, "did not finish within 4s")
    started = [int(p) for p in pids.read_text().split()]
    assert len(started) == 3
    for pid in started:  # git's helpers die with it: nothing is left running
        assert not running(pid), f"the ssh command {pid} outlived git"


def running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting to be reaped does not)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
