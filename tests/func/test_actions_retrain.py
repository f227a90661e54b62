"""retrain.yml, run the way the runner runs it (tests/actions_harness.py), driven by the real
repository_dispatch payload: a drift dispatch ends with a pull request against the GitHub
imitation holding a new dvc.lock; the same dispatch with no new data opens nothing."""

from __future__ import annotations

import copy
import datetime
import shutil

import pytest

from tests.actions_harness import Runner, github_context
from tests.conftest import ROOT, run
from tests.func.test_actions import GIT_ENV, REPO, example, git  # noqa: F401 (fixture)
from tests.func.test_retrain import _fresh_batch
from tests.github_imitation import github_api, webhook_payload  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow
WORKFLOW = ROOT / ".github/workflows/retrain.yml"
TODAY = datetime.datetime.now(datetime.UTC)


def _dispatch(model: str = "digits-cnn") -> dict:
    payload = copy.deepcopy(webhook_payload("repository_dispatch"))
    payload["action"] = "model-drift"
    payload["branch"] = "main"
    payload["client_payload"] = {"model": model, "env": "production", "version": "abc123",
                                 "alerts": ["ModelPredictionDrift"],
                                 "starts_at": TODAY.strftime("%Y-%m-%dT00:00:00Z")}
    payload["repository"]["full_name"] = REPO
    return payload


def test_drift_dispatch_runs_retrain_yml_to_a_pull_request(example, tmp_path,  # noqa: F811
                                                           github_api):  # noqa: F811
    ws = tmp_path / "ws"
    shutil.copytree(example, ws, symlinks=True)
    origin = tmp_path / "origin.git"
    shutil.copytree(example.parent / "origin.git", origin)
    git(ws, "remote", "set-url", "origin", str(origin))
    fresh = _fresh_batch(tmp_path / "incoming" / f"{TODAY:%Y-%m-%d}.csv")
    main_lock = (ws / "dvc.lock").read_text()

    def job(root_name: str):
        payload = _dispatch()
        gh = github_context("repository_dispatch", payload, ws, token="write-token",
                            api_url=github_api.api_url)
        r = Runner(ws, tmp_path / root_name, gh, env=GIT_ENV,
                   secrets={"RETRAIN_TOKEN": "write-token"},
                   vars={"FRESH_DATA_URL": str(fresh.parent)})
        return r.run_job(WORKFLOW, "retrain")

    result = job("runner-1")
    assert result.status == "success", result.log[-4000:]
    pulls = github_api.repos[REPO].pulls
    assert len(pulls) == 1
    branch = pulls[0]["head"]["ref"]
    assert branch.startswith("retrain/digits-cnn-") and pulls[0]["base"]["ref"] == "main"
    assert "status=opened" in result.summary
    new_lock = run(["git", "show", f"{branch}:dvc.lock"], cwd=origin, env=GIT_ENV).stdout
    assert new_lock != main_lock
    assert run(["git", "show", "main:dvc.lock"], cwd=origin, env=GIT_ENV).stdout == main_lock
    files = run(["git", "ls-tree", "-r", "--name-only", branch], cwd=origin, env=GIT_ENV).stdout
    batches = [f for f in files.splitlines() if f.startswith("data/incoming/digits-cnn-")]
    assert len(batches) == 1 and batches[0].endswith(".csv.dvc")  # tracked by DVC, not git
    assert "write-token" not in result.log

    # Alertmanager repeats the alert while the pull request is still open: nothing new
    git(ws, "checkout", "-q", "main")
    again = job("runner-2")
    assert again.status == "success", again.log[-4000:]
    assert "status=already-open" in again.summary
    assert len(github_api.repos[REPO].pulls) == 1
    assert git(ws, "rev-parse", "--abbrev-ref", "HEAD") == "main"
