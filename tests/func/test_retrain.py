"""Retraining on drift: `modelops-ci retrain` with a real git origin, real dvc and the
GitHub imitation, driven by the real repository_dispatch payload."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from modelops.yamlio import load_yaml
from tests.conftest import PY
from tests.func.test_pipeline import ENV, FAST, copy_project, dvc, git, set_params
from tests.github_imitation import github_api, webhook_payload  # noqa: F401

pytestmark = pytest.mark.slow


def _fresh_batch(path: Path, n: int = 40, seed: int = 3) -> Path:
    """A batch of labelled digits (shifted by one pixel, like a new scanner would give)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(digits.target), size=n, replace=False)
    images = np.roll(digits.images[rows].astype(int), 1, axis=2)
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    lines = [header] + [",".join(str(v) for v in img.reshape(-1)) + f",{digits.target[r]}"
                        for img, r in zip(images, rows, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def model_repo(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("retrain")
    repo = copy_project(base / "project")
    set_params(repo, **FAST)
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(base / "origin.git")],
                   check=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "remote", "add", "origin", str(base / "origin.git"))
    dvc(repo, "repro")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "reproduced")
    git(repo, "push", "-q", "origin", "main")
    return repo


NOW = "2026-11-28T12:00:00Z"
STARTS = "2026-11-28T10:00:00Z"  # the alert; lookback 7d: data of 2026-11-21 .. 2026-11-28


def _retrain(repo: Path, api, event: dict, fresh: Path, tmp_path: Path, now: str = NOW):
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event))
    env = {**ENV, "GITHUB_TOKEN": "write-token", "GITHUB_REPOSITORY": "octo/models",
           "GITHUB_API_URL": api.api_url, "GITHUB_OUTPUT": str(tmp_path / "out.txt")}
    return subprocess.run([PY, "-m", "modelops.ci", "retrain", "--event", str(event_path),
                           "--fresh-data", str(fresh), "--now", now], cwd=repo,
                          capture_output=True, text=True,
                          env={**__import__("os").environ, **env}, timeout=600)


def _status(proc) -> dict:
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _event(**payload) -> dict:
    event = webhook_payload("repository_dispatch")
    event["action"] = "model-drift"
    event["client_payload"] = {"model": "digits-cnn", "env": "production", "version": "v7",
                               "alerts": ["ModelPredictionDrift"], "starts_at": STARTS,
                               **payload}
    return event


def test_drift_dispatch_opens_one_pull_request_with_a_dvc_tracked_batch(
        model_repo, github_api, tmp_path):  # noqa: F811
    fresh = tmp_path / "fresh"
    _fresh_batch(fresh / "2026-11-27.csv")                # in the window
    _fresh_batch(fresh / "2026-11-10.csv", n=10, seed=5)  # before it: not taken
    (fresh / "README.txt").write_text("not data")
    main_lock = (model_repo / "dvc.lock").read_text()

    result = _status(_retrain(model_repo, github_api, _event(), fresh, tmp_path))
    assert result["status"] == "opened" and result["pull_request"]
    assert result["files"] == ["2026-11-27.csv"]
    outputs = dict(line.split("=", 1) for line in
                   (tmp_path / "out.txt").read_text().splitlines())
    assert outputs["status"] == "opened" and outputs["pull-request"] == str(result["pull_request"])

    repo = github_api.repos["octo/models"]
    assert len(repo.pulls) == 1
    pr = repo.pulls[0]
    pr["created_at"] = NOW  # the imitation stamps its own clock; this test runs on NOW's
    assert pr["head"]["ref"] == result["branch"] == f"retrain/digits-cnn-{result['batch']}"
    assert "ModelPredictionDrift" in pr["body"] and "`accuracy`" in pr["body"]
    assert "2026-11-21..2026-11-28" in pr["body"]
    # the drift report (modelops.ci.drift_report): the fresh batch, shifted by a pixel,
    # against the baseline of the model it would replace
    assert "**Input drift of the fresh data**" in pr["body"] and "(drifted)" in pr["body"]
    assert (model_repo / "reports/drift/drift-report.md").is_file()
    origin = model_repo.parent / "origin.git"
    show = lambda rev: subprocess.run(["git", "show", rev], cwd=origin, capture_output=True,  # noqa: E731
                                      text=True)
    branch_lock = show(f"{result['branch']}:dvc.lock").stdout
    assert branch_lock and branch_lock != main_lock
    assert show("main:dvc.lock").stdout == main_lock
    # the batch is tracked by DVC: git holds its .dvc file (with where it came from), not the rows
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", result["branch"]],
                           cwd=origin, capture_output=True, text=True).stdout.splitlines()
    batch = [f for f in files if f.startswith("data/incoming/digits-cnn-")]
    name = f"data/incoming/digits-cnn-2026-11-27_2026-11-27-{result['batch']}.csv"
    assert batch == [name + ".dvc"]
    meta = load_yaml(show(f"{result['branch']}:{name}.dvc").stdout)["meta"]["modelops"]
    assert meta["window"] == ["2026-11-21", "2026-11-28"] and meta["rows"] == 40
    assert [p["name"] for p in meta["partitions"]] == ["2026-11-27.csv"]
    raw_rows = (model_repo / "data/raw/digits.csv").read_text().count("\n") - 1
    assert raw_rows == 1797 + 40

    # the same alert again while the pull request is open: no second pull request
    git(model_repo, "checkout", "-q", "main")
    assert _status(_retrain(model_repo, github_api, _event(), fresh, tmp_path))["status"] == \
        "already-open"
    # closed without a merge: within the cooldown nothing happens ...
    pr["state"], pr["closed_at"] = "closed", NOW
    assert _status(_retrain(model_repo, github_api, _event(), fresh, tmp_path))["status"] == \
        "cooldown"
    # ... and after it the same batch is not proposed again: it was rejected
    later = "2026-11-29T12:00:00Z"
    assert _status(_retrain(model_repo, github_api, _event(), fresh, tmp_path, now=later)
                   )["status"] == "rejected-before"
    assert len(repo.pulls) == 1
    assert git(model_repo, "status", "--porcelain").stdout.strip() == ""


def test_a_dispatch_for_another_model_or_environment_does_nothing(model_repo, github_api,  # noqa: F811
                                                                  tmp_path):
    fresh = tmp_path / "fresh"
    _fresh_batch(fresh / "2026-11-27.csv", seed=9)
    other = _retrain(model_repo, github_api, _event(model="another-model"), fresh, tmp_path)
    assert _status(other)["status"] == "not-this-model"
    staging = _retrain(model_repo, github_api, _event(env="staging"), fresh, tmp_path)
    assert _status(staging)["status"] == "not-this-env"
    assert github_api.repos["octo/models"].pulls == []


def test_no_data_in_the_window_is_no_new_data(model_repo, github_api, tmp_path):  # noqa: F811
    fresh = tmp_path / "fresh"
    _fresh_batch(fresh / "2026-10-01.csv", seed=4)
    assert _status(_retrain(model_repo, github_api, _event(), fresh, tmp_path))["status"] == \
        "no-new-data"
    assert github_api.repos["octo/models"].pulls == []


def test_bad_fresh_data_is_one_clear_error(model_repo, github_api, tmp_path):  # noqa: F811
    bad = tmp_path / "fresh" / "2026-11-27.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("p0,label\n1,2\n")
    work = Path(__import__("shutil").copytree(model_repo, tmp_path / "work", symlinks=True))
    git(work, "checkout", "-q", "main")
    branches_before = subprocess.run(["git", "branch", "--list", "retrain/*"], cwd=work,
                                     capture_output=True, text=True).stdout
    proc = _retrain(work, github_api, _event(), bad.parent, tmp_path)
    assert proc.returncode == 2
    assert "data/incoming/digits-cnn-2026-11-27" in proc.stderr and "header" in proc.stderr
    assert github_api.repos["octo/models"].pulls == []
    # nothing is left behind: same branch, no new branch, no batch or .dvc file, clean tree
    head = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=work,
                          capture_output=True, text=True).stdout.strip()
    assert head == "main"
    branches = subprocess.run(["git", "branch", "--list", "retrain/*"], cwd=work,
                              capture_output=True, text=True).stdout
    assert branches == branches_before
    assert not list((work / "data/incoming").glob("digits-cnn-*"))
    status = subprocess.run(["git", "status", "--porcelain"], cwd=work, capture_output=True,
                            text=True).stdout
    assert status == ""


def test_window_and_storm_guard_rules():
    import datetime as dt
    from types import SimpleNamespace

    from modelops.ci.retrain import data_window, partition_date, storm_guard
    from modelops.settings.retrain import RetrainParams

    rt = RetrainParams(lookback="3d", cooldown="6h", daily_cap=2)
    now = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)
    assert data_window({"starts_at": STARTS}, rt, now) == (dt.date(2026, 11, 25),
                                                           dt.date(2026, 11, 28))
    assert data_window({}, rt, now) == (dt.date(2026, 11, 25), dt.date(2026, 11, 28))
    assert partition_date("dt=2026-11-27") == dt.date(2026, 11, 27)
    assert partition_date("20261127.csv") == dt.date(2026, 11, 27)
    assert partition_date("2026-13-01.csv") is None and partition_date("x.csv") is None

    def pr(state, hours_ago):
        return SimpleNamespace(state=state, created_at=now - dt.timedelta(hours=hours_ago),
                               number=1, html_url="u", head=SimpleNamespace(ref="r"))

    assert storm_guard([pr("open", 100)], rt, now)[0] == "already-open"
    assert storm_guard([pr("closed", 1)], rt, now)[0] == "cooldown"
    assert storm_guard([pr("closed", 7), pr("closed", 20)], rt, now)[0] == "daily-cap"
    assert storm_guard([pr("closed", 7), pr("closed", 30)], rt, now) is None
