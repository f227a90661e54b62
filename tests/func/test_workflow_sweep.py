"""A parameter sweep of four points: as one Workflow with a parallel task per point (run by the
local Argo emulation) and here in parallel processes; both end in one comparison report and one
pull request for the best point (by the headline metric), against the GitHub imitation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.argo_executor import LocalArgo
from tests.func.test_workflow_run import (
    ENV,
    SECRETS,
    checkout,
    dvc,
    git,
    make_repo,
    render,
    run,
)
from tests.github_imitation import github_api  # noqa: F401 (fixture)

pytestmark = pytest.mark.slow
GRID = {"a.x": [1, 2, 3, 5]}  # score = 1 - (x - 3)^2 / 100: the best point is x = 3


def reference_point(tmp: Path, origin: Path, overrides: list[str]) -> Path:
    from dvc.utils.hydra import apply_overrides

    ref = tmp / "reference-point"
    run(["git", "clone", "-q", str(origin), str(ref)], tmp)
    apply_overrides(ref / "params.yaml", overrides)
    dvc(ref, "repro", "--pull")
    return ref


def _check_winner(tmp: Path, origin: Path, api, branch_start: str) -> dict:
    pulls = api.repos["octo/models"].pulls
    assert len(pulls) == 1, pulls
    pr = pulls[0]
    assert pr["head"]["ref"].startswith(branch_start)
    body = pr["body"]
    assert "Sweep of `abc`: 4 point(s)" in body and "Best: **p2**" in body
    for x in GRID["a.x"]:
        assert f"| {x} |" in body
    assert "a.x=3" in pr["title"]
    got = checkout(tmp, origin, pr["head"]["ref"])
    want = reference_point(tmp, origin, ["a.x=3"])
    for rel in ("params.yaml", "dvc.lock", "c.out", "metrics.json", "plots/c.csv"):
        assert (got / rel).read_bytes() == (want / rel).read_bytes(), rel
    return pr


def test_sweep_workflow_runs_points_in_parallel_and_proposes_the_best(tmp_path, github_api):  # noqa: F811
    repo, origin = make_repo(tmp_path, github_api.api_url, str(tmp_path / "dvc-remote"),
                             sweep={"grid": GRID})
    doc = render(repo, "--sweep")
    result = LocalArgo(doc, tmp_path / "argo", base_env=ENV, secrets=SECRETS).run()
    assert result.phase == "Succeeded", result.logs()[-6000:]
    points = result.node(".modelops-points")
    assert [c.name[len(points.name) - len("modelops-points"):] for c in points.children] == [
        "modelops-points(0:overrides:[\"a.x=1\"],point:p0)",
        "modelops-points(1:overrides:[\"a.x=2\"],point:p1)",
        "modelops-points(2:overrides:[\"a.x=3\"],point:p2)",
        "modelops-points(3:overrides:[\"a.x=5\"],point:p3)"]
    _check_winner(tmp_path, origin, github_api, f"train/abc-{result.name}")
    report = json.loads((result.node(".modelops-compare").artifacts["report"]
                         / "sweep-report.json").read_text())
    assert report["best"] == "p2" and report["ranking"][0] == "p2"
    assert [p["metrics"]["score"] for p in report["points"]] == [0.96, 0.99, 1.0, 0.96]
    # the points' refs were removed once the winner had its branch
    refs = git(origin, "for-each-ref", "refs/modelops").strip()
    assert refs == ""


def test_sweep_here_in_parallel_processes(tmp_path, github_api):  # noqa: F811
    repo, origin = make_repo(tmp_path, github_api.api_url, str(tmp_path / "dvc-remote"),
                             sweep={"grid": GRID})
    env = {"GITHUB_TOKEN": "write-token", "GITHUB_REPOSITORY": "octo/models",
           "GITHUB_API_URL": github_api.api_url}
    proc = run(["modelops-gitops", "workflow", "sweep", "--jobs", "2", "--repo", str(repo)],
               repo, env=env)
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["status"] == "opened" and outcome["point"] == "p2"
    rows = re.findall(r"^\| p\d", (repo / "reports/sweep-report.md").read_text(), re.M)
    assert len(rows) == 4
    _check_winner(tmp_path, origin, github_api, "train/abc-sweep-local-")
    # every point's commit is kept locally under refs/modelops/sweeps/
    assert len(git(repo, "for-each-ref", "refs/modelops/sweeps").splitlines()) == 4
