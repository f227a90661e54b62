"""Input monitoring in the serving runtime (modelops.serve.monitor), in process: what reaches
/metrics after requests are queued, the cardinality rule, refusals, and a monitor that falls
behind."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops import contracts
from modelops.drift import parse_features
from modelops.errors import InputError
from modelops.serve.backends import TensorSpec
from modelops.serve.metrics import DriftWindow, ServingMetrics
from modelops.serve.monitor import InputMonitor, top_probability

N = 6


def features(n: int = N, **over) -> dict:
    # feature j uniform on [0, 10): deciles at 1..9
    out = {"names": [f"f{j}" for j in range(n)], "min": [0.0] * n, "max": [10.0] * n,
           "quantile_edges": [[float(k) for k in range(1, 10)]] * n,
           "bin_distribution": [[0.1] * 10] * n}
    out.update(over)
    return out


def monitor(n: int = N, **kw) -> tuple[ServingMetrics, InputMonitor]:
    metrics = ServingMetrics("m", "7", "canary", DriftWindow(None, 10, 1))
    mon = InputMonitor(metrics, parse_features(features(n)), **kw)
    mon.bind([TensorSpec("x", "FP32", (-1, n))])
    return metrics, mon


def samples(metrics: ServingMetrics) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k not in ("model", "version",
                                                                       "role")}
            out[(s.name, tuple(sorted(labels.items())))] = s.value
    return out


def uniform(rng, n: int, width: int = N) -> np.ndarray:
    return rng.uniform(0, 10, (n, width)).astype(np.float32)


def test_a_drifted_feature_stands_out_and_the_others_stay_low():
    metrics, mon = monitor(window=500, min_samples=100)
    rng = np.random.default_rng(0)
    for _ in range(400):
        x = uniform(rng, 1)
        x[0, 2] *= 10  # rescaled upstream
        mon.observe(x, np.array([[2.0, 0.5]], np.float32))
    got = samples(metrics)
    psi = {j: got[(contracts.FEATURE_PSI, (("feature", f"f{j}"),))] for j in range(N)}
    assert psi[2] > 1.0 and max(v for j, v in psi.items() if j != 2) < 0.1
    assert got[(contracts.FEATURE_PSI_MAX, ())] == pytest.approx(psi[2])
    assert got[(contracts.FEATURES_DRIFTED, ())] == 1
    assert got[(contracts.FEATURES_MONITORED, ())] == N
    assert got[(contracts.INPUT_ROWS_TOTAL, ())] == 400
    out = got[(contracts.FEATURE_OUT_OF_RANGE_TOTAL, (("feature", "f2"),))]
    assert 300 < out < 400  # values x 10 beyond the training maximum
    assert got[(contracts.FEATURE_OUT_OF_RANGE_TOTAL, (("feature", "f0"),))] == 0
    # confidence: the softmax of [2, 0.5]
    top = 1 / (1 + math.exp(-1.5))
    assert got[(f"{contracts.PREDICTION_CONFIDENCE}_count", ())] == 400
    assert got[(f"{contracts.PREDICTION_CONFIDENCE}_sum", ())] == pytest.approx(400 * top)
    assert got[(f"{contracts.PREDICTION_CONFIDENCE}_bucket", (("le", "0.8"),))] == 0
    assert got[(f"{contracts.PREDICTION_CONFIDENCE}_bucket", (("le", "0.9"),))] == 400


def test_no_evidence_is_nan_not_zero():
    metrics, mon = monitor(min_samples=50)
    rng = np.random.default_rng(1)
    for _ in range(10):
        mon.observe(uniform(rng, 2), None)
    got = samples(metrics)
    assert math.isnan(got[(contracts.FEATURE_PSI, (("feature", "f0"),))])
    assert math.isnan(got[(contracts.FEATURE_PSI_MAX, ())])
    assert math.isnan(got[(contracts.FEATURES_DRIFTED, ())])


def test_many_features_export_the_most_drifted_and_cap_the_counters():
    n, cap = 40, 5
    metrics, mon = monitor(n, series_max=cap, window=300, min_samples=50)
    rng = np.random.default_rng(2)
    x = uniform(rng, 300, n)
    x[:, [7, 33]] += 20  # two drifted features beyond the cap's own counters
    x[:, 1] = np.nan
    mon.rejected("nonfinite", "x", x[:10])
    for row in x:
        mon.observe(row[None], None)
    got = samples(metrics)
    shown = {dict(k[1])["feature"] for k in got if k[0] == contracts.FEATURE_PSI}
    assert len(shown) == cap and {"f7", "f33"} <= shown
    assert got[(contracts.FEATURES_DRIFTED, ())] == 2
    for name in (contracts.FEATURE_NONFINITE_TOTAL, contracts.FEATURE_OUT_OF_RANGE_TOTAL,
                 contracts.FEATURE_MISSING_TOTAL):
        labels = {dict(k[1])["feature"] for k in got if k[0] == name}
        assert labels == {"f0", "f1", "f2", "f3", "f4", contracts.OTHER_FEATURES}
    # a refused request's NaNs count as data quality, not as drift
    assert got[(contracts.FEATURE_NONFINITE_TOTAL, (("feature", "f1"),))] == 310
    assert got[(contracts.FEATURE_OUT_OF_RANGE_TOTAL, (("feature", "_other"),))] == 620
    assert got[(contracts.INPUT_REJECTED_TOTAL, (("reason", "nonfinite"),))] == 1
    assert got[(contracts.INPUT_REJECTED_TOTAL, (("reason", "schema"),))] == 0
    assert got[(contracts.INPUT_ROWS_TOTAL, ())] == 310
    # the top-k set follows the drift: the series of a feature that calmed down go away
    calm = uniform(rng, 300, n)
    calm[:, 20] += 20
    for row in calm:
        mon.observe(row[None], None)
    shown = {dict(k[1])["feature"] for k in samples(metrics) if k[0] == contracts.FEATURE_PSI}
    top = {f"f{j}" for j in np.argsort(-mon.window.psi())[:cap]}
    assert shown == top and "f20" in shown and len(shown) == cap


def test_a_monitor_that_falls_behind_drops_and_counts_never_blocks():
    metrics, mon = monitor(max_pending=3)
    rng = np.random.default_rng(3)
    for _ in range(5):
        mon.observe(uniform(rng, 1), None)
    got = samples(metrics)
    assert got[(contracts.MONITOR_DROPPED_TOTAL, ())] == 2
    assert got[(contracts.INPUT_ROWS_TOTAL, ())] == 3


def test_bind_refuses_a_baseline_that_does_not_fit_the_model():
    metrics = ServingMetrics("m", "7", "canary", DriftWindow(None, 10, 1))
    mon = InputMonitor(metrics, parse_features(features()))
    with pytest.raises(InputError, match="describes 6 features but rows of input 'x'"):
        mon.bind([TensorSpec("x", "FP32", (-1, 1, 8, 8))])
    with pytest.raises(InputError, match="does not say which of the model's inputs"):
        mon.bind([TensorSpec("a", "FP32", (-1, 6)), TensorSpec("b", "FP32", (-1, 6))])
    named = InputMonitor(ServingMetrics("m", "7", "canary", DriftWindow(None, 10, 1)),
                         parse_features(features(input="z")))
    with pytest.raises(InputError, match="features.input 'z'"):
        named.bind([TensorSpec("x", "FP32", (-1, 6))])


def test_top_probability_of_logits_and_of_probabilities():
    logits = np.array([[0.0, 0.0], [10.0, 0.0], [np.nan, 1.0]])
    np.testing.assert_allclose(top_probability(logits), [0.5, 1 / (1 + math.exp(-10))])
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    np.testing.assert_allclose(top_probability(probs), [0.8, 0.6])
    np.testing.assert_allclose(top_probability(probs, "logits"),
                               [1 / (1 + math.exp(-0.6)), 1 / (1 + math.exp(-0.2))])


def test_without_features_only_confidence_and_refusals_are_exported():
    metrics = ServingMetrics("m", "7", "canary", DriftWindow(None, 10, 1))
    mon = InputMonitor(metrics, None)
    mon.bind([TensorSpec("x", "FP32", (-1, 3))])
    mon.observe(None, np.array([[0.1, 0.9]]))
    got = samples(metrics)
    assert got[(f"{contracts.PREDICTION_CONFIDENCE}_count", ())] == 1
    assert not any(k[0].startswith("model_feature") for k in got)


@pytest.mark.parametrize("window,chunks", [(50, [7, 13, 80, 1, 30]), (500, [60] * 12),
                                           (20, [3] * 40)])
def test_the_window_binned_at_the_scrape_equals_one_binned_at_every_chunk(window, chunks):
    """The background thread leaves the window's rows unbinned until a scrape; the gauges
    and the window are those of a monitor that binned every chunk as it came."""
    eager_metrics, eager = monitor(window=window, min_samples=5)
    lazy_metrics, lazy = monitor(window=window, min_samples=5)
    rng = np.random.default_rng(len(chunks))
    for k, n in enumerate(chunks):
        x = uniform(rng, n) * (1 + k / 4)  # drifting, and soon beyond the training range
        x[rng.random(x.shape) < 0.05] = np.nan  # left out of the bins (--nan-policy allow)
        for row in x:
            eager.observe(row[None], None)
            lazy.observe(row[None], None)
        eager.flush()
        lazy.flush(publish=False)
        if k % 2:
            lazy.observe(x[:2], None)  # this request reaches the window at the next flush
            eager.observe(x[:2], None)
    lazy_got, eager_got = samples(lazy_metrics), samples(eager_metrics)
    assert lazy_got.keys() == eager_got.keys()
    for key, value in eager_got.items():  # NaN (no evidence yet) equals NaN here
        assert lazy_got[key] == value or (math.isnan(value) and math.isnan(lazy_got[key])), key
    assert any(k[0] == contracts.FEATURE_PSI and v > 0.2 for k, v in eager_got.items())
    np.testing.assert_array_equal(lazy.window.counts, eager.window.counts)
