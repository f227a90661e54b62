"""Canary analysis end to end on 127.0.0.1: a stable and several canary serving processes, a real
Prometheus scraping them every second, traffic from held-out digits, and the AnalysisTemplates
that `gitops render` wrote (params.yaml thresholds; only interval/count/address overridden),
evaluated by `gitops.analysis` with Argo Rollouts' semantics."""

from __future__ import annotations

import math

import pytest

from modelops.gitops.analysis import ERROR, load_templates, run_templates
from scripts.canary_demo import (
    free_port,
    render_analysis_templates,
    run_scenarios,
    scenarios,
    thresholds,
)
from tests.conftest import require_tool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    require_tool("prometheus")
    work = tmp_path_factory.mktemp("canary")
    done = run_scenarios(work, interval="2s", count=4, log=lambda *a: None)
    return {sc.name: sc for sc in done}


@pytest.mark.parametrize("name", [sc.name for sc in scenarios()])
def test_each_canary_gets_the_designed_verdict(outcomes, name):
    sc = outcomes[name]
    phases = {short: run.phase for short, run in sc.results.items()}
    assert set(phases) == {"error-rate", "latency-p99", "prediction-drift"}
    for short, expected in sc.expect.items():
        run = sc.results[short]
        detail = [(m.phase, m.value, m.message) for r in run.metrics for m in r.measurements]
        assert phases[short] == expected, f"{name}/{short}: {detail}"


def test_healthy_canary_passes_every_measurement(outcomes):
    for short, run in outcomes["healthy"].results.items():
        (metric,) = run.metrics
        assert len(metric.measurements) == 4, short
        assert all(m.phase == "Successful" for m in metric.measurements), short


def test_degraded_canary_aborts_within_the_failure_limit(outcomes):
    for name in ("degraded", "drifted-inputs"):
        (metric,) = outcomes[name].results["prediction-drift"].metrics
        # failureLimit 1 (params.yaml): the second failed measurement aborts, no later
        assert len(metric.measurements) == 2
        limit = thresholds()["drift_psi_max"]
        assert all(float(m.value.strip("[]")) >= limit for m in metric.measurements)


def test_slow_canary_reports_its_p99_over_the_threshold(outcomes):
    (metric,) = outcomes["slow"].results["latency-p99"].metrics
    limit = thresholds()["latency_p99_max_seconds"]
    assert all(float(m.value.strip("[]")) > limit for m in metric.measurements)


def test_no_data_and_nan_are_inconclusive_not_pass_or_fail(outcomes):
    for short in ("error-rate", "latency-p99", "prediction-drift"):
        (idle,) = outcomes["idle"].results[short].metrics
        assert all(math.isnan(float(m.value.strip("[]"))) for m in idle.measurements), short
        (absent,) = outcomes["absent"].results[short].metrics
        assert all(m.value == "[]" for m in absent.measurements), short


def test_unreachable_prometheus_is_an_error_so_argo_aborts(tmp_path):
    dead = f"http://127.0.0.1:{free_port()}"
    path = render_analysis_templates(tmp_path, dead, interval="100ms", count=2)
    templates = load_templates(path, {"model": "digits-cnn", "version": "2"})
    runs = run_templates(templates)
    for run in runs:
        assert run.phase == ERROR
        (metric,) = run.metrics
        assert len(metric.measurements) == 5  # consecutiveErrorLimit 4 (Argo's default)
        assert "cannot reach prometheus" in metric.measurements[-1].message


def test_analyze_cli_says_what_argo_would_do(tmp_path):
    import json
    import sys

    from tests.conftest import ROOT, run

    dead = f"http://127.0.0.1:{free_port()}"
    path = render_analysis_templates(tmp_path, dead, interval="100ms", count=1)
    out = tmp_path / "result.json"
    proc = run([sys.executable, "-m", "modelops.gitops", "analyze", "--templates", str(path),
                "--arg", "model=digits-cnn", "--arg", "version=2",
                "--template", "digits-cnn-error-rate", "--json", str(out)],
               cwd=ROOT, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "analysis error: argo rollouts would abort the rollout" in proc.stderr
    result = json.loads(out.read_text())
    assert result["phase"] == "Error"
    assert [t["name"] for t in result["templates"]] == ["digits-cnn-error-rate"]
    proc = run([sys.executable, "-m", "modelops.gitops", "analyze", "--templates", str(path),
                "--template", "nope"], cwd=ROOT, check=False)
    assert proc.returncode == 2
    assert "no template 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run([sys.executable, "-m", "modelops.gitops", "analyze", "--templates", str(path),
                "--template", "digits-cnn-error-rate"], cwd=ROOT, check=False)
    assert proc.returncode == 2
    assert "argument 'model' has no value" in proc.stderr
    assert "template args: model, version" in proc.stderr
