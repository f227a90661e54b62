"""Unit tests of the example pipeline's stages, run in-process in a temporary directory."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from modelops.errors import ConfigError, InputError
from modelops.yamlio import dump_yaml, load_yaml_file
from pipeline import evaluate, export, ingest, prepare, summary, train
from pipeline._stage import MODEL_ONNX, MODEL_PT, PARITY_JSON, RAW_CSV, SPLITS, split_path
from pipeline.model import load_checkpoint, save_checkpoint, weights_digest
from pipeline.params import load_params, parse_params
from tests.conftest import ROOT

FAST = {"epochs": 2}
OWN = ("modelops", "ingest", "prepare", "train", "export", "evaluate")


def _params_file(tmp_path, **overrides):
    """The pipeline's sections of params.yaml with overrides: {"train": {"epochs": 2}}."""
    raw = {k: v for k, v in load_yaml_file(ROOT / "params.yaml").items() if k in OWN}
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    path = tmp_path / "params.yaml"
    path.write_text(dump_yaml(raw), encoding="utf-8")
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A temporary project directory with params.yaml (fast training) as the cwd."""
    monkeypatch.chdir(tmp_path)
    _params_file(tmp_path, train=FAST)
    return tmp_path


@pytest.fixture
def prepared(workdir):
    assert ingest.main([]) == 0
    assert prepare.main([]) == 0
    return workdir


@pytest.fixture
def trained(prepared):
    assert train.main([]) == 0
    return prepared


# --------------------------------------------------------------------------- params

@pytest.mark.parametrize("override, path, value, problem", [
    ({"train": {"epocs": 3}}, "train.epocs", "3", "unknown key"),
    ({"train": {"learning_rate": "fast"}}, "train.learning_rate", "'fast'", "must be a number"),
    ({"train": {"epochs": -1}}, "train.epochs", "-1", "must be at least 1"),
    ({"prepare": {"val_fraction": 0.5, "test_fraction": 0.5}}, "prepare.val_fraction", "0.5",
     "at most 0.8"),
    ({"export": {"opset": 3}}, "export.opset", "3", "must be at least 7"),
])
def test_bad_params_name_file_field_and_value(tmp_path, override, path, value, problem):
    file = _params_file(tmp_path, **override)
    with pytest.raises(ConfigError) as info:
        load_params(file)
    message = str(info.value)
    assert str(file) in message and f"{path}:" in message and value in message
    assert problem in message


def test_typo_suggests_the_known_key(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        load_params(_params_file(tmp_path, train={"epocs": 3}))


def test_stage_with_bad_params_exits_2_with_one_line_and_writes_nothing(prepared, capsys):
    _params_file(prepared, train={"epochs": -3})
    assert train.main([]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("pipeline.train: error: params.yaml: train.epochs:")
    assert "(got -3)" in err
    assert not MODEL_PT.exists()


def test_pipeline_params_are_valid(tmp_path):
    params = load_params(_params_file(tmp_path))
    assert params.model.name == "digits-cnn"
    assert params.train.epochs >= 1


# --------------------------------------------------------------------------- ingest / prepare

def test_ingest_writes_the_bundled_digits(workdir):
    assert ingest.main([]) == 0
    lines = RAW_CSV.read_text().splitlines()
    assert lines[0] == ",".join(ingest.HEADER)
    assert len(lines) == 1 + 1797
    assert len(lines[1].split(",")) == 65


def test_prepare_splits_are_stratified_disjoint_and_seeded(prepared):
    sizes = {}
    for split in SPLITS:
        x, y = prepare.load_split(split)
        assert x.dtype == np.float32 and x.shape[1:] == (1, 8, 8)
        assert y.dtype == np.int64
        assert x.min() >= 0.0 and x.max() <= 1.0
        sizes[split] = len(y)
        assert set(np.unique(y)) == set(range(10))  # every class in every split
    assert sum(sizes.values()) == 1797
    assert sizes["test"] == pytest.approx(0.15 * 1797, abs=2)
    first = {s: split_path(s).read_bytes() for s in SPLITS}
    assert prepare.main([]) == 0
    assert {s: split_path(s).read_bytes() for s in SPLITS} == first  # byte-for-byte rerun


def test_split_seed_changes_the_split():
    _, labels = ingest.load_dataset("sklearn-digits")
    a = prepare.split_indices(labels, 0.15, 0.15, seed=1)
    b = prepare.split_indices(labels, 0.15, 0.15, seed=2)
    assert not np.array_equal(a["test"], b["test"])
    assert not set(a["test"]) & set(a["train"])


def test_missing_raw_data_exits_2_and_leaves_no_splits(workdir, capsys):
    assert prepare.main([]) == 2
    err = capsys.readouterr().err
    assert "data/raw/digits.csv: raw data file not found" in err
    assert "dvc repro" in err  # says what to do next
    assert not any(split_path(s).exists() for s in SPLITS)


def test_truncated_raw_data_exits_2_and_leaves_no_splits(workdir, capsys):
    assert ingest.main([]) == 0
    data = RAW_CSV.read_bytes()
    RAW_CSV.write_bytes(data[: len(data) // 2])  # cut in the middle of a row
    assert prepare.main([]) == 2
    err = capsys.readouterr().err
    assert "data/raw/digits.csv: file is truncated" in err
    assert not any(split_path(s).exists() for s in SPLITS)


@pytest.mark.parametrize("mutate, expected", [
    (lambda lines: lines[:5] + [lines[5].rsplit(",", 3)[0] + "\n"] + lines[6:],
     "line 6: expected 65 fields, got 62"),
    (lambda lines: lines[:2] + [lines[2].replace("0,", "x,", 1)] + lines[3:],
     "line 3: 'x' is not an integer"),
    (lambda lines: lines[:3] + ["99," + lines[3].split(",", 1)[1]] + lines[4:],
     "line 4: pixel p0 = 99 is outside 0..16"),
    (lambda lines: ["a,b\n"] + lines[1:], "line 1: expected the header"),
])
def test_corrupt_raw_rows_name_the_line(workdir, mutate, expected):
    ingest.main([])
    lines = RAW_CSV.read_text().splitlines(keepends=True)
    RAW_CSV.write_text("".join(mutate(lines)))
    with pytest.raises(InputError, match=expected.replace("[", r"\[").replace("(", r"\(")):
        prepare.read_raw(RAW_CSV)


# --------------------------------------------------------------------------- train

def test_training_is_deterministic_bit_for_bit(prepared, tmp_path):
    p = load_params("params.yaml").train
    data = (*prepare.load_split("train"), *prepare.load_split("val"))
    m1, curve1 = train.train_model(p, *data, log=False)
    m2, curve2 = train.train_model(p, *data, log=False)
    assert weights_digest(m1) == weights_digest(m2)
    assert curve1 == curve2
    save_checkpoint(m1, tmp_path / "a.pt")
    save_checkpoint(m2, tmp_path / "b.pt")
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    # a different seed gives different weights: the digest does see the change
    other = parse_params({**load_yaml_file("params.yaml"),
                          "train": {**load_yaml_file("params.yaml")["train"], "seed": 7}})
    m3, _ = train.train_model(other.train, *data, log=False)
    assert weights_digest(m3) != weights_digest(m1)


def test_train_writes_checkpoint_and_curve(trained):
    model = load_checkpoint(MODEL_PT)
    assert model.config["channels"] == load_params("params.yaml").train.channels
    curve = (trained / "plots/train_curve.csv").read_text().splitlines()
    assert curve[0] == "epoch,train_loss,val_loss,val_accuracy"
    assert len(curve) == 1 + FAST["epochs"]


def test_corrupt_checkpoint_is_a_clear_input_error(workdir):
    MODEL_PT.parent.mkdir(parents=True)
    MODEL_PT.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="models/model.pt: not a readable model checkpoint"):
        load_checkpoint(MODEL_PT)


# --------------------------------------------------------------------------- export / evaluate

def test_export_then_evaluate_produce_the_contract_outputs(trained):
    assert export.main([]) == 0
    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(MODEL_ONNX)).graph
    assert [i.name for i in graph.input] == ["input"]
    assert [o.name for o in graph.output] == ["logits"]
    sess = ort.InferenceSession(str(MODEL_ONNX), providers=["CPUExecutionProvider"])
    for batch in (1, 5, 32):  # dynamic batch axis
        out = sess.run(["logits"], {"input": np.zeros((batch, 1, 8, 8), np.float32)})[0]
        assert out.shape == (batch, 10) and out.dtype == np.float32
    parity = json.loads(PARITY_JSON.read_text())
    assert parity["top1_agreement"] == 1.0 and parity["max_abs_diff"] <= 1e-4

    assert evaluate.main([]) == 0
    metrics = json.loads((trained / "metrics/metrics.json").read_text())
    check_metrics_contract(metrics)
    drift = json.loads((trained / "metrics/drift_baseline.json").read_text())
    check_drift_contract(drift)
    x_val, _ = prepare.load_split("val")
    x_train, _ = prepare.load_split("train")
    assert drift["n"] == len(x_val)
    features = drift["features"]
    assert features["split"] == "train" and features["n"] == len(x_train)
    assert features["mean"][9] == pytest.approx(float(x_train[:, 0, 1, 1].mean()), abs=1e-6)
    # the bins the runtime uses give back the baseline's training shares exactly
    from modelops.binning import Binner
    from modelops.drift import parse_features

    binner = Binner(parse_features(features))
    counts = binner.counts(binner.bin(binner.rows(x_train)))
    shares = counts[:, :binner.IGNORED] / len(x_train)
    np.testing.assert_allclose(shares, binner.expected, atol=1e-6)
    confusion = (trained / "plots/confusion.csv").read_text().splitlines()
    assert confusion[0] == "actual,predicted" and len(confusion) == 1 + drift_n_test()
    per_class = (trained / "plots/per_class.csv").read_text().splitlines()
    assert per_class[0] == "class,precision,recall,f1,support" and len(per_class) == 11


def drift_n_test() -> int:
    return len(prepare.load_split("test")[1])


def test_export_that_disagrees_exits_1_and_leaves_no_onnx(trained, monkeypatch, capsys):
    real = export.ort_logits
    monkeypatch.setattr(export, "ort_logits", lambda path, x: real(path, x) + 0.05)
    assert export.main([]) == 1
    err = capsys.readouterr().err
    assert "onnx runtime disagrees with pytorch: max abs logit difference" in err
    assert "no models/model.onnx was written" in err
    assert not MODEL_ONNX.exists()
    assert sorted(p.name for p in MODEL_PT.parent.iterdir()) == ["model.pt"]  # no temp files


def test_export_top1_disagreement_is_reported(trained, monkeypatch, capsys):
    _params_file(trained, train=FAST, export={"max_abs_diff": 1e9})
    real = export.ort_logits
    monkeypatch.setattr(export, "ort_logits", lambda path, x: real(path, x)[:, ::-1].copy())
    assert export.main([]) == 1
    assert "top-1 agreement" in capsys.readouterr().err
    assert not MODEL_ONNX.exists()


def test_parity_problems(tmp_path):
    p = load_params(_params_file(tmp_path)).export
    assert export.Parity(10, 0.0, 1.0).problems(p) == []
    assert len(export.Parity(10, float("nan"), 1.0).problems(p)) == 1
    ref = np.eye(3, dtype=np.float32)
    assert export.compare(ref, ref[:2]).max_abs_diff == float("inf")


# --------------------------------------------------------------------------- committed results

def check_metrics_contract(metrics: dict) -> None:
    for key in ("accuracy", "macro_f1", "model_size_mb"):
        assert isinstance(metrics[key], float), key
        assert metrics[key] > 0, key
    # no timing: a latency measured by whatever machine ran the stage would churn every rerun
    assert not any("latency" in key for key in metrics), sorted(metrics)
    assert sorted(metrics["per_class"]) == [str(c) for c in range(10)]
    for cls in metrics["per_class"].values():
        assert set(cls) == {"precision", "recall", "f1", "support"}
        assert isinstance(cls["support"], int)


def check_drift_contract(drift: dict) -> None:
    assert drift["model"] == "digits-cnn" and drift["split"] == "validation"
    assert drift["classes"] == [str(c) for c in range(10)]
    assert len(drift["class_distribution"]) == 10
    assert sum(drift["class_distribution"]) == pytest.approx(1.0)
    assert isinstance(drift["n"], int) and drift["n"] > 0
    for stat in ("mean", "std", "min", "max", "names", "quantile_edges", "bin_distribution"):
        assert len(drift["features"][stat]) == 64
    assert drift["features"]["names"][8 * 3 + 4] == "pixel_3_4"
    assert drift["features"]["input"] == "input"
    from modelops.drift import feature_problems

    assert feature_problems(drift["features"]) == []


def test_committed_metrics_meet_the_contract_and_accuracy():
    metrics = json.loads((ROOT / "metrics/metrics.json").read_text())
    check_metrics_contract(metrics)
    assert metrics["accuracy"] >= 0.97
    check_drift_contract(json.loads((ROOT / "metrics/drift_baseline.json").read_text()))


def test_summary_prints_metrics_and_release_identity(trained, capsys):
    assert export.main([]) == 0 and evaluate.main([]) == 0
    shutil.copy(ROOT / "dvc.lock", trained / "dvc.lock")
    capsys.readouterr()
    assert summary.main([]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((trained / "metrics/metrics.json").read_text())
    assert f"test accuracy        {metrics['accuracy']:.4f}" in out
    assert "release identity     sha256 " in out
    assert "models/model.onnx" in out


def test_summary_without_metrics_says_what_to_do(workdir, capsys):
    assert summary.main([]) == 2
    assert "metrics/metrics.json: not found" in capsys.readouterr().err
