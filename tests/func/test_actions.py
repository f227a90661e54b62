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
from tests.conftest import ROOT, require_module, run
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
    text = re.sub(r"(?m)^(    runs: )\d+", r"\g<1>10", text)       # compile's parity runs
    text = re.sub(r"(?m)^(      rounds: )\d+", r"\g<1>2", text)     # base/head timing
    return re.sub(r"(?m)^(      runs: )\d+", r"\g<1>10", text)


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


def open_pr(ws: Path, branch: str = "faster-eval", *, reproduce: bool = True) -> None:
    """A contributor's change to the evaluate stage's code, reproduced with ``dvc repro`` (only
    that stage re-runs) and committed, or (``reproduce=False``) committed without it."""
    git(ws, "checkout", "-q", "-b", branch)
    code = ws / "pipeline" / "evaluate.py"
    code.write_text(code.read_text() + "\n# the same evaluation, read more easily\n")
    if reproduce:
        dvc(ws, "repro")
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", "evaluate: clearer code")


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
    # outputs left unfetched by --allow-missing are not staleness: the PR reproduced and
    # committed its change, so nothing differs from a reproduction
    assert report["sections"]["evaluate"]["stale"] == [], report["sections"]["evaluate"]
    assert report["sections"]["reproduction"]["status"] == "pass", report["sections"]
    # revision against revision: what this fresh runner lacks is neither deleted nor missing
    # (no data changed between the two commits: only the evaluate stage's code)
    assert report["sections"]["evaluate"]["data"] == [], report["sections"]["evaluate"]["data"]
    assert "deleted" not in ev.summary and "not-in-cache" not in ev.summary
    assert sorted(p.name for p in (ci / "data" / "prepared").iterdir()) == \
        ["test.npz", "train.npz", "val.npz"]
    # the card section came from the up-to-date card stage's file: the same as generating it
    regenerated = card_section(ci, report["revisions"]["base"]["sha"], "params.yaml")
    assert report["sections"]["card"] == regenerated
    # the head's plots as the figures stage drew them; the base's only where its data differs
    assert sorted(p.name for p in (r.artifacts / "model-plots" / "head").iterdir()) == \
        ["confusion.png", "per_class.png", "train_curve.png"]
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


def pr_comment_run(workspace, root, payload, api, run_id: int, conclusion: str):
    """pr-comment.yml's job on the ``workflow_run`` event of the PR's finished run: trusted
    code (main), untrusted data (the run's artifact), a write token."""
    git(workspace, "checkout", "-q", "main")
    event = {"action": "completed", "repository": payload["repository"],
             "sender": payload["sender"],
             "workflow_run": {"id": run_id, "event": "pull_request",
                              "head_sha": payload["pull_request"]["head"]["sha"],
                              "head_repository": payload["pull_request"]["head"]["repo"],
                              "conclusion": conclusion, "name": "pr"}}
    wr = Runner(workspace, root, github_context("workflow_run", event, workspace,
                                                token="write-token", api_url=api.api_url),
                env=GIT_ENV)
    return wr.run_job(ROOT / ".github/workflows/pr-comment.yml", "comment")


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
        "evaluate": "success", "compile-gpu": "skipped", "comment": "skipped",
        "comment-gpu": "skipped"}, \
        called["evaluate"].log[-6000:]
    job = called["evaluate"]
    # setup leaves the remote's check to evaluate, which reads it in its own process and uses it
    assert "the DVC remote is checked by the evaluate action (check-remote: false)" in job.log
    assert "==> DVC remote: " in job.log and "==> dvc repro --pull --allow-missing" in job.log
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
    comment = pr_comment_run(workspace, root, payload, github_api, 4242, "success")
    assert comment.status == "success", comment.log[-4000:]
    assert set(comment.jobs) == {"comment"}  # through the reusable modelops-pr-comment.yml
    comments = github_api.comments(REPO, number)
    assert len(comments) == 1 and md(INJECTIONS[1]) in comments[0]["body"]
    assert {c["head_sha"] for c in github_api.repos[REPO].check_runs.values()} == {head}
    assert_nothing_injected(comment)

    # a tampered artifact pointing at someone else's pull request is refused
    (r.artifacts / "modelops-report" / "pr-number").write_text(f"{other}\n")
    tampered = pr_comment_run(workspace, root, payload, github_api, 4242, "success")
    assert tampered.status == "failure"
    assert f"pull request #{other} is at {'f' * 40}, not at the evaluated {head}" in tampered.log
    assert github_api.comments(REPO, other) == [] and len(github_api.comments(REPO, number)) == 1


def test_the_installed_environment_comes_back_from_the_cache(workspace, tmp_path):
    """Jobs one after the other on machines of one image, sharing the Actions cache: the first
    installs and its post step saves the environment; the next finds it and installs nothing,
    and the suite runs from it; after a change to the suite an older environment comes back
    and only the suite is installed over it."""
    payload = copy.deepcopy(webhook_payload("push"))
    payload["repository"]["full_name"] = REPO

    def job(n: int):
        r = runner(workspace, tmp_path / f"job-{n}", "push", payload,
                   toolcache=tmp_path / "image")
        r.cache = tmp_path / "actions-cache"
        result = r.run_action("actions/setup", {"extras": "", "requirements": ""})
        assert result.status == "success", result.log[-3000:]
        return r, result

    _, first = job(1)
    assert "==> installed in" in first.log and "restored from the cache" not in first.log
    r, second = job(2)
    assert "restored from the cache" in second.log and "==> installed in" not in second.log
    cli = run([str(r.python.parent / "modelops-ci"), "--help"], cwd=workspace)
    assert "usage: modelops-ci" in cli.stdout
    assert second.outputs["suite-version"] == first.outputs["suite-version"]

    init = workspace / "core" / "__init__.py"
    init.write_text(init.read_text() + "\n# a change to the suite\n")
    _, third = job(3)
    assert "==> installed in" in third.log, third.log[-3000:]
    saved = sorted(p.name for p in (tmp_path / "actions-cache").iterdir())
    assert len(saved) == 2, saved  # one environment per suite, the second saved at its end


def test_setup_writes_s3_credentials_locally_and_probes_the_remote(workspace, tmp_path):
    """An S3 remote (moto on 127.0.0.1): with the keys the remote is there, and they land in
    .dvc/config.local only, never in the log; without them (a fork) it is not, and says why."""
    require_module("moto")
    boto3 = require_module("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k",
                     aws_secret_access_key="s", region_name="us-east-1"
                     ).create_bucket(Bucket="models")
        payload = copy.deepcopy(webhook_payload("push"))
        payload["repository"]["full_name"] = REPO
        secret = "s3cr3t-value-never-printed"
        remote = {"requirements": "", "dvc-remote-url": "s3://models/example",
                  "dvc-remote-endpoint": endpoint}
        env = {**GIT_ENV, "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
               "AWS_CONFIG_FILE": str(tmp_path / "none")}
        with_keys = Runner(workspace, tmp_path / "with-keys",
                           github_context("push", payload, workspace), env=env)
        setup = with_keys.run_action("actions/setup", {
            **remote, "aws-access-key-id": "AKIAEXAMPLE", "aws-secret-access-key": secret})
        assert setup.status == "success", setup.log[-3000:]
        assert setup.outputs["has-remote"] == "true", setup.log[-3000:]
        assert secret not in setup.log
        assert secret in (workspace / ".dvc" / "config.local").read_text()
        assert secret not in (workspace / ".dvc" / "config").read_text()

        (workspace / ".dvc" / "config.local").unlink()
        fork = Runner(workspace, tmp_path / "fork",
                      github_context("push", payload, workspace), env=env)
        setup = fork.run_action("actions/setup", remote)
        assert setup.status == "success", setup.log[-3000:]
        assert setup.outputs["has-remote"] == "false"
        assert setup.outputs["remote-reason"].startswith(
            "no credentials were given, as on a pull request from a fork: the remote 'ci' "
            "cannot be read from here"), setup.outputs
    finally:
        server.stop()


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


# --------------------------------------------------------------------------- the scenarios
# of a pull request that the evaluation must not get wrong

@pytest.fixture
def moto_s3():
    """A private S3 bucket on 127.0.0.1 (moto): reads need credentials, as on AWS."""
    require_module("moto")
    boto3 = require_module("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=url, aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(
        Bucket="models")
    try:
        yield url, creds
    finally:
        server.stop()


def fresh_runner_checkout(ws: Path, dest: Path) -> Path:
    """What a runner starts from: a clone of the branch, no DVC outputs, no DVC cache."""
    git(dest.parent, "clone", "-q", f"file://{ws}", str(dest))
    assert not (dest / "models" / "model.onnx").exists()
    assert not (dest / ".dvc" / "cache").exists()
    return dest


def test_fork_pr_without_credentials_is_evaluated_without_the_remote(
        workspace, tmp_path, moto_s3, github_api):  # noqa: F811
    """A private S3 remote and a fork's pull request (no secrets): setup does not claim the
    remote, evaluate reproduces from scratch and the comment says so."""
    url, creds = moto_s3
    dvc(workspace, "remote", "add", "--local", "s3", "s3://models/digits")
    dvc(workspace, "remote", "modify", "--local", "s3", "endpointurl", url)
    run([sys.executable, "-m", "dvc", "push", "-q", "-r", "s3"], cwd=workspace,
        env={**GIT_ENV, **creds}, timeout=900)
    (workspace / ".dvc" / "config.local").unlink()
    open_pr(workspace, "outsider-change")
    ci = fresh_runner_checkout(workspace, tmp_path / "checkout")
    assert not any(k.startswith("AWS_") and "KEY" in k for k in os.environ)
    r = runner(ci, tmp_path / "runner", "pull_request", pr_event(ci, "a fork", fork=True),
               github_api, "read-token")

    setup = r.run_action("actions/setup", {"requirements": "", "dvc-remote-url":
                                           "s3://models/digits", "dvc-remote-endpoint": url})
    assert setup.status == "success", setup.log[-3000:]
    assert setup.outputs["has-remote"] == "false"
    reason = setup.outputs["remote-reason"]
    assert reason.startswith("no credentials were given, as on a pull request from a fork")
    assert "Unable to locate credentials" in reason
    ev = r.run_action("actions/evaluate", {"pull": setup.outputs["has-remote"],
                                           "remote-reason": reason, "plots": "plots/png"})
    assert ev.status == "success", ev.log[-4000:]
    assert "--pull --allow-missing" not in ev.log and "Unable to locate credentials" not in \
        ev.log.replace(reason, "")
    report = json.loads((ci / ev.outputs["report"]).read_text())
    note = report["sections"]["evaluate"]["notes"][0]
    assert note.startswith(f"reproduced without the DVC remote ({reason})")
    assert report["sections"]["reproduction"]["status"] == "pass"
    post = r.run_action("actions/comment", {"token": ""})
    assert post.status == "success" and post.outputs["mode"] == "summary"
    assert md("reproduced without the DVC remote") in post.summary

    # as modelops-pr.yml runs it: setup leaves the check to evaluate, which finds the same
    setup = r.run_action("actions/setup", {"requirements": "", "check-remote": "false",
                                           "dvc-remote-url": "s3://models/digits",
                                           "dvc-remote-endpoint": url})
    assert setup.status == "success" and setup.outputs["has-remote"] == "auto", setup.log[-3000:]
    ev = r.run_action("actions/evaluate", {"pull": setup.outputs["has-remote"],
                                           "remote-reason": setup.outputs["remote-reason"],
                                           "plots": "none"})  # the run has its plots
    assert ev.status == "success", ev.log[-4000:]
    assert "--pull --allow-missing" not in ev.log
    note = json.loads((ci / ev.outputs["report"]).read_text())["sections"]["evaluate"]["notes"][0]
    assert note.startswith("reproduced without the DVC remote (the remote 'ci' cannot be read "
                           "from here: NoCredentialsError: Unable to locate credentials"), note


def test_a_failed_evaluation_of_a_fork_still_gets_a_comment(workspace, tmp_path, github_api):  # noqa: F811
    """A fork's pull request that breaks params.yaml: the evaluate job fails with an annotation
    on the file, still uploads a report saying so, and pr-comment.yml (the run's conclusion:
    failure) posts a comment pointing to the run."""
    git(workspace, "checkout", "-q", "-b", "broken")
    params = workspace / "params.yaml"
    params.write_text(params.read_text().replace("    name: digits-cnn\n",
                                                 "    name: digits-cnn\n  oops: [\n", 1))
    git(workspace, "commit", "-q", "-am", "a typo")
    payload = pr_event(workspace, "broken params", fork=True)
    head = payload["pull_request"]["head"]["sha"]
    number = register_pr(github_api, "broken", head)
    payload["number"] = payload["pull_request"]["number"] = number
    root = tmp_path / "runner"
    r = runner(workspace, root, "pull_request", payload, github_api, "read-token")
    r.vars = {"DVC_REMOTE_URL": str(workspace / ".dvc-remote")}
    flow = r.run_workflow(ROOT / ".github/workflows/pr.yml")
    job = flow.jobs["modelops"].jobs["evaluate"]
    assert flow.status == "failure" and job.status == "failure"
    assert re.search(r"^::error file=params\.yaml,line=\d+,title=modelops-ci::params\.yaml: ",
                     job.log, re.M), job.log[-4000:]
    report = json.loads((r.artifacts / "modelops-report" / "report.json").read_text())
    assert report["sections"]["evaluate"]["incomplete"] is True
    assert report["revisions"]["head"]["sha"] == head

    comment = pr_comment_run(workspace, root, payload, github_api, 4243, "failure")
    assert comment.status == "success", comment.log[-4000:]
    (body,) = [c["body"] for c in github_api.comments(REPO, number)]
    assert "the evaluation did not finish" in body and "params.yaml" in body
    assert "/actions/runs/" in body  # points to the run
    (check,) = github_api.repos[REPO].check_runs.values()
    assert check["head_sha"] == head and check["conclusion"] == "failure"

    # a cancelled run (a newer push follows) is not commented on
    skipped = pr_comment_run(workspace, root, payload, github_api, 4244, "cancelled")
    assert skipped.status == "skipped"


def test_a_pr_that_relaxes_its_own_gates_is_judged_by_the_base(workspace, tmp_path):
    git(workspace, "checkout", "-q", "-b", "relax")
    params = workspace / "params.yaml"
    text = params.read_text()
    relaxed = text.replace("accuracy: {min: 0.97, max_drop: 0.005}",
                           "accuracy: {min: 0.1, max_drop: 0.5}")
    assert relaxed != text
    params.write_text(relaxed)
    git(workspace, "commit", "-q", "-am", "gates: accept a weaker model")
    r = runner(workspace, tmp_path / "runner", "pull_request",
               pr_event(workspace, "relax the gates"))
    assert r.run_action("actions/setup", {"requirements": ""}).status == "success"
    ev = r.run_action("actions/evaluate", {"plots": "none"})
    assert ev.status == "success", ev.log[-4000:]
    report = json.loads((workspace / ev.outputs["report"]).read_text())
    gates = report["sections"]["evaluate"]["gates_from"]
    # the small example model is below the base's accuracy bound of 0.97, not below 0.1
    assert ev.outputs["verdict"] == "fail" and gates["verdict_under_own"] == "pass"
    assert gates["changes"]
    assert "This pull request changes its own gates" in ev.summary
    assert "under its own it would pass" in ev.summary


def test_stale_and_hand_edited_outputs_fail_the_reproduction(workspace, tmp_path):
    """A code change committed without `dvc repro`, and invalid JSON committed as the metrics
    file: the report says which files differ from a reproduction and which cannot be read."""
    open_pr(workspace, "stale", reproduce=False)
    (workspace / "metrics" / "metrics.json").write_text("{not json\n")
    git(workspace, "commit", "-q", "-am", "metrics: edited by hand")
    r = runner(workspace, tmp_path / "runner", "pull_request", pr_event(workspace, "stale"))
    assert r.run_action("actions/setup", {"requirements": ""}).status == "success"
    ev = r.run_action("actions/evaluate", {"plots": "none"})
    assert ev.status == "success", ev.log[-4000:]
    report = json.loads((workspace / ev.outputs["report"]).read_text())
    reproduction = report["sections"]["reproduction"]
    assert reproduction["status"] == "fail" and report["verdict"] == "fail"
    assert "dvc.lock" in reproduction["files"] or "metrics/metrics.json" in reproduction["files"]
    assert "committed outputs differ from a reproduction: run `dvc repro` and commit" in \
        ev.summary
    evaluate = report["sections"]["evaluate"]
    assert evaluate["status"] == "fail"
    assert [e["file"] for e in evaluate["errors"]] == ["metrics/metrics.json"]


def test_gpu_parity_failure_updates_the_comment_and_fails_the_check(example, workspace, tmp_path,
                                                                    github_api):  # noqa: F811
    """modelops-pr.yml with a GPU runner configured, for a model repository that compiles only
    in CI (no compile stage): the comment is posted when the evaluation ends; the GPU job (here
    ONNX Runtime: no TensorRT on this machine) gets the model, its test data and its int8
    calibration data, fails parity, still uploads its report (no empty engine folder), and the
    same comment and the check are updated with the failure."""
    origin = tmp_path / "origin.git"
    shutil.copytree(example.parent / "origin.git", origin)
    git(workspace, "remote", "set-url", "origin", str(origin))
    dvc(workspace, "remove", "compile")
    params = workspace / "params.yaml"
    text = params.read_text()
    ci_only = re.sub(r"(?m)^    section_file: .*\n", "", text).replace(
        ", metrics/compile.json]", "]").replace("accuracy: {min: 0.97,", "accuracy: {min: 0.5,")
    assert ci_only.count("\n") == text.count("\n") - 1 and "compile.json" not in ci_only
    params.write_text(ci_only)
    git(workspace, "rm", "-q", "metrics/compile.json", "metrics/compute/compile.json")
    dvc(workspace, "repro")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "compile in CI only")
    git(workspace, "push", "-q", "origin", "main")

    git(workspace, "checkout", "-q", "-b", "int8")
    strict = ci_only.replace("    precision: fp16 ", "    precision: int8 ").replace(
        "int8: {atol: 0.5, rtol: 0.1, min_top1_agreement: 0.97, max_accuracy_drop: 0.02}",
        "int8: {atol: 0.000001, rtol: 0.0, min_top1_agreement: 1.0, max_accuracy_drop: 0.0}")
    assert strict.count("int8") == ci_only.count("int8") + 1
    params.write_text(strict)
    git(workspace, "commit", "-q", "-am", "compile: int8")
    payload = pr_event(workspace, "int8 engine")
    head = payload["pull_request"]["head"]["sha"]
    number = register_pr(github_api, "int8", head)
    payload["number"] = payload["pull_request"]["number"] = number
    r = runner(workspace, tmp_path / "runner", "pull_request", payload, github_api,
               "write-token")
    flow = r.run_workflow(ROOT / ".github/workflows/modelops-pr.yml", inputs={
        "suite-repository": REPO, "suite-ref": head, "plots": "plots/png",
        "compile-on": "none", "gpu-runner-label": "gpu", "gpu-extras": "onnx",
        "dvc-remote-url": str(workspace / ".dvc-remote")}, secrets={})
    status = {k: v.status for k, v in flow.jobs.items()}
    logs = "\n".join(v.log for v in flow.jobs.values())
    assert status == {"evaluate": "success", "compile-gpu": "failure", "comment": "success",
                      "comment-gpu": "failure"}, logs[-8000:]
    assert flow.status == "failure"
    inputs = r.artifacts / "modelops-compile-inputs"
    assert {p.relative_to(inputs).as_posix() for p in inputs.rglob("*") if p.is_file()} >= {
        "models/model.onnx", "data/prepared/test.npz", "data/prepared/train.npz"}
    gpu = json.loads((r.artifacts / "modelops-report-gpu" / "report.json").read_text())
    compiled = gpu["sections"]["compile"]
    assert compiled["status"] == "fail" and compiled["precision"] == "int8", compiled
    assert not (r.artifacts / "model-engine").exists()  # nothing built, nothing uploaded
    (body,) = [c["body"] for c in github_api.comments(REPO, number)]  # one comment, updated
    assert "int8" in body
    checks = [c for c in github_api.repos[REPO].check_runs.values() if c["head_sha"] == head]
    assert [c["conclusion"] for c in checks] == ["success", "failure"]  # evaluation, then GPU
    assert "compile" in checks[-1]["output"]["title"]


def test_a_burst_of_merges_ends_at_the_newest_main(workspace, tmp_path):
    """Three merges to main in quick succession, run by release.yml as GitHub's concurrency
    group runs them: A runs; B waits; C arrives and cancels the pending B (a group keeps one
    pending run); C runs. Someone re-runs B afterwards: it must not move staging back."""
    gitops = tmp_path / "gitops.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(gitops)], cwd=tmp_path, env=GIT_ENV)
    merges = {}
    for name in ("A", "B", "C"):
        (workspace / "docs" / "changes.md").write_text(f"merge {name}\n")
        git(workspace, "add", "docs/changes.md")
        git(workspace, "commit", "-q", "-m", f"merge {name}")
        merges[name] = git(workspace, "rev-parse", "HEAD")

    def release(name: str):
        ws = tmp_path / f"run-{name}"
        git(tmp_path, "clone", "-q", "--no-hardlinks", str(workspace), str(ws))
        git(ws, "checkout", "-q", "--detach", merges[name])  # the push's commit
        shutil.rmtree(ws / ".dvc-remote", ignore_errors=True)
        payload = copy.deepcopy(webhook_payload("push"))
        payload["ref"], payload["after"] = "refs/heads/main", merges[name]
        payload["repository"]["full_name"] = REPO
        r = runner(ws, tmp_path / f"runner-{name}", "push", payload,
                   vars={"GITOPS_REPO": gitops.as_uri(),  # file://: shallow as over https
                         "DVC_REMOTE_URL": str(workspace / ".dvc-remote")})
        job = r.run_job(ROOT / ".github/workflows/release.yml", "publish")
        assert job.status == "success", job.log[-5000:]
        return job

    def published() -> str:
        return run(["git", "log", "-1", "--format=%(trailers:key=Source-Commit,valueonly)",
                    "main"], cwd=gitops, env=GIT_ENV).stdout.strip()

    release("A")
    assert published() == merges["A"]
    release("C")   # B was cancelled while pending
    assert published() == merges["C"]
    # other models and environments publish many times meanwhile: the guard reads what runs in
    # staging from the folder itself, not from how recent its last commit is
    other = tmp_path / "other-releases"
    git(tmp_path, "clone", "-q", str(gitops), str(other))
    for i in range(60):
        (other / "production" / "another-model").mkdir(parents=True, exist_ok=True)
        (other / "production" / "another-model" / "release.json").write_text(
            json.dumps({"model": "another-model", "source_commit": f"{i:040x}"}))
        git(other, "add", "-A")
        git(other, "commit", "-q", "-m", f"another model, release {i}")
    git(other, "push", "-q", "origin", "HEAD:main")
    before = run(["git", "rev-parse", "main"], cwd=gitops, env=GIT_ENV).stdout.strip()
    late = release("B")
    assert f"a newer commit ({merges['C']}) is already published to staging" in late.log
    assert run(["git", "rev-parse", "main"], cwd=gitops, env=GIT_ENV).stdout.strip() == before
    staging = json.loads(git(gitops, "show", "main:staging/digits-cnn/release.json"))
    assert staging["source_commit"] == merges["C"]


def test_a_data_pr_on_a_fresh_runner_shows_the_files_it_changed(example, workspace, tmp_path):
    """New labelled data, reproduced and committed by the contributor; on a fresh runner (no
    outputs, no cache, the DVC remote) the data table says modified with both sizes, never
    deleted or not in cache for what the runner did not fetch."""
    git(workspace, "checkout", "-q", "-b", "more-data")
    rows = (example / "data" / "raw" / "digits.csv").read_text().splitlines()
    (workspace / "data" / "incoming" / "2026-11-30.csv").write_text(
        "\n".join([rows[0], *rows[1:61]]) + "\n")  # 60 more labelled digits
    dvc(workspace, "repro")
    dvc(workspace, "push", "-q")
    git(workspace, "add", "-A")
    git(workspace, "commit", "-q", "-m", "data: 60 more digits")
    ci = fresh_runner_checkout(workspace, tmp_path / "checkout")
    r = runner(ci, tmp_path / "runner", "pull_request", pr_event(ci, "more data"))
    setup = r.run_action("actions/setup", {"requirements": "",
                                           "dvc-remote-url": str(workspace / ".dvc-remote")})
    assert setup.outputs["has-remote"] == "true", setup.log[-3000:]
    ev = r.run_action("actions/evaluate", {"pull": "true", "plots": "none"})
    assert ev.status == "success", ev.log[-4000:]
    report = json.loads((ci / ev.outputs["report"]).read_text())
    data = {d["path"]: d for d in report["sections"]["evaluate"]["data"]}
    raw = data["data/raw/digits.csv"]
    assert raw["change"] == "modified", data
    assert raw["head_size"] > raw["base_size"] > 0
    assert {d["change"] for d in data.values()} <= {"modified", "added"}, data
    assert "deleted" not in ev.summary and "not in cache" not in ev.summary
    assert report["sections"]["reproduction"]["status"] == "pass"
    assert "evaluation set" in " ".join(report["sections"]["evaluate"]["notes"])
