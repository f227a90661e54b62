"""The action harness itself: expressions, command files, step semantics, and that it reproduces
the runner's template injection (so the hostile-title tests of the real actions mean something)."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from modelops.yamlio import load_yaml_file
from tests.actions_harness import (
    HarnessError,
    Runner,
    condition,
    evaluate,
    github_context,
    interpolate,
    parse_command_file,
)
from tests.conftest import ROOT
from tests.github_imitation import webhook_payload

CTX = {
    "github": {"event": {"pull_request": {"title": "Fix it", "number": 7, "labels": []}},
               "event_name": "pull_request", "base_ref": "main", "repository": "o/r"},
    "inputs": {"backend": "auto", "pull": "none", "empty": ""},
    "steps": {"gate": {"outputs": {"verdict": "fail"}, "outcome": "success"}},
    "env": {"N": "3"}, "vars": {}, "secrets": {},
}


@pytest.mark.parametrize(("expr", "value"), [
    ("github.event.pull_request.number", 7),
    ("github.event.pull_request['title']", "Fix it"),
    ("github.EVENT.pull_request.title == 'fix IT'", True),  # case-insensitive, like the runner
    ("inputs.backend != 'auto'", False),
    ("inputs.empty || 'fallback'", "fallback"),
    ("github.base_ref && 'yes'", "yes"),
    ("!inputs.empty", True),
    ("steps.gate.outputs.verdict == 'fail' && (inputs.pull == 'none')", True),
    ("steps.missing.outputs.x", None),
    ("contains(github.repository, 'O/')", True),
    ("startsWith(inputs.backend, 'au') && endsWith(inputs.backend, 'to')", True),
    ("format('{0}-{1}', inputs.backend, env.N)", "auto-3"),
    ("env.N > 2", True),
    ("fromJSON('[1, 2]')[1]", 2),
    ("join(fromJSON('[\"a\", \"b\"]'), '+')", "a+b"),
])
def test_expressions(expr, value):
    assert evaluate(expr, CTX) == value


def test_interpolation_and_unknown_contexts():
    assert interpolate("pr-${{ github.event.pull_request.number }}-${{ inputs.x }}", CTX) == "pr-7-"
    assert interpolate("${{ true }}", CTX) == "true"
    with pytest.raises(HarnessError, match="unknown context"):
        evaluate("secretz.X", CTX)
    with pytest.raises(HarnessError, match="not supported"):
        evaluate("hashFilez('x')", CTX)


def test_conditions_follow_the_job_status():
    assert condition(None, CTX, "success") and not condition(None, CTX, "failure")
    assert not condition("inputs.pull != 'none'", CTX, "success")
    assert not condition("true", CTX, "failure")  # an if without a status function adds success()
    assert condition("always()", CTX, "failure")
    assert condition("${{ failure() && steps.gate.outcome == 'success' }}", CTX, "failure")


def test_command_files(tmp_path):
    f = tmp_path / "out"
    f.write_text("a=1\nb=x=y\nbody<<EOF\nline 1\nline 2\nEOF\n\nempty=\n")
    assert parse_command_file(f) == {"a": "1", "b": "x=y", "body": "line 1\nline 2", "empty": ""}
    f.write_text("body<<EOF\nno end\n")
    with pytest.raises(HarnessError, match="never ends"):
        parse_command_file(f)


def _action(root: Path, name: str, text: str) -> Path:
    d = root / "actions" / name
    d.mkdir(parents=True)
    (d / "action.yml").write_text(text)
    return d


def _runner(tmp_path: Path, title: str) -> Runner:
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    payload["pull_request"]["title"] = title
    return Runner(tmp_path, tmp_path / ".runner", github_context("pull_request", payload,
                                                                   tmp_path))


VULNERABLE = """
name: vulnerable
runs:
  using: composite
  steps:
    - shell: bash
      run: |
        echo "title: ${{ github.event.pull_request.title }}"
"""
SAFE = """
name: safe
runs:
  using: composite
  steps:
    - shell: bash
      env:
        TITLE: ${{ github.event.pull_request.title }}
      run: |
        echo "title: $TITLE"
"""


def test_harness_reproduces_template_injection(tmp_path):
    """The runner pastes expressions into the script: the harness must too, or the hostile-title
    tests of the real actions could not fail."""
    _action(tmp_path, "vulnerable", VULNERABLE)
    _action(tmp_path, "safe", SAFE)
    hostile = 'x"; echo INJECTED; #'
    bad = _runner(tmp_path, hostile).run_action("actions/vulnerable")
    assert "INJECTED" in bad.log.splitlines()
    good = _runner(tmp_path, hostile).run_action("actions/safe")
    assert f"title: {hostile}" in good.log.splitlines()
    assert "INJECTED" not in good.log.splitlines()


NESTED = """
name: outer
inputs:
  who:
    default: ${{ github.event.pull_request.user.login }}
outputs:
  greeting:
    value: ${{ steps.inner.outputs.greeting }}
  path-seen:
    value: ${{ steps.paths.outputs.seen }}
runs:
  using: composite
  steps:
    - id: inner
      uses: ./actions/inner
      with:
        name: ${{ inputs.who }}
    - id: paths
      shell: bash
      env:
        FROM_ENV: ${{ env.SHARED }}
      run: |
        seen="$(command -v hello-tool)|$SHARED|$FROM_ENV|${INPUT_NAME:-unset}"
        echo "seen=$seen" >> "$GITHUB_OUTPUT"
    - if: failure()
      shell: bash
      run: echo never
    - shell: bash
      continue-on-error: true
      run: exit 3
    - id: after
      shell: bash
      run: echo "still running" >> "$GITHUB_STEP_SUMMARY"
"""
INNER = """
name: inner
inputs:
  name:
    required: true
outputs:
  greeting:
    value: ${{ steps.say.outputs.greeting }}
runs:
  using: composite
  steps:
    - id: say
      shell: bash
      env:
        NAME: ${{ inputs.name }}
      run: |
        mkdir -p "$RUNNER_TEMP/bin"
        printf '#!/bin/sh\\necho hi\\n' > "$RUNNER_TEMP/bin/hello-tool"
        chmod +x "$RUNNER_TEMP/bin/hello-tool"
        echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
        echo "SHARED=from-inner" >> "$GITHUB_ENV"
        {
          echo "greeting<<EOF"
          echo "hello $NAME"
          echo "EOF"
        } >> "$GITHUB_OUTPUT"
"""


def test_nested_actions_outputs_env_path_and_status(tmp_path):
    _action(tmp_path, "outer", NESTED)
    _action(tmp_path, "inner", INNER)
    r = _runner(tmp_path, "t")
    result = r.run_action("actions/outer")
    assert result.status == "success", result.log
    assert result.outputs["greeting"] == "hello Codertocat"
    tool, shared, from_env, input_env = result.outputs["path-seen"].split("|")
    assert tool.endswith("/bin/hello-tool")
    assert shared == from_env == "from-inner"
    assert input_env == "unset"  # composite run steps get no INPUT_* (as on the runner)
    assert [s.outcome for s in result.steps][2:] == ["skipped", "failure", "success"]
    assert "still running" in result.summary
    with pytest.raises(HarnessError, match="required"):
        _runner(tmp_path, "t").run_action("actions/inner")
    with pytest.raises(HarnessError, match="unexpected inputs"):
        _runner(tmp_path, "t").run_action("actions/inner", {"name": "a", "nmae": "b"})


def test_a_failing_step_fails_the_action_and_skips_the_rest(tmp_path):
    _action(tmp_path, "fails", """
name: fails
runs:
  using: composite
  steps:
    - shell: bash
      run: echo first
    - shell: bash
      run: exit 4
    - shell: bash
      run: echo after
""")
    result = _runner(tmp_path, "t").run_action("actions/fails")
    assert result.status == "failure"
    assert [s.outcome for s in result.steps] == ["success", "failure", "skipped"]
    _action(tmp_path, "pipefail", """
name: pipefail
runs:
  using: composite
  steps:
    - shell: bash
      run: |
        false | cat
        echo unreachable
""")
    result = _runner(tmp_path, "t").run_action("actions/pipefail")
    assert result.status == "failure" and "unreachable" not in result.log


def test_gpu_compile_never_runs_for_a_fork(tmp_path):
    wf = ROOT / ".github/workflows/modelops-pr.yml"
    inputs = {"compile-on": "gpu", "gpu-runner-label": "gpu", "suite-repository": "o/s",
              "suite-ref": "0" * 40}
    needs = {"evaluate": {"result": "success", "outputs": {"compile": "true"}}}
    for fork in (True, False):
        payload = copy.deepcopy(webhook_payload("pull_request.opened"))
        if fork:
            payload["pull_request"]["head"]["repo"]["full_name"] = "outsider/Hello-World"
        r = Runner(tmp_path, tmp_path / f"runner-{fork}",
                   github_context("pull_request", payload, tmp_path))
        doc = load_yaml_file(wf)
        ctx = r.context({"steps": {}, "inputs": inputs, "needs": needs})
        runs = condition(doc["jobs"]["compile-gpu"]["if"], ctx, "success")
        assert runs is not fork
        no_onnx = {"evaluate": {"result": "success", "outputs": {"compile": "false"}}}
        ctx = r.context({"steps": {}, "inputs": inputs, "needs": no_onnx})
        assert not condition(doc["jobs"]["compile-gpu"]["if"], ctx, "success")
        if fork:
            result = r.run_job(wf, "compile-gpu", needs=needs, inputs=inputs)
            assert result.status == "skipped" and result.steps == []
            assert "skipped by its if" in result.log
        # opt-in: without a GPU runner's label no job is queued for a runner that is not there
        ctx = r.context({"steps": {}, "inputs": {**inputs, "gpu-runner-label": ""},
                         "needs": needs})
        assert not condition(doc["jobs"]["compile-gpu"]["if"], ctx, "success")


def test_the_comment_waits_for_the_evaluation_only():
    """The comment is posted when the evaluation ends; the GPU job's result updates it from
    a job of its own, which alone needs the GPU job."""
    jobs = load_yaml_file(ROOT / ".github/workflows/modelops-pr.yml")["jobs"]
    assert jobs["comment"]["needs"] == "evaluate"
    assert "compile-gpu" in jobs["comment-gpu"]["needs"]
    assert jobs["compile-gpu"]["needs"] == "evaluate"


def test_upload_artifact_finds_no_files_in_an_empty_folder(tmp_path):
    """As the real upload-artifact: an empty folder is "No files were found", an error with
    if-no-files-found: error, and no artifact (not an empty one) with the default warn."""
    ws = tmp_path / "ws"
    (ws / "build" / "empty").mkdir(parents=True)
    (ws / "actions" / "up").mkdir(parents=True)
    (ws / "actions" / "up" / "action.yml").write_text("""
name: up
inputs:
  mode: {default: warn}
runs:
  using: composite
  steps:
    - uses: actions/upload-artifact@65c4c4a1ddee5b72f698fdd19549f0f0fb45cf08 # v4.6.0
      with:
        name: engine
        path: build/empty
        if-no-files-found: ${{ inputs.mode }}
""")
    r = _runner(ws, "t")
    failed = r.run_action("actions/up", {"mode": "error"})
    assert failed.status == "failure"
    assert "No files were found with the provided path: build/empty" in failed.log
    warned = r.run_action("actions/up", {"mode": "warn"})
    assert warned.status == "success" and not (r.artifacts / "engine").exists()
    (ws / "build" / "empty" / "engine.plan").write_bytes(b"x")
    assert r.run_action("actions/up", {"mode": "error"}).status == "success"
    assert (r.artifacts / "engine" / "engine.plan").read_bytes() == b"x"


# --------------------------------------------------------------------------- remote use

REMOTE_ACTION = """
name: remote
inputs:
  who: {default: world}
outputs:
  where: {value: "${{ steps.say.outputs.where }}"}
runs:
  using: composite
  steps:
    - id: say
      shell: bash
      env:
        HERE: ${{ github.action_path }}
        REPO: ${{ github.action_repository }}
        WHO: ${{ inputs.who }}
      run: |
        version="$(cat "$HERE/../../VERSION")"
        echo "where=$HERE|$GITHUB_ACTION_PATH|$REPO|$GITHUB_ACTION_REF|$version" >> "$GITHUB_OUTPUT"
        echo "hello $WHO"
"""


def _suite(tmp_path: Path) -> Path:
    """A stand-in for another GitHub repository holding an action, as a git work tree."""
    import subprocess

    suite = tmp_path / "suite"
    _action(suite, "remote", REMOTE_ACTION)
    (suite / "VERSION").write_text("1.2.3\n")
    (suite / "ignored.log").write_text("not in git\n")
    (suite / ".gitignore").write_text("*.log\n")
    subprocess.run(["git", "init", "-q", str(suite)], check=True)
    return suite


def test_a_remote_action_runs_from_the_runners_actions_folder(tmp_path):
    suite = _suite(tmp_path)
    ws = tmp_path / "ws"
    ws.mkdir()
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    r = Runner(ws, tmp_path / "runner", github_context("pull_request", payload, ws),
               repositories={"octo/suite": suite})
    result = r.run_action("octo/suite/actions/remote@abc123", {"who": "team"})
    assert result.status == "success", result.log
    here, env_path, repo, ref, version = result.outputs["where"].split("|")
    assert here == env_path == str(tmp_path / "runner/_actions/octo/suite/abc123/actions/remote")
    assert not Path(here).is_relative_to(ws)   # outside the workspace, as on the runner
    assert (repo, ref, version) == ("octo/suite", "abc123", "1.2.3")
    assert not (tmp_path / "runner/_actions/octo/suite/abc123/ignored.log").exists()
    assert "hello team" in result.log
    with pytest.raises(HarnessError, match="no local equivalent"):  # not registered
        r._builtin("someone/else/x@v1", {}, {}, "s", "s")


CALLER = """
on: pull_request
jobs:
  call:
    uses: ./.github/workflows/called.yml
    with: {greeting: hi, loud: true}
    secrets: inherit
  after:
    needs: call
    runs-on: ubuntu-latest
    steps:
      - env:
          GOT: ${{ needs.call.outputs.said }}
        run: echo "after saw $GOT"
"""
CALLED = """
on:
  workflow_call:
    inputs:
      greeting: {type: string, required: true}
      loud: {type: boolean, default: false}
      name: {type: string, default: world}
    outputs:
      said: {value: "${{ jobs.second.outputs.line }}"}
jobs:
  first:
    runs-on: ubuntu-latest
    outputs:
      word: ${{ steps.w.outputs.word }}
    steps:
      - id: w
        env:
          G: ${{ inputs.greeting }}
          T: ${{ secrets.TOKEN }}
        run: |
          echo "word=$G" >> "$GITHUB_OUTPUT"
          echo "secret seen: ${#T} chars"
          touch made-by-first
  second:
    needs: first
    if: inputs.loud
    runs-on: ubuntu-latest
    outputs:
      line: ${{ steps.l.outputs.line }}
    steps:
      - id: l
        env:
          W: ${{ needs.first.outputs.word }}
          N: ${{ inputs.name }}
        run: |
          test ! -e made-by-first   # a fresh machine: the first job's files are not here
          echo "line=$W $N" >> "$GITHUB_OUTPUT"
  skipped:
    needs: first
    if: "!inputs.loud"
    runs-on: ubuntu-latest
    steps:
      - run: echo never
"""


def test_a_reusable_workflow_runs_its_jobs_in_needs_order_on_fresh_machines(tmp_path):
    import subprocess

    ws = tmp_path / "ws"
    (ws / ".github" / "workflows").mkdir(parents=True)
    (ws / ".github/workflows/caller.yml").write_text(CALLER)
    (ws / ".github/workflows/called.yml").write_text(CALLED)
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    subprocess.run(["git", "-C", str(ws), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(ws), "-c", "user.name=t", "-c", "user.email=t@x.invalid",
                    "commit", "-qm", "x"], check=True)
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    r = Runner(ws, tmp_path / "runner", github_context("pull_request", payload, ws),
               secrets={"TOKEN": "s3cret"})
    result = r.run_workflow(ws / ".github/workflows/caller.yml")
    assert result.status == "success", result.jobs
    call = result.jobs["call"]
    assert set(call.jobs) == {"first", "second", "skipped"}
    assert call.jobs["skipped"].status == "skipped"
    assert call.outputs == {"said": "hi world"}
    assert "after saw hi world" in result.jobs["after"].log
    assert "secret seen: 6 chars" in result.jobs["after"].log  # secrets: inherit
    with pytest.raises(HarnessError, match="input 'greeting' is required"):
        r.run_workflow(ws / ".github/workflows/called.yml", inputs={})
    with pytest.raises(HarnessError, match="unexpected inputs"):
        r.run_workflow(ws / ".github/workflows/called.yml", inputs={"greeting": "x", "nope": 1})


def test_checkout_of_another_repository_honours_sparse_patterns(tmp_path):
    suite = _suite(tmp_path)
    (suite / "dvc.yaml").write_text("stages: {}\n")
    (suite / "core").mkdir()
    (suite / "core" / "a.py").write_text("x = 1\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    r = Runner(ws, tmp_path / "runner", github_context("pull_request", payload, ws),
               repositories={"octo/suite": suite})
    step = {"uses": "actions/checkout@v4", "with": {
        "repository": "octo/suite", "ref": "abc", "path": ".suite",
        "sparse-checkout-cone-mode": "false", "sparse-checkout": "/VERSION\n/core/\n/actions/"}}
    status, _ = r._run_steps([step], {"steps": {}, "inputs": {}, "env": {}})
    assert status == "success"
    got = sorted(str(p.relative_to(ws / ".suite")) for p in (ws / ".suite").rglob("*")
                 if p.is_file())
    assert got == ["VERSION", "actions/remote/action.yml", "core/a.py"]  # no dvc.yaml
    bad = {"uses": "actions/checkout@v4", "with": {"repository": "octo/suite", "path": "../x"}}
    with pytest.raises(HarnessError, match="must be a folder under the workspace"):
        r._run_steps([bad], {"steps": {}, "inputs": {}, "env": {}})


def test_setup_python_gives_each_job_its_own_environment(tmp_path):
    import subprocess

    payload = copy.deepcopy(webhook_payload("pull_request.opened"))
    r = Runner(tmp_path, tmp_path / ".runner", github_context("pull_request", payload,
                                                                tmp_path))
    step = {"uses": "actions/setup-python@v5", "with": {"python-version": "3.11"}}
    status, results = r._run_steps([step, {"id": "which", "shell": "bash", "run": (
        'echo "py=$(command -v python)" >> "$GITHUB_OUTPUT"; python -c "import yaml"; '
        'if python -c "import modelops" 2>/dev/null; then echo "suite=yes"; else '
        'echo "suite=no"; fi >> "$GITHUB_OUTPUT"; echo "pip=$PIP_NO_INDEX" >> "$GITHUB_OUTPUT"')}],
        {"steps": {}, "inputs": {}, "env": {}})
    assert status == "success", r.log
    python = results[1].outputs["py"]
    assert python.startswith(str(tmp_path / ".runner" / "toolcache"))
    assert results[1].outputs["pip"] == "1"  # no network: no index
    # the dependencies are there (the network's stand-in); the suite is not until a job
    # installs it, as on a fresh runner
    assert results[1].outputs["suite"] == "no"
    site = subprocess.run([python, "-c", "import sys; print(sys.prefix)"], check=True,
                          capture_output=True, text=True).stdout.strip()
    assert site != sys.prefix


def test_the_pr_jobs_evaluate_the_head_commit_the_check_is_attached_to():
    """pull_request's default checkout is the synthetic merge commit; the report and the check
    are about the head commit, so the jobs that read the model repository check that out."""
    jobs = load_yaml_file(ROOT / ".github/workflows/modelops-pr.yml")["jobs"]
    for job_id in ("evaluate", "compile-gpu"):
        own = [s for s in jobs[job_id]["steps"] if str(s.get("uses", "")).startswith(
            "actions/checkout@") and "repository" not in (s.get("with") or {})]
        assert [s["with"]["ref"] for s in own] == [
            "${{ github.event.pull_request.head.sha || github.sha }}"], job_id
