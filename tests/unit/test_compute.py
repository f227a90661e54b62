"""Compute records per stage, their price, and the per-model summary over git history."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelops.ci.cost import format_table, history, reran_since
from modelops.compute import CostParams, compute_section, main, measure, price, visible_gpus
from tests.conftest import PY, ROOT

PRICES = CostParams(currency="EUR", cpu_core_hour=3.6, gpu_hour=36.0)  # 0.001 per CPU-second


def test_measure_records_cpu_of_the_stage_process(tmp_path):
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass\n"
    code = measure("train", [sys.executable, "-c", burn], tmp_path)
    assert code == 0
    data = json.loads((tmp_path / "train.json").read_text())
    assert data["stage"] == "train"
    assert 0.25 <= data["cpu_seconds"] <= data["wall_seconds"] + 0.5
    assert data["gpu_seconds"] == data["wall_seconds"] * data["gpus"]


def test_a_failed_stage_records_nothing_and_keeps_its_exit_code(tmp_path):
    assert measure("x", [sys.executable, "-c", "raise SystemExit(3)"], tmp_path) == 3
    assert not (tmp_path / "x.json").exists()


def test_cli_needs_a_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--stage", "x"])
    assert info.value.code == 2


@pytest.mark.parametrize(("value", "n"), [("0,1", 2), ("", 0), ("-1", 0), ("3", 1)])
def test_visible_gpus_follows_cuda_visible_devices(monkeypatch, value, n):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", value)
    assert visible_gpus() == n


def test_price_and_section(tmp_path):
    assert price({"cpu_seconds": 100, "gpu_seconds": 10}, PRICES) == pytest.approx(0.2)
    d = tmp_path / "metrics/compute"
    d.mkdir(parents=True)
    (d / "train.json").write_text(json.dumps({"stage": "train", "cpu_seconds": 100,
                                              "gpu_seconds": 10, "wall_seconds": 12}))
    (d / "evaluate.json").write_text(json.dumps({"stage": "evaluate", "cpu_seconds": 50,
                                                 "gpu_seconds": 0, "wall_seconds": 5}))
    section = compute_section(tmp_path, PRICES, reran=["evaluate"])
    assert section["status"] == "pass"
    assert section["total"]["cost"] == pytest.approx(0.25)
    assert section["this_change"]["cost"] == pytest.approx(0.05)
    assert section["stages"]["evaluate"]["reran"] and not section["stages"]["train"]["reran"]
    empty = compute_section(tmp_path / "nothing", PRICES)
    assert empty["status"] == "skipped" and "metrics/compute" in empty["reason"]


def _commit(repo: Path, model: str, stages: dict[str, float], message: str) -> None:
    (repo / "params.yaml").write_text(f"model:\n  name: {model}\n")
    d = repo / "metrics/compute"
    d.mkdir(parents=True, exist_ok=True)
    for stage, cpu in stages.items():
        (d / f"{stage}.json").write_text(json.dumps({"stage": stage, "cpu_seconds": cpu,
                                                     "gpu_seconds": 0.0, "wall_seconds": cpu}))
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", message], cwd=repo, check=True)


def test_history_counts_each_stage_run_once_per_commit(tmp_path, git_env):
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    _commit(repo, "digits-cnn", {"train": 100, "evaluate": 10}, "first model")
    _commit(repo, "digits-cnn", {"evaluate": 20}, "only evaluate reran")
    (repo / "README").write_text("x")
    _commit(repo, "digits-cnn", {}, "no stage ran")
    _commit(repo, "other-model", {"train": 1000}, "renamed model retrained")
    summary = history(repo, PRICES)
    assert set(summary) == {"digits-cnn", "other-model"}
    digits = summary["digits-cnn"]
    assert digits["runs"] == 2
    assert digits["stage_runs"] == {"train": 1, "evaluate": 2}
    assert digits["cpu_seconds"] == pytest.approx(130)
    assert digits["cost"] == pytest.approx(0.13)
    assert summary["other-model"]["cost"] == pytest.approx(1.0)
    table = format_table(summary)
    assert "digits-cnn" in table and "EUR" in table
    # a working-tree change marks the stage as rerun against the base
    (repo / "metrics/compute/train.json").write_text("{}")
    assert reran_since(repo, "HEAD") == ["train"]


def test_cli_summarises_this_repository():
    proc = subprocess.run([PY, "-m", "modelops.ci", "cost", "--json"], cwd=ROOT,
                          capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert isinstance(summary, dict)
    for entry in summary.values():
        assert entry["runs"] >= 1 and entry["currency"] == "USD"


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
