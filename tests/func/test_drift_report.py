"""``modelops-ci drift-report`` on the tabular data of the breast-cancer example: a batch with
one feature rescaled by 10 upstream, read from CSV, Parquet and logged requests; its PSI
cross-checked against Evidently's own PSI (an independent implementation, a test-only pin) on
the same data, with the bins cut by pandas (an independent binning)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from modelops.ci.drift_report import drift_report
from modelops.drift import parse_features
from tests.conftest import ROOT, require_module

RESCALED = "mean radius"
BINS = 10


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training rows, their baseline (the documented binning), and a current batch."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    d = load_breast_cancer()
    names = [str(n) for n in d.feature_names]
    x_train, x_test = train_test_split(d.data.astype(np.float32).astype(np.float64),
                                       test_size=0.25, random_state=7, stratify=d.target)
    edges = [np.unique(np.quantile(c, np.linspace(0, 1, BINS + 1)[1:-1])) for c in x_train.T]
    shares = [np.bincount(np.digitize(c, e), minlength=len(e) + 1) / len(c)
              for c, e in zip(x_train.T, edges)]
    features = {"input": "features", "names": names, "min": x_train.min(0).tolist(),
                "max": x_train.max(0).tolist(), "mean": x_train.mean(0).tolist(),
                "quantile_edges": [e.tolist() for e in edges],
                "bin_distribution": [[round(float(v), 6) for v in s] for s in shares]}
    work = tmp_path_factory.mktemp("drift-report")
    baseline = work / "drift_baseline.json"
    baseline.write_text(json.dumps({"model": "breast-cancer-gbt",
                                    "class_distribution": [0.37, 0.63],
                                    "features": features}))
    # production: the whole data set resampled, one feature delivered in other units
    rng = np.random.default_rng(0)
    current = d.data[rng.integers(0, len(d.data), 600)].astype(np.float32).astype(np.float64)
    current[:, names.index(RESCALED)] *= 10
    return {"work": work, "baseline": baseline, "names": names, "train": x_train,
            "current": current, "features": features}


def write_csv(path, names, rows, blank=None):
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*names, "diagnosis"])
        for i, r in enumerate(rows):
            cells = [repr(float(v)) for v in r]
            if blank is not None and i == blank[0]:
                cells[blank[1]] = ""
            w.writerow([*cells, "benign"])
    return path


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "modelops.ci", "drift-report", *args],
                          cwd=cwd or ROOT, capture_output=True, text=True, timeout=300)


def test_the_rescaled_feature_is_the_one_drifted_feature(data, tmp_path):
    src = write_csv(tmp_path / "batch.csv", data["names"], data["current"],
                    blank=(3, data["names"].index("worst area")))
    out = tmp_path / "report"
    proc = cli("--baseline", str(data["baseline"]), "--data", str(src), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "1 of 30 features drifted" in proc.stdout
    text = (out / "drift-report.md").read_text()
    assert "**1 of 30 features drifted**; the largest PSI is" in text and "(mean radius)" in text
    summary = json.loads((out / "drift-report.json").read_text())
    assert summary["drifted"] == [RESCALED] and summary["rows"] == 600
    by = {f["name"]: f for f in summary["features"]}
    assert by[RESCALED]["psi"] > 2 and by[RESCALED]["out_of_range"] > 500
    assert max(f["psi"] for n, f in by.items() if n != RESCALED) < 0.1
    assert by["worst area"]["missing"] == 1 and by["worst area"]["n"] == 599
    assert by[RESCALED]["mean"] == pytest.approx(10 * by[RESCALED]["train_mean"], rel=0.1)
    # one PNG per feature, linked from the Markdown, drawn the same way every time
    pngs = sorted((out / "plots").glob("*.png"))
    assert len(pngs) == 30 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert "![mean radius](plots/mean-radius.png)" in text
    again = tmp_path / "again"
    assert cli("--baseline", str(data["baseline"]), "--data", str(src), "--out",
               str(again), "--plots", "2").returncode == 0
    assert (again / "plots" / "mean-radius.png").read_bytes() == \
        (out / "plots" / "mean-radius.png").read_bytes()
    assert len(list((again / "plots").glob("*.png"))) == 2


def test_psi_agrees_with_evidently_on_the_same_data(data, tmp_path):
    """Evidently's PSI stat test, on the rows binned by pandas.cut at the baseline's edges
    (categorical bins: Evidently's own numeric path cuts Sturges histogram bins of both
    samples, a different statistic), equals the report's PSI for every feature."""
    require_module("evidently")
    import pandas as pd
    from evidently.legacy.calculations.stattests import psi_stat_test
    from evidently.legacy.core import ColumnType

    src = write_csv(tmp_path / "batch.csv", data["names"], data["current"])
    report = drift_report(data["baseline"], src, tmp_path / "r", plots=0)
    ours = {r.name: r.psi for r in report.results}
    f = parse_features(data["features"])
    from modelops.binning import Binner

    binner = Binner(f)
    for j, name in enumerate(data["names"]):
        cuts = [-np.inf, *data["features"]["quantile_edges"][j], np.inf]

        def binned(values, cuts=cuts):
            return pd.Series(pd.cut(values, cuts, right=False, labels=False), dtype="int64")

        ref, cur = binned(data["train"][:, j]), binned(data["current"][:, j])
        # pandas' binning and the runtime's agree value for value
        assert (cur.to_numpy() == binner.bin(data["current"])[:, j]).all(), name
        theirs = psi_stat_test(ref, cur, ColumnType.Categorical, 0.2)
        assert float(theirs.drift_score) == pytest.approx(ours[name], rel=1e-4, abs=1e-6), name
        assert bool(theirs.drifted) == (ours[name] >= 0.2), name
    assert [r.name for r in report.drifted] == [RESCALED]


def test_parquet_and_logged_requests_give_the_same_statistic(data, tmp_path):
    pa = require_module("pyarrow")
    import pyarrow.parquet as pq

    rows = data["current"]
    table = pa.table({n: rows[:, j] for j, n in enumerate(data["names"])})
    pq.write_table(table, tmp_path / "batch.parquet")
    log = tmp_path / "requests.jsonl"
    with log.open("w") as fh:
        fh.write(json.dumps({"inputs": [{"name": "features", "shape": [100, 30],
                                         "datatype": "FP32",
                                         "data": data["train"][:100].ravel().tolist()}]}) + "\n")
        for start in range(0, len(rows), 8):
            chunk = rows[start:start + 8]
            fh.write(json.dumps({"id": str(start), "inputs": [
                {"name": "features", "shape": list(chunk.shape), "datatype": "FP32",
                 "data": chunk.ravel().tolist()}]}) + "\n")
    src = write_csv(tmp_path / "batch.csv", data["names"], rows)
    want = {r.name: r.psi for r in drift_report(data["baseline"], src, tmp_path / "a",
                                                plots=0).results}
    got = {r.name: r.psi for r in drift_report(data["baseline"], tmp_path / "batch.parquet",
                                               tmp_path / "b", plots=0).results}
    assert got == pytest.approx(want)
    window = drift_report(data["baseline"], log, tmp_path / "c", requests=True,
                          window=len(rows), plots=0)
    assert {r.name: r.psi for r in window.results} == pytest.approx(want)
    everything = drift_report(data["baseline"], log, tmp_path / "d", requests=True, plots=0)
    assert everything.results[0].n == len(rows) + 100


def test_fail_on_drift_exits_1_and_bad_input_exits_2_naming_the_problem(data, tmp_path):
    src = write_csv(tmp_path / "batch.csv", data["names"], data["current"][:50])
    proc = cli("--baseline", str(data["baseline"]), "--data", str(src), "--out",
               str(tmp_path / "r"), "--plots", "0", "--fail-on-drift")
    assert proc.returncode == 1 and "1 feature(s) drifted: mean radius" in proc.stderr
    short = tmp_path / "short.csv"
    short.write_text("mean radius,mean texture\n1,2\n")
    proc = cli("--baseline", str(data["baseline"]), "--data", str(short))
    assert proc.returncode == 2
    assert "short.csv: no column for feature(s) 'mean perimeter'" in proc.stderr
    bad = write_csv(tmp_path / "bad.csv", data["names"], data["current"][:3])
    text = bad.read_text().splitlines()
    text[2] = text[2].replace(text[2].split(",")[4], "twelve", 1)
    bad.write_text("\n".join(text) + "\n")
    proc = cli("--baseline", str(data["baseline"]), "--data", str(bad), "--out",
               str(tmp_path / "nothing"))
    assert proc.returncode == 2 and "bad.csv: line 3: column 'mean smoothness': 'twelve' " \
        "is not a number" in proc.stderr
    assert not (tmp_path / "nothing").exists()  # nothing half-written
    proc = cli("--baseline", str(data["baseline"]), "--data", str(tmp_path / "x.xlsx"))
    assert proc.returncode == 2 and "file not found" in proc.stderr
    (tmp_path / "x.xlsx").write_text("")
    proc = cli("--baseline", str(data["baseline"]), "--data", str(tmp_path / "x.xlsx"))
    assert proc.returncode == 2 and "unknown data format '.xlsx'" in proc.stderr
    proc = cli("--baseline", str(data["baseline"]))
    assert proc.returncode == 2 and "pass one of --data FILE and --requests FILE" in proc.stderr


def test_the_digits_baseline_of_this_repository_reads_its_own_splits(tmp_path):
    """The image model's per-pixel baseline against its test split: nothing drifted; the
    same pixels inverted (a sensor that swapped black and white): many."""
    from scripts.fixtures import held_out

    baseline = ROOT / "metrics" / "drift_baseline.json"
    x, _ = held_out(ROOT)  # the test split, or (no dvc repro yet) the digits it comes from
    np.savez(tmp_path / "held-out.npz", x=x)
    calm = drift_report(baseline, tmp_path / "held-out.npz", tmp_path / "calm", plots=0)
    assert len(calm.results) == 64 and not calm.drifted
    np.savez(tmp_path / "inverted.npz", x=1.0 - x)
    inverted = drift_report(baseline, tmp_path / "inverted.npz", tmp_path / "inv", plots=0)
    assert len(inverted.drifted) > 20
    assert all(math.isfinite(r.psi) for r in inverted.results)


def test_raw_data_is_read_through_the_baselines_columns_and_scale(tmp_path):
    """The digits' raw CSV (columns p0..p63, intensities 0..16, as data/incoming holds them)
    is the model's input once divided by 16: the baseline's features.columns and scale."""
    from sklearn.datasets import load_digits

    d = load_digits()
    raw = tmp_path / "incoming.csv"
    lines = [",".join([f"p{i}" for i in range(64)] + ["label"])]
    lines += [",".join(str(int(v)) for v in row) + f",{t}" for row, t in zip(d.data, d.target)]
    raw.write_text("\n".join(lines) + "\n")
    report = drift_report(ROOT / "metrics" / "drift_baseline.json", raw, tmp_path / "r", plots=0)
    assert not report.drifted
    by = {r.name: r for r in report.results}
    assert by["pixel_3_4"].mean == pytest.approx(float(d.data[:, 28].mean() / 16), rel=1e-9)
    assert sum(r.out_of_range for r in report.results) < 50  # in the training range: 0..1


def test_the_retraining_pull_request_section(data, tmp_path):
    from types import SimpleNamespace

    from modelops.ci.drift_report import pull_request_section

    root = tmp_path / "repo"
    (root / "eval").mkdir(parents=True)
    (root / "eval" / "drift_baseline.json").write_bytes(data["baseline"].read_bytes())
    batch = write_csv(tmp_path / "fresh.csv", data["names"], data["current"])
    settings = SimpleNamespace(model=SimpleNamespace(drift_baseline="eval/drift_baseline.json"))
    text = pull_request_section(root, settings, batch)
    assert text.startswith("**Input drift of the fresh data**") and "1 of 30 features" in text
    assert "| mean radius |" in text and "(drifted)" in text
    assert (root / "reports" / "drift" / "drift-report.md").is_file()
    none = SimpleNamespace(model=SimpleNamespace(drift_baseline=""))
    assert "no drift baseline" in pull_request_section(root, none, batch)
    gone = SimpleNamespace(model=SimpleNamespace(drift_baseline="eval/missing.json"))
    assert "no report" in pull_request_section(root, gone, batch)  # never fails retraining
