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
    # latency is no pipeline metric (modelops.compile.timing judges it on one runner)
    assert "latency_p95_ms" not in gates
    assert load_settings(ROOT / "params.yaml").compile.timing.max_slowdown == 1.5


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


MODEL = "modelops:\n  model: {name: m, metrics: [metrics/metrics.json]}\n"


def test_gate_command_exit_codes(tmp_path, monkeypatch, capsys):
    from modelops.ci.__main__ import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "metrics").mkdir()
    write(tmp_path / "params.yaml",
          MODEL + "  gates:\n    accuracy: {min: 0.9}\n")
    write(tmp_path / "metrics" / "metrics.json", '{"accuracy": 0.95}')
    assert main(["gate"]) == 0
    assert "gate verdict: pass" in capsys.readouterr().out
    write(tmp_path / "metrics" / "metrics.json", '{"accuracy": 0.85}')
    assert main(["gate"]) == 1
    assert "0.85 < 0.9" in capsys.readouterr().out
    write(tmp_path / "params.yaml",
          MODEL + "  gates:\n    accuracy: {min: [1]}\n")
    assert main(["gate"]) == 2
    err = capsys.readouterr().err
    assert "params.yaml: modelops.gates.accuracy.min: must be a number (got [1])" in err
    assert "Traceback" not in err
    (tmp_path / "metrics" / "metrics.json").unlink()
    write(tmp_path / "params.yaml",
          MODEL + "  gates:\n    accuracy: {min: 0.9}\n")
    assert main(["gate"]) == 2
    assert "metrics/metrics.json: metrics file not found" in capsys.readouterr().err


# --------------------------------------------------------------------------- several files

def two_files(head_eval: dict, head_extra: dict, base=None):
    from modelops.ci.metrics import MetricsAt

    head = MetricsAt("workspace", files={"eval/metrics.json": head_eval,
                                         "eval/extra.json": head_extra})
    return head, base


FILES = ["eval/metrics.json", "eval/extra.json"]


def test_unqualified_names_are_found_in_whichever_file_has_them():
    from modelops.ci.metrics import MetricsAt

    head, _ = two_files({"auc": 0.91}, {"latency": {"p95_ms": 12.0}})
    base = MetricsAt("abc", errors={"eval/metrics.json": "No storage files available"},
                     files={"eval/extra.json": {"latency": {"p95_ms": 10.0}}})
    gates = parse({"auc": {"min": 0.9, "max_drop": 0.01}, "latency.p95_ms": {"max_rise": 1}})
    results = by_rule(evaluate_gates(gates, head, base, files=FILES))
    auc_min, auc_drop = results["auc", "min"], results["auc", "max_drop"]
    rise = results["latency.p95_ms", "max_rise"]
    assert auc_min.status == "pass" and auc_min.file == "eval/metrics.json"
    assert auc_drop.status == "no-baseline"
    assert "No storage files available" in auc_drop.reason  # says why
    assert rise.status == "fail" and rise.file == "eval/extra.json"
    assert "rise 2 > 1" in rise.reason


def test_a_qualified_name_picks_its_file_and_an_ambiguous_one_is_a_config_error():
    head, _ = two_files({"auc": 0.91, "n": 5}, {"auc": 0.5})
    [r] = evaluate_gates(parse({"eval/extra.json:auc": {"min": 0.6}}), head, files=FILES)
    assert r.status == "fail" and r.head == 0.5 and r.file == "eval/extra.json"
    with pytest.raises(ConfigError) as err:
        evaluate_gates(parse({"auc": {"min": 0.6}}), head, files=FILES)
    text = str(err.value)
    assert "params.yaml: modelops.gates.auc: is ambiguous: both eval/metrics.json and " \
           "eval/extra.json have it" in text and "'eval/metrics.json:auc'" in text
    with pytest.raises(ConfigError, match="'eval/other.json' is not one of the metrics files"):
        evaluate_gates(parse({"eval/other.json:auc": {"min": 0.6}}), head, files=FILES)
    [missing] = evaluate_gates(parse({"recall": {"min": 0.6}}), head, files=FILES)
    assert missing.status == "fail"
    assert missing.reason == ("recall is missing in the head metrics (eval/metrics.json, "
                              "eval/extra.json)")


def test_flat_dotted_keys_and_nested_paths_both_resolve():
    from modelops.ci.metrics import lookup

    data = {"test.acc": 0.9, "per_class": {"3": {"f1": 0.5}}, "a": {"b.c": {"d": 1}}}
    assert lookup(data, "test.acc") == 0.9
    assert lookup(data, "per_class.3.f1") == 0.5
    assert lookup(data, "a.b.c.d") == 1
    assert lookup(data, "per_class.4.f1") is None and lookup(None, "x") is None
