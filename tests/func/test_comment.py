"""``modelops-ci comment`` as a real process against the GitHub imitation, driven by real
webhook payloads in ``GITHUB_EVENT_PATH``."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from modelops.ci.markdown import marker, md
from tests.conftest import PY, ROOT
from tests.github_imitation import github_api, webhook_payload  # noqa: F401 - fixture

REPORT = ROOT / "tests" / "data" / "comment" / "report.json"
REPO = "octo/models"
SECRET = "ghs_" + "Tok3nNeverPrinted" * 2
HEAD_SHA = "c" * 40
SERVER = "https://ghe.example.com"  # links must be https to be rendered


@pytest.fixture
def work(tmp_path):
    # the example report, with the fields these tests rely on pinned here
    report = json.loads(REPORT.read_text())
    report["model"]["name"] = "digits-cnn"
    report["verdict"] = "fail"
    report.setdefault("context", {})["pr_number"] = 42
    (tmp_path / "report.json").write_text(json.dumps(report))
    return tmp_path


def event_file(tmp_path, name="pull_request.opened", *, number=12, fork=False):
    event = webhook_payload(name)
    if "pull_request" in event:
        pr = event["pull_request"]
        pr["number"] = event["number"] = number
        pr["head"]["sha"] = HEAD_SHA
        pr["base"]["repo"]["full_name"] = REPO
        if fork:  # upstream has no fork example: derive one as GitHub would send it
            pr["head"]["repo"] = dict(pr["head"]["repo"], full_name="mallory/models", fork=True)
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(event))
    return path


def comment(tmp_path, api, *args, token=SECRET, event=None, extra_env=None, check=True):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    env.update(PYTHONPATH=str(ROOT), GITHUB_API_URL=api.api_url, GITHUB_REPOSITORY=REPO,
               GITHUB_SERVER_URL=SERVER, GITHUB_RUN_ID="99",
               GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    if token:
        env["GITHUB_TOKEN"] = token
    if event:
        env["GITHUB_EVENT_PATH"] = str(event)
    env.update(extra_env or {})
    cmd = [PY, "-m", "modelops.ci", "comment", "--report", "report.json", "--out",
           "out/pr-comment.md",
           "--backoff", "0.05", *args]
    # not conftest.run: it merges os.environ, and a CI runner's own GITHUB_* must not leak in
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def api(github_api):  # noqa: F811
    github_api.add_token(SECRET, "github-actions[bot]")
    github_api.add_token("ro-" + SECRET, "github-actions[bot]", write=False)
    return github_api


def test_without_token_writes_and_prints_the_preview(work, api):
    proc = comment(work, api, token=None)
    body = (work / "out" / "pr-comment.md").read_text()
    assert body.startswith(marker("digits-cnn")) and body.strip() in proc.stdout
    assert (work / "summary.md").read_text().strip() == body.strip()
    assert "no GITHUB_TOKEN" in proc.stderr and api.count() == 0


def test_preview_never_posts_even_with_a_token(work, api):
    proc = comment(work, api, "--preview", event=event_file(work))
    assert proc.stdout.startswith(marker("digits-cnn")) and "--preview" in proc.stderr
    assert api.count() == 0 and (work / "out" / "pr-comment.md").is_file()


def test_pr_event_posts_then_edits_one_comment_and_sets_status(work, api):
    event = event_file(work)
    first = comment(work, api, event=event)
    second = comment(work, api, event=event)
    comments = api.comments(REPO, 12)
    assert len(comments) == 1 and "created" in first.stdout and "unchanged" in second.stdout
    assert comments[0]["body"].startswith(marker("digits-cnn"))
    assert f"{SERVER}/{REPO}/actions/runs/99" in comments[0]["body"]
    statuses = api.repos[REPO].statuses[HEAD_SHA]
    assert statuses[-1]["state"] == "failure"  # the report's verdict is "fail"
    assert statuses[-1]["context"] == "modelops-suite/digits-cnn"
    assert statuses[-1]["target_url"] == f"{SERVER}/{REPO}/actions/runs/99"
    # a new report edits the same comment
    report = json.loads((work / "report.json").read_text())
    report["context"]["pr_title"] = "Train for more epochs"
    (work / "report.json").write_text(json.dumps(report))
    third = comment(work, api, event=event)
    assert "updated" in third.stdout and len(api.comments(REPO, 12)) == 1
    assert "Train for more epochs" in api.comments(REPO, 12)[0]["body"]


def test_synchronize_event_and_check_run(work, api):
    event = event_file(work, "pull_request.synchronize", number=4)
    comment(work, api, "--verdict-as", "check", event=event)
    runs = list(api.repos[REPO].check_runs.values())
    assert len(runs) == 1 and runs[0]["conclusion"] == "failure"
    assert runs[0]["head_sha"] == HEAD_SHA and runs[0]["name"] == "modelops-suite/digits-cnn"
    assert len(api.comments(REPO, 4)) == 1


def test_fork_pr_read_only_token_is_a_notice_not_a_failure(work, api):
    event = event_file(work, fork=True)
    proc = comment(work, api, token="ro-" + SECRET, event=event)
    assert "::notice" in proc.stdout and "fork" in proc.stdout
    assert api.comments(REPO, 12) == [] and api.count("POST") == 1  # tried once, no retry
    body = (work / "out" / "pr-comment.md").read_text()
    assert body.startswith(marker("digits-cnn"))
    assert (work / "summary.md").read_text().strip() == body.strip()
    assert SECRET not in proc.stdout + proc.stderr


def test_github_down_exits_2_after_writing_the_report(work, api):
    api.inject("GET", f"/repos/{REPO}/issues/12/comments", 502, times=50)
    proc = comment(work, api, event=event_file(work), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "502" in proc.stderr and "hint:" in proc.stderr
    assert (work / "out" / "pr-comment.md").is_file() and (work / "summary.md").is_file()
    assert api.count("GET") == 5 and api.count("POST") == 0


def test_token_never_printed_even_with_debug_and_faults(work, api):
    api.inject("GET", f"/repos/{REPO}/issues/12/comments", 502)
    api.inject("POST", f"/repos/{REPO}/issues/12/comments", 429, headers={"retry-after": "0"})
    proc = comment(work, api, "--debug", event=event_file(work))
    out = proc.stdout + proc.stderr
    assert "GET" in out and "urllib3" in out  # debug logging was really on
    assert SECRET not in out and SECRET[:10] not in out
    assert len(api.comments(REPO, 12)) == 1


def test_issue_comment_event_falls_back_to_the_reports_pr(work, api):
    event = event_file(work, "issue_comment.created")
    proc = comment(work, api, event=event, extra_env={"GITHUB_REPOSITORY": REPO})
    # the report's own context names PR 42: without a PR in the event it is used
    assert len(api.comments(REPO, 42)) == 1, proc.stderr


def test_bad_inputs_exit_2_with_one_clear_line(work, api):
    proc = comment(work, api, "--pr", "0", check=False)
    assert proc.returncode == 2 and "--pr 0" in proc.stderr
    (work / "report.json").write_text("{not json")
    proc = comment(work, api, check=False)
    assert proc.returncode == 2 and "report.json" in proc.stderr and "Traceback" not in proc.stderr
    proc = comment(work, api, event=work / "missing.json", check=False)
    assert proc.returncode == 2


def test_a_missing_report_is_a_neutral_comment_pointing_to_the_run(work, api):
    (work / "report.json").unlink()
    event = event_file(work)
    proc = comment(work, api, event=event, check=False)
    assert proc.returncode == 2 and "report.json" in proc.stderr  # no --if-missing: an error
    comment(work, api, "--if-missing", "the evaluate job ended (failure) before it wrote a "
            "report", "--model", "digits-cnn", "--verdict-as", "check", event=event)
    (body,) = [c["body"] for c in api.comments(REPO, 12)]
    assert body.startswith(marker("digits-cnn"))
    assert "the evaluation did not finish" in body and md("ended (failure)") in body
    assert f"{SERVER}/{REPO}/actions/runs/99" in body
    (run,) = api.repos[REPO].check_runs.values()
    assert run["conclusion"] == "failure" and run["head_sha"] == HEAD_SHA


def test_fail_section_marks_a_later_job_that_failed_before_recording(work, api):
    report = json.loads((work / "report.json").read_text())
    report["verdict"] = "pass"
    for section in report["sections"].values():
        section["status"] = "pass" if section.get("status") == "fail" else section["status"]
    (work / "report.json").write_text(json.dumps(report))
    event = event_file(work)
    comment(work, api, "--verdict-as", "check", event=event)
    comment(work, api, "--verdict-as", "check", "--fail-section",
            "compile=the GPU compile job failed; its log says why", event=event)
    (body,) = [c["body"] for c in api.comments(REPO, 12)]
    assert "the GPU compile job failed; its log says why" in body
    runs = list(api.repos[REPO].check_runs.values())
    assert [r["conclusion"] for r in runs] == ["success", "failure"]
    assert "compile" in runs[-1]["output"]["title"]
    bad = comment(work, api, "--fail-section", "compile", event=event, check=False)
    assert bad.returncode == 2 and "NAME=REASON" in bad.stderr
