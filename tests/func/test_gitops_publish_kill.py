"""A publisher killed with SIGKILL before, during and after the push: the remote branch is
either unchanged or at the complete new commit; the repository stays sound (``git fsck``); and
what the killed run left (its temporary clone, the remote's push quarantine) is gone after the
next run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelops.gitops.publish import publish
from tests.func.test_gitops_publish import (
    cli_env,
    folder,
    fsck,
    head,
    hooks_env,
    quiet,
    rgit,
    trailers,
    tree_files,
    write_hook,
    write_rendered,
)

PY = sys.executable


def start(args: list[str], cwd: Path, env: dict) -> subprocess.Popen:
    """Start ``modelops-gitops ...`` in its own process group (git and hooks included), with
    its temporary folders under ``cwd/tmp``."""
    (cwd / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen([PY, "-m", "modelops.gitops", *args], cwd=cwd,
                            env={**env, "TMPDIR": str(cwd / "tmp")},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def leftovers(tmp_path: Path, remote: Path) -> list[str]:
    """Temporary clones and push quarantines of killed runs."""
    temp = sorted(p.name for p in (tmp_path / "tmp").glob("modelops-gitops-*"))
    return temp + sorted(p.name for p in (remote / "objects").glob("*incoming-*"))


def publish_again(remote: Path, tmp_path: Path, version: str) -> None:
    """The next run, with the same temporary folder as the killed one."""
    publish(str(remote), {"staging/m": folder("m", version)}, message=f"{version}\n",
            log=quiet, workdir=tmp_path / "tmp")


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"the publisher ended (exit {proc.returncode}) too early"
        assert time.monotonic() < end, f"{path} did not appear"
        time.sleep(0.02)


def objects(remote: Path) -> dict[str, str]:
    out = rgit(remote, "count-objects", "-v")
    return {k: v for k, v in (line.split(": ") for line in out.splitlines())
            if k in ("count", "in-pack")}


@pytest.fixture
def seeded(tmp_path, git_env) -> tuple[Path, str]:
    from modelops.gitops.gitrepo import ensure_bare_remote

    remote = ensure_bare_remote(tmp_path / "remote.git")
    publish(str(remote), {"staging/m": folder("m", "v1")}, message="v1\n", log=quiet)
    return remote, head(remote)


def published_folder(remote: Path, rev: str) -> dict[str, bytes]:
    return {k[len("staging/m/"):]: v for k, v in tree_files(remote, rev, "staging/m").items()}


def test_killed_before_the_push_leaves_the_remote_unchanged(seeded, tmp_path):
    remote, before = seeded
    marker = tmp_path / "at-pre-push"
    write_hook(tmp_path / "hooks" / "pre-push", f'touch "{marker}"\nsleep 60\n')
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v2")})
    counts = objects(remote)
    proc = start(["publish", "--rendered-dir", str(out), "--gitops-repo", str(remote)],
                 tmp_path, hooks_env(tmp_path / "hooks"))
    wait_for(marker, proc)
    kill_group(proc)
    assert head(remote) == before
    assert objects(remote) == counts
    fsck(remote)
    assert leftovers(tmp_path, remote), "the killed run left its clone (what this test checks)"
    # and the next publish works normally, removing what the killed one left
    publish_again(remote, tmp_path, "v2")
    assert published_folder(remote, head(remote)) == folder("m", "v2")
    assert leftovers(tmp_path, remote) == []


def test_killed_during_the_push_leaves_the_remote_unchanged(seeded, tmp_path):
    """The remote's pre-receive hook runs after the pack arrived and before the ref moves:
    killing the publisher there (git push, receive-pack and the hook) must change nothing."""
    remote, before = seeded
    marker = tmp_path / "at-pre-receive"
    write_hook(remote / "hooks" / "pre-receive", f'cat >/dev/null\ntouch "{marker}"\nsleep 60\n')
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v2")})
    counts = objects(remote)
    proc = start(["publish", "--rendered-dir", str(out), "--gitops-repo", str(remote)],
                 tmp_path, cli_env())
    wait_for(marker, proc)
    kill_group(proc)
    (remote / "hooks" / "pre-receive").unlink()
    assert head(remote) == before
    assert objects(remote) == counts, "objects of the killed push leaked into the remote"
    fsck(remote)
    assert any("incoming-" in name for name in leftovers(tmp_path, remote)), \
        "the killed receive-pack left its quarantine (what this test checks)"
    publish_again(remote, tmp_path, "v2")
    assert published_folder(remote, head(remote)) == folder("m", "v2")
    assert leftovers(tmp_path, remote) == []


def test_killed_after_the_ref_moved_leaves_the_whole_commit(seeded, tmp_path):
    remote, before = seeded
    marker = tmp_path / "at-post-receive"
    write_hook(remote / "hooks" / "post-receive",
               f'cat >/dev/null\ntouch "{marker}"\nsleep 60\n')
    out = write_rendered(tmp_path / "out", {"staging/m": folder("m", "v2")})
    proc = start(["publish", "--rendered-dir", str(out), "--gitops-repo", str(remote)],
                 tmp_path, cli_env())
    wait_for(marker, proc)
    kill_group(proc)
    (remote / "hooks" / "post-receive").unlink()  # or the next publish waits on its sleep
    after = head(remote)
    assert after != before
    assert rgit(remote, "rev-parse", f"{after}^") == before
    assert published_folder(remote, after) == folder("m", "v2")
    assert trailers(remote, after)["Model-Version"] == "v2"
    fsck(remote)
    publish_again(remote, tmp_path, "v3")
    assert leftovers(tmp_path, remote) == []


@pytest.mark.slow
def test_killed_at_arbitrary_moments_remote_is_old_or_complete(seeded, tmp_path):
    remote, _ = seeded
    # how long one whole publish takes here, to spread the kills over it
    out = write_rendered(tmp_path / "timing", {"staging/m": folder("m", "t")})
    t0 = time.monotonic()
    timing = start(["publish", "--rendered-dir", str(out), "--gitops-repo", str(remote)],
                   tmp_path, cli_env())
    assert timing.wait(timeout=120) == 0
    took = time.monotonic() - t0
    states = {head(remote): folder("m", "t")}
    outcomes = set()
    # None: the last one is killed only after it exited, so at least one run completes
    # however slow a loaded machine makes the others (3x the timing run was not always enough)
    for i, share in enumerate((0.0, 0.2, 0.4, 0.55, 0.7, 0.85, 1.0, 1.5, None)):
        before = head(remote)
        want = folder("m", f"k{i}")
        out = write_rendered(tmp_path / f"out{i}", {"staging/m": want})
        proc = start(["publish", "--rendered-dir", str(out), "--gitops-repo", str(remote)],
                     tmp_path, cli_env())
        if share is None:
            assert proc.wait(timeout=120) == 0
        else:
            time.sleep(share * took)
        kill_group(proc)
        after = head(remote)
        if after == before:
            outcomes.add("unchanged")
            assert published_folder(remote, after) == states[before]
        else:
            outcomes.add("complete")
            assert rgit(remote, "rev-parse", f"{after}^") == before
            assert published_folder(remote, after) == want
            states[after] = want
        fsck(remote)
    # the delays span the whole publish: the first kill lands before the push, the last after
    assert outcomes == {"unchanged", "complete"}, outcomes
    publish_again(remote, tmp_path, "after")
    assert leftovers(tmp_path, remote) == []
