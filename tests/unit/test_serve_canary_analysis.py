"""Argo Rollouts' condition subset and measurement/limit semantics of the analysis evaluator."""

from __future__ import annotations

import math

import pytest

from modelops.gitops.analysis import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    SUCCESSFUL,
    Measurement,
    Metric,
    judge,
    parse_duration,
    run_metric,
    to_result,
)
from modelops.gitops.conditions import ConditionError, compile_condition, evaluate_condition

NAN = math.nan


@pytest.mark.parametrize("cond, result, expected", [
    ("result[0] < 0.2", [0.1], True),
    ("result[0] < 0.2", [0.3], False),
    ("result[0] < 0.2", [NAN], False),  # Go: comparisons with NaN are false
    ("result[0] >= 0.2", [NAN], False),
    ("len(result) > 0 && result[0] < 0.25", [], False),  # short-circuit: no index error
    ("len(result) == 0 || isNaN(result[0])", [NAN], True),
    ("!(result[0] > 1) and true", [0.5], True),
    ("result[-1] == 2", [1, 2], True),
    ("result > 1 + 2 * 3 - 4 / 2", 5.5, True),  # precedence: 1 + 6 - 2 = 5
    ("isInf(result, 1)", math.inf, True),
    ("isInf(result, -1)", math.inf, False),
    ("default(nil, 3) == 3", [], True),
    ("asFloat(\"0.5\") < asInt('1')", [], True),
    ("result[0] <= 0.05 || result[0] >= 0.95", [0.97], True),
])
def test_conditions_evaluate_like_argo(cond, result, expected):
    assert evaluate_condition(cond, result) is expected


@pytest.mark.parametrize("cond, result, words", [
    ("result[0] < 1", [], "index out of range"),
    ("result < 1", [1.0], "invalid operation"),
    ("result[0] + 1", [1.0], "not a bool"),
    ("result[0] > 1 && 3", [2.0], "want bool"),
])
def test_runtime_errors_are_condition_errors(cond, result, words):
    with pytest.raises(ConditionError, match=words):
        evaluate_condition(cond, result)


@pytest.mark.parametrize("cond", ["result[0] <", "foo(result)", "result.x > 1", "a > 1",
                                  "result[0] < 1 ? true : false", "all(result, {# > 1})"])
def test_unsupported_syntax_is_rejected_when_parsed(cond):
    with pytest.raises(ConditionError, match="position"):
        compile_condition(cond)


def _metric(**kw) -> Metric:
    base = dict(template="t", name="m", query="q", address="http://127.0.0.1:9",
                interval=0.0, count=3, failure_limit=0, inconclusive_limit=0,
                consecutive_error_limit=4, initial_delay=0.0,
                success="len(result) > 0 && result[0] < 0.2",
                failure="len(result) > 0 && result[0] >= 0.2")
    base.update(kw)
    return Metric(**base)


@pytest.mark.parametrize("success, failure, result, phase", [
    ("result[0] < 0.2", "result[0] >= 0.2", [0.1], SUCCESSFUL),
    ("result[0] < 0.2", "result[0] >= 0.2", [0.5], FAILED),
    ("result[0] < 0.2", "result[0] >= 0.2", [NAN], INCONCLUSIVE),  # neither holds
    ("result[0] < 0.2", "", [NAN], FAILED),  # success only: not success is failure
    ("", "result[0] >= 0.2", [NAN], SUCCESSFUL),  # failure only: not failure is success
    ("result[0] < 0.2", "", [], ERROR),  # index error
    ("len(result) > 0 && result[0] < 0.2", "len(result) > 0 && result[0] >= 0.2", [],
     INCONCLUSIVE),
    ("", "", [], SUCCESSFUL),
])
def test_judge_follows_argo_evaluate_result(success, failure, result, phase):
    assert judge(_metric(success=success, failure=failure), result).phase == phase


def _scripted(monkeypatch, phases):
    seq = iter(phases)
    monkeypatch.setattr("modelops.gitops.analysis.measure",
                        lambda metric, client=None: Measurement(next(seq), "[x]", "msg"))


@pytest.mark.parametrize("phases, kw, phase, taken", [
    ([SUCCESSFUL] * 3, {}, SUCCESSFUL, 3),
    ([SUCCESSFUL, FAILED], {}, FAILED, 2),  # failureLimit 0: first failure aborts
    ([FAILED, SUCCESSFUL, FAILED], {"failure_limit": 1}, FAILED, 3),
    ([FAILED, SUCCESSFUL, SUCCESSFUL], {"failure_limit": 1}, SUCCESSFUL, 3),
    ([INCONCLUSIVE, INCONCLUSIVE], {"inconclusive_limit": 1}, INCONCLUSIVE, 2),
    ([ERROR] * 5, {}, ERROR, 5),  # consecutiveErrorLimit 4
    ([ERROR, ERROR, SUCCESSFUL, SUCCESSFUL, SUCCESSFUL], {}, SUCCESSFUL, 5),  # errors not counted
])
def test_limits_decide_the_metric_phase(monkeypatch, phases, kw, phase, taken):
    _scripted(monkeypatch, phases)
    res = run_metric(_metric(**kw), sleep=lambda s: None)
    assert res.phase == phase
    assert len(res.measurements) == taken


def test_unreachable_prometheus_is_an_error_after_the_error_limit():
    res = run_metric(_metric(address="http://127.0.0.1:9", consecutive_error_limit=1,
                             timeout=2.0), sleep=lambda s: None)
    assert res.phase == ERROR
    assert "cannot reach prometheus" in res.measurements[0].message


def test_prometheus_results_map_to_argo_result_types():
    vec = {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.5"]},
                                              {"metric": {}, "value": [1, "NaN"]}]}
    out = to_result(vec)
    assert out[0] == 0.5 and math.isnan(out[1])
    assert to_result({"resultType": "scalar", "result": [1, "+Inf"]}) == math.inf
    assert to_result({"resultType": "vector", "result": []}) == []


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("30s", 30), ("5m", 300),
                                           ("1h", 3600), ("1m30s", 90), (2, 2.0)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds
