"""The action harness itself: expressions, command files, step semantics, and that it reproduces
the runner's template injection (so the hostile-title tests of the real actions mean something)."""

from __future__ import annotations

import copy
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
    wf = ROOT / ".github/workflows/pr.yml"
    for fork in (True, False):
        payload = copy.deepcopy(webhook_payload("pull_request.opened"))
        if fork:
            payload["pull_request"]["head"]["repo"]["full_name"] = "outsider/Hello-World"
        r = Runner(tmp_path, tmp_path / f"runner-{fork}",
                   github_context("pull_request", payload, tmp_path))
        doc = load_yaml_file(wf)
        runs = condition(doc["jobs"]["compile-gpu"]["if"], r.context(), "success")
        assert runs is not fork
        if fork:
            result = r.run_job(wf, "compile-gpu")
            assert result.status == "skipped" and result.steps == []
            assert "skipped by its if" in result.log
