"""The composite actions, run the way the runner runs them (tests/actions_harness.py), on a copy
of this repository with the example pipeline reproduced by real DVC, a bare git ``origin``, a
local DVC remote, the GitHub API imitation and a bare GitOps repository.

One session fixture reproduces the base branch once (small epochs) and pushes it to the DVC
remote; every test works on its own copy of that repository, so nothing is retrained twice.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import requests

from modelops.ci.markdown import md
from modelops.ci.report import card_section
from scripts.project import copy_project
from tests.actions_harness import Runner, github_context
from tests.conftest import ROOT, run
from tests.github_imitation import github_api, webhook_payload  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

# git-ignored paths (DVC outputs, caches) are left out by git ls-files already
SKIP_DIRS = ("tests/", "bench/", ".dvc/cache/", ".dvc/tmp/")
GIT_ENV = {"GIT_AUTHOR_NAME": "dev", "GIT_AUTHOR_EMAIL": "dev@example.invalid",
           "GIT_COMMITTER_NAME": "dev", "GIT_COMMITTER_EMAIL": "dev@example.invalid",
           "GIT_CONFIG_NOSYSTEM": "1"}
REPO = "octo/models"
INJECTIONS = ['x"; echo INJECTED; #', "$(id)"]


def small_params(text: str) -> str:
    """Fewer epochs and timing runs: the flow is what is tested here, not the model."""
    text = re.sub(r"(?m)^(  epochs: )\d+", r"\g<1>2", text)
    text = re.sub(r"(?m)^(  latency_runs: )\d+", r"\g<1>20", text)
    return re.sub(r"(?m)^(  runs: )\d+", r"\g<1>10", text)


def git(repo: Path, *args: str) -> str:
    return run(["git", *args], cwd=repo, env=GIT_ENV).stdout.strip()


def dvc(repo: Path, *args: str) -> str:
    # pipeline/run.sh runs the stages with the first python3 on PATH: this interpreter's
    env = {**GIT_ENV, "PATH": os.pathsep.join([str(Path(sys.executable).parent),
                                               os.environ.get("PATH", "")])}
    return run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env,
               timeout=900).stdout


@pytest.fixture(scope="session")
def example(tmp_path_factory) -> Path:
    """A model repository on ``main`` with the pipeline reproduced, committed and pushed to its
    DVC remote (``.dvc-remote/``) and to a bare ``origin``."""
    base = tmp_path_factory.mktemp("example")
    repo = base / "repo"
    copy_project(repo, skip=SKIP_DIRS)
    params = repo / "params.yaml"
    params.write_text(small_params(params.read_text()))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "example model")
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "reproduce the pipeline")
    dvc(repo, "push")
    run(["git", "init", "-q", "--bare", str(base / "origin.git")], cwd=base, env=GIT_ENV)
    git(repo, "remote", "add", "origin", str(base / "origin.git"))
    git(repo, "push", "-q", "origin", "main")
    return repo


@pytest.fixture
def workspace(example, tmp_path) -> Path:
    ws = tmp_path / "ws"
    shutil.copytree(example, ws, symlinks=True)
    return ws


def pr_event(ws: Path, title: str, *, fork: bool = False) -> dict:
    """A real ``pull_request.opened`` payload, pointed at this repository's commits."""
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    pr = payload["pull_request"]
    pr["title"] = title
    pr["head"]["sha"] = git(ws, "rev-parse", "HEAD")
    pr["head"]["ref"] = git(ws, "rev-parse", "--abbrev-ref", "HEAD")
    pr["base"]["ref"] = "main"
    pr["base"]["sha"] = git(ws, "rev-parse", "origin/main")
    for side in (pr["base"]["repo"], payload["repository"]):
        side["full_name"], side["name"] = REPO, REPO.split("/")[1]
        side["owner"]["login"] = REPO.split("/")[0]
        side["default_branch"] = "main"
    head_repo = pr["head"]["repo"]
    head_repo["full_name"] = "outsider/models" if fork else REPO
    head_repo["fork"] = fork
    return payload


def open_pr(ws: Path, branch: str = "faster-eval") -> None:
    """A contributor's change: fewer latency runs (only the evaluate stage re-runs)."""
    git(ws, "checkout", "-q", "-b", branch)
    params = ws / "params.yaml"
    params.write_text(re.sub(r"(?m)^(  latency_runs: )\d+", r"\g<1>15", params.read_text()))
    git(ws, "commit", "-q", "-am", "evaluate: fewer latency runs")


def register_pr(api, branch: str, head: str) -> int:
    """Open a pull request in the GitHub imitation (through its HTTP API) at commit ``head``."""
    resp = requests.post(f"{api.api_url}/repos/{REPO}/pulls", timeout=30,
                         headers={"Authorization": "token write-token"},
                         json={"title": branch, "head": branch, "base": "main"})
    assert resp.status_code == 201, resp.text
    number = resp.json()["number"]
    pr = next(p for p in api.repos[REPO].pulls if p["number"] == number)
    pr["head"]["sha"] = head  # the imitation cannot know our commits
    return number


def runner(ws: Path, root: Path, event_name: str, payload: dict, api=None,
           token: str = "", **kwargs) -> Runner:
    gh = github_context(event_name, payload, ws, token=token,
                        api_url=api.api_url if api else "https://api.github.com")
    return Runner(ws, root, gh, env=GIT_ENV, **kwargs)


def assert_nothing_injected(result) -> None:
    lines = result.log.splitlines()
    assert "INJECTED" not in lines, "the title was executed as shell code"
    assert not any(re.match(r"uid=\d+", line) for line in lines), "$(id) was executed"


# --------------------------------------------------------------------------- pull requests

def test_pr_ends_with_one_sticky_comment_and_a_check(example, workspace, tmp_path,
                                                      github_api):  # noqa: F811
    """Like a runner: a fresh shallow clone of the PR branch with an empty DVC cache; the setup
    action points DVC at the remote, evaluate fetches the base and pulls what it needs."""
    origin = tmp_path / "origin.git"
    shutil.copytree(example.parent / "origin.git", origin)
    git(workspace, "remote", "set-url", "origin", str(origin))
    open_pr(workspace)
    git(workspace, "push", "-q", "origin", "faster-eval")
    ci = tmp_path / "checkout"
    git(tmp_path, "clone", "-q", "--depth", "1", "--branch", "faster-eval", f"file://{origin}",
        str(ci))
    assert git(ci, "rev-parse", "--is-shallow-repository") == "true"
    assert not (ci / "models" / "model.onnx").exists() and not (ci / ".dvc" / "cache").exists()
    payload = pr_event(workspace, INJECTIONS[0])
    number = payload["pull_request"]["number"]
    head = payload["pull_request"]["head"]["sha"]
    r = runner(ci, tmp_path / "runner", "pull_request", payload, github_api, "write-token")

    setup = r.run_action("actions/setup", {"requirements": "",
                                           "dvc-remote-url": str(example / ".dvc-remote")})
    assert setup.status == "success" and setup.outputs["has-remote"] == "true", setup.log[-3000:]
    assert "installing the suite from this action's checkout" in setup.log
    ev = r.run_action("actions/evaluate", {"pull": setup.outputs["has-remote"],
                                           "plots": "plots/png"})
    assert ev.status == "success", ev.log[-4000:]
    assert "--pull --allow-missing" in ev.log and "fetching main from origin" in ev.log
    assert ev.outputs["verdict"] in ("pass", "fail")
    assert ev.outputs["base-rev"] == "origin/main"
    report = json.loads((ci / ev.outputs["report"]).read_text())
    assert report["context"]["pr_title"] == INJECTIONS[0]
    assert report["revisions"]["head"]["sha"] == head
    # outputs left unfetched by --allow-missing are not staleness, and the stages ran on the
    # whole of data/prepared (a partial folder is pulled whole: tests/func/test_reproduce.py)
    assert report["sections"]["evaluate"]["stale"] == [], report["sections"]["evaluate"]
    assert sorted(p.name for p in (ci / "data" / "prepared").iterdir()) == \
        ["test.npz", "train.npz", "val.npz"]
    # the card section came from the up-to-date card stage's file: the same as generating it
    regenerated = card_section(ci, report["revisions"]["base"]["sha"], "params.yaml")
    assert report["sections"]["card"] == regenerated and regenerated["changed"]
    assert sorted(p.name for p in (r.artifacts / "model-plots").iterdir()) == \
        ["confusion.png", "per_class.png", "train_curve.png"]   # the figures stage's folder
    assert report["context"]["plots_artifact"] == "model-plots"

    comp = r.run_action("actions/compile", {"backend": "onnxruntime"})
    assert comp.status == "success", comp.log[-4000:]
    assert comp.outputs["status"] in ("pass", "fail") and comp.outputs["backend"] == "onnxruntime"
    assert any((r.artifacts / "model-engine").iterdir())

    for _ in range(2):  # a second push to the PR updates the same comment
        post = r.run_action("actions/comment", {"token": "write-token"})
        assert post.status == "success", post.log[-4000:]
        assert post.outputs["mode"] == "posted"
    comments = github_api.comments(REPO, number)
    assert len(comments) == 1
    assert md(INJECTIONS[0]) in comments[0]["body"]  # as text, Markdown-escaped
    runs = list(github_api.repos[REPO].check_runs.values())
    assert runs and {c["head_sha"] for c in runs} == {head}
    assert_nothing_injected(r.run_action("actions/setup", {"requirements": ""}))
    assert_nothing_injected(ev)
    assert INJECTIONS[0] in ev.summary


def test_fork_pr_ends_neutral_then_workflow_run_comments(workspace, tmp_path, github_api):  # noqa: F811
    """pr.yml's evaluate job for a fork (no secrets, read-only token), the comment action without
    a token, then pr-comment.yml (workflow_run) posting from the artifact alone."""
    open_pr(workspace, "outsider-change")
    payload = pr_event(workspace, INJECTIONS[1], fork=True)
    head = payload["pull_request"]["head"]["sha"]
    number = register_pr(github_api, "outsider-change", head)
    other = register_pr(github_api, "someone-else", "f" * 40)
    payload["number"] = payload["pull_request"]["number"] = number
    root = tmp_path / "runner"
    r = runner(workspace, root, "pull_request", payload, github_api, "read-token")

    # pr.yml as GitHub runs it: its one job calls modelops-pr.yml, whose jobs each get a
    # fresh clone; a fork gets the evaluation, not the GPU job nor the commenting job
    r.vars = {"DVC_REMOTE_URL": str(workspace / ".dvc-remote")}
    flow = r.run_workflow(ROOT / ".github/workflows/pr.yml")
    called = flow.jobs["modelops"].jobs
    assert {k: v.status for k, v in called.items()} == {
        "evaluate": "success", "compile-gpu": "skipped", "comment": "skipped"}, \
        called["evaluate"].log[-6000:]
    job = called["evaluate"]
    assert md(INJECTIONS[1]) in job.summary  # the report, with the title as plain text
    assert "installing the suite from this action's checkout" in job.log
    assert (r.artifacts / "modelops-report" / "pr-number").read_text().strip() == str(number)
    compiled = json.loads((r.artifacts / "modelops-report" / "report.json").read_text())
    assert compiled["sections"]["compile"]["status"] == "pass"  # the example's dvc stage
    assert not (r.artifacts / "modelops-compile-inputs").exists()  # no GPU job for a fork
    base_only = r.run_action("actions/setup", {"extras": ""})  # what a comment job installs
    assert base_only.status == "success", base_only.log[-3000:]
    post = r.run_action("actions/comment", {"token": "",
                                            "report": str(r.artifacts / "modelops-report"
                                                          / "report.json")})
    assert post.status == "success", post.log[-4000:]
    assert post.outputs["mode"] == "summary" and "no token" in post.log
    assert github_api.comments(REPO, number) == []
    assert_nothing_injected(job)
    assert_nothing_injected(post)

    # pr-comment.yml: trusted code (main), untrusted data (the artifact), a write token
    git(workspace, "checkout", "-q", "main")
    event = {"action": "completed", "repository": payload["repository"],
             "sender": payload["sender"],
             "workflow_run": {"id": 4242, "event": "pull_request", "head_sha": head,
                              "head_repository": payload["pull_request"]["head"]["repo"],
                              "conclusion": "success", "name": "pr"}}
    wr = Runner(workspace, root, github_context("workflow_run", event, workspace,
                                                token="write-token", api_url=github_api.api_url),
                env=GIT_ENV)
    comment = wr.run_job(ROOT / ".github/workflows/pr-comment.yml", "comment")
    assert comment.status == "success", comment.log[-4000:]
    assert set(comment.jobs) == {"comment"}  # through the reusable modelops-pr-comment.yml
    comments = github_api.comments(REPO, number)
    assert len(comments) == 1 and md(INJECTIONS[1]) in comments[0]["body"]
    assert {c["head_sha"] for c in github_api.repos[REPO].check_runs.values()} == {head}
    assert_nothing_injected(comment)

    # a tampered artifact pointing at someone else's pull request is refused
    (r.artifacts / "modelops-report" / "pr-number").write_text(f"{other}\n")
    tampered = Runner(workspace, root, wr.github, env=GIT_ENV).run_job(
        ROOT / ".github/workflows/pr-comment.yml", "comment")
    assert tampered.status == "failure"
    assert f"pull request #{other} is at {'f' * 40}, not at the evaluated {head}" in tampered.log
    assert github_api.comments(REPO, other) == [] and len(github_api.comments(REPO, number)) == 1


# --------------------------------------------------------------------------- merge to main

def test_push_to_main_ends_with_a_gitops_commit(workspace, tmp_path):
    gitops = tmp_path / "gitops.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(gitops)], cwd=tmp_path, env=GIT_ENV)
    payload = copy.deepcopy(webhook_payload("push"))
    payload["ref"] = "refs/heads/main"
    payload["after"] = git(workspace, "rev-parse", "HEAD")
    payload["repository"]["full_name"] = REPO
    r = runner(workspace, tmp_path / "runner", "push", payload)

    assert r.run_action("actions/setup", {"requirements": ""}).status == "success"
    pub = r.run_action("actions/publish", {"gitops-repo": str(gitops), "environment": "staging"})
    assert pub.status == "success", pub.log[-4000:]
    head = run(["git", "rev-parse", "main"], cwd=gitops, env=GIT_ENV).stdout.strip()
    assert pub.outputs["commit"] == head
    message = run(["git", "log", "-1", "--format=%B", "main"], cwd=gitops, env=GIT_ENV).stdout
    assert pub.outputs["version"] in message
    files = run(["git", "ls-tree", "-r", "--name-only", "main"], cwd=gitops, env=GIT_ENV).stdout
    assert any(f.startswith("staging/") for f in files.splitlines())
    assert head in pub.summary

    again = r.run_action("actions/publish", {"gitops-repo": str(gitops), "environment": "staging",
                                              "dvc-push": "false"})
    assert again.status == "success", again.log[-4000:]
    assert run(["git", "rev-parse", "main"], cwd=gitops, env=GIT_ENV).stdout.strip() == head

    # a release manager promotes staging's release with promote.yml (workflow_dispatch)
    dispatch = copy.deepcopy(webhook_payload("workflow_dispatch"))
    dispatch["ref"] = "refs/heads/main"
    dispatch["inputs"] = {"operation": "promote", "environment": "production", "mode": "commit"}
    pm = Runner(workspace, tmp_path / "runner-promote",
                github_context("workflow_dispatch", dispatch, workspace),
                env=GIT_ENV, vars={"GITOPS_REPO": str(gitops)})
    job = pm.run_job(ROOT / ".github/workflows/promote.yml", "promote")
    assert job.status == "success", job.log[-4000:]
    promoted = run(["git", "rev-parse", "main"], cwd=gitops, env=GIT_ENV).stdout.strip()
    assert promoted != head and job.outputs == {} and promoted in job.summary
    files = run(["git", "ls-tree", "-r", "--name-only", "main"], cwd=gitops, env=GIT_ENV).stdout
    assert any(f.startswith("production/") for f in files.splitlines())
