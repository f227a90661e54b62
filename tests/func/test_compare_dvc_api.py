"""The in-process DVC queries of ci.compare return what the ``dvc ... --json`` commands print.

ci.compare asks DVC's Python API on one Repo instead of starting four ``dvc`` processes; this
checks, on a real git + DVC repository, that each answer equals the command's JSON (between two
commits, and between a commit and a workspace with a changed parameter, a modified output and a
deleted one), so a DVC upgrade that changes either side shows up here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from modelops.ci.compare import dvc_queries
from modelops.errors import ExternalError
from tests.conftest import PY, run

DVC_YAML = """\
stages:
  make:
    cmd: python make.py
    deps: [make.py]
    params: [train.epochs, train.learning_rate]
    outs: [data/out.txt, data/dir]
    metrics:
      - metrics/m.json:
          cache: false
"""

MAKE_PY = """\
import json, pathlib
p = {}
for line in pathlib.Path("params.yaml").read_text().splitlines():
    if ":" in line and line.startswith("  "):
        k, v = line.split(":", 1)
        p[k.strip()] = float(v)
pathlib.Path("data/dir").mkdir(parents=True, exist_ok=True)
pathlib.Path("data/out.txt").write_text(f"{p}\\n")
for i in range(3):
    pathlib.Path(f"data/dir/{i}.txt").write_text(f"{i * p['epochs']}\\n")
pathlib.Path("metrics").mkdir(exist_ok=True)
pathlib.Path("metrics/m.json").write_text(json.dumps(
    {"accuracy": round(1 - 1 / (1 + p["epochs"]), 6), "size": p["learning_rate"],
     "per_class": {"0": {"f1": p["epochs"] / 100}}}))
"""


def _params(epochs: int, lr: float) -> str:
    return f"train:\n  epochs: {epochs}\n  learning_rate: {lr}\n"


def _dvc(repo: Path, *args: str) -> dict:
    proc = run([PY, "-m", "dvc", *args], repo, timeout=300)
    return json.loads(proc.stdout.strip() or "{}")


def _cli(repo: Path, a_rev: str, b_rev: str | None) -> dict:
    revs = [a_rev] + ([b_rev] if b_rev else [])
    out = {"metrics": _dvc(repo, "metrics", "diff", *revs, "--all", "--json"),
           "params": _dvc(repo, "params", "diff", *revs, "--json"),
           "diff": _dvc(repo, "diff", "--json", *revs)}
    if b_rev is None:
        out["status"] = _dvc(repo, "status", "--json")
    return out


def _api(repo: Path, a_rev: str, b_rev: str | None) -> dict:
    with dvc_queries(repo) as dvc:
        out = {"metrics": dvc.metrics_diff(a_rev, b_rev), "params": dvc.params_diff(a_rev, b_rev),
               "diff": dvc.diff(a_rev, b_rev)}
        if b_rev is None:
            out["status"] = dvc.status()
    return out


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                       "GIT_CONFIG_NOSYSTEM": "1"}.items():
        os.environ.setdefault(key, value)
    repo = tmp_path_factory.mktemp("dvcapi")
    run(["git", "init", "-q", "-b", "main"], repo)
    run([PY, "-m", "dvc", "init", "-q"], repo)
    run([PY, "-m", "dvc", "config", "core.analytics", "false"], repo)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / "make.py").write_text(MAKE_PY)
    (repo / "params.yaml").write_text(_params(3, 0.01))
    run([PY, "-m", "dvc", "repro", "-q"], repo, timeout=300)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "base"], repo)
    run(["git", "checkout", "-q", "-b", "pr"], repo)
    (repo / "params.yaml").write_text(_params(9, 0.01))
    run([PY, "-m", "dvc", "repro", "-q"], repo, timeout=300)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "more epochs"], repo)
    # the workspace moves on: a parameter not reproduced, one output edited, one deleted
    (repo / "params.yaml").write_text(_params(9, 0.5))
    (repo / "data" / "out.txt").write_text("edited by hand\n")
    for f in (repo / "data" / "dir").iterdir():
        f.unlink()
    (repo / "data" / "dir").rmdir()
    return repo


@pytest.mark.slow
def test_workspace_answers_equal_the_dvc_commands(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the queries must not depend on the caller's directory
    expected = _cli(repo, "main", None)
    got = _api(repo, "main", None)
    assert Path.cwd() == tmp_path
    assert got == expected
    # and the answers are not trivially empty
    assert got["metrics"]["metrics/m.json"]["accuracy"]["old"] == 0.75
    assert got["params"]["params.yaml"]["train.learning_rate"]["new"] == 0.5
    assert {e["path"] for e in got["diff"]["modified"]} >= {"data/out.txt"}
    assert "data/dir/" in {e["path"] for e in got["diff"]["deleted"]}
    assert all("hash" not in e for entries in got["diff"].values() for e in entries)
    assert list(got["status"]) == ["make"]


@pytest.mark.slow
def test_answers_between_two_commits_equal_the_dvc_commands(repo):
    head = run(["git", "rev-parse", "pr"], repo).stdout.strip()
    expected = _cli(repo, "main", head)
    got = _api(repo, "main", head)
    assert got == expected
    assert got["metrics"]["metrics/m.json"]["accuracy"] == {"old": 0.75, "new": 0.9,
                                                            "diff": pytest.approx(0.15)}
    assert "not in cache" not in got["diff"]
    assert {e["path"] for e in got["diff"]["modified"]} >= {"data/out.txt", "data/dir/"}


def test_a_dvc_failure_is_one_external_error_naming_the_command(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    run([PY, "-m", "dvc", "init", "-q"], tmp_path)
    (tmp_path / "dvc.yaml").write_text("stages: [unclosed\n")
    with pytest.raises(ExternalError, match=r"^dvc status failed: ") as info, \
            dvc_queries(tmp_path) as dvc:
        dvc.status()
    assert "dvc.yaml" in str(info.value)
