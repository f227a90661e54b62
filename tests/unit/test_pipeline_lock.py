"""The committed ``dvc.lock`` must describe the committed code and params of the example
pipeline: a change to a stage's code or params without ``dvc repro`` fails here (in CI too,
where the DVC-tracked data and models are not present)."""

from __future__ import annotations

import pytest

from modelops.fsutil import md5_file
from modelops.yamlio import load_yaml_file
from tests.conftest import ROOT

STAGES = ("ingest", "prepare", "train", "export", "evaluate", "card")
CODE = ("pipeline/", "ci/", "scripts/", "model-cards/templates/")
LOCK = load_yaml_file(ROOT / "dvc.lock")
DVC_YAML = load_yaml_file(ROOT / "dvc.yaml")
PARAMS = load_yaml_file(ROOT / "params.yaml")

FIX = "run `dvc repro` and commit dvc.lock with the change"


def _lookup(raw: dict, dotted: str):
    value = raw
    for part in dotted.split("."):
        value = value[part]
    return value


@pytest.mark.parametrize("stage", STAGES)
def test_lock_records_the_stage_as_dvc_yaml_declares_it(stage):
    declared = DVC_YAML["stages"][stage]
    locked = LOCK["stages"][stage]
    assert locked["cmd"] == declared["cmd"], FIX
    assert sorted(d["path"] for d in locked["deps"]) == sorted(declared["deps"]), FIX


@pytest.mark.parametrize("stage", STAGES)
def test_code_deps_match_the_lock(stage):
    for dep in LOCK["stages"][stage]["deps"]:
        path = ROOT / dep["path"]
        if dep["path"].startswith(CODE):
            assert md5_file(path) == dep["md5"], f"{dep['path']} changed since the lock: {FIX}"


@pytest.mark.parametrize("stage", STAGES)
def test_params_match_the_lock(stage):
    for _file, values in LOCK["stages"][stage].get("params", {}).items():
        for key, locked in values.items():
            assert _lookup(PARAMS, key) == locked, f"params.yaml {key} changed: {FIX}"


def test_the_lock_pins_the_contract_outputs():
    outs = {o["path"]: o for s in STAGES for o in LOCK["stages"][s].get("outs", [])}
    for path in ("data/raw/digits.csv", "data/prepared", "models/model.pt", "models/model.onnx",
                 "metrics/metrics.json", "metrics/drift_baseline.json"):
        assert path in outs, path
    # cache: false outputs are in git; their bytes must be the ones the lock records
    for path in ("metrics/metrics.json", "metrics/drift_baseline.json", "plots/confusion.csv",
                 "plots/per_class.csv", "plots/train_curve.csv", "metrics/parity.json",
                 "model-cards/digits-cnn.md"):
        assert md5_file(ROOT / path) == outs[path]["md5"], f"{path} differs from dvc.lock: {FIX}"
