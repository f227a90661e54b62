"""Compute records of stage runs and the cost estimates built on them: GPUs only when given,
failed runs and the whole process tree counted, memory priced, dated prices, the ledger of CI
and Workflow runs, serving cost from the GitOps history, roll-ups, and the PR comment.

No GPU here: where a test needs ``nvidia-smi`` it puts a stand-in on PATH that prints what the
real one prints for the queries the recorder makes (``--format=csv,noheader,nounits``)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelops.ci.cost import (
    format_table,
    history,
    quantity,
    reran_since,
    rollout_footprint,
    rollup,
    serving_items,
    summary,
    training_items,
)
from modelops.compute import (
    CostParams,
    compute_section,
    given_gpus,
    main,
    measure,
    price,
    read_ledger,
    read_runs,
    upload_runs,
    visible_gpus,
)
from modelops.settings.cost import PricePeriod
from tests.conftest import PY, ROOT

# 0.001 per CPU-second, 0.01 per GPU-second, 0.0001 per GB-second
PRICES = CostParams(currency="EUR", prices=[PricePeriod(since="2024-01-01", cpu_core_hour=3.6,
                                                        gpu_hour=36.0, memory_gb_hour=0.36)])
DATED = CostParams(currency="EUR", prices=[
    PricePeriod(since="2024-01-01", cpu_core_hour=3.6, gpu_hour=36.0, memory_gb_hour=0.0),
    PricePeriod(since="2026-06-01", cpu_core_hour=7.2, gpu_hour=72.0, memory_gb_hour=0.0)])
FAKE_SMI = """#!/bin/sh
case "$*" in
  *query-gpu=uuid*) i=0; while [ $i -lt 8 ]; do echo "GPU-$i"; i=$((i+1)); done ;;
  *query-gpu=index,uuid,utilization.gpu*)
      i=0; while [ $i -lt 8 ]; do echo "$i, GPU-$i, 37"; i=$((i+1)); done ;;
  *query-compute-apps*) [ -f "$FAKE_SMI_PIDS" ] && while read p; do echo "$p, GPU-3"; done \
      < "$FAKE_SMI_PIDS" ;;
esac
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A folder that looks like a DVC repository (the recorder finds its root by .dvc/)."""
    (tmp_path / ".dvc").mkdir()
    (tmp_path / "params.yaml").write_text(
        "modelops:\n  model: {name: digits-cnn, team: ml-platform}\n")
    monkeypatch.chdir(tmp_path)
    for var in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "GITHUB_ACTIONS",
                "MODELOPS_RUN_KIND", "MODELOPS_RUNS_DIR", "MODELOPS_COST_LEDGER"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


@pytest.fixture
def eight_gpus(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text(FAKE_SMI)
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SMI_PIDS", str(tmp_path / "pids"))
    return tmp_path / "pids"


def _record(repo: Path, stage: str = "s") -> dict:
    return json.loads((repo / "metrics/compute" / f"{stage}.json").read_text())


# ----------------------------------------------------------------------------- GPUs

def test_a_stage_given_no_gpu_is_billed_none_however_many_the_host_lists(repo, eight_gpus):
    assert measure("s", [sys.executable, "-c", "import time; time.sleep(0.3)"],
                   repo / "metrics/compute", interval=0.05) == 0
    data = _record(repo)
    assert data["gpus"] == 0 and data["gpu_seconds"] == 0.0 and data["gpu_source"] == "none"


def test_given_gpus_are_billed_for_the_wall_time_with_measured_utilisation(
        repo, eight_gpus, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    measure("s", [sys.executable, "-c", "import time; time.sleep(0.3)"],
            repo / "metrics/compute", interval=0.05)
    data = _record(repo)
    assert data["gpu_ids"] == ["0", "1"] and data["gpu_source"] == "allocated"
    assert data["gpu_seconds"] == pytest.approx(2 * data["wall_seconds"], abs=0.01)
    assert data["gpu_utilization"] == 37.0


def test_gpus_seen_in_use_without_an_allocation_count_their_sampled_time(repo, eight_gpus):
    code = (f"import os, time; open({str(eight_gpus)!r}, 'w').write(str(os.getpid()) + '\\n'); "
            "time.sleep(0.6)")
    measure("s", [sys.executable, "-c", code], repo / "metrics/compute", interval=0.05)
    data = _record(repo)
    assert data["gpu_source"] == "measured"
    assert 0 < data["gpu_seconds"] <= data["wall_seconds"] + 0.1


@pytest.mark.parametrize(("env", "want"), [
    ({"CUDA_VISIBLE_DEVICES": "0,1"}, ["0", "1"]), ({"CUDA_VISIBLE_DEVICES": ""}, []),
    ({"CUDA_VISIBLE_DEVICES": "-1"}, []), ({"CUDA_VISIBLE_DEVICES": "3"}, ["3"]),
    ({"CUDA_VISIBLE_DEVICES": "0,-1,1"}, ["0"]),  # CUDA stops at the first invalid entry
    ({"CUDA_VISIBLE_DEVICES": "GPU-a,GPU-b"}, ["GPU-a", "GPU-b"]),
    ({"NVIDIA_VISIBLE_DEVICES": "2,3"}, ["2", "3"]), ({"NVIDIA_VISIBLE_DEVICES": "none"}, []),
    ({"NVIDIA_VISIBLE_DEVICES": "void"}, []),
    ({"CUDA_VISIBLE_DEVICES": "1", "NVIDIA_VISIBLE_DEVICES": "all"}, ["1"]), ({}, []),
])
def test_given_gpus_follow_the_environment(env, want):
    assert given_gpus(env) == want


def test_all_means_every_gpu_nvidia_smi_lists(eight_gpus, monkeypatch):
    assert given_gpus({"NVIDIA_VISIBLE_DEVICES": "all"}) == [f"GPU-{i}" for i in range(8)]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    assert visible_gpus() == 2


# ----------------------------------------------------------------------------- runs

def test_a_failed_run_is_recorded_and_keeps_its_exit_code(repo):
    assert measure("x", [sys.executable, "-c", "raise SystemExit(3)"],
                   repo / "metrics/compute") == 3
    assert not (repo / "metrics/compute/x.json").exists()  # the stage output: success only
    (run,) = read_runs(repo)
    assert run["status"] == "failed" and run["exit_code"] == 3 and run["stage"] == "x"
    assert run["model"] == "digits-cnn" and run["team"] == "ml-platform"
    assert run["run"]["kind"] == "local" and run["env"] == "local"


def test_the_whole_process_tree_is_counted_even_orphans(repo):
    """A grandchild that its parent never waits for (double fork) burns CPU: counted."""
    burn = ("import os, time\n"
            "if os.fork() == 0:\n"
            "    if os.fork() == 0:\n"
            "        t = time.process_time()\n"
            "        while time.process_time() - t < 0.6: pass\n"
            "    os._exit(0)\n"
            "os.wait()\n")  # the first child exits at once; the grandchild is an orphan
    proc = subprocess.run([PY, "-m", "modelops.compute", "--stage", "tree", "--",
                           sys.executable, "-c", burn], cwd=repo, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = _record(repo, "tree")
    assert data["cpu_seconds"] >= 0.5


def test_memory_is_the_peak_of_the_tree_and_is_priced(repo):
    grow = "import time; b = bytearray(120 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); " \
           "time.sleep(0.5)"
    measure("m", [sys.executable, "-c", grow], repo / "metrics/compute", interval=0.05)
    data = _record(repo, "m")
    assert data["max_rss_bytes"] >= 120 * 1024 * 1024
    assert data["memory_gb_seconds"] == pytest.approx(
        data["max_rss_bytes"] / 1e9 * data["wall_seconds"], rel=0.01)
    assert price(data, PRICES) == pytest.approx(
        data["cpu_seconds"] * 0.001 + data["memory_gb_seconds"] * 0.0001, rel=1e-6)


def test_ci_and_workflow_runs_know_whose_they_are(repo, monkeypatch):
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_RUN_ID", "777")
    monkeypatch.setenv("GITHUB_REF", "refs/pull/42/merge")
    measure("a", [sys.executable, "-c", "pass"], repo / "metrics/compute")
    monkeypatch.delenv("GITHUB_ACTIONS")
    monkeypatch.setenv("MODELOPS_RUN_KIND", "workflow")
    monkeypatch.setenv("MODELOPS_WORKFLOW", "digits-cnn-pipeline-x1")
    measure("b", [sys.executable, "-c", "pass"], repo / "metrics/compute")
    ci, wf = read_runs(repo)
    assert ci["run"]["kind"] == "ci" and ci["run"]["pr"] == 42 and ci["env"] == "ci"
    assert wf["run"] == {"kind": "workflow", "id": "", "workflow": "digits-cnn-pipeline-x1"}
    assert wf["env"] == "training"


def test_cli_needs_a_command():
    with pytest.raises(SystemExit) as info:
        main(["--stage", "x"])
    assert info.value.code == 2


# ----------------------------------------------------------------------------- prices

def test_runs_are_priced_at_the_prices_of_their_own_day():
    before = {"cpu_seconds": 3600, "gpu_seconds": 0, "started_at": "2026-05-31T23:00:00Z"}
    after = {**before, "started_at": "2026-06-01T00:10:00Z"}
    ancient = {**before, "started_at": "2020-01-01T00:00:00Z"}  # before the table: its first row
    assert price(before, DATED) == pytest.approx(3.6)
    assert price(after, DATED) == pytest.approx(7.2)
    assert price(ancient, DATED) == pytest.approx(3.6)


def test_price_periods_must_be_in_order():
    from modelops.errors import ConfigError
    from modelops.settings import convert

    with pytest.raises(ConfigError, match=r"modelops.cost.prices\[1\].since"):
        convert(CostParams, {"prices": [{"since": "2026-01-01"}, {"since": "2025-01-01"}]},
                "modelops.cost", "params.yaml")
    with pytest.raises(ConfigError, match="'soon'"):
        convert(CostParams, {"prices": [{"since": "soon"}]}, "modelops.cost", "params.yaml")


def _commit(repo: Path, model: str, stages: dict[str, float], message: str,
            date: str = "2026-03-01T12:00:00+00:00") -> None:
    (repo / "params.yaml").write_text(f"model:\n  name: {model}\n")
    d = repo / "metrics/compute"
    d.mkdir(parents=True, exist_ok=True)
    for stage, cpu in stages.items():
        (d / f"{stage}.json").write_text(json.dumps({"stage": stage, "cpu_seconds": cpu,
                                                     "gpu_seconds": 0.0, "wall_seconds": cpu}))
    env = {**os.environ, "GIT_COMMITTER_DATE": date, "GIT_AUTHOR_DATE": date}
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=repo, check=True,
                   env=env)


def test_history_counts_each_stage_run_once_per_commit_at_its_own_prices(tmp_path, git_env):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    _commit(repo, "digits-cnn", {"train": 100, "evaluate": 10}, "first model")
    _commit(repo, "digits-cnn", {"evaluate": 20}, "only evaluate reran",
            date="2026-07-01T12:00:00+00:00")  # after the price change
    (repo / "README").write_text("x")
    _commit(repo, "digits-cnn", {}, "no stage ran")
    _commit(repo, "other-model", {"train": 1000}, "renamed model retrained")
    summary_ = history(repo, DATED)
    assert set(summary_) == {"digits-cnn", "other-model"}
    digits = summary_["digits-cnn"]
    assert digits["runs"] == 2
    assert digits["stage_runs"] == {"train": 1, "evaluate": 2}
    assert digits["cpu_seconds"] == pytest.approx(130)
    assert digits["cost"] == pytest.approx(0.11 + 0.04)  # 110 s at 0.001, 20 s at 0.002
    assert summary_["other-model"]["cost"] == pytest.approx(1.0)
    table = format_table(summary_)
    assert "digits-cnn" in table and "EUR" in table and "est." in table
    # a working-tree change marks the stage as rerun against the base
    (repo / "metrics/compute/train.json").write_text("{}")
    assert reran_since(repo, "HEAD") == ["train"]


# ----------------------------------------------------------------------------- the ledger

def test_the_ledger_counts_runs_git_never_sees_each_once(tmp_path, git_env, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    (repo / ".dvc").mkdir()
    (repo / "params.yaml").write_text("modelops:\n  model: {name: digits-cnn, team: vision}\n")
    monkeypatch.chdir(repo)
    for var in ("GITHUB_ACTIONS", "MODELOPS_RUN_KIND", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_REF", "refs/pull/7/merge")
    measure("train", [sys.executable, "-c", "raise SystemExit(1)"], repo / "metrics/compute")
    measure("train", [sys.executable, "-c", "pass"], repo / "metrics/compute")  # the retry
    monkeypatch.setenv("MODELOPS_RUN_KIND", "workflow")
    measure("evaluate", [sys.executable, "-c", "pass"], repo / "metrics/compute")
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "model"], cwd=repo, check=True)
    ledger = tmp_path / "ledger"
    assert upload_runs(repo, str(ledger)) == 3
    assert upload_runs(repo, str(ledger)) == 0  # uploaded once
    assert len(read_ledger(str(ledger))) == 3
    items = training_items(repo, PRICES, ledger=str(ledger))
    # two records reached git (train's success and evaluate), three runs happened: three items
    assert len(items) == 3
    assert sorted((i["stage"], i["status"]) for i in items) == [
        ("evaluate", "succeeded"), ("train", "failed"), ("train", "succeeded")]
    assert sorted(i["env"] for i in items) == ["ci", "ci", "training"]
    assert len(training_items(repo, PRICES)) == 2  # without the ledger: git's records only


def test_cost_upload_cli_writes_to_the_configured_ledger(tmp_path, repo):
    measure("s", [sys.executable, "-c", "pass"], repo / "metrics/compute")
    ledger = tmp_path / "shared-ledger"
    proc = subprocess.run([PY, "-m", "modelops.ci", "cost-upload", "--ledger", str(ledger)],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "1 run record(s) uploaded" in proc.stdout
    (record,) = read_ledger(str(ledger))
    assert record["stage"] == "s"
    assert list(ledger.glob("digits-cnn/*/*.json"))


# ----------------------------------------------------------------------------- serving

def test_quantities_and_the_rollout_footprint():
    assert quantity("250m") == 0.25 and quantity("2") == 2 and quantity("1e3") == 1000
    assert quantity("256Mi") == 256 * 2 ** 20 and quantity("1G") == 1e9
    rollout = ("kind: Rollout\nspec:\n  replicas: 3\n  template:\n    spec:\n      containers:\n"
               "      - resources:\n          requests: {cpu: 250m, memory: 500M}\n"
               "          limits: {nvidia.com/gpu: 1}\n")
    assert rollout_footprint(rollout) == {"replicas": 3.0, "cpu": 0.25, "memory_gb": 0.5,
                                          "gpu": 1.0}
    assert rollout_footprint(None) is None and rollout_footprint("kind: Service\n") is None


def _rollout(replicas: int) -> str:
    return ("apiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: digits-cnn}\n"
            f"spec:\n  replicas: {replicas}\n  template:\n    spec:\n      containers:\n"
            "      - name: server\n        resources:\n"
            "          requests: {cpu: '1', memory: 1000M}\n")


def test_serving_cost_is_replicas_times_requests_times_time_per_environment(tmp_path, git_env):
    gitops = tmp_path / "gitops"
    gitops.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=gitops, check=True)

    def commit(path: str, text: str | None, when: str) -> None:
        target = gitops / path
        if text is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        subprocess.run(["git", "add", "-A"], cwd=gitops, check=True)
        env = {**os.environ, "GIT_COMMITTER_DATE": when, "GIT_AUTHOR_DATE": when}
        subprocess.run(["git", "commit", "-q", "-m", when], cwd=gitops, check=True, env=env)

    prod, staging = "production/digits-cnn/rollout.yaml", "staging/digits-cnn/rollout.yaml"
    commit(staging, _rollout(1), "2026-05-31T22:00:00+00:00")
    commit(prod, _rollout(3), "2026-05-31T22:00:00+00:00")
    commit(prod, _rollout(5), "2026-06-01T01:00:00+00:00")  # prices double at 00:00
    commit(prod, None, "2026-06-01T03:00:00+00:00")         # taken down
    until = dt.datetime(2026, 6, 1, 4, tzinfo=dt.UTC)
    prices = CostParams(currency="EUR", prices=[
        PricePeriod(since="2024-01-01", cpu_core_hour=1.0, gpu_hour=0.0, memory_gb_hour=0.5),
        PricePeriod(since="2026-06-01", cpu_core_hour=2.0, gpu_hour=0.0, memory_gb_hour=1.0)])
    items = serving_items(gitops, model="digits-cnn", team="vision",
                          envs=["staging", "production"], prices=prices, until=until)
    by_env = rollup(items, "env", "EUR")
    # a replica-hour costs 1 x cpu + 1 GB x memory: 1.5 before June, 3.0 from June 1st
    # production: 3 replicas x 2h at 1.5, then 3 x 1h at 3.0, then 5 x 2h at 3.0
    assert by_env["production"]["serving"] == pytest.approx(9 + 9 + 30)
    # staging: 1 replica x 2h at 1.5, then 1 x 4h at 3.0 (still running)
    assert by_env["staging"]["serving"] == pytest.approx(3 + 12)
    assert by_env["production"]["estimate"] is True
    assert rollup(items, "team", "EUR")["vision"]["total"] == pytest.approx(63)


def test_rollups_per_model_environment_and_team():
    items = [
        {"kind": "training", "model": "a", "env": "ci", "team": "t1", "status": "failed",
         "cost": 1.0, "cpu_seconds": 3600, "gpu_seconds": 0, "memory_gb_seconds": 0},
        {"kind": "training", "model": "a", "env": "training", "team": "t1",
         "status": "succeeded", "cost": 2.0, "cpu_seconds": 0, "gpu_seconds": 3600,
         "memory_gb_seconds": 0},
        {"kind": "serving", "model": "b", "env": "production", "team": "t2", "cost": 4.0,
         "cpu_seconds": 0, "gpu_seconds": 0, "memory_gb_seconds": 7200},
    ]
    report = summary(items, PRICES)
    assert report["total"] == 7.0 and report["estimate"] is True
    assert report["by"]["model"]["a"] == {
        "training": 3.0, "serving": 0.0, "runs": 2, "failed": 1, "cpu_hours": 1.0,
        "gpu_hours": 1.0, "memory_gb_hours": 0.0, "total": 3.0, "currency": "EUR",
        "estimate": True}
    assert report["by"]["team"]["t2"]["serving"] == 4.0
    assert set(report["by"]["env"]) == {"ci", "training", "production"}
    assert "Estimated cost" in format_table(report)


# ----------------------------------------------------------------------------- the report

def test_the_comment_shows_the_pull_requests_own_compute(repo, monkeypatch):
    from modelops.ci.cost import render_compute_section

    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_RUN_ID", "99")
    measure("train", [sys.executable, "-c", "raise SystemExit(1)"], repo / "metrics/compute")
    measure("train", [sys.executable, "-c", "pass"], repo / "metrics/compute")
    monkeypatch.setenv("GITHUB_RUN_ID", "98")  # another job's run is not this PR's
    measure("evaluate", [sys.executable, "-c", "pass"], repo / "metrics/compute")
    monkeypatch.setenv("GITHUB_RUN_ID", "99")
    section = compute_section(repo, PRICES, reran=["train"])
    assert section["status"] == "pass" and section["estimate"] is True
    assert section["pull_request"]["runs"] == 2 and section["pull_request"]["failed"] == 1
    assert [r["status"] for r in section["runs"]] == ["failed", "succeeded"]
    body = render_compute_section(section)
    assert "This pull request's own compute" in body and "1 failed" in body
    assert "estimate" in body.lower() and "| train | failed |" in body


def test_section_without_records_is_skipped(tmp_path):
    empty = compute_section(tmp_path / "nothing", PRICES)
    assert empty["status"] == "skipped" and "metrics/compute" in empty["reason"]


def test_cli_summarises_this_repository():
    proc = subprocess.run([PY, "-m", "modelops.ci", "cost", "--history", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary_ = json.loads(proc.stdout)
    assert isinstance(summary_, dict)
    for entry in summary_.values():
        assert entry["runs"] >= 1 and entry["currency"] == "USD" and entry["estimate"]
    rolled = subprocess.run([PY, "-m", "modelops.ci", "cost", "--json"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert rolled.returncode == 0, rolled.stderr
    assert set(json.loads(rolled.stdout)["by"]) == {"model", "env", "team"}


def test_report_gets_a_compute_section_and_the_comment_shows_it(tmp_path):
    import shutil

    from modelops.ci.markdown import render_comment

    report = tmp_path / "report.json"
    shutil.copy(ROOT / "tests/data/comment/report.json", report)
    proc = subprocess.run([PY, "-m", "modelops.ci", "cost", "--report", str(report), "--base",
                           "HEAD"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    section = data["sections"]["compute"]
    assert section["status"] == "pass"
    assert {"ingest", "train", "evaluate"} <= set(section["stages"])
    body = render_comment(data)
    assert "Compute and estimated cost" in body and "| train |" in body


def test_release_records_the_compute_that_produced_the_model():
    from modelops.errors import InputError
    from modelops.gitops.release import Release, read_compute_record
    from modelops.settings import load_settings
    from tests.unit.test_gitops_release import example_release

    params = load_settings(ROOT / "params.yaml")
    record = read_compute_record(ROOT, params)  # the committed records of this repository
    assert record is not None
    assert {"train", "evaluate"} <= set(record["stages"])
    total = record["total"]
    assert total["currency"] == params.cost.currency
    assert total["cpu_seconds"] == pytest.approx(
        sum(s["cpu_seconds"] for s in record["stages"].values()), abs=0.01)
    release = example_release(compute=record)
    again = Release.from_json(release.to_json())
    assert again == release
    broken = json.loads(release.to_json())
    broken["compute"]["total"]["cost"] = -1
    with pytest.raises(InputError, match="compute.total.cost"):
        Release.from_json(json.dumps(broken))
    assert read_compute_record(ROOT / "tests", params) is None
