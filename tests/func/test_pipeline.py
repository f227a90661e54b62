"""End-to-end tests of the example model repository with real git, dvc and ONNX Runtime.

Each test works in a temporary copy of the project (its tracked and non-ignored files, as a fresh
clone would have them) with fast training params, and runs ``dvc`` as a user would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import sys
from pathlib import Path

import pytest

from modelops.fsutil import md5_file, sha256_file
from modelops.yamlio import dump_yaml, load_yaml_file
from scripts.project import copy_project
from tests.conftest import PY, require_module, run

pytestmark = pytest.mark.slow

FAST = {"train": {"epochs": 3}}
STAGES = ("ingest", "prepare", "train", "export", "evaluate", "card")
# The example model's pipeline ends at `card` (the model card); `compile` has its own tests, so
# these run `dvc repro card` and address that part of the DAG.
TARGET = ["--with-deps", "card"]
CARD = "model-cards/digits-cnn.md"
N_OUTPUTS = 6 + 7 + len(STAGES)  # cached files, git-tracked outputs, compute records
UP_TO_DATE = "Data and pipelines are up to date."
ENV = {
    "VIRTUAL_ENV": sys.prefix,  # pipeline/run.sh runs the stages with this interpreter
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    "DVC_NO_ANALYTICS": "1",
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def dvc(repo: Path, *args: str, check: bool = True, env: dict | None = None):
    return run([PY, "-m", "dvc", *args], cwd=repo, check=check, env={**ENV, **(env or {})})


def git(repo: Path, *args: str):
    return run(["git", *args], cwd=repo, env=ENV)


def set_params(repo: Path, **sections: dict) -> None:
    raw = load_yaml_file(repo / "params.yaml")
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    (repo / "params.yaml").write_text(dump_yaml(raw), encoding="utf-8")


def ran_stages(output: str) -> list[str]:
    return re.findall(r"Running stage '(\w+)'", output)


def outputs_match_lock(repo: Path) -> int:
    """Assert every DVC-cached output in the workspace has the md5 dvc.lock records.

    Returns the number of files checked (directory outputs are checked file by file against
    their ``.dir`` listing in the cache).
    """
    lock = load_yaml_file(repo / "dvc.lock")
    checked = 0
    for name in STAGES:
        for out in lock["stages"][name].get("outs", []):
            path, md5 = repo / out["path"], out["md5"]
            if md5.endswith(".dir"):
                listing = json.loads((repo / ".dvc/cache/files/md5" / md5[:2] / md5[2:])
                                     .read_text())
                assert sorted(p.name for p in path.iterdir()) == \
                    sorted(e["relpath"] for e in listing)
                for entry in listing:
                    assert md5_file(path / entry["relpath"]) == entry["md5"], entry
                    checked += 1
            else:
                assert md5_file(path) == md5, out["path"]
                checked += 1
    return checked


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> Path:
    """A git repository copy of the project after one full ``dvc repro`` (fast params)."""
    repo = copy_project(tmp_path_factory.mktemp("repro") / "project")
    set_params(repo, **FAST)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "project with fast params")
    proc = dvc(repo, "repro", "card")
    assert ran_stages(proc.stdout) == list(STAGES), proc.stdout
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "reproduce")
    return repo


@pytest.fixture
def work(reproduced, tmp_path) -> Path:
    """A private copy of the reproduced repository (workspace, git history and DVC cache)."""
    return Path(shutil.copytree(reproduced, tmp_path / "work", symlinks=True))


def test_full_repro_writes_contract_outputs(reproduced):
    lock = load_yaml_file(reproduced / "dvc.lock")
    assert set(STAGES) <= set(lock["stages"])
    # 6 cached + 7 git-tracked (cache: false) + one compute record per stage
    assert outputs_match_lock(reproduced) == N_OUTPUTS
    for stage in STAGES:
        compute = json.loads((reproduced / f"metrics/compute/{stage}.json").read_text())
        assert compute["stage"] == stage and compute["cpu_seconds"] >= 0
    metrics = json.loads((reproduced / "metrics/metrics.json").read_text())
    assert metrics["accuracy"] > 0.8  # 3 epochs only; the committed model is checked in unit
    drift = json.loads((reproduced / "metrics/drift_baseline.json").read_text())
    assert drift["model"] == "digits-cnn" and len(drift["features"]["mean"]) == 64
    for plot in ("train_curve", "confusion", "per_class"):
        assert (reproduced / f"plots/{plot}.csv").stat().st_size > 0
    # metrics and plots are git-tracked (cache: false), the data and models are not
    tracked = git(reproduced, "ls-files").stdout.split()
    assert {"metrics/metrics.json", "metrics/drift_baseline.json", "plots/confusion.csv",
            "dvc.lock", CARD} <= set(tracked)
    # the card describes this run's model: the ONNX sha256 and the md5 dvc.lock pins
    card = (reproduced / CARD).read_text()
    onnx_md5 = next(o["md5"] for o in lock["stages"]["export"]["outs"]
                    if o["path"] == "models/model.onnx")
    assert sha256_file(reproduced / "models/model.onnx") in card and onnx_md5 in card
    assert f"| accuracy | {round(metrics['accuracy'], 6)} |" in card
    assert "| train | `train.epochs` | `3` |" in card
    assert "models/model.onnx" not in tracked and "data/raw/digits.csv" not in tracked
    assert git(reproduced, "status", "--porcelain").stdout == ""


def test_second_repro_is_a_noop_and_one_train_param_reruns_four_stages(work):
    before = (work / "models/model.onnx").read_bytes()
    card = (work / CARD).read_bytes()
    git(work, "commit", "-q", "--allow-empty", "-m", "a commit changes nothing in the card")
    proc = dvc(work, "repro", "card")
    assert ran_stages(proc.stdout) == []
    assert UP_TO_DATE in proc.stdout
    assert (work / "models/model.onnx").read_bytes() == before
    # forced, on another commit: the same inputs give the same card, byte for byte
    assert ran_stages(dvc(work, "repro", "--force", "--single-item", "card").stdout) == ["card"]
    assert (work / CARD).read_bytes() == card
    # a rerun that made the same outputs keeps the committed compute record: no tracked file
    # changed, dvc.lock included (the run is still in the runs folder, for the cost ledger)
    assert git(work, "status", "--porcelain").stdout == ""

    set_params(work, train={"learning_rate": 0.003})
    proc = dvc(work, "repro", "card")
    assert ran_stages(proc.stdout) == ["train", "export", "evaluate", "card"], proc.stdout
    assert "| train | `train.learning_rate` | `0.003` |" in (work / CARD).read_text()
    assert (work / "models/model.onnx").read_bytes() != before
    assert dvc(work, "status", *TARGET).stdout.strip() == UP_TO_DATE

    # dvc metrics diff between the two commits, without pulling anything
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "learning rate 0.003")
    diff = json.loads(dvc(work, "metrics", "diff", "--all", "--json", "HEAD~1", "HEAD").stdout)
    acc = diff["metrics/metrics.json"]["accuracy"]
    old = json.loads(git(work, "show", "HEAD~1:metrics/metrics.json").stdout)["accuracy"]
    new = json.loads((work / "metrics/metrics.json").read_text())["accuracy"]
    assert (acc["old"], acc["new"]) == (old, new)
    # the table too: without --all, dvc leaves out every metric whose value did not change
    # (model_size_mb often stays the same), so what it shows would depend on the change
    table = dvc(work, "metrics", "diff", "--all", "HEAD~1").stdout
    assert "metrics/metrics.json" in table
    assert all(name in table for name in ("accuracy", "macro_f1", "model_size_mb"))


def test_forced_retraining_reproduces_the_model_bit_for_bit(work):
    lock_md5 = {o["path"]: o["md5"] for o in
                load_yaml_file(work / "dvc.lock")["stages"]["train"]["outs"]}
    proc = dvc(work, "repro", "--force", "--single-item", "train")
    assert ran_stages(proc.stdout) == ["train"]
    assert md5_file(work / "models/model.pt") == lock_md5["models/model.pt"]
    assert md5_file(work / "plots/train_curve.csv") == lock_md5["plots/train_curve.csv"]
    # identical bytes, so nothing downstream needs to run again
    assert dvc(work, "status", *TARGET).stdout.strip() == UP_TO_DATE


def test_bad_param_stops_dvc_repro_with_one_clear_message(work):
    set_params(work, train={"epochs": -1})
    proc = dvc(work, "repro", "card", check=False)
    assert proc.returncode != 0
    assert "pipeline.train: error: params.yaml: train.epochs: must be at least 1 (got -1)" \
        in proc.stderr
    assert "Traceback" not in proc.stderr
    # nothing was recorded as done: dvc still sees the train stage as changed
    assert "train:" in dvc(work, "status", *TARGET).stdout
    # back to the recorded value: the pipeline ends exactly where dvc.lock says
    set_params(work, train={"epochs": 3})
    proc = dvc(work, "repro", "card")
    assert "export" not in ran_stages(proc.stdout), proc.stdout  # same model.pt bytes again
    assert dvc(work, "status", *TARGET).stdout.strip() == UP_TO_DATE
    assert outputs_match_lock(work) == N_OUTPUTS


def test_truncated_raw_data_fails_prepare_and_is_repaired_by_repro(work):
    raw = work / "data/raw/digits.csv"
    data = raw.read_bytes()
    raw.write_bytes(data[: len(data) * 2 // 3])
    proc = dvc(work, "repro", "--single-item", "prepare", check=False)
    assert proc.returncode != 0
    assert "pipeline.prepare: error: data/raw/digits.csv: file is truncated" in proc.stderr
    assert not any((work / "data/prepared").glob("*.npz"))  # no half-written split
    # the next repro restores the raw file and the splits (rerun or from DVC's run cache); they
    # are byte-identical to before, so training is not repeated
    proc = dvc(work, "repro", "card")
    assert ran_stages(proc.stdout) in ([], ["ingest", "prepare"]), proc.stdout
    assert "Stage 'train' didn't change, skipping" in proc.stdout
    assert outputs_match_lock(work) == N_OUTPUTS


def test_local_remote_round_trip(work, tmp_path):
    dvc(work, "push", *TARGET)
    assert (work / ".dvc-remote/files/md5").is_dir()  # the default remote is inside checkout
    assert git(work, "status", "--porcelain").stdout == ""  # and git-ignored
    # same checkout, everything local removed: pull restores it from the relative remote
    for path in ("data", "models", ".dvc/cache"):
        shutil.rmtree(work / path)
    dvc(work, "pull", *TARGET)
    assert outputs_match_lock(work) == N_OUTPUTS
    # a fresh clone pointed at the shared folder (config.local, not committed)
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(work), str(clone))
    dvc(clone, "remote", "modify", "--local", "local", "url", str(work / ".dvc-remote"))
    dvc(clone, "pull", *TARGET)
    assert outputs_match_lock(clone) == N_OUTPUTS
    assert dvc(clone, "status", *TARGET).stdout.strip() == UP_TO_DATE


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server():
    require_module("moto")
    boto3 = require_module("boto3")
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
             "AWS_DEFAULT_REGION": "us-east-1"}
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket="models")
    try:
        yield url, client, creds
    finally:
        server.stop()


def test_s3_remote_round_trip_against_moto(work, tmp_path, s3_server):
    url, client, creds = s3_server
    dvc(work, "remote", "add", "s3", "s3://models/digits-cnn")
    dvc(work, "remote", "modify", "s3", "endpointurl", url)
    git(work, "commit", "-q", "-m", "s3 remote", ".dvc/config")
    proc = dvc(work, "push", "-r", "s3", *TARGET, env=creds)
    assert "pushed" in proc.stdout
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="models")["Contents"]]
    lock = load_yaml_file(work / "dvc.lock")
    onnx_md5 = next(o["md5"] for o in lock["stages"]["export"]["outs"]
                    if o["path"] == "models/model.onnx")
    assert f"digits-cnn/files/md5/{onnx_md5[:2]}/{onnx_md5[2:]}" in keys

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(work), str(clone))
    dvc(clone, "pull", "-r", "s3", *TARGET, env=creds)
    assert outputs_match_lock(clone) == N_OUTPUTS
    assert dvc(clone, "status", *TARGET).stdout.strip() == UP_TO_DATE
