"""Canary analysis end to end on 127.0.0.1: stable and canary serving processes behind
kube-proxy-like Services (scripts/service_proxy.py), client traffic through those Services
only, a real Prometheus scraping every second, and the AnalysisTemplates that `gitops render`
wrote (params.yaml thresholds; only interval/count/address overridden), previewed by
`gitops.analysis` as Argo Rollouts' controller would decide."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest

from modelops.gitops.analysis import ERROR, load_templates, run_templates
from scripts.canary_demo import (
    MODEL,
    STABLE_REPLICAS,
    as_designed,
    free_port,
    render_analysis_templates,
    run_scenarios,
    scenarios,
    thresholds,
)
from tests.conftest import ROOT, require_tool

pytestmark = pytest.mark.slow


def _prom(url: str, query: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:  # noqa: S310
        return json.loads(r.read())["data"]["result"]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    require_tool("prometheus")
    work = tmp_path_factory.mktemp("canary")
    seen: dict = {}

    def inspect(lab):
        prom = lab["prometheus"].url
        for name, svc in lab["services"].items():
            seen.setdefault("connections", {})[name] = dict(svc.connections)
        seen["canary_requests"] = {
            s["metric"]["version"]: float(s["value"][1]) for s in _prom(
                prom, 'sum by (version) (model_requests_total{role="canary"})')}
        seen["sent"] = {sc: sum(t.codes.values()) for sc, t in
                        ((n, s.traffic) for n, s in lab["scenarios"].items()) if t}
        templates = render_analysis_templates(work / "cli", prom, interval="2s", count=4)
        seen["cli"] = {
            version: subprocess.run(
                [sys.executable, "-m", "modelops.gitops", "analyze", "--templates",
                 str(templates), "--arg", f"model={MODEL}", "--arg", f"version={version}",
                 *extra], cwd=ROOT, capture_output=True, text=True, timeout=120)
            for version, extra in (("2-healthy", ()),
                                   ("3-degraded", ("--template",
                                                   f"{MODEL}-prediction-drift")))}

    chosen = scenarios()
    done = run_scenarios(work, chosen, interval="2s", count=4, log=lambda *a: None,
                         inspect=lambda lab: inspect({**lab, "scenarios": {
                             sc.name: sc for sc in chosen}}))
    return {sc.name: sc for sc in done}, seen


@pytest.mark.parametrize("name", [sc.name for sc in scenarios()])
def test_each_canary_gets_the_designed_decision(outcomes, name):
    sc = outcomes[0][name]
    detail = [(r.metric.name, r.phase, [(m.phase, m.value) for m in r.measurements])
              for r in sc.run.metrics]
    assert as_designed(sc), f"{name}: {sc.run.phase} {sc.run.message} {detail}"


def test_the_canary_gets_its_share_of_connections_through_the_service(outcomes):
    """kube-proxy's split: each new connection to a ready endpoint at random, so the canary
    (1 pod of STABLE_REPLICAS + 1) gets about that share; its own metrics fill from this
    client traffic (the clients only know the Service)."""
    _, seen = outcomes
    p = 1 / (STABLE_REPLICAS + 1)
    for name in ("healthy", "degraded", "rejecting"):
        conns = seen["connections"][name]
        n = sum(conns.values())
        assert n >= 100, conns
        share = conns.get("canary", 0) / n
        assert abs(share - p) < 5 * math.sqrt(p * (1 - p) / n), (name, conns)
        assert set(conns) <= {"canary", *(f"stable-{i}" for i in range(STABLE_REPLICAS))}
    for sc_name, version in (("healthy", "2-healthy"), ("rejecting", "9-rejecting")):
        got = seen["canary_requests"].get(version, 0)
        assert 0 < got <= seen["sent"][sc_name]
    assert "6-idle" not in seen["canary_requests"] or seen["canary_requests"]["6-idle"] == 0


def test_healthy_canary_passes_every_measurement(outcomes):
    run = outcomes[0]["healthy"].run
    assert run.phase == "Successful"
    for metric in run.metrics:
        assert len(metric.measurements) == 4, metric.metric.name
        assert all(m.phase == "Successful" for m in metric.measurements), metric.metric.name


def test_a_drifting_canary_aborts_at_the_failure_limit(outcomes):
    for name in ("degraded", "drifted-inputs"):
        drift = next(r for r in outcomes[0][name].run.metrics
                     if r.metric.name == "prediction-drift")
        # failureLimit 1 (params.yaml): the second failed measurement ends the run
        assert len(drift.measurements) == 2
        limit = thresholds()["drift_psi_max"]
        assert all(float(m.value.strip("[]")) >= limit for m in drift.measurements)


def test_a_canary_answering_413_fails_the_error_rate(outcomes):
    run = outcomes[0]["rejecting"].run
    err = next(r for r in run.metrics if r.metric.name == "error-rate")
    assert err.phase == "Failed"
    assert all(float(m.value.strip("[]")) >= thresholds()["error_rate_max"]
               for m in err.measurements if m.phase == "Failed")


def test_slow_canary_is_slower_than_the_threshold_and_than_the_stable(outcomes):
    run = outcomes[0]["slow"].run
    p99 = next(r for r in run.metrics if r.metric.name == "latency-p99")
    limit = thresholds()["latency_p99_max_seconds"]
    assert all(float(m.value.strip("[]")) > limit for m in p99.measurements)


def test_no_data_and_nan_are_inconclusive_not_pass_or_fail(outcomes):
    for metric in outcomes[0]["idle"].run.metrics:
        assert all(math.isnan(float(m.value.strip("[]"))) for m in metric.measurements), \
            metric.metric.name
    for metric in outcomes[0]["absent"].run.metrics:
        assert all(m.value == "[]" for m in metric.measurements), metric.metric.name


def test_analyze_cli_previews_the_decision(outcomes):
    cli = outcomes[1]["cli"]
    ok, bad = cli["2-healthy"], cli["3-degraded"]
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "argo rollouts would continue the rollout" in ok.stdout
    assert "a preview of Argo Rollouts' decision" in ok.stdout
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "analysis failed: argo rollouts would abort the rollout" in bad.stderr


def test_unreachable_prometheus_is_an_error_so_argo_aborts(tmp_path):
    from tests.unit.test_serve_canary_analysis import FakeClock

    dead = f"http://127.0.0.1:{free_port()}"
    path = render_analysis_templates(tmp_path, dead, interval="100ms", count=2)
    templates = load_templates(path, {"model": "digits-cnn", "version": "2"})
    clock = FakeClock()
    (run,) = run_templates(templates, clock=clock)
    assert run.phase == ERROR
    for metric in run.metrics:
        assert len(metric.measurements) == 5  # consecutiveErrorLimit 4 (Argo's default)
        assert "cannot reach prometheus" in metric.measurements[-1].message
    assert clock.t >= 40.0  # errors retried after Argo's 10 s, not the 100 ms interval


def test_analyze_cli_errors_are_clear(tmp_path):
    from tests.conftest import run

    dead = f"http://127.0.0.1:{free_port()}"
    path = render_analysis_templates(tmp_path, dead, interval="100ms", count=1)
    proc = run([sys.executable, "-m", "modelops.gitops", "analyze", "--templates", str(path),
                "--template", "nope"], cwd=ROOT, check=False)
    assert proc.returncode == 2
    assert "no template 'nope'" in proc.stderr and "Traceback" not in proc.stderr
    proc = run([sys.executable, "-m", "modelops.gitops", "analyze", "--templates", str(path),
                "--template", "digits-cnn-error-rate"], cwd=ROOT, check=False)
    assert proc.returncode == 2
    assert "argument 'model' has no value" in proc.stderr
    assert "template args: model, version" in proc.stderr
    help_text = run([sys.executable, "-m", "modelops.gitops", "analyze", "--help"],
                    cwd=ROOT).stdout
    assert "preview of Argo Rollouts' decision" in help_text
