"""``gitops publish`` over git's smart HTTP protocol (``git http-backend`` behind a server on
127.0.0.1 that asks for Basic auth): the shallow clone + push path, a wrong password and a
read-only account each stop with exit 2, without retrying and without touching the remote."""

from __future__ import annotations

import base64
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from modelops.gitops.gitrepo import ensure_bare_remote
from tests.func.test_gitops_publish import (
    folder,
    gitops,
    head,
    rgit,
    trailers,
    tree_files,
    write_rendered,
)

USERS = {"writer": "s3cret-writer", "reader": "s3cret-reader"}
WRITERS = {"writer"}


def _backend() -> str:
    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True,
                               check=True).stdout.strip()
    path = Path(exec_path) / "git-http-backend"
    if not path.exists():
        from tests.conftest import in_ci

        if in_ci():
            pytest.fail("git-http-backend is not installed with git; CI must have it",
                        pytrace=False)
        pytest.skip("git-http-backend is not installed with git")
    return str(path)


class GitHTTP(BaseHTTPRequestHandler):
    root: Path
    backend: str
    log: list[tuple[str, str, int]]
    faults: list[tuple[str, str]]  # (method, path part): answer the next match with a 502
    run_as: int | None = None  # uid (and gid) git http-backend runs as, when root starts it
    server_home: str | None = None  # its HOME (a .gitconfig trusting the repositories)

    def log_message(self, format, *args):  # noqa: A002 - quiet
        pass

    def _user(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return None
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        return user if USERS.get(user) == password else None

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        body = self._body() if self.command == "POST" else b""
        user = self._user()
        writing = "git-receive-pack" in path or "service=git-receive-pack" in query
        fault = next((f for f in self.faults if f[0] == self.command and f[1] in self.path),
                     None)
        if fault is not None:
            self.faults.remove(fault)
            code = 502
            self._answer(502, b"bad gateway\n")
        elif user is None:
            code = 401
            self._answer(401, b"auth required\n", {"WWW-Authenticate": 'Basic realm="git"'})
        elif writing and user not in WRITERS:
            code = 403
            self._answer(403, b"read-only account\n")
        else:
            env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.root),
                   "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
                   "REQUEST_METHOD": self.command, "REMOTE_USER": user,
                   "REMOTE_ADDR": "127.0.0.1", "CONTENT_LENGTH": str(len(body)),
                   "CONTENT_TYPE": self.headers.get("Content-Type", "")}
            for header in ("Content-Encoding", "Git-Protocol"):
                if self.headers.get(header):
                    env["HTTP_" + header.upper().replace("-", "_")] = self.headers[header]
            if self.server_home is not None:  # the server's own account, not the test's
                env["HOME"] = self.server_home
            out = subprocess.run([self.backend], input=body, env=env, capture_output=True,
                                 check=False, user=self.run_as, group=self.run_as).stdout
            head_, _, payload = out.partition(b"\r\n\r\n")
            if not payload and b"\n\n" in out:
                head_, _, payload = out.partition(b"\n\n")
            headers, code = {}, 200
            for line in head_.decode().splitlines():
                k, _, v = line.partition(":")
                if k.lower() == "status":
                    code = int(v.split()[0])
                else:
                    headers[k] = v.strip()
            self._answer(code, payload, headers)
        self.log.append((self.command, self.path, code))

    do_GET = do_POST = _serve


@pytest.fixture
def git_http(tmp_path, git_env):
    root = tmp_path / "srv"
    remote = ensure_bare_remote(root / "gitops.git")
    subprocess.run(["git", "config", "http.receivepack", "true"], cwd=remote, check=True)

    class Handler(GitHTTP):
        pass

    Handler.root, Handler.backend, Handler.log, Handler.faults = root, _backend(), [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]

    def url(user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{port}/gitops.git"

    try:
        yield remote, url, Handler.log, Handler.faults
    finally:
        server.shutdown()
        server.server_close()


def test_publish_over_http_shallow_clone_push_and_noop(git_http, tmp_path):
    remote, url, log, _faults = git_http
    writer = url("writer", USERS["writer"])
    for version in ("v1", "v2"):
        out = write_rendered(tmp_path / version, {"staging/m": folder("m", version)})
        proc = gitops("publish", "--rendered-dir", str(out), "--gitops-repo", writer,
                      cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert USERS["writer"] not in proc.stderr + proc.stdout, "the password was printed"
    main = head(remote)
    assert trailers(remote, main)["Model-Version"] == "v2"
    assert {k[len("staging/m/"):]: v for k, v in tree_files(remote, main, "staging/m").items()} \
        == folder("m", "v2")
    pushes = sum(1 for m, p, c in log if m == "POST" and p.endswith("git-receive-pack"))
    again = gitops("publish", "--rendered-dir", str(tmp_path / "v2"), "--gitops-repo", writer,
                   cwd=tmp_path)
    assert again.returncode == 0 and "no change" in again.stdout
    assert sum(1 for m, p, c in log if m == "POST" and p.endswith("git-receive-pack")) == pushes


def test_wrong_password_stops_with_exit_2_and_hides_the_password(git_http, tmp_path):
    remote, url, log, _faults = git_http
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v1")})
    proc = gitops("publish", "--rendered-dir", str(out), "--gitops-repo",
                  url("writer", "wrong-password"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "credentials" in proc.stderr
    assert "wrong-password" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert head(remote) is None
    assert all(c == 401 for _m, _p, c in log)
    assert len(log) <= 3, "an auth error must not be retried"


def test_read_only_account_cannot_push_and_nothing_is_retried(git_http, tmp_path):
    remote, url, log, _faults = git_http
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v1")})
    proc = gitops("publish", "--rendered-dir", str(out), "--gitops-repo",
                  url("reader", USERS["reader"]), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "403" in proc.stderr and "credentials" in proc.stderr
    assert head(remote) is None
    refused = [entry for entry in log if entry[2] == 403]
    assert len(refused) == 1, log
    assert not any(m == "POST" and p.endswith("git-receive-pack") for m, p, _c in log)


def test_history_and_rollback_over_http_use_a_partial_clone(git_http, tmp_path):
    remote, url, log, _faults = git_http
    writer = url("writer", USERS["writer"])
    for version in ("v1", "v2"):
        out = write_rendered(tmp_path / version, {"staging/m": folder("m", version)})
        assert gitops("publish", "--rendered-dir", str(out), "--gitops-repo", writer,
                      cwd=tmp_path).returncode == 0
    hist = gitops("history", "--env", "staging", "--model", "m", "--json", "--gitops-repo",
                  writer, cwd=tmp_path)
    assert hist.returncode == 0, hist.stderr
    import json

    assert [d["version"] for d in json.loads(hist.stdout)] == ["v1", "v2"]
    back = gitops("rollback", "--env", "staging", "--model", "m", "--gitops-repo", writer,
                  cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    main = head(remote)
    assert trailers(remote, main)["Model-Version"] == "v1"
    assert {k[len("staging/m/"):]: v for k, v in tree_files(remote, main, "staging/m").items()} \
        == folder("m", "v1")


def test_server_errors_are_retried_and_the_publish_lands_once(git_http, tmp_path):
    remote, url, log, faults = git_http
    writer = url("writer", USERS["writer"])
    faults += [("GET", "service=git-upload-pack"), ("POST", "/git-receive-pack")]
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v1")})
    proc = gitops("publish", "--rendered-dir", str(out), "--gitops-repo", writer, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cloning: attempt 1/3 failed" in proc.stderr
    assert "pushing: attempt 1/3 failed" in proc.stderr
    assert proc.stderr.count("retrying in") == 2
    assert faults == []
    assert rgit(remote, "rev-list", "--count", "refs/heads/main") == "1"
    assert trailers(remote, head(remote))["Model-Version"] == "v1"


def test_a_server_that_keeps_failing_gives_up_with_exit_2(git_http, tmp_path):
    remote, url, log, faults = git_http
    faults += [("GET", "service=git-upload-pack")] * 10
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v1")})
    proc = gitops("publish", "--rendered-dir", str(out), "--gitops-repo",
                  url("writer", USERS["writer"]), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "502" in proc.stderr and "run the command again" in proc.stderr
    assert len(faults) == 10 - 3, "three attempts, then stop"
    assert head(remote) is None
