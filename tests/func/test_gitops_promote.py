"""``gitops promote``, ``rollback`` and ``history`` against real bare repositories, with the
project's renderer; the pull-request path against the GitHub API imitation."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from modelops.gitops.gitrepo import ensure_bare_remote
from modelops.gitops.promote import promote
from modelops.gitops.publish import format_message, params_renderer, publish, release_trailers
from modelops.gitops.release import Release
from tests.conftest import ROOT
from tests.func.test_gitops_publish import gitops, head, quiet, rgit, trailers, tree_files
from tests.github_imitation import github_api  # noqa: F401 - fixture

MODEL = "digits-cnn"
PARAMS = str(ROOT / "params.yaml")


@pytest.fixture(scope="module")
def render():
    return params_renderer(PARAMS)


def release(version: str, digit: str) -> Release:
    return Release(model=MODEL, version=version, sha256=digit * 64, dvc_md5=digit * 32,
                   artifact_uri=f"s3://models/files/md5/{digit * 2}/{digit * 30}",
                   image="ghcr.io/example/modelops-serve:0.1.0",
                   source_repo="https://github.com/octo/models", source_commit=digit * 40,
                   dvc_lock_sha256=digit * 64)


def stage(remote: Path, render, rel: Release) -> str:
    files = dict(render(rel, "staging"))
    result = publish(str(remote), {f"staging/{MODEL}": files},
                     message=format_message(f"publish {rel.version}",
                                            [*release_trailers(rel, "staging"),
                                             ("Gitops-Action", "publish")]), log=quiet)
    return result.commit


def prod_files(remote: Path, rev: str | None = None) -> dict[str, bytes]:
    rev = rev or head(remote)
    return {k.split("/", 2)[2]: v for k, v in
            tree_files(remote, rev, f"production/{MODEL}").items()}


def cli(*args: str, cwd: Path, env: dict | None = None):
    return gitops(*args, "--params", PARAMS, cwd=cwd, env=env)


@pytest.fixture
def remote(tmp_path, git_env) -> Path:
    return ensure_bare_remote(tmp_path / "remote.git")


def test_promote_direct_copies_the_exact_release(remote, tmp_path, render):
    rel = release("v1", "1")
    staged = stage(remote, render, rel)
    proc = cli("promote", "--from", "staging", "--to", "production", "--direct",
               "--gitops-repo", str(remote), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    main = head(remote)
    assert rgit(remote, "rev-parse", f"{main}^") == staged
    files = prod_files(remote)
    assert files == dict(render(rel, "production"))
    assert json.loads(files["release.json"])["sha256"] == "1" * 64
    assert b"ml-production" in files["rollout.yaml"]
    t = trailers(remote, main)
    assert t["Gitops-Action"] == "promote" and t["Environment"] == "production"
    assert t["Model-Sha256"] == "1" * 64 and t["Promoted-From"] == f"staging@{staged}"
    again = cli("promote", "--from", "staging", "--to", "production", "--direct",
                "--gitops-repo", str(remote), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already runs v1" in again.stdout
    assert head(remote) == main


def test_promote_then_rollback_restores_exact_bytes_and_history_follows(remote, tmp_path,
                                                                        render):
    url = str(remote)
    stage(remote, render, release("v1", "1"))
    p1 = promote(url, model=MODEL, source="staging", target="production", render=render,
                 log=quiet).publish.commit
    bytes_v1 = prod_files(remote)
    stage(remote, render, release("v2", "2"))
    p2 = promote(url, model=MODEL, source="staging", target="production", render=render,
                 log=quiet).publish.commit
    bytes_v2 = prod_files(remote)
    assert bytes_v1 != bytes_v2

    proc = cli("rollback", "--env", "production", "--gitops-repo", url, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    r1 = head(remote)
    assert rgit(remote, "rev-parse", f"{r1}^") == p2, "rollback is a new commit on top"
    assert prod_files(remote) == bytes_v1
    t = trailers(remote, r1)
    assert t["Gitops-Action"] == "rollback" and t["Rolled-Back-From"] == "v2"
    assert t["Model-Version"] == "v1" and t["Restores-Commit"] == p1
    # staging is untouched by the rollback
    assert tree_files(remote, r1, f"staging/{MODEL}") == tree_files(remote, p2, f"staging/{MODEL}")

    hist = cli("history", "--env", "production", "--json", "--gitops-repo", url, cwd=tmp_path)
    assert hist.returncode == 0, hist.stderr
    deps = json.loads(hist.stdout)
    assert [(d["version"], d["action"], d["commit"]) for d in deps] == [
        ("v1", "promote", p1), ("v2", "promote", p2), ("v1", "rollback", r1)]
    assert deps[0]["until"] == deps[1]["since"] and deps[1]["until"] == deps[2]["since"]
    assert deps[2]["until"] is None
    assert deps[0]["sha256"] == "1" * 64 and deps[1]["sha256"] == "2" * 64
    times = [datetime.fromtimestamp(int(rgit(remote, "log", "-1", "--format=%ct", c)), UTC)
             .strftime("%Y-%m-%dT%H:%M:%SZ") for c in (p1, p2, r1)]
    assert [d["since"] for d in deps] == times

    table = cli("history", "--env", "production", "--gitops-repo", url, cwd=tmp_path)
    lines = table.stdout.splitlines()
    assert lines[1].split()[:2] == ["VERSION", "SHA256"]
    assert lines[2].startswith("v1") and "now (running)" in lines[2] and "rollback" in lines[2]
    assert lines[4].startswith("v1") and "promote" in lines[4]

    # roll forward again to a named version: exact bytes of v2
    proc = cli("rollback", "--env", "production", "--to", "v2", "--gitops-repo", url,
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert prod_files(remote) == bytes_v2
    deps = json.loads(cli("history", "--env", "production", "--json", "--gitops-repo", url,
                          cwd=tmp_path).stdout)
    assert [(d["version"], d["action"]) for d in deps][-1] == ("v2", "rollback")


def test_rollback_refusals_exit_2_and_change_nothing(remote, tmp_path, render):
    url = str(remote)
    nothing = cli("rollback", "--env", "production", "--gitops-repo", url, cwd=tmp_path)
    assert nothing.returncode == 2 and "nothing runs" in nothing.stderr
    stage(remote, render, release("v1", "1"))
    promote(url, model=MODEL, source="staging", target="production", render=render, log=quiet)
    before = head(remote)
    only = cli("rollback", "--env", "production", "--gitops-repo", url, cwd=tmp_path)
    assert only.returncode == 2 and "no earlier state" in only.stderr
    unknown = cli("rollback", "--env", "production", "--to", "v9", "--gitops-repo", url,
                  cwd=tmp_path)
    assert unknown.returncode == 2 and "'v9' never ran" in unknown.stderr
    assert "v1" in unknown.stderr  # says which versions did run
    same = cli("rollback", "--env", "production", "--to", "v1", "--gitops-repo", url,
               cwd=tmp_path)
    assert same.returncode == 0
    assert head(remote) == before
    for proc in (nothing, only, unknown):
        assert "Traceback" not in proc.stderr


def test_promote_refusals_exit_2_before_any_commit(remote, tmp_path, render):
    url = str(remote)
    empty = cli("promote", "--from", "staging", "--to", "production", "--direct",
                "--gitops-repo", url, cwd=tmp_path)
    assert empty.returncode == 2 and "nothing is published in 'staging/digits-cnn'" \
        in empty.stderr
    stage(remote, render, release("v1", "1"))
    before = head(remote)
    unknown_env = cli("promote", "--from", "staging", "--to", "qa", "--direct",
                      "--gitops-repo", url, cwd=tmp_path)
    assert unknown_env.returncode == 2 and "unknown environment" in unknown_env.stderr
    assert "'qa'" in unknown_env.stderr
    no_github = cli("promote", "--from", "staging", "--to", "production", "--gitops-repo",
                    url, cwd=tmp_path)
    assert no_github.returncode == 2 and "--github-repo" in no_github.stderr
    bad_name = cli("history", "--env", "Prod", "--gitops-repo", url, cwd=tmp_path)
    assert bad_name.returncode == 2 and "'Prod'" in bad_name.stderr
    assert head(remote) == before
    assert rgit(remote, "for-each-ref", "--format=%(refname)") == "refs/heads/main"


# --------------------------------------------------------------------------- pull requests

def test_promote_to_production_opens_one_pull_request_and_merge_starts_history(
        remote, tmp_path, render, github_api):  # noqa: F811 - fixture
    url = str(remote)
    staged = stage(remote, render, release("v1", "1"))
    env = {"GITHUB_TOKEN": "write-token", "GITHUB_API_URL": github_api.api_url}
    from tests.func.test_gitops_publish import cli_env

    proc = cli("promote", "--from", "staging", "--to", "production", "--github-repo",
               "octo/models", "--gitops-repo", url, cwd=tmp_path, env=cli_env(**env))
    assert proc.returncode == 0, proc.stderr
    pulls = github_api.repos["octo/models"].pulls
    assert len(pulls) == 1
    pr = pulls[0]
    branch = "gitops/promote-digits-cnn-v1-to-production"
    assert (pr["head"]["ref"], pr["base"]["ref"]) == (branch, "main")
    assert "1" * 64 in pr["body"] and pr["title"].startswith("Promote digits-cnn v1")
    assert f"#{pr['number']}" in proc.stdout
    # main is untouched until a release manager merges; the branch holds the exact release
    assert head(remote) == staged
    tip = rgit(remote, "rev-parse", f"refs/heads/{branch}")
    assert rgit(remote, "rev-parse", f"{tip}^") == staged
    assert prod_files(remote, tip) == dict(render(release("v1", "1"), "production"))

    # running it again finds the open pull request instead of opening a second one
    again = cli("promote", "--from", "staging", "--to", "production", "--github-repo",
                "octo/models", "--gitops-repo", url, cwd=tmp_path, env=cli_env(**env))
    assert again.returncode == 0, again.stderr
    assert len(github_api.repos["octo/models"].pulls) == 1
    assert f"#{pr['number']}" in again.stdout

    # a release manager merges (a merge commit): production runs v1 from the merge
    work = tmp_path / "merge"
    subprocess.run(["git", "clone", "-q", url, str(work)], check=True)
    subprocess.run(["git", "merge", "-q", "--no-ff", "-m", "Merge pull request #1",
                    f"origin/{branch}"], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, check=True)
    merged = head(remote)
    deps = json.loads(cli("history", "--env", "production", "--json", "--gitops-repo", url,
                          cwd=tmp_path).stdout)
    assert [(d["version"], d["commit"], d["until"], d["action"]) for d in deps] == [
        ("v1", merged, None, "promote (merged)")]


def test_pull_request_with_a_read_only_token_stops_with_exit_2(remote, tmp_path, render,
                                                               github_api):  # noqa: F811
    from tests.func.test_gitops_publish import cli_env

    url = str(remote)
    staged = stage(remote, render, release("v1", "1"))
    env = cli_env(GITHUB_TOKEN="read-token", GITHUB_API_URL=github_api.api_url)
    proc = cli("promote", "--from", "staging", "--to", "production", "--github-repo",
               "octo/models", "--gitops-repo", url, cwd=tmp_path, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "403" in proc.stderr and "GITHUB_TOKEN" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert github_api.repos["octo/models"].pulls == []
    assert head(remote) == staged


def test_a_pull_request_whose_answer_was_lost_is_found_not_duplicated(remote, render,
                                                                       github_api):  # noqa: F811
    """GitHub created the PR but answered 502: the client lists the open pull requests before
    posting again, and finds it instead of failing or opening a second one."""
    stage(remote, render, release("v1", "1"))
    github_api.inject("POST", "/repos/octo/models/pulls", 502, perform=True)
    result = promote(str(remote), model=MODEL, source="staging", target="production",
                     render=render, mode="pr", log=quiet,
                     github={"repository": "octo/models", "token": "write-token",
                             "api_url": github_api.api_url})
    pulls = github_api.repos["octo/models"].pulls
    assert len(pulls) == 1
    assert result.pull_request_number == pulls[0]["number"]
    assert result.pull_request_url == pulls[0]["html_url"]
    assert github_api.count("POST", "/repos/octo/models/pulls") == 1
    assert github_api.count("GET", "/repos/octo/models/pulls") == 1
