"""The analysis run as Argo Rollouts' controller runs it (analysis/analysis.go,
utils/analysis/factory.go ValidateMetric, v1alpha1.Metric.EffectiveCount), on a fake clock:
measurement phases, limits, Argo's 10 s retry after an error, the run stopping at the first
Inconclusive/Failed/Error metric, count 0, consecutiveSuccessLimit, and run validation."""

from __future__ import annotations

import math

import pytest

from modelops.gitops.analysis import (
    ERROR,
    FAILED,
    INCONCLUSIVE,
    RUNNING,
    SUCCESSFUL,
    Measurement,
    Metric,
    judge,
    parse_duration,
    run_analysis,
    to_result,
    validate_run,
)
from modelops.gitops.conditions import Vector

NAN = math.nan
OK = "len(result) > 0 && result[0] < 0.2"
BAD = "len(result) > 0 && result[0] >= 0.2"


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)


def _metric(name="m", **kw) -> Metric:
    base = dict(template="t", name=name, query="q", address="http://127.0.0.1:9",
                interval=60.0, count=3, success=OK, failure=BAD)
    base.update(kw)
    return Metric(**base)


def _scripted(phases_by_metric: dict[str, list[str]], clock: FakeClock, log: list):
    seqs = {k: iter(v) for k, v in phases_by_metric.items()}

    def measure(metric: Metric) -> Measurement:
        phase = next(seqs[metric.name])
        log.append((clock.t, metric.name, phase))
        return Measurement(phase, "[x]", "boom" if phase == ERROR else "")
    return measure


def _run(metrics, phases, **kw):
    clock, log = FakeClock(), []
    run = run_analysis(metrics, measure_fn=_scripted(phases, clock, log), clock=clock, **kw)
    return run, log


@pytest.mark.parametrize("success, failure, result, phase", [
    ("result[0] < 0.2", "result[0] >= 0.2", [0.1], SUCCESSFUL),
    ("result[0] < 0.2", "result[0] >= 0.2", [0.5], FAILED),
    ("result[0] < 0.2", "result[0] >= 0.2", [NAN], INCONCLUSIVE),  # neither holds
    ("result[0] < 0.2", "", [NAN], FAILED),  # success only: not success is failure
    ("", "result[0] >= 0.2", [NAN], SUCCESSFUL),  # failure only: not failure is success
    ("result[0] < 0.2", "", [], ERROR),  # index out of range
    (OK, BAD, [], INCONCLUSIVE),
    ("", "", [], SUCCESSFUL),
    ("result[0] % 2 == 0", "", [math.inf], ERROR),  # % on floats: expr refuses, no crash
])
def test_judge_follows_argo_evaluate_result(success, failure, result, phase):
    assert judge(_metric(success=success, failure=failure), Vector(tuple(result))).phase == phase


def test_an_empty_result_error_says_so_like_argo():
    m = judge(_metric(success="result[0] >= 0.95", failure=""), Vector(()))
    assert m.phase == ERROR and "metric result is nil or empty" in m.message


@pytest.mark.parametrize("phases, kw, phase, taken", [
    ([SUCCESSFUL] * 3, {}, SUCCESSFUL, 3),
    ([SUCCESSFUL, FAILED], {}, FAILED, 2),  # failureLimit 0: first failure
    ([FAILED, SUCCESSFUL, FAILED], {"failure_limit": 1}, FAILED, 3),
    ([FAILED, SUCCESSFUL, SUCCESSFUL], {"failure_limit": 1}, SUCCESSFUL, 3),
    ([INCONCLUSIVE, INCONCLUSIVE], {"inconclusive_limit": 1}, INCONCLUSIVE, 2),
    ([ERROR] * 5, {}, ERROR, 5),  # consecutiveErrorLimit 4 (the default)
    ([ERROR, ERROR, SUCCESSFUL, SUCCESSFUL, SUCCESSFUL], {}, SUCCESSFUL, 5),  # not counted
    ([ERROR, ERROR], {"consecutive_error_limit": 1}, ERROR, 2),
    ([FAILED, FAILED, FAILED, SUCCESSFUL, SUCCESSFUL],
     {"failure_limit": -1, "consecutive_success_limit": 2, "count": 5}, SUCCESSFUL, 5),
    ([SUCCESSFUL, SUCCESSFUL], {"consecutive_success_limit": 2, "count": 5}, SUCCESSFUL, 2),
    ([SUCCESSFUL, FAILED, SUCCESSFUL],
     {"consecutive_success_limit": 2, "failure_limit": 1, "count": 3}, INCONCLUSIVE, 3),
    ([SUCCESSFUL, FAILED, SUCCESSFUL],
     {"consecutive_success_limit": 2, "failure_limit": -1, "count": 3}, FAILED, 3),
])
def test_limits_decide_the_metric_phase(phases, kw, phase, taken):
    run, log = _run([_metric(**kw)], {"m": phases})
    (res,) = run.metrics
    assert res.phase == phase and run.phase == phase
    assert len(res.measurements) == taken


def test_after_an_error_argo_retries_in_10s_not_after_the_interval():
    run, log = _run([_metric(interval=60.0, count=2)], {"m": [ERROR, SUCCESSFUL, SUCCESSFUL]})
    assert [t for t, _, _ in log] == [0.0, 10.0, 70.0]
    assert run.phase == SUCCESSFUL


def test_one_inconclusive_metric_stops_the_whole_run():
    """error-rate goes Inconclusive on its 2nd measurement: latency is never measured again,
    counts as Successful, and the run is Inconclusive (the Rollout pauses), not an abort."""
    run, log = _run([_metric("error-rate", inconclusive_limit=1, count=5),
                     _metric("latency", count=5)],
                    {"error-rate": [INCONCLUSIVE, INCONCLUSIVE],
                     "latency": [SUCCESSFUL, SUCCESSFUL, FAILED]})
    assert run.phase == INCONCLUSIVE
    phases = {r.metric.name: r.phase for r in run.metrics}
    assert phases == {"error-rate": INCONCLUSIVE, "latency": SUCCESSFUL}
    assert [n for _, n, _ in log].count("latency") == 2
    assert 'Metric "error-rate" assessed Inconclusive due to inconclusive (2) > ' \
           'inconclusiveLimit (1)' in run.message


def test_failed_is_worse_than_inconclusive_in_the_same_round():
    run, _ = _run([_metric("a", count=2), _metric("b", count=2)],
                  {"a": [INCONCLUSIVE], "b": [FAILED]})
    assert run.phase == FAILED


def test_initial_delay_and_separate_intervals():
    run, log = _run([_metric("fast", interval=10.0, count=2, initial_delay=5.0),
                     _metric("slow", interval=30.0, count=2)],
                    {"fast": [SUCCESSFUL] * 2, "slow": [SUCCESSFUL] * 2})
    assert run.phase == SUCCESSFUL
    assert [(t, n) for t, n, _ in log] == [(0.0, "slow"), (5.0, "fast"), (15.0, "fast"),
                                           (30.0, "slow")]


def test_count_zero_with_an_interval_runs_indefinitely():
    metric = _metric(count=0)
    assert metric.effective_count is None
    run, log = _run([metric], {"m": [SUCCESSFUL] * 50}, inline=False, duration=600)
    assert run.phase == RUNNING and len(log) == 11  # t = 0, 60, ..., 600
    # but a canary step's analysis may not run forever: Argo rejects it
    assert "runs indefinitely" in validate_run([metric], inline=True)[0]
    # no count and no interval: one measurement
    assert _metric(count=None, interval=None).effective_count == 1


@pytest.mark.parametrize("kw, problem", [
    ({"count": 1, "inconclusive_limit": 2}, "count must be >= inconclusiveLimit"),
    ({"count": 2, "failure_limit": 3}, "count (2) must be >= failureLimit + "
                                        "consecutiveSuccessLimit (3 + 0)"),
    ({"failure_limit": -1}, "failureLimit and consecutiveSuccessLimit cannot both be disabled"),
    ({"failure_limit": -2}, "failureLimit must be >= 0, or -1 to be disabled"),
    ({"count": 3, "failure_limit": -1, "consecutive_success_limit": 4},
     "count must be >= consecutiveSuccessLimit"),
    ({"consecutive_success_limit": -1}, "consecutiveSuccessLimit must be >= 0"),
    ({"count": 2, "interval": None}, "interval must be specified when count > 1"),
    ({"consecutive_error_limit": -1}, "consecutiveErrorLimit must be >= 0"),
])
def test_runs_argo_rejects_are_rejected(kw, problem):
    problems = validate_run([_metric(**kw)])
    assert problems and problem in problems[0]
    run, log = _run([_metric(**kw)], {"m": []})
    assert run.phase == ERROR and not log and "Analysis spec invalid" in run.message


def test_valid_edge_forms_are_accepted():
    assert validate_run([_metric(failure_limit=-1, consecutive_success_limit=2, count=3)]) == []
    assert validate_run([_metric(count=1, interval=None, inconclusive_limit=1)]) == []
    assert "duplicate name" in validate_run([_metric("a"), _metric("a")])[0]


def test_unreachable_prometheus_is_an_error_after_the_error_limit():
    clock = FakeClock()
    run = run_analysis([_metric(address="http://127.0.0.1:9", consecutive_error_limit=1,
                                timeout=2.0)], clock=clock)
    (res,) = run.metrics
    assert run.phase == ERROR and len(res.measurements) == 2
    assert "cannot reach prometheus" in res.measurements[0].message
    assert clock.t == pytest.approx(10.0, abs=3)  # the retry came after Argo's 10 s


def test_prometheus_results_map_to_argo_result_types():
    vec = {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.5"]},
                                              {"metric": {}, "value": [1, "NaN"]}]}
    out = to_result(vec)
    assert out.values[0] == 0.5 and math.isnan(out.values[1])
    assert to_result({"resultType": "scalar", "result": [1, "+Inf"]}) == math.inf
    assert to_result({"resultType": "vector", "result": []}) == Vector(())
    matrix = {"resultType": "matrix", "result": [{"values": [[1, "1"], [2, "2"]]}]}
    assert to_result(matrix) == Vector((1.0, 2.0))


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("30s", 30), ("5m", 300),
                                           ("1h", 3600), ("1m30s", 90), (2, 2.0)])
def test_durations(text, seconds):
    assert parse_duration(text, "x") == seconds
