"""The second example model repository, ``examples/breast-cancer``, run as a repository of its own.

Every test works on a copy of the example's files (as a clone of this project holds them) in a
temporary directory with its own ``git init``, and runs real ``dvc``, real scikit-learn, skl2onnx
and ONNX Runtime, and the suite's console scripts as a team would run them there; nothing runs
inside this checkout.

The example differs from the bundled one in everything the suite could have assumed (framework,
stage names, params sections, metrics paths and their DVC tracking, no card template), so these
tests hold the suite's commands to it one by one; tests/func/test_example_harness.py runs its
pull-request and release workflows whole, through the actions harness.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from ruamel.yaml import YAML

from modelops.ci.markdown import md
from modelops.errors import ConfigError
from modelops.fsutil import md5_file, sha256_file
from modelops.gitops.release import baseline_problems
from modelops.settings import load_settings, parse_settings
from modelops.settings.model import ModelSettings
from modelops.yamlio import load_yaml_file
from scripts.project import project_files
from tests.conftest import PY, ROOT, require_tool, run

NAME = "breast-cancer"
EXAMPLE = ROOT / "examples" / NAME
MODEL = "breast-cancer-gbt"
STAGES = ["load", "split", "fit", "convert", "score"]
BIN = Path(sys.executable).parent  # the suite's console scripts, dvc and the stages' python
UP_TO_DATE = "Data and pipelines are up to date."
ENV = {
    # dvc.yaml runs `python src/<stage>.py`: the interpreter these tests run with, whose
    # packages are the example's requirements.txt (pinned like requirements.lock)
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}
# what the stages write: every out, metrics and plots entry of dvc.yaml
DECLARED = [
    "data/raw/breast_cancer.csv", "data/split/train.npz", "data/split/test.npz",
    "models/classifier.pkl", "eval/plots/importance.csv", "models/classifier.onnx",
    "eval/parity.json", "eval/drift_baseline.json", "eval/metrics.json", "eval/slices.json",
    "eval/plots/roc.csv", "eval/plots/confusion.csv",
]
# the CI job's `modelops-ci reproduce --outputs` for this repository, spelled out
CI_OUTPUTS = ("models/classifier.onnx data/split/test.npz eval/metrics.json eval/slices.json "
              "eval/parity.json eval/drift_baseline.json eval/plots/roc.csv "
              "eval/plots/confusion.csv eval/plots/importance.csv")


# --------------------------------------------------------------------------- helpers

def clean_env() -> dict[str, str]:
    """This process's environment without GitHub Actions' variables (the suite reads them)."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}, **ENV}


def sh(cmd: list[str], cwd: Path, check: bool = True, timeout: float = 600):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=clean_env(),
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr}")
    return proc


def dvc(repo: Path, *args: str, check: bool = True):
    return sh([PY, "-m", "dvc", *args], repo, check)


def git(repo: Path, *args: str) -> str:
    return sh(["git", *args], repo).stdout.strip()


def suite(script: str, repo: Path, *args: str, check: bool = False):
    """A console script of the suite (modelops-ci, modelops-gitops, modelops-serve)."""
    return sh([str(BIN / script), *args], repo, check)


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def copy_example(dest: Path) -> Path:
    """The example's files as a clone of this project has them (nothing built, no cache)."""
    prefix = f"examples/{NAME}/"
    for rel in project_files(ROOT):
        if rel.startswith(prefix):
            target = dest / rel[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target)
    return dest


def new_repo(dest: Path) -> Path:
    copy_example(dest)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "breast-cancer-gbt: the example repository")
    return dest


def clone_dir(src: Path, dest: Path) -> Path:
    """A private copy of a repository: workspace, git history, DVC cache and local remote."""
    return Path(shutil.copytree(src, dest, symlinks=True))


def set_param(repo: Path, dotted: str, value) -> None:
    """Change one key of params.yaml, keeping its comments (a reviewer's diff of one line)."""
    yaml = YAML()
    yaml.width = 4096  # no re-wrapping of the lines it does not change
    path = repo / "params.yaml"
    data = yaml.load(path.read_text(encoding="utf-8"))
    *parents, key = dotted.split(".")
    node = data
    for part in parents:
        node = node[part]
    node[key] = value
    with path.open("w", encoding="utf-8") as fh:
        yaml.dump(data, fh)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def lock_outs(repo: Path) -> dict[str, str]:
    """path -> md5 of every output dvc.lock records."""
    stages = load_yaml_file(repo / "dvc.lock")["stages"]
    return {o["path"]: o["md5"] for s in stages.values() for o in s.get("outs", [])}


def dvc_yaml_entries(kind: str) -> dict[str, tuple[str, dict]]:
    """path -> (stage, options) of every ``kind`` (outs, metrics, plots) entry of dvc.yaml."""
    out = {}
    for stage, body in load_yaml_file(EXAMPLE / "dvc.yaml")["stages"].items():
        for entry in body.get(kind) or []:
            path, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
            out[path] = (stage, opts or {})
    return out


# --------------------------------------------------------------------------- fixtures

@dataclass(frozen=True)
class Reproduced:
    repo: Path
    stdout: str
    seconds: float


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Reproduced:
    """The example after a cold ``dvc repro`` in a fresh repository, committed and pushed."""
    repo = new_repo(tmp_path_factory.mktemp("example") / NAME)
    start = time.perf_counter()
    proc = dvc(repo, "repro")
    seconds = time.perf_counter() - start
    print(f"\ncold dvc repro of examples/{NAME}: {seconds:.1f}s")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", "reproduce")
    dvc(repo, "push")
    return Reproduced(repo, proc.stdout, seconds)


@pytest.fixture
def work(reproduced, tmp_path) -> Path:
    return clone_dir(reproduced.repo, tmp_path / NAME)


@dataclass(frozen=True)
class PullRequest:
    repo: Path        # main = base, branch `change` = head (fit.learning_rate 0.05); both pushed
    base: dict        # eval/metrics.json at base
    head: dict        # eval/metrics.json at head


@pytest.fixture(scope="module")
def pull_request(reproduced, tmp_path_factory) -> PullRequest:
    """A contributor's change: one parameter, reproduced, committed and pushed (dvc push)."""
    repo = clone_dir(reproduced.repo, tmp_path_factory.mktemp("pr") / NAME)
    base = read_json(repo / "eval/metrics.json")
    git(repo, "checkout", "-q", "-b", "change")
    set_param(repo, "fit.learning_rate", 0.05)
    dvc(repo, "repro")
    git(repo, "commit", "-q", "-am", "fit: learning rate 0.05")
    dvc(repo, "push")
    return PullRequest(repo, base, read_json(repo / "eval/metrics.json"))


def fresh_runner(pull_request: PullRequest, dest: Path) -> Path:
    """What a CI job has: a clone of the head (no DVC cache, no outputs) and the remote, named
    in config.local as the setup action writes it."""
    sh(["git", "clone", "-q", "--branch", "change", str(pull_request.repo), str(dest)], dest.parent)
    dvc(dest, "remote", "modify", "--local", "local", "url",
        str(pull_request.repo / ".dvc-storage"))
    return dest


@dataclass(frozen=True)
class Runner:
    repo: Path
    proc: subprocess.CompletedProcess


@pytest.fixture(scope="module")
def ci_runner(pull_request, tmp_path_factory) -> Runner:
    """A fresh runner after ``modelops-ci reproduce`` with this repository's outputs named."""
    repo = fresh_runner(pull_request, tmp_path_factory.mktemp("runner") / NAME)
    return Runner(repo, suite("modelops-ci", repo, "reproduce", "--outputs", CI_OUTPUTS))


@pytest.fixture
def runner(ci_runner, tmp_path) -> Path:
    return clone_dir(ci_runner.repo, tmp_path / NAME)


# --------------------------------------------------------------------------- the repository

def test_suite_settings_describe_the_repository_and_leave_its_own_sections_alone():
    raw = load_yaml_file(EXAMPLE / "params.yaml")
    settings = load_settings(EXAMPLE / "params.yaml")
    model = settings.model
    assert isinstance(model, ModelSettings) and model.name == MODEL
    assert model.metrics == ["eval/metrics.json", "eval/slices.json", "eval/parity.json"]
    assert model.headline == {"roc_auc": "higher", "log_loss": "lower"}
    assert (model.artifact.path, model.artifact.stage) == ("models/classifier.onnx", "convert")
    assert model.test_data == "data/split/test.npz"
    assert model.drift_baseline == "eval/drift_baseline.json"
    assert model.card.template == "" and not (EXAMPLE / "model-cards").exists()
    assert set(settings.gates) == {"roc_auc", "log_loss", "sensitivity"}
    assert settings.compile.input_name == "features"
    assert settings.compile.output_name == "probabilities"
    assert "deploy" not in settings.own  # the defaults do
    # the example's own sections: not validated, not converted, not touched
    assert set(raw) == {"data", "model", "fit", "convert", "score", "modelops"}
    assert raw["model"] == {"n_estimators": 150, "max_depth": 3, "min_samples_leaf": 3}
    assert settings.raw["model"] == raw["model"] and settings.raw["fit"] == raw["fit"]
    assert not {"data", "fit", "convert", "score"} & set(settings.sections)
    # ... even when they hold what the suite would refuse in its own section
    odd = {**raw, "model": {"n_estimators": "many", "unknown": None}, "featurize": [1, 2]}
    assert parse_settings(odd, "params.yaml").model.name == MODEL
    # while the suite's own section is checked, field by field
    bad = {**raw, "modelops": {**raw["modelops"],
                               "model": {**raw["modelops"]["model"], "metrix": []}}}
    with pytest.raises(ConfigError, match=r"modelops\.model\.metrix: unknown key"):
        parse_settings(bad, "params.yaml")


def test_settings_name_what_dvc_yaml_declares_and_dvc_tracks(tmp_path):
    model = load_settings(EXAMPLE / "params.yaml").model
    outs, metrics, plots = (dvc_yaml_entries(k) for k in ("outs", "metrics", "plots"))
    for path in model.metrics:  # metrics files: DVC-tracked (cache: true), never git
        assert path in metrics and metrics[path][1].get("cache", True) is True, path
    for path in model.plots:
        assert path in plots and plots[path][1].get("cache", True) is True, path
    assert outs[model.artifact.path][0] == model.artifact.stage
    assert model.test_data in outs and model.drift_baseline in outs
    assert sorted({**outs, **metrics, **plots}) == sorted(DECLARED)
    # in a repository of its own, git ignores the DVC-tracked outputs (the .gitignore files
    # dvc writes are committed) and the local remote, which lives inside it
    repo = new_repo(tmp_path / NAME)
    proc = run(["git", "check-ignore", *DECLARED, ".dvc-storage/files"], cwd=repo, check=False)
    assert sorted(proc.stdout.split()) == sorted([*DECLARED, ".dvc-storage/files"])
    assert "url = ../.dvc-storage" in (repo / ".dvc/config").read_text()


def test_committed_lock_matches_the_code_and_params():
    """dvc.lock is what `dvc repro` of the committed files gives (checked in full by the cold
    repro below); here: every code dep's md5 and every param value, without running dvc."""
    lock = load_yaml_file(EXAMPLE / "dvc.lock")["stages"]
    declared = load_yaml_file(EXAMPLE / "dvc.yaml")["stages"]
    params = load_yaml_file(EXAMPLE / "params.yaml")
    assert list(lock) == STAGES == list(declared)
    for stage, body in lock.items():
        assert body["cmd"] == declared[stage]["cmd"] == f"python src/{stage}.py"
        for dep in body["deps"]:
            if not dep["path"].startswith(("data/", "models/")):
                assert md5_file(EXAMPLE / dep["path"]) == dep["md5"], \
                    f"{stage}: {dep['path']} changed; run dvc repro in the example, commit dvc.lock"
        for key, value in body.get("params", {}).get("params.yaml", {}).items():
            node = params
            for part in key.split("."):
                node = node[part]
            assert node == value, f"{stage}: params {key} changed; run dvc repro"


def _pins(text: str) -> dict[str, str]:
    pins = {}
    for line in text.splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_requirements_pin_the_root_lock_and_cover_every_import():
    import ast
    import importlib.metadata as md

    from packaging.requirements import Requirement

    pins = _pins((EXAMPLE / "requirements.txt").read_text())
    lock = _pins((ROOT / "requirements.lock").read_text())
    assert {n: lock.get(n) for n in pins} == pins  # the versions the suite is tested with
    direct = {re.split(r"[=<>\[ ]", line.strip())[0].lower()
              for line in (ROOT / "requirements.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert "skl2onnx" in pins and "skl2onnx" in direct  # the root venv runs the stages too
    # complete: every requirement of a pinned distribution (this platform) is pinned too
    for name in pins:
        for req in map(Requirement, md.requires(name) or []):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert re.sub(r"[-_.]+", "-", req.name).lower() in pins, (name, str(req))
    # and the stages import nothing that is not in it
    provided = md.packages_distributions()
    local = {p.stem for p in (EXAMPLE / "src").glob("*.py")}
    for source in (EXAMPLE / "src").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and not node.level else [])
            for top in {n.split(".")[0] for n in names} - local - set(sys.stdlib_module_names):
                dists = {re.sub(r"[-_.]+", "-", d).lower() for d in provided.get(top, [])}
                assert dists & set(pins), f"{source.name} imports {top}: not in requirements.txt"


BAD_PARAMS = [
    ("fit", "fit.learning_rate", -0.1,
     "fit: error: params.yaml: fit.learning_rate: must be greater than 0 (got -0.1)"),
    ("fit", "model.max_depth", "3",
     "fit: error: params.yaml: model.max_depth: must be an integer (got '3')"),
    ("fit", "fit.subsampel", 0.8,
     "fit: error: params.yaml: fit.subsampel: unknown key (got 0.8)\n"
     "  hint: did you mean 'subsample'? known keys: learning_rate, subsample, seed"),
    ("split", "data.test_fraction", float("nan"),
     "split: error: params.yaml: data.test_fraction: must be a finite number (not .nan or .inf) "
     "(got nan)"),
    ("convert", "convert.atol", 0,
     "convert: error: params.yaml: convert.atol: must be greater than 0 (got 0)"),
    ("score", "score.slice_feature", "mean radious",
     "score: error: params.yaml: score.slice_feature: not a feature of schema.json "
     "(got 'mean radious')\n  hint: did you mean 'mean radius'?"),
]


@pytest.mark.parametrize(("stage", "key", "value", "message"), BAD_PARAMS,
                         ids=[c[1] for c in BAD_PARAMS])
def test_bad_params_get_one_clear_error_from_the_examples_own_code(tmp_path, stage, key, value,
                                                                   message):
    repo = copy_example(tmp_path / NAME)
    set_param(repo, key, value)
    proc = sh([PY, f"src/{stage}.py"], repo, check=False)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not any((repo / path).exists() for path in DECLARED)  # nothing written
    # the suite validates only modelops: and leaves the model's sections to it
    assert suite("modelops-ci", repo, "check-params").returncode == 0


# --------------------------------------------------------------------------- the pipeline

@pytest.mark.slow
def test_cold_repro_writes_every_declared_output_and_the_committed_lock(reproduced):
    repo = reproduced.repo
    assert ran_stages(reproduced.stdout) == STAGES
    for path in DECLARED:
        assert (repo / path).is_file() and (repo / path).stat().st_size > 0, path
    assert lock_outs(repo) == {p: md5_file(repo / p) for p in DECLARED}
    # seeded and deterministic: the same bytes as the dvc.lock committed in the example, so
    # the commit after the repro held no change; the outputs are ignored by git
    assert git(repo, "rev-list", "--count", "HEAD") == "2"
    assert git(repo, "diff", "--stat", "HEAD~1", "HEAD") == ""
    assert git(repo, "status", "--porcelain") == ""
    assert set(git(repo, "ls-files").split()).isdisjoint(DECLARED)
    metrics = read_json(repo / "eval/metrics.json")
    assert metrics["roc_auc"] > 0.97 and 0 < metrics["log_loss"] < 0.25
    assert metrics["n_test"] == 143
    slices = read_json(repo / "eval/slices.json")
    assert set(slices["per_class"]) == {"malignant", "benign"}
    assert sum(b["n"] for b in slices["by_mean_radius"].values()) == 143


@pytest.mark.slow
def test_second_repro_is_a_noop_and_a_forced_one_gives_the_same_bytes(work):
    proc = dvc(work, "repro")
    assert ran_stages(proc.stdout) == [] and UP_TO_DATE in proc.stdout
    # PYTHONHASHSEED differs from run to run: skl2onnx's set order must not reach the bytes
    proc = dvc(work, "repro", "--force")
    assert ran_stages(proc.stdout) == STAGES
    assert git(work, "status", "--porcelain") == ""


@pytest.mark.slow
@pytest.mark.parametrize(("key", "value", "rerun"), [
    ("fit.learning_rate", 0.05, ["fit", "convert", "score"]),
    ("score.bins", 5, ["score"]),
    ("data.seed", 8, ["split", "fit", "convert", "score"]),
])
def test_one_param_reruns_only_the_stages_downstream_of_it(work, key, value, rerun):
    before = load_yaml_file(work / "dvc.lock")["stages"]
    set_param(work, key, value)
    proc = dvc(work, "repro")
    assert ran_stages(proc.stdout) == rerun, proc.stdout
    after = load_yaml_file(work / "dvc.lock")["stages"]
    for stage in STAGES:
        assert (after[stage] == before[stage]) == (stage not in rerun), stage
    section, name = key.split(".")
    changed = after[rerun[0]]["params"]["params.yaml"]
    assert changed.get(key, changed.get(section, {}).get(name)) == value
    assert dvc(work, "status").stdout.strip() == UP_TO_DATE


@pytest.mark.slow
def test_a_bad_param_stops_dvc_repro_with_the_stages_own_message(work):
    lock_before = (work / "dvc.lock").read_bytes()
    set_param(work, "fit.learning_rate", -0.1)
    proc = dvc(work, "repro", check=False)
    assert proc.returncode != 0 and ran_stages(proc.stdout) == ["fit"]
    assert "fit: error: params.yaml: fit.learning_rate: must be greater than 0 (got -0.1)\n" \
           "  hint: fix fit.learning_rate in params.yaml" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert (work / "dvc.lock").read_bytes() == lock_before  # nothing recorded as done
    assert "fit:" in dvc(work, "status").stdout


@pytest.mark.slow
def test_onnx_runtime_matches_scikit_learn(reproduced):
    import pickle

    import numpy as np
    import onnx
    import onnxruntime as ort

    repo = reproduced.repo
    parity = read_json(repo / "eval/parity.json")
    assert parity["n"] == 569 and parity["label_agreement"] == 1.0
    assert parity["max_abs_diff"] <= parity["atol"] == 1e-5
    # checked again here, independently of the stage's own code
    schema = read_json(repo / "schema.json")
    names = [f["name"] for f in schema["features"]]
    proto = onnx.load(str(repo / "models/classifier.onnx"))
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["probabilities", "label"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(meta["feature_names"]) == names
    assert json.loads(meta["classes"]) == schema["label"]["classes"] == ["malignant", "benign"]
    clf = pickle.loads((repo / "models/classifier.pkl").read_bytes())  # noqa: S301
    session = ort.InferenceSession(str(repo / "models/classifier.onnx"),
                                   providers=["CPUExecutionProvider"])
    for split in ("train", "test"):
        with np.load(repo / f"data/split/{split}.npz") as data:
            x, y = data["x"], data["y"]
            assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape[1] == 30
            assert [str(c) for c in data["columns"]] == names
        probabilities, labels = session.run(None, {"features": x})
        np.testing.assert_allclose(probabilities, clf.predict_proba(x), rtol=0, atol=1e-5)
        np.testing.assert_array_equal(labels, clf.predict(x))


@pytest.mark.slow
def test_parity_beyond_tolerance_stops_convert_and_writes_nothing(work):
    lock_before = (work / "dvc.lock").read_bytes()
    set_param(work, "convert.atol", 1e-9)
    proc = dvc(work, "repro", check=False)
    assert proc.returncode != 0
    assert ran_stages(proc.stdout) == ["convert"]
    assert re.search(r"convert: error: onnx parity failed: max \|p_onnx - p_sklearn\| is "
                     r"[0-9.e-]+ > convert\.atol 1e-09", proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (work / "models/classifier.onnx").exists()
    assert (work / "dvc.lock").read_bytes() == lock_before


@pytest.mark.slow
def test_push_and_pull_round_trip_through_the_local_remote(work):
    storage = work / ".dvc-storage"
    assert storage.is_dir()  # pushed by the fixture, inside the repository, ignored by git
    assert git(work, "status", "--porcelain", "--ignored", ".dvc-storage") == "!! .dvc-storage/"
    assert "in sync" in dvc(work, "status", "--cloud").stdout
    recorded = lock_outs(work)
    shutil.rmtree(work / ".dvc" / "cache")
    for path in DECLARED:
        (work / path).unlink()
    assert "deleted" in dvc(work, "status").stdout
    dvc(work, "pull")
    assert {p: md5_file(work / p) for p in DECLARED} == recorded
    assert dvc(work, "status").stdout.strip() == UP_TO_DATE
    shown = json.loads(dvc(work, "metrics", "show", "--json").stdout)
    assert shown[""]["data"]["eval/metrics.json"]["data"]["roc_auc"] == \
        read_json(work / "eval/metrics.json")["roc_auc"]


@pytest.mark.slow
def test_the_suites_serving_runtime_serves_the_artifact_and_measures_drift(reproduced):
    import numpy as np

    repo = reproduced.repo
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(BIN / "modelops-serve"), "--model", "models/classifier.onnx", "--sha256",
         sha256_file(repo / "models/classifier.onnx"), "--model-name", MODEL,
         "--drift-baseline", "eval/drift_baseline.json", "--psi-min-samples", "10",
         "--host", "127.0.0.1", "--port", str(port)],
        cwd=repo, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(f"{base}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("modelops-serve did not become ready")
        with np.load(repo / "data/split/test.npz") as data:
            x, y = data["x"][:40], data["y"][:40]
        body = json.dumps({"inputs": [{"name": "features", "shape": list(x.shape),
                                       "datatype": "FP32", "data": x.ravel().tolist()}]})
        request = urllib.request.Request(f"{base}/v2/models/{MODEL}/infer", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as r:
            outputs = {o["name"]: o for o in json.loads(r.read())["outputs"]}
        assert outputs["probabilities"]["shape"] == [40, 2]
        predicted = np.array(outputs["label"]["data"])
        assert (predicted == y).mean() > 0.9
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
            metrics = r.read().decode()
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    counts = {int(m[0]): float(m[1]) for m in re.findall(
        r'model_predictions_total\{class="(\d+)",model="breast-cancer-gbt"[^}]*\} (\S+)', metrics)}
    assert counts == {c: float((predicted == c).sum()) for c in (0, 1)}
    psi = re.search(r'model_prediction_psi\{model="breast-cancer-gbt"[^}]*\} (\S+)', metrics)
    assert psi and float(psi[1]) >= 0, metrics  # finite: a number, not NaN


# --------------------------------------------------------------------------- the PR path

def test_check_params_accepts_the_repository(tmp_path):
    proc = suite("modelops-ci", copy_example(tmp_path / NAME), "check-params")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("params.yaml: ok")


@pytest.mark.slow
def test_reproduce_on_a_fresh_runner_with_the_outputs_named(ci_runner, pull_request):
    proc, repo = ci_runner.proc, ci_runner.repo
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the head was reproduced and pushed: nothing is retrained, the outputs come from the remote
    assert ran_stages(proc.stdout) == [], proc.stdout
    for path in CI_OUTPUTS.split():
        assert (repo / path).is_file(), path
    assert lock_outs(repo)["models/classifier.onnx"] == md5_file(repo / "models/classifier.onnx")
    assert git(repo, "status", "--porcelain") == ""
    assert read_json(repo / "eval/metrics.json") == pull_request.head


@pytest.mark.slow
def test_reproduce_on_a_fresh_runner_runs_what_a_change_left_stale(pull_request, tmp_path):
    repo = fresh_runner(pull_request, tmp_path / NAME)
    set_param(repo, "fit.subsample", 0.7)  # committed without dvc repro
    git(repo, "commit", "-q", "-am", "fit: subsample 0.7")
    proc = suite("modelops-ci", repo, "reproduce", "--outputs", CI_OUTPUTS)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # load and split are skipped; fit pulls the training split and it and what follows run
    assert ran_stages(proc.stdout) == ["fit", "convert", "score"], proc.stdout
    for path in CI_OUTPUTS.split():
        assert (repo / path).is_file(), path
    assert not (repo / "data/raw/breast_cancer.csv").exists()  # never needed, never fetched
    assert git(repo, "status", "--porcelain") == "M dvc.lock"
    again = dvc(repo, "repro", "--allow-missing")  # as CI judges it: load's CSV stays remote
    assert ran_stages(again.stdout) == [] and UP_TO_DATE in again.stdout


@pytest.mark.slow
def test_reproduce_puts_the_declared_outputs_in_place_by_default(pull_request, tmp_path):
    repo = fresh_runner(pull_request, tmp_path / NAME)
    proc = suite("modelops-ci", repo, "reproduce")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for path in ("models/classifier.onnx", "data/split/test.npz", "eval/metrics.json",
                 "eval/drift_baseline.json", "eval/plots/roc.csv"):
        assert (repo / path).is_file(), path


@pytest.mark.slow
def test_compile_with_the_paths_given_checks_parity_and_latency(runner):
    proc = suite("modelops-ci", runner, "compile", "--model", "models/classifier.onnx",
                 "--test-data", "data/split/test.npz", "--section", "eval/compile.json",
                 "--report", "", "--runs", "5", "--warmup", "1")
    assert proc.returncode == 0, proc.stderr
    section = read_json(runner / "eval/compile.json")
    assert (section["status"], section["backend"], section["precision"]) == \
        ("pass", "onnxruntime", "fp32")
    assert section["parity"]["n"] == 143 and section["parity"]["top1_agreement"] == 1.0
    assert section["model"]["sha256"] == sha256_file(runner / "models/classifier.onnx")


@pytest.mark.slow
def test_compile_reads_the_artifact_and_test_data_from_the_settings(runner):
    proc = suite("modelops-ci", runner, "compile", "--report", "", "--runs", "5",
                 "--warmup", "1")
    assert proc.returncode == 0, proc.stderr
    assert "from models/classifier.onnx" in proc.stderr


@pytest.mark.slow
def test_gate_judges_regression_bounds_against_the_dvc_tracked_base(runner, pull_request):
    proc = suite("modelops-ci", runner, "gate", "--base", "origin/main",
                 "--metrics", "eval/metrics.json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no-baseline" not in proc.stdout, proc.stdout
    assert f"{pull_request.base['roc_auc']:.6g}" in proc.stdout


@pytest.mark.slow
def test_gate_reads_the_declared_metrics_file_by_default(runner):
    proc = suite("modelops-ci", runner, "gate", "--base", "origin/main")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "roc_auc" in proc.stdout and "sensitivity" in proc.stdout


def build_report(repo: Path) -> dict:
    proc = suite("modelops-ci", repo, "report", "--base", "origin/main", "--out",
                 "reports/report.json", "--markdown", "reports/pr-comment.md")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return read_json(repo / "reports/report.json")


@pytest.mark.slow
def test_report_compares_the_dvc_tracked_metrics_with_the_base(runner, pull_request):
    report = build_report(runner)
    assert report["model"]["name"] == MODEL and report["verdict"] == "pass"
    evaluate = report["sections"]["evaluate"]
    rows = {(m["file"], m["name"]): m for m in evaluate["metrics"]}
    for name in ("roc_auc", "log_loss"):
        row = rows[("eval/metrics.json", name)]
        assert (row["base"], row["head"]) == (pull_request.base[name], pull_request.head[name])
    assert ("eval/slices.json", "per_class.malignant.recall") in rows
    gates = {(g["metric"], g["rule"]): g for g in evaluate["gates"]}
    assert set(gates) == {("roc_auc", "min"), ("roc_auc", "max_drop"), ("log_loss", "max"),
                          ("log_loss", "max_rise"), ("sensitivity", "min")}
    assert all(g["status"] == "pass" for g in gates.values()), gates
    assert gates[("roc_auc", "max_drop")]["base"] == pull_request.base["roc_auc"]
    assert {p["name"] for p in evaluate["params"]} == {"fit.learning_rate"}
    assert report["sections"]["card"]["status"] == "pass"
    assert report["sections"]["compile"]["status"] != "fail"


@pytest.mark.slow
def test_comment_preview_shows_this_models_metrics(runner):
    build_report(runner)
    proc = suite("modelops-ci", runner, "comment", "--preview", "--report",
                 "reports/report.json", "--out", "reports/pr-comment.md")
    assert proc.returncode == 0, proc.stderr
    text = (runner / "reports/pr-comment.md").read_text()
    for word in (MODEL, "roc_auc", "log_loss", "sensitivity", "fit.learning_rate"):
        assert md(word) in text, word  # as Markdown writes it (roc\_auc)
    assert "metrics/metrics.json" not in text and "digits" not in text


@pytest.mark.slow
def test_card_renders_with_the_default_template(runner):
    proc = suite("modelops-ci", runner, "card", "--stdout")
    assert proc.returncode == 0, proc.stderr
    assert MODEL in proc.stdout and md("roc_auc") in proc.stdout
    assert sha256_file(runner / "models/classifier.onnx") in proc.stdout
    assert "digits" not in proc.stdout and "image-classification" not in proc.stdout


@pytest.mark.slow
def test_plots_draws_the_declared_plot_files(runner):
    proc = suite("modelops-ci", runner, "plots", "--out", "reports/plots")
    assert proc.returncode == 0, proc.stderr
    assert list((runner / "reports/plots").glob("*.png"))


# --------------------------------------------------------------------------- the release path

@pytest.mark.slow
def test_release_render_validate_and_publish_into_a_bare_gitops_repository(pull_request,
                                                                        tmp_path):
    require_tool("kubectl")  # validate builds the kustomization
    repo = clone_dir(pull_request.repo, tmp_path / NAME)
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--ff-only", "change")  # the pull request is merged
    dvc(repo, "push")                                # release.yml: dvc push, then release
    proc = suite("modelops-gitops", repo, "release", "--out", "release.json")
    assert proc.returncode == 0, proc.stderr
    release = read_json(repo / "release.json")
    onnx = repo / "models/classifier.onnx"
    assert (release["model"], release["sha256"]) == (MODEL, sha256_file(onnx))
    assert release["dvc_md5"] == lock_outs(repo)["models/classifier.onnx"] == md5_file(onnx)
    assert release["source_commit"] == git(repo, "rev-parse", "HEAD")
    # the artifact URI is the pushed file in the DVC remote
    pushed = Path(unquote(urlparse(release["artifact_uri"]).path))
    assert pushed.is_relative_to(repo / ".dvc-storage")
    assert hashlib.sha256(pushed.read_bytes()).hexdigest() == release["sha256"]
    # the drift baseline travels whole, per-feature bins included, and the release accepts it
    baseline = read_json(repo / "eval/drift_baseline.json")
    assert release["drift_baseline"] == baseline
    assert baseline_problems(baseline, MODEL) == []
    features = baseline["features"]
    assert len(features["names"]) == len(features["quantile_edges"]) == 30
    for edges, dist in zip(features["quantile_edges"], features["bin_distribution"]):
        assert len(dist) == len(edges) + 1 and abs(sum(dist) - 1) < 1e-5
    assert sum(baseline["class_distribution"]) == pytest.approx(1.0)

    proc = suite("modelops-gitops", repo, "render", "--release", "release.json", "--env",
                 "staging", "--out", "rendered")
    assert proc.returncode == 0, proc.stderr
    proc = suite("modelops-gitops", repo, "validate", "rendered")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = repo / "rendered/staging" / MODEL
    rollout = next(d for d in YAML(typ="safe").load_all((folder / "rollout.yaml").read_text())
                   if d and d.get("kind") == "Rollout")
    pod = rollout["spec"]["template"]
    # the per-feature baseline travels in the release's own ConfigMap, mounted by the pods
    (configmap,) = YAML(typ="safe").load_all((folder / "drift-baseline.yaml").read_text())
    assert json.loads(configmap["data"]["drift_baseline.json"]) == baseline
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["drift-baseline"]["configMap"]["name"] == configmap["metadata"]["name"]
    # and the alerts and the canary analysis watch its 30 features
    assert "breast-cancer-gbt-input-drift" in (folder / "analysis-templates.yaml").read_text()
    assert "ModelFeatureDrift" in (folder / "prometheus-rules.yaml").read_text()
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["MODEL_NAME"] == MODEL and env["MODEL_PATH"].endswith("/classifier.onnx")
    assert env["MODEL_SHA256"] == release["sha256"]

    gitops = tmp_path / "gitops.git"
    sh(["git", "init", "-q", "--bare", "-b", "main", str(gitops)], tmp_path)
    args = ("publish", "--env", "staging", "--env", "production", "--gitops-repo", str(gitops))
    proc = suite("modelops-gitops", repo, *args)
    assert proc.returncode == 0, proc.stderr
    message = git(gitops, "log", "-1", "--format=%B", "main")
    assert message.splitlines()[0] == \
        f"publish {MODEL} {release['version']} to production, staging"
    assert f"Model-Sha256: {release['sha256']}" in message
    for env_name in ("staging", "production"):
        published = json.loads(git(gitops, "show", f"main:{env_name}/{MODEL}/release.json"))
        assert published["sha256"] == release["sha256"]
    again = suite("modelops-gitops", repo, *args)
    assert again.returncode == 0 and "no change" in again.stdout
    assert git(gitops, "rev-list", "--count", "main") == "1"
