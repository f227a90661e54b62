"""A release is the whole desired state of a folder: any change (a new serving image, canary
steps, resources under the same model version) is a history interval; rollback restores the
previous published state byte for byte; repeated rollbacks keep going back, ``--undo`` returns;
``rollback --to vN`` works when vN ran several intervals; history stays in order when a
publisher's clock is ahead."""

from __future__ import annotations

import dataclasses
import json

import pytest

from modelops.gitops.gitrepo import ensure_bare_remote
from modelops.gitops.publish import format_message, publish, release_trailers
from modelops.gitops.render import render_env
from tests.func.test_gitops_publish import (
    PARAMS,
    cli_env,
    gitops,
    head,
    make_release,
    quiet,
    rgit,
    trailers,
    tree_files,
)

FOLDER = "production/m"


@pytest.fixture
def remote(tmp_path, git_env):
    return ensure_bare_remote(tmp_path / "remote.git")


def state(version: str, image: str = "ghcr.io/example/modelops-serve:0.1.0", **deploy):
    """The production folder of model ``m`` at ``version`` with ``image`` (and deploy knobs)."""
    release = dataclasses.replace(make_release("m", version), image=image)
    params = PARAMS
    if deploy:
        sections = {**PARAMS.sections,
                    "deploy": dataclasses.replace(PARAMS.deploy, **deploy)}
        params = dataclasses.replace(PARAMS, sections=sections)
    return release, render_env(release, params, "production")


def put(remote, version, env=None, **kw):
    release, files = state(version, **kw)
    result = publish(str(remote), {FOLDER: files}, log=quiet, message=format_message(
        f"publish {version}", [*release_trailers(release, "production"),
                               ("Gitops-Action", "publish")]))
    return result.commit


def now_files(remote, manifests=True):
    return {k.split("/", 2)[2]: v for k, v in
            tree_files(remote, head(remote), FOLDER, manifests=manifests).items()}


def files_at(remote, commit):
    return {k.split("/", 2)[2]: v for k, v in
            tree_files(remote, commit, FOLDER, manifests=True).items()}


def cli(remote, tmp_path, *args, env=None):
    return gitops(*args, "--env", "production", "--model", "m", "--gitops-repo", str(remote),
                  cwd=tmp_path, env=env)


def history(remote, tmp_path):
    proc = cli(remote, tmp_path, "history", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_new_image_under_the_same_version_is_a_new_interval(remote, tmp_path):
    put(remote, "v3")
    a = put(remote, "v4")
    b = put(remote, "v4", image="ghcr.io/example/modelops-serve:0.2.0")
    c = put(remote, "v4", canary=dataclasses.replace(PARAMS.deploy.canary, steps=(
        {"setWeight": 50}, {"pause": {"duration": "1h30m"}}, {"setWeight": 100})))
    deps = history(remote, tmp_path)
    assert [(d["version"], d["commit"]) for d in deps][1:] == [("v4", a), ("v4", b), ("v4", c)]
    assert len({d["state"] for d in deps}) == 4
    assert all(d["until"] == n["since"] for d, n in zip(deps, deps[1:]))


def test_rollback_restores_the_previous_state_byte_for_byte(remote, tmp_path):
    put(remote, "v3")
    a = put(remote, "v4")
    put(remote, "v4", image="ghcr.io/example/modelops-serve:0.2.0")
    proc = cli(remote, tmp_path, "rollback")
    assert proc.returncode == 0, proc.stderr
    assert now_files(remote) == files_at(remote, a)  # v4's first state, not v3
    t = trailers(remote, head(remote))
    assert t["Gitops-Action"] == "rollback" and t["Restores-Commit"] == a
    assert t["Image"] == "ghcr.io/example/modelops-serve:0.1.0"


def test_rollback_to_a_version_that_ran_several_intervals(remote, tmp_path):
    put(remote, "v3")
    a = put(remote, "v4")
    b = put(remote, "v4", image="ghcr.io/example/modelops-serve:0.2.0")
    put(remote, "v5")
    proc = cli(remote, tmp_path, "rollback", "--to", "v4")
    assert proc.returncode == 0, proc.stderr
    assert now_files(remote) == files_at(remote, b)  # v4's latest state
    proc = cli(remote, tmp_path, "rollback", "--to", "v4")  # v4 runs, but another state did too
    assert proc.returncode == 0, proc.stderr
    assert now_files(remote) == files_at(remote, a)
    same = cli(remote, tmp_path, "rollback", "--to", a[:12])  # a commit names one state
    assert same.returncode == 0 and "already runs" in same.stderr
    assert now_files(remote) == files_at(remote, a)


def test_repeated_rollbacks_keep_going_back_and_undo_returns(remote, tmp_path):
    v1, v2, v3 = put(remote, "v1"), put(remote, "v2"), put(remote, "v3")
    assert cli(remote, tmp_path, "rollback").returncode == 0
    assert now_files(remote) == files_at(remote, v2)
    assert cli(remote, tmp_path, "rollback").returncode == 0  # not back to v3
    assert now_files(remote) == files_at(remote, v1)
    last = cli(remote, tmp_path, "rollback")
    assert last.returncode == 2 and "no earlier state" in last.stderr
    undo = cli(remote, tmp_path, "rollback", "--undo")
    assert undo.returncode == 0, undo.stderr
    assert now_files(remote) == files_at(remote, v2)
    assert rgit(remote, "log", "-1", "--format=%s").startswith("undo the rollback m")
    assert cli(remote, tmp_path, "rollback", "--undo").returncode == 0
    assert now_files(remote) == files_at(remote, v1)
    # publishing after a rollback: the next rollback returns to what ran before it
    v4 = put(remote, "v4")
    assert cli(remote, tmp_path, "rollback").returncode == 0
    assert now_files(remote) == files_at(remote, v1)
    assert cli(remote, tmp_path, "rollback", "--to", "v3").returncode == 0
    assert now_files(remote) == files_at(remote, v3)
    deps = history(remote, tmp_path)
    assert [d["version"] for d in deps] == ["v1", "v2", "v3", "v2", "v1", "v2", "v1", "v4", "v1",
                                            "v3"]
    assert deps[7]["commit"] == v4


def test_undo_needs_a_rollback(remote, tmp_path):
    put(remote, "v1")
    put(remote, "v2")
    proc = cli(remote, tmp_path, "rollback", "--undo")
    assert proc.returncode == 2 and "nothing to undo" in proc.stderr


def test_history_stays_in_order_when_a_publishers_clock_is_ahead(remote, tmp_path):
    """A publisher whose clock is an hour ahead, then one with the right clock: no interval
    ends before it starts."""
    import os
    import time

    ahead = time.time() + 3600
    os.environ["GIT_COMMITTER_DATE"] = f"@{int(ahead)} +0000"
    try:
        put(remote, "v1")
    finally:
        del os.environ["GIT_COMMITTER_DATE"]
    put(remote, "v2")
    put(remote, "v3")
    deps = history(remote, tmp_path)
    since = [d["since"] for d in deps]
    assert since == sorted(since)
    for d in deps:
        assert d["until"] is None or d["until"] >= d["since"]
    table = cli(remote, tmp_path, "history", env=cli_env())
    assert table.returncode == 0 and "STATE" in table.stdout.splitlines()[1]
