"""``examples/breast-cancer`` adopting the suite as a remote repository, end to end through CI.

The example's files (as a clone of this project holds them) become a repository of their own:
its own git history, a DVC remote on disk beside it, ``dvc repro`` and ``dvc push`` for
``main``. Then it adds what docs/how-to/adopt.md tells a team to add, verbatim: the
pull-request workflow (``uses: octo/modelops-suite/.github/workflows/modelops-pr.yml@<sha>``)
and the release workflow (``uses: octo/modelops-suite/actions/setup@<sha>`` and
``.../actions/publish@<sha>``). The harness (tests/actions_harness.py) runs them the way GitHub
does: each job on a fresh clone (no DVC cache, no outputs), this checkout registered as the
remote suite repository and materialised outside the workspace, the suite installed from the
action's own checkout, the GitHub API imitation receiving the comment and the check, and a bare
GitOps repository receiving the release.

One module fixture reproduces ``main`` and two pull-request branches once (a better learning
rate, and one that makes ``log_loss`` rise beyond its gate) and pushes them to the DVC remote;
every test works on its own copy of that repository and its own GitOps repository. The DVC
remote is shared (``.dvc/config`` names it, and each job's clone must find it): the tests only
read it, or push what it already holds.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import requests
from ruamel.yaml import YAML

from modelops.ci.markdown import md
from modelops.fsutil import sha256_file
from tests.actions_harness import Runner, RunResult, github_context
from tests.conftest import ROOT, require_tool
from tests.func.test_adopt import SHA, SUITE, snippet
from tests.func.test_example_breast_cancer import (
    ENV,
    MODEL,
    copy_example,
    dvc,
    git,
    read_json,
    set_param,
    sh,
)
from tests.github_imitation import github_api, webhook_payload  # noqa: F401 (fixture)
from tests.unit.test_workflows import RULES

pytestmark = pytest.mark.slow

REPO = "oncology/breast-cancer"
GIT_ENV = {k: v for k, v in ENV.items() if k.startswith("GIT_")}
BETTER, WORSE = "learning-rate-0.05", "learning-rate-0.01"  # branch = fit.learning_rate
COMPONENTS = {  # the workflow lines of the adopt page, with the suite named by this commit
    "pr.yml": "workflow", "release.yml": "release"}


def title(branch: str) -> str:
    return f"fit: learning rate {branch.rsplit('-', 1)[1]}"


def workflow_text(marker: str) -> str:
    return snippet(marker).replace("<owner>", SUITE.split("/")[0]).replace("<sha>", SHA)


@dataclass(frozen=True)
class Example:
    repo: Path    # main = reproduced and pushed; branches BETTER and WORSE, each pushed
    remote: Path  # the DVC remote .dvc/config names


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Example:
    base = tmp_path_factory.mktemp("adopted")
    repo, remote = copy_example(base / "breast-cancer"), base / "dvc-remote"
    git(repo, "init", "-q", "-b", "main")
    # the team's remote (an S3 bucket in real life): every CI job's fresh clone finds it
    dvc(repo, "remote", "modify", "local", "url", str(remote))
    workflows = repo / ".github" / "workflows"
    workflows.mkdir(parents=True)
    for name, marker in COMPONENTS.items():
        (workflows / name).write_text(workflow_text(marker), encoding="utf-8")
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "breast-cancer-gbt, evaluated and released by the suite")
    dvc(repo, "push")
    for branch in (BETTER, WORSE):
        git(repo, "checkout", "-q", "-b", branch, "main")
        set_param(repo, "fit.learning_rate", float(branch.rsplit("-", 1)[1]))
        dvc(repo, "repro")
        git(repo, "commit", "-q", "-am", title(branch))
        dvc(repo, "push")
    git(repo, "checkout", "-q", "main")
    dvc(repo, "checkout", "-q")
    return Example(repo, remote)


@pytest.fixture
def work(example, tmp_path) -> Path:
    """This test's copy of the repository: workspace, history and DVC cache."""
    return Path(shutil.copytree(example.repo, tmp_path / "breast-cancer", symlinks=True))


def pull_request(repo: Path, api, branch: str) -> dict:
    """Open a pull request of ``branch`` into main on the imitation; its webhook payload."""
    head, base = git(repo, "rev-parse", branch), git(repo, "rev-parse", "main")
    resp = requests.post(f"{api.api_url}/repos/{REPO}/pulls", timeout=30,
                         headers={"Authorization": "token write-token"},
                         json={"title": title(branch), "head": branch, "base": "main"})
    assert resp.status_code == 201, resp.text
    number = resp.json()["number"]
    next(p for p in api.repos[REPO].pulls if p["number"] == number)["head"]["sha"] = head
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    pr = payload["pull_request"]
    payload["number"] = pr["number"] = number
    pr["title"] = title(branch)
    pr["head"].update(sha=head, ref=branch)
    pr["base"].update(sha=base, ref="main")
    for side in (pr["base"]["repo"], pr["head"]["repo"], payload["repository"]):
        side["full_name"], side["name"] = REPO, REPO.split("/")[1]
        side["owner"]["login"] = REPO.split("/")[0]
        side["default_branch"] = "main"
    pr["head"]["repo"]["fork"] = False
    return payload


@dataclass
class Evaluated:
    flow: object
    jobs: dict
    log: str
    report: dict
    comments: list[dict]
    checks: list[tuple[str, str]]
    head: str


def run_pr(work: Path, tmp_path: Path, api, branch: str) -> Evaluated:
    """The pull request of ``branch`` through the page's pr.yml, the way GitHub runs it."""
    git(work, "checkout", "-q", branch)
    api.add_repo(REPO)
    payload = pull_request(work, api, branch)
    r = Runner(work, tmp_path / "runner",
               github_context("pull_request", payload, work, token="write-token",
                              api_url=api.api_url),
               env=GIT_ENV, repositories={SUITE: ROOT})
    flow = r.run_workflow(work / ".github" / "workflows" / "pr.yml")
    jobs = flow.jobs["modelops"].jobs
    log = "\n".join(j.log for j in jobs.values())
    report_file = r.artifacts / "modelops-report" / "report.json"
    assert report_file.is_file(), log[-8000:]
    report = json.loads(report_file.read_text(encoding="utf-8"))
    checks = [(c["head_sha"], c["conclusion"]) for c in api.repos[REPO].check_runs.values()]
    return Evaluated(flow, jobs, log, report,
                     api.comments(REPO, payload["number"]), checks,
                     payload["pull_request"]["head"]["sha"])


def gate(report: dict, metric: str, rule: str) -> dict:
    return next(g for g in report["sections"]["evaluate"]["gates"]
                if g["metric"] == metric and g["rule"] == rule)


# --------------------------------------------------------------------------- the page's lines

def test_the_release_snippet_is_hardened_like_the_suites_own_workflows():
    doc = YAML(typ="safe").load(workflow_text("release"))
    assert [p for rule in RULES for p in rule(doc, "release.yml")] == []
    uses = [s.get("uses", "") for s in doc["jobs"]["publish"]["steps"]]
    assert f"{SUITE}/actions/setup@{SHA}" in uses and f"{SUITE}/actions/publish@{SHA}" in uses


# --------------------------------------------------------------------------- pull requests

def test_a_better_learning_rate_gets_one_green_comment_with_onnx_parity_checked(
        work, tmp_path, github_api):  # noqa: F811
    ev = run_pr(work, tmp_path, github_api, BETTER)
    assert {k: v.status for k, v in ev.jobs.items()} == {
        "evaluate": "success", "compile-gpu": "skipped", "comment": "success",
        "comment-gpu": "skipped"}, ev.log[-6000:]
    assert ev.flow.status == "success" and ev.flow.jobs["modelops"].outputs == {"verdict": "pass"}
    evaluate = ev.jobs["evaluate"].log
    assert "installing the suite from this action's checkout" in evaluate
    assert "and the pipeline's requirements from requirements.txt" in evaluate

    sections = ev.report["sections"]
    assert sections["evaluate"]["status"] == "pass"
    # the base metrics are DVC-tracked: read from the DVC remote at main, a baseline
    for metric, rule in (("roc_auc", "max_drop"), ("log_loss", "max_rise")):
        g = gate(ev.report, metric, rule)
        assert g["status"] == "pass" and g["base"] is not None, g
    base = read_json(work / "eval/metrics.json")  # the workspace of `work` holds main's
    assert gate(ev.report, "log_loss", "max_rise")["base"] == pytest.approx(base["log_loss"])
    # the head's outputs were pushed: the job pulls them and retrains nothing
    assert "Running stage" not in evaluate and "Data and pipelines are up to date." in evaluate
    # compile: ONNX Runtime on this CPU runner, parity checked on the example's test split
    compile_ = sections["compile"]
    assert (compile_["status"], compile_["backend"]) == ("pass", "onnxruntime"), compile_
    parity = compile_["parity"]
    assert parity["passed"] and parity["n"] == base["n_test"] and parity["failures"] == []
    assert compile_["model"]["path"] == "models/classifier.onnx"

    [comment] = ev.comments
    body = comment["body"]
    assert body.startswith(f"<!-- modelops-suite:sticky:{MODEL} -->")
    assert f"✅ {MODEL}: gates passed" in body
    assert f"| {md('roc_auc')} | higher |" in body and "🟢 better" in body, body
    assert "| compile | ✅ pass |" in body, body
    assert ev.checks == [(ev.head, "success")]


def test_a_learning_rate_that_raises_log_loss_beyond_its_gate_gets_a_red_verdict(
        work, tmp_path, github_api):  # noqa: F811
    ev = run_pr(work, tmp_path, github_api, WORSE)
    assert ev.jobs["evaluate"].status == "success", ev.log[-6000:]
    assert ev.jobs["comment"].status == "failure"  # after commenting
    assert ev.flow.status == "failure" and ev.flow.jobs["modelops"].outputs == {"verdict": "fail"}
    rise = gate(ev.report, "log_loss", "max_rise")
    assert rise["status"] == "fail" and rise["base"] is not None, rise
    assert gate(ev.report, "roc_auc", "max_drop")["status"] == "pass"
    [comment] = ev.comments
    body = comment["body"]
    assert f"## ❌ {MODEL}: changes requested by the gates" in body
    assert f"**Failed gates:** {md('log_loss')} ({md('max_rise')}:" in body, body
    assert ev.checks == [(ev.head, "failure")]
    assert "a gate failed" in ev.jobs["comment"].log


# --------------------------------------------------------------------------- the release

def test_merging_publishes_the_release_to_the_gitops_repository_once(example, work, tmp_path):
    require_tool("kubectl")  # validate builds the kustomization
    git(work, "merge", "-q", "--ff-only", BETTER)  # the pull request is merged
    source = git(work, "rev-parse", "HEAD")
    dvc(work, "checkout", "-q")
    sha256 = sha256_file(work / "models/classifier.onnx")
    gitops = tmp_path / "gitops.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(gitops)], tmp_path)
    payload = copy.deepcopy(webhook_payload("push"))
    payload.update(ref="refs/heads/main", after=source)
    payload["repository"].update(full_name=REPO, name=REPO.split("/")[1], default_branch="main")
    payload["repository"]["owner"]["login"] = REPO.split("/")[0]

    def release(attempt: int) -> RunResult:
        r = Runner(work, tmp_path / f"runner-{attempt}",
                   github_context("push", payload, work), env=GIT_ENV,
                   vars={"GITOPS_REPO": str(gitops)}, repositories={SUITE: ROOT})
        flow = r.run_workflow(work / ".github" / "workflows" / "release.yml")
        job = flow.jobs["publish"]
        assert flow.status == "success", job.log[-6000:]
        return job

    job = release(1)
    # setup and publish ran from the runner's _actions folder, as a remote repository's do
    m = re.search(r"installing the suite from this action's checkout \((\S+), extras", job.log)
    assert m and Path(m.group(1)).parts[-4:] == ("_actions", *SUITE.split("/"), SHA), job.log
    assert "Running stage" not in job.log  # the merged commit's outputs come from the remote
    assert git(gitops, "rev-list", "--count", "main") == "1"
    message = git(gitops, "log", "-1", "--format=%B", "main")
    version = source[:12]
    assert message.splitlines()[0] == f"publish {MODEL} {version} to staging"
    assert f"Model-Sha256: {sha256}" in message and source in message
    folder = f"staging/{MODEL}"
    files = git(gitops, "ls-tree", "-r", "--name-only", "main").splitlines()
    assert f"{folder}/release.json" in files
    published = json.loads(git(gitops, "show", f"main:{folder}/release.json"))
    assert (published["sha256"], published["source_commit"]) == (sha256, source)
    # the artifact the manifests name is the file the publish action pushed to the DVC remote
    pushed = Path(unquote(urlparse(published["artifact_uri"]).path))
    assert pushed.is_relative_to(example.remote) and sha256_file(pushed) == sha256
    docs: dict[str, list[dict]] = {}
    for name in files:
        if name.startswith(folder) and name.endswith(".yaml"):
            for doc in YAML(typ="safe").load_all(git(gitops, "show", f"main:{name}")):
                if doc and "kind" in doc:
                    docs.setdefault(doc["kind"], []).append(doc)
    [rollout], [application] = docs["Rollout"], docs["Application"]
    for doc in (rollout, application, rollout["spec"]["template"]):
        notes = doc["metadata"]["annotations"]
        assert (notes["modelops.io/sha256"], notes["modelops.io/source-commit"],
                notes["modelops.io/version"]) == (sha256, source, version), doc["metadata"]
    container = rollout["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "MODEL_SHA256", "value": sha256} in container["env"]
    assert application["spec"]["source"]["path"] == folder
    # every analysis step runs the rendered AnalysisTemplates with this release's version;
    # its baseline bins every column, so the input-drift analysis is one of them
    analyses = [s["analysis"] for s in rollout["spec"]["strategy"]["canary"]["steps"]
                if "analysis" in s]
    templates = {t["metadata"]["name"] for t in docs["AnalysisTemplate"]}
    assert analyses and templates == {f"{MODEL}-{check}" for check in (
        "error-rate", "latency-p99", "prediction-drift", "input-drift")}
    [monitor] = docs["PodMonitor"]  # the pods are scraped in the release's namespace
    assert monitor["metadata"]["namespace"] == rollout["metadata"]["namespace"]
    for step in analyses:
        assert {t["templateName"] for t in step["templates"]} <= templates
        assert {"name": "version", "value": version} in step["args"]
    head = git(gitops, "rev-parse", "main")
    assert head in job.summary

    again = release(2)  # the same commit's workflow run again (a re-run): nothing changes
    assert git(gitops, "rev-parse", "main") == head
    assert "no change" in again.log
