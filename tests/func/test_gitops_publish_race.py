"""Many publishers behind a slow remote all land (the retry budget is time, with full jitter);
errors no retry can help stop at the first attempt with their cause: a ref the server may not
write ("cannot lock ref ...: Permission denied"), which looks like a lost race but is not."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from modelops.gitops.gitrepo import ensure_bare_remote
from modelops.gitops.publish import publish
from tests.func.test_gitops_publish import (
    PY,
    assert_linear,
    cli_env,
    folder,
    fsck,
    gitops,
    head,
    quiet,
    rgit,
    tree_files,
    write_hook,
    write_rendered,
)
from tests.func.test_gitops_publish_http import USERS, GitHTTP, _backend


@pytest.mark.slow
def test_sixteen_publishers_behind_a_half_second_push_all_land(tmp_path, git_env):
    """A hosted remote takes its time with every push (a pre-receive hook sleeping 0.5 s), so
    sixteen publishers started at once keep losing the race to each other; with a time
    budget and full jitter every one of them lands, with the default settings."""
    n = 16
    remote = ensure_bare_remote(tmp_path / "remote.git")
    publish(str(remote), {"staging/seed": folder("seed", "v0")}, message="seed\n", log=quiet)
    write_hook(remote / "hooks" / "pre-receive", "cat >/dev/null\nsleep 0.5\nexit 0\n")
    procs = []
    for i in range(n):
        out = write_rendered(tmp_path / f"out{i}",
                             {f"staging/model-{i}": folder(f"model-{i}", f"v{i}")})
        procs.append(subprocess.Popen(
            [PY, "-m", "modelops.gitops", "publish", "--rendered-dir", str(out),
             "--gitops-repo", str(remote)], cwd=tmp_path, env=cli_env(), text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = [(p.wait(timeout=900), *p.communicate()) for p in procs]
    for code, _out, err in results:
        assert code == 0, err
    assert sum("someone else pushed first" in err for _c, _o, err in results) >= 1
    main = head(remote)
    assert rgit(remote, "rev-list", "--count", main) == str(n + 1)
    assert_linear(remote)
    files = tree_files(remote, main)
    for i in range(n):
        want = {f"staging/model-{i}/{k}": v for k, v in folder(f"model-{i}", f"v{i}").items()}
        assert {k: v for k, v in files.items() if k.startswith(f"staging/model-{i}/")} == want
    fsck(remote)


# --------------------------------------------------------------------------- permissions

@pytest.fixture
def unwritable_refs(git_env):
    """A GitOps repository behind git's smart HTTP whose server account may add objects but
    not write refs: a server with broken permissions. As root (who may write anything) the
    server runs as nobody; otherwise the refs folder is made read-only."""
    root = Path(tempfile.mkdtemp(prefix="gitops-perm-"))
    root.chmod(0o755)
    remote = ensure_bare_remote(root / "gitops.git")
    subprocess.run(["git", "config", "http.receivepack", "true"], cwd=remote, check=True)
    seed = {"staging/m": folder("m", "v1")}
    publish(str(remote), seed, message="seed\n", log=quiet)
    server_user = 65534 if os.geteuid() == 0 else None
    remote.chmod(0o755)
    for dirpath, dirnames, filenames in os.walk(remote):
        for name in dirnames + filenames:
            os.chmod(os.path.join(dirpath, name),
                     os.stat(os.path.join(dirpath, name)).st_mode | stat.S_IROTH
                     | (stat.S_IXOTH if name in dirnames else 0))
    remote.chmod(0o777)  # temporary files (a shallow push's) may be made
    for dirpath, _dirs, _files in os.walk(remote / "objects"):  # objects may be added
        os.chmod(dirpath, 0o777)
    (remote / "refs" / "heads").chmod(0o555)  # refs may not be written

    class Handler(GitHTTP):
        pass

    Handler.root, Handler.backend, Handler.log, Handler.faults = root, _backend(), [], []
    Handler.run_as = server_user
    home = root / "server-home"
    home.mkdir(mode=0o755)
    (home / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
    (home / ".gitconfig").chmod(0o644)
    Handler.server_home = str(home)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://writer:{USERS['writer']}@127.0.0.1:{server.server_address[1]}/gitops.git"
    try:
        yield remote, url, Handler.log
    finally:
        server.shutdown()
        server.server_close()
        (remote / "refs" / "heads").chmod(0o755)
        shutil.rmtree(root, ignore_errors=True)


def test_a_ref_the_server_may_not_write_fails_at_once_with_its_cause(unwritable_refs,
                                                                     tmp_path):
    remote, url, log = unwritable_refs
    before = head(remote)
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v2")})
    proc = gitops("publish", "--rendered-dir", str(out), "--gitops-repo", url, cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Permission denied" in proc.stderr and "cannot lock ref" in proc.stderr
    assert "may not be written by this account" in proc.stderr
    assert "someone else pushed first" not in proc.stderr and "retrying" not in proc.stderr
    pushes = [p for m, p, _c in log if m == "POST" and p.endswith("git-receive-pack")]
    assert len(pushes) == 1, "a permission error must not be retried"
    assert head(remote) == before
    assert USERS["writer"] not in proc.stderr


def test_a_hook_refusal_fails_at_once_with_the_hooks_message(tmp_path, git_env):
    remote = ensure_bare_remote(tmp_path / "remote.git")
    counter = tmp_path / "calls"
    write_hook(remote / "hooks" / "pre-receive",
               f'echo x >> "{counter}"\necho "GH006: Protected branch update failed" >&2\n'
               "exit 1\n")
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v1")})
    proc = gitops("publish", "--rendered-dir", str(out), "--gitops-repo", str(remote),
                  cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Protected branch update failed" in proc.stderr
    assert "refused the change" in proc.stderr and "retrying" not in proc.stderr
    assert counter.read_text().count("x") == 1
    assert head(remote) is None
