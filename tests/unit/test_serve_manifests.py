"""What the rendered manifests give the serving runtime: a Service clients use that spans both
ReplicaSets, the opt-in NGINX traffic routing (strictly validated), the preStop hook and
drain settings, analyses that compare the canary with the stable, and refusal at render time
of analyses Argo would reject or the preview cannot judge."""

from __future__ import annotations

import copy
import dataclasses

import pytest

from modelops.errors import ConfigError
from modelops.gitops.render import render_docs, render_env
from modelops.gitops.validate import validate_document
from modelops.settings import load_settings, parse_settings
from modelops.yamlio import load_yaml_all, load_yaml_file
from tests.conftest import ROOT
from tests.unit.test_gitops_release import example_release


@pytest.fixture(scope="module")
def params():
    return load_settings(ROOT / "params.yaml")


def _with(raw_updates: dict):
    raw = load_yaml_file(ROOT / "params.yaml")
    deploy = raw["modelops"]["deploy"]
    for key, value in raw_updates.items():
        if isinstance(value, dict):
            deploy.setdefault(key, {}).update(value)
        else:
            deploy[key] = value
    return parse_settings(raw, ROOT / "params.yaml")


def _docs(files, name):
    return load_yaml_all(files[name].decode())


def test_clients_service_selects_both_replicasets(params):
    files = render_env(example_release(), params, "production")
    services = {d["metadata"]["name"]: d for d in _docs(files, "services.yaml")}
    (rollout,) = _docs(files, "rollout.yaml")
    root = services["digits-cnn"]
    # the Rollout's selector, nothing Argo pins to one ReplicaSet (pod-template-hash) or role
    assert root["spec"]["selector"] == rollout["spec"]["selector"]["matchLabels"]
    canary = rollout["spec"]["strategy"]["canary"]
    assert "digits-cnn" not in (canary["stableService"], canary["canaryService"])
    assert "trafficRouting" not in canary  # the default: weights by replica count


def test_nginx_traffic_routing_is_rendered_and_strictly_valid():
    params = _with({"traffic": {"router": "nginx", "host": "digits.example.com"}})
    files = render_env(example_release(), params, "production")  # validates every document
    (rollout,) = _docs(files, "rollout.yaml")
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["trafficRouting"] == {"nginx": {"stableIngress": "digits-cnn"}}
    ingress = next(d for d in _docs(files, "services.yaml") if d["kind"] == "Ingress")
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "digits.example.com"
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == canary["stableService"]
    # the strict CRD check would catch a misspelled field in the traffic routing
    bad = copy.deepcopy(rollout)
    bad["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"]["stableIngres"] = "x"
    assert any("stableIngres" in p.message for p in validate_document(bad))
    with pytest.raises(ConfigError) as info:
        _with({"traffic": {"router": "istio"}})
    assert info.value.path == "modelops.deploy.traffic.router"


def test_pre_stop_hook_and_drain_fit_the_grace_period(params):
    files = render_env(example_release(), params, "staging")
    (rollout,) = _docs(files, "rollout.yaml")
    pod = rollout["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    sd = params.deploy.shutdown
    assert main["lifecycle"] == {"preStop": {"sleep": {"seconds": sd.pre_stop_seconds}}}
    env = {e["name"]: e["value"] for e in main["env"]}
    assert env["SERVE_DRAIN_SECONDS"] == str(sd.drain_seconds)
    assert env["SERVE_GRACE_SECONDS"] == str(sd.grace_seconds)
    assert pod["terminationGracePeriodSeconds"] > (sd.pre_stop_seconds + sd.drain_seconds
                                                   + sd.grace_seconds)
    files = render_env(example_release(), _with({"shutdown": {"pre_stop_seconds": 0}}),
                       "staging")
    (rollout,) = _docs(files, "rollout.yaml")
    assert "lifecycle" not in rollout["spec"]["template"]["spec"]["containers"][0]


def test_analyses_count_every_non_2xx_and_compare_with_the_stable(params):
    docs = render_docs(example_release(), params, "staging")["analysis-templates.yaml"]
    metrics = {m["name"]: m for d in docs for m in d["spec"]["metrics"]}
    assert set(metrics) == {"error-rate", "error-rate-vs-stable", "latency-p99",
                            "latency-p99-vs-stable", "prediction-drift", "input-drift"}
    q = metrics["error-rate"]["provider"]["prometheus"]["query"]
    assert 'code!~"2.."' in q and '"5.."' not in q
    for name in ("error-rate-vs-stable", "latency-p99-vs-stable"):
        q = metrics[name]["provider"]["prometheus"]["query"]
        assert 'role="canary"' in q and 'role="stable"' in q


@pytest.mark.parametrize("analysis, words", [
    ({"count": 1}, "count must be >= inconclusiveLimit"),  # default inconclusive_limit 2
    ({"failure_limit": -1}, "failureLimit and consecutiveSuccessLimit cannot both be disabled"),
    ({"count": 2, "inconclusive_limit": 0, "failure_limit": 3}, "count (2) must be >= "
                                                                "failureLimit"),
])
def test_render_refuses_what_argo_would_reject(analysis, words):
    with pytest.raises(ConfigError) as info:
        render_env(example_release(), _with({"analysis": analysis}), "staging")
    assert info.value.path == "modelops.deploy.analysis"
    assert words in str(info.value)


def test_failure_limit_minus_one_with_consecutive_successes_renders():
    params = _with({"analysis": {"failure_limit": -1, "consecutive_success_limit": 3}})
    docs = render_env(example_release(), params, "staging")
    (first, *_) = _docs(docs, "analysis-templates.yaml")
    metric = first["spec"]["metrics"][0]
    assert metric["failureLimit"] == -1 and metric["consecutiveSuccessLimit"] == 3


def test_render_refuses_a_condition_the_preview_cannot_judge(params, monkeypatch):
    from modelops.gitops import render

    real = render.analysis_templates

    def odd(model, deploy, feature_bins=True, namespace=None):
        out = real(model, deploy, feature_bins, namespace)
        out[0]["metrics"][0] = {**out[0]["metrics"][0], "success": "all(result, {# < 1})"}
        return out

    monkeypatch.setattr(render, "analysis_templates", odd)
    with pytest.raises(ConfigError, match="cannot be previewed"):
        render_env(example_release(), params, "staging")
    assert dataclasses.is_dataclass(params.deploy.traffic)


def test_input_drift_applies_to_releases_whose_baseline_describes_features(params):
    """The input-drift template and its steps are rendered for a release with feature bins;
    for one without, they are left out (never an analysis that could only be Inconclusive),
    and the steps keep every other template."""
    from modelops.yamlio import load_yaml_all

    def rendered(release):
        files = render_env(release, params, "staging")
        names = [d["metadata"]["name"] for d in
                 load_yaml_all(files["analysis-templates.yaml"].decode())]
        (rollout,) = load_yaml_all(files["rollout.yaml"].decode())
        steps = [[t["templateName"] for t in s["analysis"]["templates"]]
                 for s in rollout["spec"]["strategy"]["canary"]["steps"] if "analysis" in s]
        (rule,) = load_yaml_all(files["prometheus-rules.yaml"].decode())
        groups = [g["name"] for g in rule["spec"]["groups"]]
        return names, steps, groups

    names, steps, groups = rendered(example_release())
    assert "digits-cnn-input-drift" in names
    assert all("digits-cnn-input-drift" in s for s in steps)
    assert groups == ["digits-cnn-prediction-drift", "digits-cnn-input-drift"]
    baseline = {k: v for k, v in example_release().drift_baseline.items() if k != "features"}
    names, steps, groups = rendered(example_release(drift_baseline=baseline))
    assert "digits-cnn-input-drift" not in names
    assert steps and all(s == ["digits-cnn-error-rate", "digits-cnn-latency-p99",
                               "digits-cnn-prediction-drift"] for s in steps)
    assert groups == ["digits-cnn-prediction-drift"]
