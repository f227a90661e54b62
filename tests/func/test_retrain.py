"""Retraining on drift: `modelops-ci retrain` with a real git origin, real dvc and the
GitHub imitation, driven by the real repository_dispatch payload."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

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


def _retrain(repo: Path, api, event: dict, fresh: Path, tmp_path: Path):
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps(event))
    env = {**ENV, "GITHUB_TOKEN": "write-token", "GITHUB_REPOSITORY": "octo/models",
           "GITHUB_API_URL": api.api_url, "GITHUB_OUTPUT": str(tmp_path / "out.txt")}
    return subprocess.run([PY, "-m", "modelops.ci", "retrain", "--event", str(event_path),
                           "--fresh-data", str(fresh)], cwd=repo, capture_output=True,
                          text=True, env={**__import__("os").environ, **env}, timeout=600)


def test_drift_dispatch_opens_one_pull_request_with_a_new_data_version(
        model_repo, github_api, tmp_path):  # noqa: F811
    event = webhook_payload("repository_dispatch")
    event["action"] = "model-drift"
    event["client_payload"] = {"model": "digits-cnn", "version": "v7",
                               "alerts": ["ModelPredictionDrift"]}
    fresh = _fresh_batch(tmp_path / "fresh" / "batch-2026-11-28.csv")
    main_lock = (model_repo / "dvc.lock").read_text()

    proc = _retrain(model_repo, github_api, event, fresh.parent, tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["status"] == "opened" and result["pull_request"]
    outputs = dict(line.split("=", 1) for line in
                   (tmp_path / "out.txt").read_text().splitlines())
    assert outputs["status"] == "opened" and outputs["pull-request"] == str(result["pull_request"])

    repo = github_api.repos["octo/models"]
    assert len(repo.pulls) == 1
    pr = repo.pulls[0]
    assert pr["head"]["ref"] == result["branch"] and pr["base"]["ref"] == "main"
    assert "ModelPredictionDrift" in pr["body"]
    # the branch on the origin holds the new data batch and a new dvc.lock; main is untouched
    origin = model_repo.parent / "origin.git"
    show = lambda rev: subprocess.run(["git", "show", rev], cwd=origin, capture_output=True,  # noqa: E731
                                      text=True)
    branch_lock = show(f"{result['branch']}:dvc.lock").stdout
    assert branch_lock and branch_lock != main_lock
    assert show(f"{result['branch']}:data/incoming/{fresh.name}").stdout == fresh.read_text()
    assert show("main:dvc.lock").stdout == main_lock
    raw_rows = (model_repo / "data/raw/digits.csv").read_text().count("\n") - 1
    assert raw_rows == 1797 + 40

    # the same alert again while the pull request is open: no second pull request
    again = _retrain(model_repo, github_api, event, fresh.parent, tmp_path)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "already-open"
    assert len(repo.pulls) == 1
    # once that pull request is closed (here: merged by hand), the same data is not new
    repo.pulls[0]["state"] = "closed"
    git(model_repo, "checkout", "-q", result["branch"])
    third = _retrain(model_repo, github_api, event, fresh.parent, tmp_path)
    assert third.returncode == 0, third.stderr
    assert json.loads(third.stdout.strip().splitlines()[-1])["status"] == "no-new-data"
    assert len(repo.pulls) == 1
    git(model_repo, "checkout", "-q", "main")


def test_a_dispatch_for_another_model_does_nothing(model_repo, github_api, tmp_path):  # noqa: F811
    event = webhook_payload("repository_dispatch")
    event["client_payload"] = {"model": "another-model"}
    fresh = _fresh_batch(tmp_path / "fresh" / "other.csv", seed=9)
    proc = _retrain(model_repo, github_api, event, fresh.parent, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1])["status"] == "not-this-model"
    assert github_api.repos["octo/models"].pulls == []


def test_bad_fresh_data_is_one_clear_error(model_repo, github_api, tmp_path):  # noqa: F811
    bad = tmp_path / "fresh" / "bad.csv"
    bad.parent.mkdir(parents=True)
    bad.write_text("p0,label\n1,2\n")
    work = Path(__import__("shutil").copytree(model_repo, tmp_path / "work", symlinks=True))
    head_before = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=work,
                                 capture_output=True, text=True).stdout.strip()
    branches_before = subprocess.run(["git", "branch", "--list", "retrain/*"], cwd=work,
                                     capture_output=True, text=True).stdout
    proc = _retrain(work, github_api, {"client_payload": {}}, bad.parent, tmp_path)
    assert proc.returncode == 2
    assert "bad.csv" in proc.stderr and "header" in proc.stderr
    assert github_api.repos["octo/models"].pulls == []
    # nothing is left behind: same branch, no new branch, no stray data file, clean tree
    head = subprocess.run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=work,
                          capture_output=True, text=True).stdout.strip()
    assert head == head_before
    branches = subprocess.run(["git", "branch", "--list", "retrain/*"], cwd=work,
                              capture_output=True, text=True).stdout
    assert branches == branches_before
    assert not (work / "data/incoming/bad.csv").exists()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=work, capture_output=True,
                            text=True).stdout
    assert status == ""
