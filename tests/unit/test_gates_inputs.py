"""What the gates and the report read: dvc's JSON diffs and dvc.lock, parsed without dvc."""

from __future__ import annotations

from modelops.ci.compare import data_rows, metric_rows, param_rows, stage_rows
from modelops.ci.report import per_class_rows

BASE_LOCK = {
    "ingest": {"cmd": "python ingest.py",
               "deps": [{"path": "ingest.py", "md5": "a1"}],
               "params": {"params.yaml": {"ingest": {"dataset": "sklearn-digits"}}},
               "outs": [{"path": "data/raw/digits.csv", "md5": "d1", "size": 100}]},
    "train": {"cmd": "python train.py",
              "deps": [{"path": "data/raw/digits.csv", "md5": "d1"}],
              "params": {"params.yaml": {"train": {"epochs": 3, "lr": 0.1}}},
              "outs": [{"path": "models/model.onnx", "md5": "m1", "size": 10}]},
    "old": {"cmd": "true"},
}
HEAD_LOCK = {
    "ingest": BASE_LOCK["ingest"],
    "train": {"cmd": "python train.py",
              "deps": [{"path": "data/raw/digits.csv", "md5": "d1"}],
              "params": {"params.yaml": {"train": {"epochs": 5, "lr": 0.1}}},
              "outs": [{"path": "models/model.onnx", "md5": "m2", "size": 12}]},
    "card": {"cmd": "modelops-ci card"},
}


def test_stage_rows_say_what_changed_and_why():
    rows = {r["stage"]: r for r in stage_rows(BASE_LOCK, HEAD_LOCK)}
    assert rows["train"] == {"stage": "train", "change": "rerun", "why": ["param train.epochs"]}
    assert rows["card"]["change"] == "added" and rows["old"]["change"] == "removed"
    assert "ingest" not in rows


def test_data_rows_carry_sizes_from_both_locks():
    diff = {"added": [], "deleted": [], "modified": [{"path": "models/model.onnx"}],
            "renamed": [{"path": {"old": "data/raw/digits.csv", "new": "data/raw/d.csv"}}],
            "not in cache": []}
    rows = data_rows(diff, BASE_LOCK, HEAD_LOCK)
    assert rows[0] == {"path": "models/model.onnx", "change": "modified", "base_size": 10,
                       "head_size": 12}
    assert rows[1]["change"] == "renamed" and rows[1]["from"] == "data/raw/digits.csv"
    assert rows[1]["base_size"] == 100 and rows[1]["head_size"] is None


def test_metric_and_param_rows_from_dvc_json():
    metrics = {"metrics/metrics.json": {
        "accuracy": {"old": 0.9, "new": 0.95, "diff": 0.05},
        "per_class.3.f1": {"old": 0.8, "new": 0.7, "diff": -0.1},
        "per_class.3.support": {"old": 30, "new": 30, "diff": 0},
        "note": {"old": "a", "new": "b"}}}
    rows = {r["name"]: r for r in metric_rows(metrics)}
    assert rows["accuracy"]["delta"] == 0.05 and rows["note"]["delta"] is None
    [cls] = per_class_rows(list(rows.values()))
    assert cls["class"] == "3" and cls["support"] == 30
    assert cls["f1"] == {"base": 0.8, "head": 0.7, "delta": -0.1}
    params = param_rows({"params.yaml": {"train.epochs": {"old": 3, "new": 5, "diff": 2}}})
    assert params == [{"file": "params.yaml", "name": "train.epochs", "base": 3, "head": 5}]
