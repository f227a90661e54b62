"""Gates: config parsing of modelops.gates and pass / fail / no-baseline verdicts."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from modelops.ci.gates import MetricGate, evaluate_gates, format_table, verdict
from modelops.errors import ConfigError
from modelops.settings import convert, load_settings
from tests.conftest import ROOT

GATES = dict[str, MetricGate]


def parse(raw):
    return convert(GATES, raw, "modelops.gates", "params.yaml")


def test_repository_gates_load():
    gates = load_settings(ROOT / "params.yaml").gates
    assert gates["accuracy"].min == 0.97
    assert gates["accuracy"].max_drop == 0.005
    assert gates["latency_p95_ms"].max is not None


def test_unknown_bound_names_path_and_value():
    with pytest.raises(ConfigError) as exc:
        parse({"accuracy": {"minimum": 0.9}})
    text = str(exc.value)
    assert "params.yaml: modelops.gates.accuracy.minimum" in text
    assert "0.9" in text and "did you mean 'min'" in text


def test_empty_gate_and_impossible_range_are_errors():
    with pytest.raises(ConfigError, match=r"modelops.gates.accuracy: a gate needs at least one"):
        parse({"accuracy": {}})
    with pytest.raises(ConfigError, match=r"modelops.gates.x.min: is greater than max"):
        parse({"x": {"min": 2, "max": 1}})
    with pytest.raises(ConfigError, match=r"max_drop: must be at least 0"):
        parse({"accuracy": {"max_drop": -0.1}})
    with pytest.raises(ConfigError, match=r"must be a number \(got 'high'\)"):
        parse({"accuracy": {"min": "high"}})


def by_rule(results):
    return {(r.metric, r.rule): r for r in results}


def test_absolute_and_regression_verdicts():
    gates = parse({"accuracy": {"min": 0.97, "max_drop": 0.005},
                   "latency_p95_ms": {"max": 5.0, "max_rise": 1.0}})
    base = {"accuracy": 0.98, "latency_p95_ms": 2.0}
    res = by_rule(evaluate_gates(gates, {"accuracy": 0.976, "latency_p95_ms": 3.5}, base))
    assert res["accuracy", "min"].status == "pass"
    assert res["accuracy", "max_drop"].status == "pass"  # 0.004 drop
    assert res["latency_p95_ms", "max"].status == "pass"
    assert res["latency_p95_ms", "max_rise"].status == "fail"
    assert res["latency_p95_ms", "max_rise"].reason == "rise 1.5 > 1"

    res = by_rule(evaluate_gates(gates, {"accuracy": 0.969, "latency_p95_ms": 2.0}, base))
    assert res["accuracy", "min"].status == "fail"
    assert res["accuracy", "max_drop"].status == "fail"
    assert res["accuracy", "max_drop"].reason == "drop 0.011 > 0.005"


def test_drop_exactly_at_bound_passes_despite_float_noise():
    gates = parse({"accuracy": {"max_drop": 0.005}})
    [r] = evaluate_gates(gates, {"accuracy": 0.975}, {"accuracy": 0.98})
    assert r.status == "pass"


def test_no_baseline_is_not_a_failure():
    gates = parse({"accuracy": {"min": 0.5, "max_drop": 0.01}})
    results = evaluate_gates(gates, {"accuracy": 0.9}, None)
    assert [r.status for r in results] == ["pass", "no-baseline"]
    assert verdict(results) == "pass"


@pytest.mark.parametrize("head", [{}, {"accuracy": "n/a"}, {"accuracy": math.nan},
                                  {"accuracy": True}, None])
def test_missing_or_bad_head_metric_fails_without_exception(head):
    gates = parse({"accuracy": {"min": 0.5}})
    [r] = evaluate_gates(gates, head, {"accuracy": 0.9})
    assert r.status == "fail"
    assert "accuracy is" in r.reason and "head metrics" in r.reason


def test_nested_metric_paths_and_table():
    gates = parse({"per_class.3.recall": {"min": 0.9}})
    head = {"per_class": {"3": {"recall": 0.85}}}
    [r] = evaluate_gates(gates, head)
    assert r.status == "fail" and r.head == 0.85
    table = format_table([r])
    assert "per_class.3.recall" in table and "fail" in table


@given(st.floats(0, 1), st.floats(0, 1), st.floats(0, 0.5))
def test_regression_gate_matches_arithmetic(base, head, bound):
    [r] = evaluate_gates({"m": MetricGate(max_drop=bound)}, {"m": head}, {"m": base})
    assert r.status == ("pass" if base - head <= bound + 1e-12 else "fail")


def write(path, text):
    path.write_text(text)
    return str(path)


def test_gate_command_exit_codes(tmp_path, monkeypatch, capsys):
    from modelops.ci.__main__ import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    write(tmp_path / "params.yaml",
          "modelops:\n  model: {name: m}\n  gates:\n    accuracy: {min: 0.9}\n")
    write(tmp_path / "metrics" / "metrics.json", '{"accuracy": 0.95}')
    assert main(["gate"]) == 0
    assert "gate verdict: pass" in capsys.readouterr().out
    write(tmp_path / "metrics" / "metrics.json", '{"accuracy": 0.85}')
    assert main(["gate"]) == 1
    assert "0.85 < 0.9" in capsys.readouterr().out
    write(tmp_path / "params.yaml",
          "modelops:\n  model: {name: m}\n  gates:\n    accuracy: {min: [1]}\n")
    assert main(["gate"]) == 2
    err = capsys.readouterr().err
    assert "params.yaml: modelops.gates.accuracy.min: must be a number (got [1])" in err
    assert "Traceback" not in err
    (tmp_path / "metrics" / "metrics.json").unlink()
    write(tmp_path / "params.yaml",
          "modelops:\n  model: {name: m}\n  gates:\n    accuracy: {min: 0.9}\n")
    assert main(["gate"]) == 2
    assert "metrics/metrics.json: metrics file not found" in capsys.readouterr().err
