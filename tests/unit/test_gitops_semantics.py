"""What a schema cannot say but Kubernetes, kubectl, Argo or Prometheus refuses: non-finite
analysis thresholds, requests above limits, annotations past 256 KiB once kubectl adds its
last-applied copy, Application names too long for Argo CD's label tracking, two environments in
one namespace; and the legal values (Go durations, quantities) the settings accept."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest

from modelops.errors import ConfigError, ValidationError
from modelops.gitops.render import render_docs, render_env
from modelops.gitops.validate import (
    ANNOTATIONS_LIMIT,
    LAST_APPLIED,
    last_applied_size,
    validate_document,
)
from modelops.settings import load_settings, parse_settings
from modelops.yamlio import load_yaml, load_yaml_all_fast, load_yaml_file
from tests.conftest import ROOT
from tests.unit.test_gitops_release import example_release

PARAMS = load_settings(ROOT / "params.yaml")


@pytest.fixture
def raw():
    return copy.deepcopy(load_yaml_file(ROOT / "params.yaml"))


def _deploy(raw, **changes):
    raw["modelops"]["deploy"].update(changes)
    return raw


# --------------------------------------------------------------------------- finite numbers

@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", ".NaN"])
@pytest.mark.parametrize("key", ["error_rate_max", "latency_p99_max_seconds", "drift_psi_max"])
def test_analysis_thresholds_must_be_finite(raw, key, value):
    raw["modelops"]["deploy"]["analysis"][key] = load_yaml(f"x: {value}\n")["x"]
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, "params.yaml")
    assert info.value.path == f"modelops.deploy.analysis.{key}"
    assert "finite" in info.value.problem and "params.yaml" in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_threshold_never_reaches_a_condition(value):
    """Settings built around the loader (a library caller) still cannot render
    ``result[0] < nan``, which Argo cannot evaluate (every measurement errors)."""
    deploy = PARAMS.deploy
    analysis = dataclasses.replace(deploy.analysis, error_rate_max=value)
    sections = {**PARAMS.sections, "deploy": dataclasses.replace(deploy, analysis=analysis)}
    params = dataclasses.replace(PARAMS, sections=sections)
    with pytest.raises(ValidationError, match="not a finite number"):
        render_env(example_release(), params, "staging")


def test_the_validator_refuses_a_non_finite_condition():
    (template,) = [d for d in render_docs(example_release(), PARAMS, "staging")
                   ["analysis-templates.yaml"] if d["metadata"]["name"].endswith("error-rate")]
    metric = template["spec"]["metrics"][0]
    assert validate_document(template) == []
    metric["successCondition"] = "len(result) > 0 && result[0] < nan"
    metric["failureCondition"] = "len(result) > 0 && result[0] >= inf"
    paths = [p.path for p in validate_document(template)]
    assert paths == ["spec.metrics[0].successCondition", "spec.metrics[0].failureCondition"]
    metric["successCondition"] = "len(result) > 0 && !isNaN(result[0]) && result[0] < 0.05"
    metric["failureCondition"] = "len(result) > 0 && isInf(result[0])"
    assert validate_document(template) == []  # Argo's isNaN/isInf are fine


# --------------------------------------------------------------------------- resources

@pytest.mark.parametrize(("section", "resources", "path"), [
    ("resources", {"requests": {"cpu": "2", "memory": "256Mi"},
                   "limits": {"cpu": "1", "memory": "512Mi"}},
     "modelops.deploy.resources.requests.cpu"),
    ("resources", {"requests": {"cpu": "250m", "memory": "1Gi"},
                   "limits": {"cpu": "1", "memory": "512Mi"}},
     "modelops.deploy.resources.requests.memory"),
    ("fetch_resources", {"requests": {"cpu": "1500m", "memory": "64Mi"},
                         "limits": {"cpu": "1.2", "memory": "256Mi"}},
     "modelops.deploy.fetch_resources.requests.cpu"),
])
def test_requests_above_limits_are_refused(raw, section, resources, path):
    with pytest.raises(ConfigError) as info:
        parse_settings(_deploy(raw, **{section: resources}), "params.yaml")
    assert info.value.path == path
    assert "above limits" in info.value.problem


def test_the_validator_refuses_requests_above_limits_in_a_manifest():
    (rollout,) = render_docs(example_release(), PARAMS, "staging")["rollout.yaml"]
    container = rollout["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"cpu": "1500m", "memory": "1Gi"},
                              "limits": {"cpu": "1", "memory": "1024Mi"}}
    problems = validate_document(rollout)
    assert [p.path for p in problems] == [
        "spec.template.spec.containers[0].resources.requests.cpu"]  # 1Gi == 1024Mi is fine


@pytest.mark.parametrize(("cpu", "memory"), [
    ("1e3", "1.5Gi"), (2, "512M"), (0.5, "1e9"), ("100m", "268435456"), (".5", "0.5Gi")])
def test_legal_quantities_are_accepted_and_render(raw, cpu, memory):
    raw = _deploy(raw, resources={"requests": {"cpu": "100m", "memory": "64Mi"},
                                  "limits": {"cpu": cpu, "memory": memory}})
    params = parse_settings(raw, "params.yaml")
    files = render_env(example_release(), params, "staging")
    (rollout,) = load_yaml_all_fast(files["rollout.yaml"].decode())
    limits = rollout["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": str(cpu), "memory": memory}


@pytest.mark.parametrize("cpu", ["1 ", "-1", "1.1.1", "2 cores", "1Gb", ".nan", True])
def test_illegal_quantities_name_the_field(raw, cpu):
    raw = _deploy(raw, resources={"requests": {"cpu": cpu, "memory": "64Mi"},
                                  "limits": {"cpu": "1", "memory": "512Mi"}})
    if cpu == ".nan":
        raw["modelops"]["deploy"]["resources"]["requests"]["cpu"] = float("nan")
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, "params.yaml")
    assert info.value.path == "modelops.deploy.resources.requests.cpu"


# --------------------------------------------------------------------------- durations

@pytest.mark.parametrize("duration", ["1h30m", "1.5h", "90s", "500ms", 30, "45", "2m30.5s"])
def test_legal_pause_durations_are_accepted(raw, duration):
    raw["modelops"]["deploy"]["canary"]["steps"] = [
        {"setWeight": 20}, {"pause": {"duration": duration}}, {"setWeight": 100}]
    steps = parse_settings(raw, "params.yaml").deploy.canary.steps
    assert steps[1] == {"pause": {"duration": duration}}
    (rollout,) = render_docs(example_release(), parse_settings(raw), "staging")["rollout.yaml"]
    assert validate_document(rollout) == []


@pytest.mark.parametrize("duration", ["1d", "5 minutes", "-5m", "1h-30m", "", "m"])
def test_illegal_pause_durations_name_the_step(raw, duration):
    raw["modelops"]["deploy"]["canary"]["steps"] = [
        {"setWeight": 20}, {"pause": {"duration": duration}}, {"setWeight": 100}]
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, "params.yaml")
    assert info.value.path == "modelops.deploy.canary.steps[1].pause.duration"


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("interval", "1h30m", True), ("interval", "1.5m", True), ("interval", "0s", False),
    ("interval", "1d", False), ("rate_window", "1h30m", True), ("rate_window", "1d", True),
    ("rate_window", "1.5m", False), ("rate_window", "0", False)])
def test_analysis_durations_follow_argo_and_prometheus(raw, key, value, ok):
    """``interval`` is read by Argo (Go durations); ``rate_window`` is a PromQL range."""
    raw["modelops"]["deploy"]["analysis"][key] = value
    if ok:
        assert getattr(parse_settings(raw).deploy.analysis, key) == value
        return
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, "params.yaml")
    assert info.value.path == f"modelops.deploy.analysis.{key}"


# --------------------------------------------------------------------------- annotations

def test_last_applied_size_is_the_compact_json_kubectl_stores():
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {
        "name": "x", "annotations": {"a": "<&>", LAST_APPLIED: "old"}}}
    text = json.dumps({"apiVersion": "v1", "kind": "Service",
                       "metadata": {"annotations": {"a": "<&>"}, "name": "x"}},
                      separators=(",", ":"), sort_keys=True)
    assert last_applied_size(doc) == len(text) + 3 * 5 + 1  # Go escapes <, &, > as \u00XX


def test_a_long_artifact_uri_is_caught_with_kubectl_last_applied_copy():
    """120 KB fits one annotation, but the Rollout carries it in its annotations, its pod
    template and the fetch container's env: with kubectl's last-applied copy that is past
    256 KiB, and the apply would be refused."""
    release = example_release(artifact_uri="s3://bucket/" + "a" * 120_000)
    with pytest.raises(ValidationError) as info:
        render_env(release, PARAMS, "staging")
    assert "rollout.yaml (Rollout/digits-cnn): metadata.annotations" in info.value.message
    assert LAST_APPLIED in info.value.message and str(ANNOTATIONS_LIMIT) in info.value.message


def test_annotations_just_under_the_limit_pass():
    release = example_release(artifact_uri="s3://bucket/" + "a" * 20_000)
    render_env(release, PARAMS, "staging")


# --------------------------------------------------------------------------- names, places

def test_an_application_name_too_long_for_label_tracking_is_refused(raw):
    """``<model>-<env>`` of 67 characters: a valid object name, but Argo CD's label tracking
    writes it into a label value (at most 63)."""
    model = "m" * 56  # the Services' names (<model>-canary, 63) still fit
    raw["modelops"]["deploy"]["environments"] = {"production": {"namespace": "ml-production"},
                                                 "staging123": {"namespace": "ml-staging"}}
    params = parse_settings(raw, "params.yaml")
    with pytest.raises(ValidationError) as info:
        render_env(example_release(model=model), params, "staging123")
    assert "application.yaml (Application/" in info.value.message
    assert "metadata.name: 67 characters" in info.value.message
    assert "app.kubernetes.io/instance" in info.value.message


def test_two_environments_in_one_namespace_are_refused(raw):
    raw["modelops"]["deploy"]["environments"] = {
        "staging": {"namespace": "ml-serving"}, "production": {"namespace": "ml-serving"}}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, "params.yaml")
    assert info.value.path == "modelops.deploy.environments.production.namespace"
    assert "'staging'" in info.value.problem


def test_one_namespace_on_two_clusters_is_fine(raw):
    raw["modelops"]["deploy"]["environments"] = {
        "staging": {"namespace": "ml-serving", "cluster": "https://staging.example.com"},
        "production": {"namespace": "ml-serving", "cluster": "https://prod.example.com"}}
    assert set(parse_settings(raw).deploy.environments) == {"staging", "production"}


def test_the_application_follows_the_branch_it_is_published_to():
    files = render_env(example_release(), PARAMS, "staging", branch="release")
    (app,) = load_yaml_all_fast(files["application.yaml"].decode())
    assert app["spec"]["source"]["targetRevision"] == "release"
    (app,) = load_yaml_all_fast(render_env(example_release(), PARAMS, "staging")
                                ["application.yaml"].decode())
    assert app["spec"]["source"]["targetRevision"] == PARAMS.deploy.argocd.target_revision
