"""Adopting the suite as docs/how-to/adopt.md says, in a repository of another shape.

The two snippets of the page (the workflow file and the ``modelops:`` section) go verbatim into
a repository that is not this one: a text classifier with stages ``featurize`` and ``fit``, its
own ``params.yaml`` sections, two metrics files (the main one DVC-tracked at
``eval/metrics.json``), no ONNX artifact, no card template. Its pull request then runs through
the harness the way GitHub runs it: the caller's job calls
``octo/modelops-suite/.github/workflows/modelops-pr.yml@<sha>`` (this checkout, registered as
that remote repository), each called job on a fresh clone, the suite installed from its own
checkout by the setup action, the GitHub API imitation receiving the comment and the check.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import requests

from tests.actions_harness import Runner, github_context
from tests.conftest import PY, ROOT
from tests.func.test_other_shape import DVC_YAML, FEATURIZE, FIT, GIT_ENV, sh
from tests.github_imitation import github_api, webhook_payload  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow

DOC = ROOT / "docs" / "how-to" / "adopt.md"
SUITE = "octo/modelops-suite"
SHA = "0123456789abcdef0123456789abcdef01234567"
REPO = "acme/tickets"


def snippet(marker: str) -> str:
    """The fenced block that follows ``<!-- adopt:<marker> -->`` in the adopt page."""
    text = DOC.read_text(encoding="utf-8")
    m = re.search(rf"<!-- adopt:{marker} -->\n```yaml\n(.*?)```", text, re.S)
    assert m, f"{DOC.name}: no snippet {marker!r}"
    return m.group(1)


def test_the_snippets_are_about_ten_lines_and_name_the_suite_by_commit():
    workflow = snippet("workflow")
    assert len(workflow.strip().splitlines()) <= 13
    assert "modelops-pr.yml@<sha>" in workflow and "suite-ref: <sha>" in workflow
    assert snippet("params").startswith("modelops:\n")


@pytest.fixture
def adopter(tmp_path):
    """The model repository with the page's two snippets, on a branch that raises auc."""
    repo, remote = tmp_path / "tickets", tmp_path / "remote"
    repo.mkdir()
    remote.mkdir()
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, PY, "-m", "dvc", "init", "-q")
    sh(repo, PY, "-m", "dvc", "config", "core.analytics", "false")
    sh(repo, PY, "-m", "dvc", "remote", "add", "-d", "store", str(remote))
    (repo / "featurize.py").write_text(FEATURIZE)
    (repo / "fit.py").write_text(FIT)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / ".gitignore").write_text("/reports/\n")
    (repo / "requirements.txt").write_text("pyyaml\n")  # what the stages import
    workflows = repo / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "pr.yml").write_text(snippet("workflow").replace("<owner>", "octo")
                                      .replace("<sha>", SHA))
    own = "featurize: {{vocabulary: {v}}}\nfit: {{strength: {s}}}\n"
    (repo / "params.yaml").write_text(own.format(v=100, s=0.5) + snippet("params"))
    sh(repo, PY, "-m", "dvc", "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "ticket router")
    sh(repo, PY, "-m", "dvc", "push", "-q")
    sh(repo, "git", "checkout", "-q", "-b", "stronger")
    (repo / "params.yaml").write_text(own.format(v=300, s=0.9) + snippet("params"))
    sh(repo, PY, "-m", "dvc", "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "a stronger model")
    sh(repo, PY, "-m", "dvc", "push", "-q")
    return repo


def _pull_request(repo: Path, api) -> dict:
    head = sh(repo, "git", "rev-parse", "HEAD").stdout.strip()
    resp = requests.post(f"{api.api_url}/repos/{REPO}/pulls", timeout=30,
                         headers={"Authorization": "token write-token"},
                         json={"title": "a stronger model", "head": "stronger", "base": "main"})
    assert resp.status_code == 201, resp.text
    number = resp.json()["number"]
    next(p for p in api.repos[REPO].pulls if p["number"] == number)["head"]["sha"] = head
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    pr = payload["pull_request"]
    payload["number"] = pr["number"] = number
    pr["title"] = "a stronger model"
    pr["head"].update(sha=head, ref="stronger")
    pr["base"].update(ref="main", sha=sh(repo, "git", "rev-parse", "main").stdout.strip())
    for side in (pr["base"]["repo"], pr["head"]["repo"], payload["repository"]):
        side["full_name"], side["name"] = REPO, REPO.split("/")[1]
        side["owner"]["login"] = REPO.split("/")[0]
        side["default_branch"] = "main"
    pr["head"]["repo"]["fork"] = False
    return payload


def test_a_pull_request_of_the_adopting_repository_gets_one_green_comment(
        adopter, tmp_path, github_api):  # noqa: F811
    github_api.add_repo(REPO)
    payload = _pull_request(adopter, github_api)
    number, head = payload["number"], payload["pull_request"]["head"]["sha"]
    r = Runner(adopter, tmp_path / "runner",
               github_context("pull_request", payload, adopter, token="write-token",
                              api_url=github_api.api_url),
               env=GIT_ENV, repositories={SUITE: ROOT})
    flow = r.run_workflow(adopter / ".github" / "workflows" / "pr.yml")
    jobs = flow.jobs["modelops"].jobs
    logs = "\n".join(j.log for j in jobs.values())
    assert {k: v.status for k, v in jobs.items()} == {
        "evaluate": "success", "compile-gpu": "skipped", "comment": "success",
        "comment-gpu": "skipped"}, logs[-6000:]
    evaluate = jobs["evaluate"]
    assert "installing the suite from this action's checkout" in evaluate.log
    assert "and the pipeline's requirements from requirements.txt" in evaluate.log
    assert "compile: skipped: the model has no ONNX artifact" in evaluate.log
    assert flow.status == "success" and flow.jobs["modelops"].outputs == {"verdict": "pass"}

    report = json.loads((r.artifacts / "modelops-report" / "report.json").read_text())
    ev = report["sections"]["evaluate"]
    drop = next(g for g in ev["gates"] if g["metric"] == "auc" and g["rule"] == "max_drop")
    assert drop["status"] == "pass" and drop["base"] is not None  # DVC-tracked, a baseline
    assert report["sections"]["compile"]["status"] == "skipped"
    assert report["sections"]["card"]["status"] == "pass"
    plots = r.artifacts / "model-plots"  # the head's plots, and the base's that differ
    assert sorted(p.name for p in (plots / "head").iterdir()) == ["confusion.png", "curve.png"]
    assert {p.name for p in (plots / "base").iterdir()} <= {"confusion.png", "curve.png"}

    [comment] = github_api.comments(REPO, number)
    body = comment["body"]
    assert body.startswith("<!-- modelops-suite:sticky:ticket-router -->")
    assert "✅ ticket-router: gates passed" in body
    assert "| compile | ⏭️ skipped | the model has no ONNX artifact" in body
    assert "| auc | higher |" in body and "🟢 better" in body
    runs = list(github_api.repos[REPO].check_runs.values())
    assert [(c["head_sha"], c["conclusion"]) for c in runs] == [(head, "success")]


def test_a_remote_action_installs_the_suite_from_its_own_checkout(adopter, tmp_path):
    """``uses: octo/modelops-suite/actions/setup@<sha>`` from the adopting repository: the
    action runs outside the workspace and installs the suite from there, not from the caller's
    requirements (which do not name it)."""
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    r = Runner(adopter, tmp_path / "runner", github_context("pull_request", payload, adopter),
               env=GIT_ENV, repositories={SUITE: ROOT})
    setup = r.run_action(f"{SUITE}/actions/setup@{SHA}", {"extras": ""})
    assert setup.status == "success", setup.log[-3000:]
    where = tmp_path / "runner" / "_actions" / "octo" / "modelops-suite" / SHA
    assert f"installing the suite from this action's checkout ({where}" in setup.log
    assert setup.outputs["suite-version"] == "0.2.0"
    assert r.python is not None
    import subprocess

    where_from = subprocess.run([str(r.python), "-c", "import modelops; print(modelops.__file__)"],
                                capture_output=True, text=True, check=True).stdout
    assert where_from.startswith(str(r.python.parent.parent))  # the job's own install
