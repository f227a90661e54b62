"""``gitops publish`` against real bare repositories: one commit with trailers, no-op, stale
files removed, eight concurrent publishers, a real conflict, a rejected password."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from modelops.errors import ExternalError
from modelops.gitops.gitrepo import ensure_bare_remote
from modelops.gitops.publish import format_message, publish, read_rendered_dir
from modelops.gitops.release import Release
from modelops.gitops.render import render_env
from modelops.settings import load_settings
from tests.conftest import ROOT

PY = sys.executable


# --------------------------------------------------------------------------- helpers

def rgit(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return stdout (stripped)."""
    proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 0, f"git {args} failed: {proc.stderr}"
    return proc.stdout.strip()


def head(remote: Path) -> str | None:
    proc = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "refs/heads/main"],
                          cwd=remote, capture_output=True, text=True)
    return proc.stdout.strip() or None


def tree_files(remote: Path, rev: str, folder: str | None = None,
               manifests: bool = False) -> dict[str, bytes]:
    """Every file at ``rev`` (under ``folder``) with its bytes; each folder's ``managed.json``
    (the publisher's own record, tested in test_gitops_manual_edits.py) only when
    ``manifests``."""
    args = ["ls-tree", "-r", "--name-only", "-z", rev]
    if folder:
        args += ["--", folder + "/"]
    names = [n for n in subprocess.run(["git", *args], cwd=remote, capture_output=True,
                                       check=True).stdout.decode().split("\0") if n
             and (manifests or not n.endswith("/managed.json"))]
    return {n: subprocess.run(["git", "cat-file", "blob", f"{rev}:{n}"], cwd=remote,
                              capture_output=True, check=True).stdout for n in names}


def trailers(remote: Path, rev: str) -> dict[str, str]:
    text = rgit(remote, "log", "-1", "--format=%(trailers:only,unfold)", rev)
    return dict(line.split(": ", 1) for line in text.splitlines() if ": " in line)


def assert_linear(remote: Path) -> None:
    assert rgit(remote, "rev-list", "--merges", "refs/heads/main") == "", "merge commits"
    roots = rgit(remote, "rev-list", "--max-parents=0", "refs/heads/main").split()
    assert len(roots) == 1, "history has more than one root"


def fsck(remote: Path) -> None:
    rgit(remote, "fsck", "--strict", "--no-dangling")


PARAMS = load_settings(ROOT / "params.yaml")


def make_release(model: str, version: str) -> Release:
    return Release(model=model, version=version, sha256="a" * 64, dvc_md5="b" * 32,
                   artifact_uri="s3://models/files/md5/bb/" + "b" * 30,
                   image="ghcr.io/example/modelops-serve:0.1.0",
                   source_repo="https://github.com/example/models", source_commit="c" * 40,
                   dvc_lock_sha256="d" * 64)


def release_json(model: str, version: str) -> bytes:
    return make_release(model, version).to_json()


@functools.lru_cache(maxsize=256)
def _rendered(model: str, version: str, env: str, branch: str) -> tuple[tuple[str, bytes], ...]:
    return tuple(render_env(make_release(model, version), PARAMS, env, branch=branch).items())


def folder(model: str, version: str, env: str = "staging", extra: int = 0,
           branch: str = "main") -> dict[str, bytes]:
    """The folder the real renderer writes for ``model`` ``version`` in ``env`` (the example's
    params.yaml), plus ``extra`` stray files (for library publishes, which take any files)."""
    files = dict(_rendered(model, version, env, branch))
    for i in range(extra):
        files[f"extra-{i}.yaml"] = f"n: {i}\n".encode()
    return files


def write_rendered(root: Path, changes: dict[str, dict[str, bytes]]) -> Path:
    for name, files in changes.items():
        for rel, data in files.items():
            p = root / name / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return root


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    env.pop("GITOPS_REPO", None)
    return env


def gitops(*args: str, cwd: Path, env: dict | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", "modelops.gitops", *args], cwd=cwd, capture_output=True,
                          text=True,
                          env=env or cli_env(), timeout=timeout)


def hooks_env(hooks: Path, **extra: str) -> dict[str, str]:
    """Environment that makes every git the publisher runs use ``hooks`` as its hooks folder."""
    return cli_env(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="core.hooksPath",
                   GIT_CONFIG_VALUE_0=str(hooks), **extra)


def write_hook(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)


@pytest.fixture
def remote(tmp_path, git_env) -> Path:
    return ensure_bare_remote(tmp_path / "remote.git")


def quiet(_line: str) -> None:
    pass


# --------------------------------------------------------------------------- basics

def test_first_publish_creates_default_remote_and_one_commit_with_trailers(tmp_path, git_env):
    rendered = write_rendered(tmp_path / "out", {"staging/digits-cnn": folder("digits-cnn", "v1")})
    work = tmp_path / "checkout"
    work.mkdir()
    proc = gitops("publish", "--rendered-dir", str(rendered), cwd=work)
    assert proc.returncode == 0, proc.stderr
    remote = work / ".gitops-remote"
    assert rgit(remote, "rev-parse", "--is-bare-repository") == "true"
    main = head(remote)
    assert rgit(remote, "rev-list", "--count", main) == "1"
    assert tree_files(remote, main) == {f"staging/digits-cnn/{k}": v for k, v in
                                        folder("digits-cnn", "v1").items()}
    t = trailers(remote, main)
    assert t["Model"] == "digits-cnn" and t["Environment"] == "staging"
    assert t["Model-Version"] == "v1" and t["Model-Sha256"] == "a" * 64
    assert t["Dvc-Lock-Sha256"] == "d" * 64 and t["Source-Commit"] == "c" * 40
    assert t["Image"] == "ghcr.io/example/modelops-serve:0.1.0"
    assert t["Gitops-Action"] == "publish"
    assert main in proc.stdout and "published" in proc.stdout
    fsck(remote)


def test_noop_publish_makes_no_commit_and_exits_0(remote, tmp_path):
    rendered = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v1")})
    first = gitops("publish", "--rendered-dir", str(rendered), "--gitops-repo", str(remote),
                   cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = head(remote)
    again = gitops("publish", "--rendered-dir", str(rendered), "--gitops-repo", str(remote),
                   cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "no change" in again.stdout
    assert head(remote) == before
    assert rgit(remote, "rev-list", "--count", "--all") == "1"


def test_publish_writes_complete_state_stale_files_removed_other_folders_kept(remote):
    first = publish(str(remote), {"staging/m": folder("m", "v1", extra=3),
                                  "production/m": folder("m", "v0", "production")},
                    message="one\n", log=quiet)
    assert first.changed == ["production/m", "staging/m"]
    smaller = folder("m", "v2", extra=1)
    second = publish(str(remote), {"staging/m": smaller}, message="two\n", log=quiet)
    assert second.parent == first.commit
    now = tree_files(remote, head(remote))
    assert {k[len("staging/m/"):]: v for k, v in now.items()
            if k.startswith("staging/m/")} == smaller
    assert {k: v for k, v in now.items() if k.startswith("production/")} == \
        {f"production/m/{k}": v for k, v in folder("m", "v0", "production").items()}
    # one commit per publish, whatever the number of folders
    assert rgit(remote, "rev-list", "--count", "refs/heads/main") == "2"


def test_bad_folder_or_file_names_are_refused_before_any_git_work(remote, tmp_path):
    from modelops.errors import InputError

    for changes in ({"Staging/m": {"a": b""}}, {"staging": {"a": b""}},
                    {"staging/m": {"../x": b""}}, {"staging/m": {".git/config": b""}}):
        with pytest.raises(InputError):
            publish(str(remote), changes, message="x\n", log=quiet)
    assert head(remote) is None
    proc = gitops("publish", "--rendered-dir", str(tmp_path / "missing"), "--gitops-repo",
                  str(remote), cwd=tmp_path)
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_trailer_values_cannot_inject_lines():
    from modelops.errors import InputError

    with pytest.raises(InputError, match="single line"):
        format_message("s", [("Model-Version", "v1\nSigned-off-by: x")])


def test_read_rendered_dir_reads_env_model_layout(tmp_path):
    root = write_rendered(tmp_path / "out", {"staging/a": {"x": b"1", "y": b"2"},
                                             "production/a": {"z": b"3"}})
    assert read_rendered_dir(root) == {"production/a": {"z": b"3"},
                                       "staging/a": {"x": b"1", "y": b"2"}}
    assert read_rendered_dir(root, ["staging"]) == {"staging/a": {"x": b"1", "y": b"2"}}


# --------------------------------------------------------------------------- races

@pytest.mark.slow
def test_eight_concurrent_publishers_all_land_with_linear_history(remote, tmp_path):
    """Eight processes push at the same moment (a pre-push hook holds each one until all eight
    are ready), so seven are rejected in the first round: all must land, nothing lost."""
    n = 8
    publish(str(remote), {"staging/seed": folder("seed", "v0")}, message="seed\n", log=quiet)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    write_hook(tmp_path / "hooks" / "pre-push", f"""\
        touch "{barrier}/$$"
        i=0
        while [ "$(ls "{barrier}" | wc -l)" -lt {n} ] && [ $i -lt 1200 ]; do
            sleep 0.05; i=$((i+1))
        done
        exit 0
        """)
    env = hooks_env(tmp_path / "hooks")
    procs = []
    for i in range(n):
        out = write_rendered(tmp_path / f"out{i}", {f"staging/model-{i}": folder(f"model-{i}",
                                                                                 f"v{i}")})
        procs.append(subprocess.Popen(
            [PY, "-m", "modelops.gitops", "publish", "--rendered-dir", str(out), "--gitops-repo",
             str(remote), "--max-attempts", "12"], cwd=tmp_path, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
    for code, _out, err in results:
        assert code == 0, err
    retried = sum("someone else pushed first" in err for _c, _o, err in results)
    assert retried >= n - 1, "the publishers did not actually race"
    main = head(remote)
    assert rgit(remote, "rev-list", "--count", main) == str(n + 1)
    assert_linear(remote)
    files = tree_files(remote, main)
    for i in range(n):
        want = {f"staging/model-{i}/{k}": v for k, v in folder(f"model-{i}", f"v{i}").items()}
        assert {k: v for k, v in files.items() if k.startswith(f"staging/model-{i}/")} == want
    fsck(remote)


def test_other_folder_pushed_meanwhile_is_kept_and_ours_lands_on_top(remote, tmp_path):
    publish(str(remote), {"staging/a": folder("a", "v1")}, message="a1\n", log=quiet)
    other = write_rendered(tmp_path / "other", {"staging/b": folder("b", "v1")})
    mark = tmp_path / "once"
    write_hook(tmp_path / "hooks" / "pre-push", f"""\
        if [ ! -e "{mark}" ]; then
            touch "{mark}"
            env -u GIT_CONFIG_COUNT -u GIT_CONFIG_KEY_0 -u GIT_CONFIG_VALUE_0 \\
                "{PY}" -m modelops.gitops publish --rendered-dir "{other}" \\
                    --gitops-repo "{remote}" \\
                >/dev/null 2>&1 || exit 1
        fi
        exit 0
        """)
    ours = write_rendered(tmp_path / "ours", {"staging/a": folder("a", "v2")})
    proc = gitops("publish", "--rendered-dir", str(ours), "--gitops-repo", str(remote),
                  cwd=tmp_path, env=hooks_env(tmp_path / "hooks"))
    assert proc.returncode == 0, proc.stderr
    assert "someone else pushed first" in proc.stderr
    files = tree_files(remote, head(remote))
    assert files["staging/a/release.json"] == release_json("a", "v2")
    assert files["staging/b/release.json"] == release_json("b", "v1")
    assert rgit(remote, "rev-list", "--count", "refs/heads/main") == "3"
    assert_linear(remote)


def test_real_conflict_stops_with_exit_2_and_no_force_push(remote, tmp_path):
    publish(str(remote), {"staging/a": folder("a", "v1")}, message="a1\n", log=quiet)
    theirs = write_rendered(tmp_path / "theirs", {"staging/a": folder("a", "v9")})
    mark = tmp_path / "once"
    write_hook(tmp_path / "hooks" / "pre-push", f"""\
        if [ ! -e "{mark}" ]; then
            touch "{mark}"
            env -u GIT_CONFIG_COUNT -u GIT_CONFIG_KEY_0 -u GIT_CONFIG_VALUE_0 \\
                "{PY}" -m modelops.gitops publish --rendered-dir "{theirs}" \\
                    --gitops-repo "{remote}" \\
                >/dev/null 2>&1 || exit 1
        fi
        exit 0
        """)
    ours = write_rendered(tmp_path / "ours", {"staging/a": folder("a", "v2")})
    proc = gitops("publish", "--rendered-dir", str(ours), "--gitops-repo", str(remote),
                  cwd=tmp_path, env=hooks_env(tmp_path / "hooks"))
    assert proc.returncode == 2, proc.stderr
    assert "conflict" in proc.stderr and "staging/a" in proc.stderr
    assert "Traceback" not in proc.stderr
    # their release stays; ours was never forced over it
    main = head(remote)
    assert tree_files(remote, main)["staging/a/release.json"] == release_json("a", "v9")
    assert rgit(remote, "rev-list", "--count", main) == "2"
    for line in rgit(remote, "reflog", "show", "--format=%H %gs", "refs/heads/main"
                     ).splitlines():
        assert "forced" not in line


def test_the_same_release_published_meanwhile_is_a_noop_not_a_conflict(remote, tmp_path):
    publish(str(remote), {"staging/a": folder("a", "v1")}, message="a1\n", log=quiet)
    same = write_rendered(tmp_path / "same", {"staging/a": folder("a", "v2")})
    mark = tmp_path / "once"
    write_hook(tmp_path / "hooks" / "pre-push", f"""\
        if [ ! -e "{mark}" ]; then
            touch "{mark}"
            env -u GIT_CONFIG_COUNT -u GIT_CONFIG_KEY_0 -u GIT_CONFIG_VALUE_0 \\
                "{PY}" -m modelops.gitops publish --rendered-dir "{same}" \\
                    --gitops-repo "{remote}" \\
                >/dev/null 2>&1 || exit 1
        fi
        exit 0
        """)
    proc = gitops("publish", "--rendered-dir", str(same), "--gitops-repo", str(remote),
                  cwd=tmp_path, env=hooks_env(tmp_path / "hooks"))
    assert proc.returncode == 0, proc.stderr
    assert "no change" in proc.stdout
    assert rgit(remote, "rev-list", "--count", "refs/heads/main") == "2"


def test_give_up_after_max_attempts_is_retryable_and_pushes_nothing(remote, tmp_path):
    """A remote that always moves (a hook publishing elsewhere before each push)."""
    publish(str(remote), {"staging/a": folder("a", "v1")}, message="a1\n", log=quiet)
    counter = tmp_path / "n"
    mover = (f"from modelops.gitops.publish import publish; import sys; "
             f"publish({str(remote)!r}, {{'staging/other': {{'f.yaml': sys.argv[1].encode()}}}}, "
             f"message='move\\n', log=lambda _l: None)")
    write_hook(tmp_path / "hooks" / "pre-push", f"""\
        echo x >> "{counter}"
        n=$(wc -l < "{counter}")
        env -u GIT_CONFIG_COUNT -u GIT_CONFIG_KEY_0 -u GIT_CONFIG_VALUE_0 \\
            "{PY}" -c "{mover}" "n: $n" >/dev/null 2>&1 || exit 1
        exit 0
        """)
    ours = write_rendered(tmp_path / "ours", {"staging/a": folder("a", "v2")})
    proc = gitops("publish", "--rendered-dir", str(ours), "--gitops-repo", str(remote),
                  "--max-attempts", "3", cwd=tmp_path, env=hooks_env(tmp_path / "hooks"))
    assert proc.returncode == 2, proc.stderr
    assert "gave up after 3 attempts" in proc.stderr
    assert counter.read_text().count("x") == 3
    files = tree_files(remote, head(remote))
    assert files["staging/a/release.json"] == release_json("a", "v1")


def test_push_refused_by_a_remote_hook_is_not_retried(remote, tmp_path):
    write_hook(remote / "hooks" / "pre-receive", "echo 'protected: no direct pushes' >&2\nexit 1\n")
    with pytest.raises(ExternalError) as info:
        publish(str(remote), {"staging/a": folder("a", "v1")}, message="x\n", log=quiet)
    assert not info.value.retryable
    assert "protected" in str(info.value)
    assert head(remote) is None


def test_a_runner_without_git_identity_commits_as_the_fallback_identity(remote, tmp_path):
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v1")})
    env = {k: v for k, v in cli_env().items() if not k.startswith(("GIT_AUTHOR", "GIT_COMMITTER"))}
    env.update(HOME=str(tmp_path), GIT_CONFIG_NOSYSTEM="1", XDG_CONFIG_HOME=str(tmp_path))
    proc = gitops("publish", "--rendered-dir", str(out), "--gitops-repo", str(remote),
                  cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert rgit(remote, "log", "-1", "--format=%cn <%ce>") == \
        "modelops-gitops <modelops-gitops@users.noreply.invalid>"


@pytest.mark.parametrize("stderr, retryable", [
    ("fatal: Authentication failed for 'https://github.com/o/r.git/'", False),
    ("remote: Permission to o/r.git denied to bot.\nfatal: unable to access "
     "'https://github.com/o/r.git/': The requested URL returned error: 403", False),
    ("git@github.com: Permission denied (publickey).", False),
    ("fatal: could not read Username for 'https://github.com': terminal prompts disabled", False),
    ("fatal: unable to access 'https://github.com/o/r.git/': Could not resolve host: github.com",
     True),
    ("error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502", True),
    ("fatal: the remote end hung up unexpectedly", True),
    ("fatal: '/nowhere' does not appear to be a git repository", False),
])
def test_git_errors_say_whether_a_retry_can_help(stderr, retryable):
    from modelops.git import classify as _classify

    assert _classify(stderr)[0] is retryable


def test_credentials_in_urls_are_redacted():
    from modelops.gitops.gitrepo import redact

    assert redact("cloning https://x-access-token:ghs_abc@github.com/o/r.git failed") == \
        "cloning https://***@github.com/o/r.git failed"
    assert redact("/srv/gitops.git") == "/srv/gitops.git"
