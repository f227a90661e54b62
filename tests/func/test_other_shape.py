"""The pull-request path on a repository of another shape than the bundled example.

Built inline with real git and real DVC: a text classifier whose own sections (``featurize``,
``fit``) the suite never reads; stages named ``featurize`` and ``fit``; two metrics files, the
main one DVC-tracked (``cache: true``) at ``eval/metrics.json``; a confusion plot and a curve;
no ONNX artifact, no card template, no compile stage; a DVC remote given by a relative path.
The change is judged from a fresh clone with an empty DVC cache, as on a CI runner: the base
revision's DVC-tracked metrics are read from the remote (``dvc.api.read``), not called "no
baseline"; compile and deploy are ``skipped`` with the reason; the card comes from the built-in
template; the comment is green.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import PY, run

pytestmark = pytest.mark.slow

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid",
           "GIT_CONFIG_NOSYSTEM": "1"}

PARAMS = """\
featurize: {{vocabulary: {vocabulary}}}
fit: {{strength: {strength}}}
modelops:
  model:
    name: ticket-router
    description: Routes support tickets to a queue
    metrics: [eval/metrics.json, eval/extra.json]
    headline: {{auc: higher, loss: lower}}
  gates:
    auc: {{min: 0.5, max_drop: 0.05}}
    eval/extra.json:rows: {{min: 10}}
"""

FEATURIZE = """\
import json, pathlib, yaml
p = yaml.safe_load(open("params.yaml"))["featurize"]
pathlib.Path("features").mkdir(exist_ok=True)
pathlib.Path("features/vocab.json").write_text(json.dumps({"size": p["vocabulary"]}))
"""

FIT = """\
import json, pathlib, yaml
p = yaml.safe_load(open("params.yaml"))["fit"]
size = json.loads(pathlib.Path("features/vocab.json").read_text())["size"]
auc = round(0.6 + 0.3 * p["strength"] * size / (size + 100), 6)
for d in ("eval", "model"):
    pathlib.Path(d).mkdir(exist_ok=True)
pathlib.Path("model/model.pkl").write_bytes(bytes([size % 256]) * 64)
pathlib.Path("eval/metrics.json").write_text(json.dumps({"auc": auc, "loss": round(1 - auc, 6)}))
pathlib.Path("eval/extra.json").write_text(json.dumps({"rows": 40, "classes": 3}))
labels = ["billing", "bug", "other"]
rows = ["actual,predicted"] + [f"{labels[i % 3]},{labels[(i + (i % 5 == 0)) % 3]}"
                               for i in range(30)]
pathlib.Path("eval/confusion.csv").write_text("\\n".join(rows) + "\\n")
pathlib.Path("eval/curve.csv").write_text(
    "threshold,precision\\n" + "".join(f"{t / 10},{auc * t / 10}\\n" for t in range(1, 10)))
"""

DVC_YAML = """\
stages:
  featurize:
    cmd: python featurize.py
    deps: [featurize.py]
    params: [featurize]
    outs: [features]
  fit:
    cmd: python fit.py
    deps: [fit.py, features]
    params: [fit]
    outs: [model/model.pkl]
    metrics:
      - eval/metrics.json
      - eval/extra.json:
          cache: false
    plots:
      - eval/confusion.csv:
          template: confusion
          x: actual
          y: predicted
          cache: false
      - eval/curve.csv:
          x: threshold
          y: precision
          cache: false
"""


def _env() -> dict[str, str]:
    return {**GIT_ENV, "PATH": str(Path(sys.executable).parent) + os.pathsep
            + os.environ.get("PATH", "")}


def sh(repo: Path, *cmd: str, check: bool = True):
    return run(list(cmd), repo, env=_env(), timeout=600, check=check)


def ci(repo: Path, *args: str, check: bool = True):
    env = {**_env(), "GITHUB_BASE_REF": "", "GITHUB_EVENT_PATH": "", "GITHUB_RUN_ID": ""}
    return run([PY, "-m", "modelops.ci", *args], repo, env=env, timeout=600, check=check)


def set_params(repo: Path, vocabulary: int, strength: float) -> None:
    (repo / "params.yaml").write_text(PARAMS.format(vocabulary=vocabulary, strength=strength))


@pytest.fixture(scope="module")
def shape(tmp_path_factory):
    """``origin`` (bare), a DVC remote beside it (``../../remote`` from each clone's .dvc/),
    main with the base model pushed, and a branch ``stronger`` that raises auc."""
    top = tmp_path_factory.mktemp("shape")
    repo, remote = top / "work", top / "remote"
    repo.mkdir()
    remote.mkdir()
    sh(repo, "git", "init", "-q", "-b", "main")
    sh(repo, PY, "-m", "dvc", "init", "-q")
    sh(repo, PY, "-m", "dvc", "config", "core.analytics", "false")
    sh(repo, PY, "-m", "dvc", "remote", "add", "-d", "store", "../remote")
    assert "../../remote" in (repo / ".dvc" / "config").read_text()  # relative to .dvc/
    (repo / "featurize.py").write_text(FEATURIZE)
    (repo / "fit.py").write_text(FIT)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    (repo / ".gitignore").write_text("/reports/\n")
    set_params(repo, vocabulary=100, strength=0.5)
    sh(repo, PY, "-m", "dvc", "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "base model")
    sh(repo, PY, "-m", "dvc", "push", "-q")
    base = json.loads((repo / "eval" / "metrics.json").read_text())
    assert "eval/metrics.json" not in sh(repo, "git", "ls-files").stdout  # DVC-tracked

    sh(repo, "git", "checkout", "-q", "-b", "stronger")
    set_params(repo, vocabulary=300, strength=0.9)
    sh(repo, PY, "-m", "dvc", "repro", "-q")
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", "stronger model")
    sh(repo, PY, "-m", "dvc", "push", "-q")
    head = json.loads((repo / "eval" / "metrics.json").read_text())
    sh(top, "git", "clone", "-q", "--bare", str(repo), str(top / "origin.git"))
    return top, base, head


@pytest.fixture
def clone(shape, tmp_path):
    """A fresh clone of the branch next to the remote, as a runner has it: no DVC cache, no
    workspace outputs."""
    top, _, _ = shape
    ws = top / f"ci-{tmp_path.name}"
    sh(top, "git", "clone", "-q", "--branch", "stronger", str(top / "origin.git"), str(ws))
    sh(ws, "git", "fetch", "-q", "origin", "main:refs/remotes/origin/main")
    assert not (ws / ".dvc" / "cache").exists() and not (ws / "eval" / "metrics.json").exists()
    yield ws


def test_dvc_tracked_metrics_have_a_baseline_and_no_onnx_means_skipped_not_failed(
        shape, clone):
    _, base, head = shape
    # what the evaluate action runs: reproduce (pulls the settings' outputs), then report
    out = ci(clone, "reproduce", "--pull", "true").stdout
    assert "dvc pull" in out and (clone / "eval" / "metrics.json").is_file()
    ci(clone, "report", "--base", "origin/main", "--markdown", "reports/comment.md",
       "--plots-dir", "")
    report = json.loads((clone / "reports" / "report.json").read_text())
    ev = report["sections"]["evaluate"]
    assert ev["metrics_files"] == ["eval/metrics.json", "eval/extra.json"]
    gates = {(g["metric"], g["rule"]): g for g in ev["gates"]}
    drop = gates["auc", "max_drop"]
    assert drop["status"] == "pass" and drop["base"] == base["auc"] and \
        drop["head"] == head["auc"], drop          # the base came from the DVC remote
    assert drop["file"] == "eval/metrics.json"
    assert gates["eval/extra.json:rows", "min"]["status"] == "pass"
    headline = {h["name"]: h for h in ev["headline"]}
    assert headline["auc"]["change"] == "better" and headline["loss"]["change"] == "better"
    assert headline["loss"]["direction"] == "lower" and headline["loss"]["delta"] < 0
    assert ev["summary"].startswith("auc ") and "better" in ev["summary"]
    assert {(m["file"], m["name"]) for m in ev["metrics"]} >= {
        ("eval/metrics.json", "auc"), ("eval/extra.json", "rows")}
    assert ev["per_class"] == []                   # these metrics have no per-class slices
    assert ev["confusion"]["file"] == "eval/confusion.csv"
    assert ev["confusion"]["classes"] == ["billing", "bug", "other"]
    assert ev["confusion"]["base"] is not None
    assert not any("no baseline" in n or "no readable" in n for n in ev["notes"]), ev["notes"]

    reason = "the model has no ONNX artifact (modelops.model.artifact.path is '')"
    assert report["sections"]["compile"] == {"status": "skipped", "reason": reason}
    assert report["sections"]["deploy"] == {"status": "skipped", "reason": reason}
    card = report["sections"]["card"]
    assert card["status"] == "pass" and card["path"] == "model-cards/ticket-router.md"
    assert "+# ticket-router" in card["diff"] and "+| auc |" in card["diff"]
    assert report["verdict"] == "pass"

    body = (clone / "reports" / "comment.md").read_text()
    assert "✅ ticket-router: gates passed" in body
    assert "| compile | ⏭️ skipped | the model has no ONNX artifact" in body
    assert "| deploy | ⏭️ skipped | the model has no ONNX artifact" in body
    assert "### Headline" in body and "| auc | higher |" in body
    assert "PNG plots" not in body                 # --plots-dir '': nothing attached

    # the compile step itself says skipped and exits 0; the comment posts (preview) fine
    comp = ci(clone, "compile")
    assert comp.returncode == 0 and f"compile: skipped: {reason}" in comp.stdout
    assert json.loads((clone / "reports" / "compile.json").read_text())["status"] == "skipped"
    assert ci(clone, "comment", "--preview").returncode == 0
    plots = ci(clone, "plots").stdout
    assert "confusion.png" in plots and "curve.png" in plots


def test_an_ambiguous_gate_and_a_card_turned_off(clone):
    ci(clone, "reproduce", "--pull", "true")
    params = clone / "params.yaml"
    text = params.read_text()
    # `rows` alone would be read from whichever file has it: both do now
    (clone / "eval" / "metrics.json").write_text(json.dumps({"auc": 0.9, "loss": 0.1,
                                                             "rows": 5}))
    params.write_text(text.replace("eval/extra.json:rows:", "rows:"))
    proc = ci(clone, "report", "--base", "origin/main", check=False)
    assert proc.returncode == 2
    assert ("params.yaml: modelops.gates.rows: is ambiguous: both eval/metrics.json and "
            "eval/extra.json have it") in proc.stderr
    assert "Traceback" not in proc.stderr

    params.write_text(text + "  steps: {card: false}\n")
    ci(clone, "report", "--base", "origin/main")
    report = json.loads((clone / "reports" / "report.json").read_text())
    assert report["sections"]["card"] == {
        "status": "skipped", "reason": "turned off (modelops.steps.card: false)"}
    assert report["verdict"] == "pass"


def test_compare_command_names_every_metrics_file(clone):
    ci(clone, "reproduce", "--pull", "true")
    out = ci(clone, "compare", "--base", "origin/main").stdout
    assert "metric eval/metrics.json:auc:" in out and "metric eval/extra.json:rows:" in out
    data = json.loads(ci(clone, "compare", "--base", "origin/main", "--json").stdout)
    assert data["metrics_files"] == ["eval/metrics.json", "eval/extra.json"]
    assert {m["file"] for m in data["metrics"]} == set(data["metrics_files"])
