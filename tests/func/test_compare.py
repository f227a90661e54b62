"""Compare + gates + report on a real git + DVC repository with a base and two changes.

The repository runs a tiny stand-in pipeline (tests/data/compare: logistic regression on the
scikit-learn digits, exported to ONNX, metrics in the contract format) so `dvc repro` takes
seconds. One change lowers accuracy (fewer epochs), one raises it (stronger model, more data).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import PY, ROOT, run

DATA = ROOT / "tests" / "data" / "compare"

DVC_YAML = """\
stages:
  ingest:
    cmd: python ingest.py
    deps: [ingest.py]
    params: [prepare.test_fraction]
    outs: [data/raw/digits.csv]
  train:
    cmd: python train.py
    deps: [train.py, data/raw/digits.csv]
    params: [train.epochs, train.learning_rate, prepare.val_fraction]
    outs: [models/model.onnx]
    metrics:
      - metrics/metrics.json:
          cache: false
"""

PARAMS = """\
modelops:
  model:
    name: digits-cnn
    team: ml-platform
    headline: {{accuracy: higher}}
    card:
      template: model-cards/templates/model-card.md.j2
      metadata: {{pipeline_tag: image-classification, datasets: [sklearn-digits]}}
  gates:
    accuracy: {{min: 0.8, max_drop: 0.005}}
    model_size_mb: {{max: 1}}
prepare:
  val_fraction: 0.3
  test_fraction: {test_fraction}
train:
  epochs: {epochs}
  learning_rate: {lr}
"""


def ci(repo: Path, *args: str, check: bool = True):
    env = {"PYTHONPATH": str(ROOT), "PATH": str(Path(sys.executable).parent) + os.pathsep
           + os.environ.get("PATH", "")}
    for key in ("GITHUB_BASE_REF", "GITHUB_EVENT_PATH", "GITHUB_RUN_ID"):
        env[key] = ""
    return run([PY, "-m", "modelops.ci", *args], repo, check=check, env=env, timeout=300)


def write_card(repo: Path) -> None:
    from modelops.ci.card import card_path, generate_card

    name, text = generate_card(repo)
    card_path(name, repo).write_text(text, encoding="utf-8")


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)


def set_params(repo: Path, epochs: int, lr: float, test_fraction: float = 0.25) -> None:
    (repo / "params.yaml").write_text(PARAMS.format(epochs=epochs, lr=lr,
                                                    test_fraction=test_fraction))


def repro(repo: Path) -> dict:
    env = {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    run([PY, "-m", "dvc", "repro", "-q"], repo, env=env, timeout=300)
    return json.loads((repo / "metrics" / "metrics.json").read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """main: base model; branch lower: epochs 30 -> 2; branch higher: C 0.01 -> 1, more data."""
    for key, value in {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
                       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
                       "GIT_CONFIG_NOSYSTEM": "1"}.items():
        os.environ.setdefault(key, value)
    repo = tmp_path_factory.mktemp("modelrepo")
    run(["git", "init", "-q", "-b", "main"], repo)
    run([PY, "-m", "dvc", "init", "-q"], repo)
    run([PY, "-m", "dvc", "config", "core.analytics", "false"], repo)
    shutil.copy(DATA / "train.py", repo)
    shutil.copy(DATA / "ingest.py", repo)
    shutil.copytree(ROOT / "model-cards" / "templates", repo / "model-cards" / "templates")
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / ".gitignore").write_text("/reports/\n")
    set_params(repo, epochs=30, lr=0.01)
    metrics = {"main": repro(repo)}
    write_card(repo)
    commit(repo, "base model")

    run(["git", "checkout", "-q", "-b", "higher"], repo)
    set_params(repo, epochs=200, lr=1.0, test_fraction=0.35)
    metrics["higher"] = repro(repo)
    write_card(repo)
    commit(repo, "stronger model, more data")

    run(["git", "checkout", "-q", "main"], repo)
    run([PY, "-m", "dvc", "checkout", "-q"], repo)
    run(["git", "checkout", "-q", "-b", "lower"], repo)
    set_params(repo, epochs=2, lr=0.01)
    metrics["lower"] = repro(repo)   # workspace = the PR head, as in CI after dvc repro
    return repo, metrics


def metric(report: dict, name: str) -> dict:
    return next(m for m in report["sections"]["evaluate"]["metrics"] if m["name"] == name)


def gate(report: dict, rule: str) -> dict:
    return next(g for g in report["sections"]["evaluate"]["gates"]
                if g["metric"] == "accuracy" and g["rule"] == rule)


@pytest.mark.slow
def test_change_that_lowers_accuracy_fails_the_regression_gate(project):
    repo, metrics = project
    base_acc, head_acc = metrics["main"]["accuracy"], metrics["lower"]["accuracy"]
    assert head_acc < base_acc - 0.005, "the fixture change must lower accuracy"

    proc = ci(repo, "report", "--base", "main", "--markdown", "reports/pr-comment.md")
    assert "wrote reports/report.json" in proc.stdout
    report = json.loads((repo / "reports" / "report.json").read_text())
    acc = metric(report, "accuracy")
    assert (acc["base"], acc["head"]) == (base_acc, head_acc)
    assert acc["delta"] == pytest.approx(head_acc - base_acc)
    assert gate(report, "max_drop")["status"] == "fail"
    assert gate(report, "min")["status"] == ("pass" if head_acc >= 0.8 else "fail")
    assert report["verdict"] == "fail"
    ev = report["sections"]["evaluate"]
    assert {"file": "params.yaml", "name": "train.epochs", "base": 30, "head": 2} in ev["params"]
    assert [(s["stage"], s["why"]) for s in ev["stages"]] == [("train", ["param train.epochs"])]
    assert ev["stale"] == []
    per3 = next(c for c in ev["per_class"] if c["class"] == "3")
    assert per3["f1"]["head"] == metrics["lower"]["per_class"]["3"]["f1"]
    card = report["sections"]["card"]
    assert card["status"] == "pass" and card["changed"] and card["base_found"]
    assert re.search(rf"^-\s+value: {base_acc}$", card["diff"], re.M)  # whatever the indent
    assert re.search(rf"^\+\s+value: {head_acc}$", card["diff"], re.M)

    body = (repo / "reports" / "pr-comment.md").read_text()
    assert body.startswith("<!-- modelops-suite:sticky:digits-cnn -->")
    assert "❌ digits-cnn: changes requested by the gates" in body

    gate_proc = ci(repo, "gate", "--report", "reports/report.json", check=False)
    assert gate_proc.returncode == 1, gate_proc.stdout + gate_proc.stderr
    assert "gate verdict: fail" in gate_proc.stdout
    # report --gate: the same judgement in the same process, after writing the report
    gated = ci(repo, "report", "--base", "main", "--out", "reports/gated.json", "--gate",
               check=False)
    assert gated.returncode == 1, gated.stdout + gated.stderr
    assert gate_proc.stdout in gated.stdout
    assert json.loads((repo / "reports" / "gated.json").read_text())["verdict"] == "fail"
    direct = ci(repo, "gate", "--base", "main", check=False)
    assert direct.returncode == 1 and "max_drop" in direct.stdout


@pytest.mark.slow
def test_change_that_raises_accuracy_passes_from_a_shallow_clone(project, tmp_path):
    from modelops.ci.report import build_report

    repo, metrics = project
    base_acc, head_acc = metrics["main"]["accuracy"], metrics["higher"]["accuracy"]
    assert head_acc > base_acc, "the fixture change must raise accuracy"
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", "--depth", "1", "--branch", "higher", f"file://{repo}",
         str(clone)], tmp_path)
    assert run(["git", "rev-parse", "--verify", "-q", "origin/main"], clone,
               check=False).returncode != 0, "the shallow clone must lack the base"

    report = build_report(clone, "origin/main", "HEAD", context={})
    acc = metric(report, "accuracy")
    assert (acc["base"], acc["head"]) == (base_acc, head_acc)
    assert acc["delta"] > 0
    assert gate(report, "max_drop")["status"] == "pass"
    assert gate(report, "min")["status"] == "pass"
    assert report["sections"]["evaluate"]["status"] == "pass"
    ev = report["sections"]["evaluate"]
    names = {p["name"]: (p["base"], p["head"]) for p in ev["params"]}
    assert names["train.learning_rate"] == (0.01, 1.0)
    assert names["prepare.test_fraction"] == (0.25, 0.35)
    raw = next(d for d in ev["data"] if d["path"] == "data/raw/digits.csv")
    assert raw["change"] == "modified" and raw["head_size"] > raw["base_size"] > 0
    assert {s["stage"] for s in ev["stages"]} == {"ingest", "train"}


@pytest.mark.slow
def test_missing_base_without_fetch_says_what_to_fetch(project, tmp_path):
    repo, _ = project
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", "--depth", "1", "--branch", "higher", f"file://{repo}",
         str(clone)], tmp_path)
    proc = ci(clone, "compare", "--base", "origin/main", "--head", "HEAD", "--no-fetch",
              check=False)
    assert proc.returncode == 2
    assert "base revision 'origin/main' is not in this shallow clone" in proc.stderr
    assert "git fetch --depth=50 origin main" in proc.stderr


@pytest.mark.slow
def test_evaluate_reads_the_two_commits_beside_the_reproduction_with_the_same_report(
        project, tmp_path, monkeypatch):
    """``ci evaluate`` compares the commits in a forked child while it reproduces: the report
    is the one the serial order writes (``MODELOPS_NO_FORK=1``), byte for byte but its time,
    and the child's progress line is in the log."""
    repo, metrics = project
    reports = {}
    for mode in ("forked", "serial"):
        work = tmp_path / mode
        shutil.copytree(repo, work, symlinks=True)
        run(["git", "checkout", "-q", "-f", "higher"], work)
        run(["git", "clean", "-qfdx", "-e", ".dvc"], work)  # a fresh checkout: no outputs
        if mode == "serial":
            monkeypatch.setenv("MODELOPS_NO_FORK", "1")
        else:
            monkeypatch.delenv("MODELOPS_NO_FORK", raising=False)
        proc = ci(work, "evaluate", "--base", "main", "--head", "HEAD", "--pull", "false",
                  "--plots", "none", "--no-fetch")
        assert "compare: reading main and HEAD with DVC" in proc.stderr, proc.stderr[-2000:]
        assert ("in a child process, beside the reproduction" in proc.stdout) == \
            (mode == "forked"), proc.stdout[-2000:]
        report = json.loads((work / "reports" / "report.json").read_text())
        report.pop("generated_at")
        reports[mode] = report
    assert reports["forked"] == reports["serial"]
    acc = metric(reports["forked"], "accuracy")
    assert (acc["base"], acc["head"]) == (metrics["main"]["accuracy"],
                                          metrics["higher"]["accuracy"])
    assert reports["forked"]["sections"]["reproduction"]["status"] == "pass"
