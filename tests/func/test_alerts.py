"""The production drift rules pass `promtool check rules` and behave as designed in
`promtool test rules`: sustained drift fires, short or NaN drift does not, a missing metric does."""

from __future__ import annotations

import json

import pytest

from modelops.errors import ConfigError
from modelops.gitops.alerts import AlertParams, render_rules
from modelops.settings import convert
from modelops.yamlio import dump_yaml, load_yaml
from tests.conftest import require_tool, run

SERIES = ('model_prediction_psi{{namespace="{ns}",model="digits-cnn",version="{v}",'
          'role="stable",pod="p{i}"}}')
NS = "ml-production"


def _series(v: str, i: int, ns: str = NS) -> str:
    return SERIES.format(v=v, i=i, ns=ns)


def _rules_file(tmp_path, params: AlertParams):
    doc = load_yaml(render_rules("digits-cnn", "ml-platform", NS, params,
                                 env="production").decode())
    assert doc["kind"] == "PrometheusRule"
    path = tmp_path / "rules.yaml"
    path.write_text(dump_yaml(doc["spec"]))
    return path


def _alert(name: str, severity: str, version: str, **extra) -> dict:
    labels = {"alertname": name, "severity": severity, "team": "ml-platform",
              "env": "production", "namespace": NS, "model": "digits-cnn", "version": version,
              **extra}
    labels.pop("alertname")
    return {"exp_labels": labels}


def test_rules_pass_promtool_check(tmp_path):
    promtool = require_tool("promtool")
    rules = _rules_file(tmp_path, AlertParams())
    out = run([promtool, "check", "rules", str(rules)], cwd=tmp_path)
    assert "SUCCESS: 4 rules found" in out.stdout


def test_rules_fire_on_sustained_drift_only(tmp_path):
    promtool = require_tool("promtool")
    rules = _rules_file(tmp_path, AlertParams(drift_for="30m", severe_for="10m",
                                              missing_for="15m"))
    desc = {}
    for rule in load_yaml(rules.read_text())["groups"][0]["rules"]:
        if "alert" in rule:
            desc[rule["alert"]] = rule["annotations"]
    def expect(name, severity, version):
        a = _alert(name, severity, version)
        ann = dict(desc[name])
        ann["summary"] = ann["summary"].replace("{{ $labels.model }}", "digits-cnn").replace(
            "{{ $labels.version }}", version)
        a["exp_annotations"] = ann
        return a
    tests = {
        "rule_files": [rules.name],
        "evaluation_interval": "1m",
        "tests": [
            {   # warning-level drift on two pods of version 3: fires only after 30m
                "interval": "1m",
                "input_series": [{"series": _series("3", 0), "values": "0.3x70"},
                                 {"series": _series("3", 1), "values": "0.25x70"}],
                "alert_rule_test": [
                    {"eval_time": "20m", "alertname": "ModelPredictionDrift", "exp_alerts": []},
                    {"eval_time": "40m", "alertname": "ModelPredictionDrift",
                     "exp_alerts": [expect("ModelPredictionDrift", "warning", "3")]},
                    {"eval_time": "40m", "alertname": "ModelPredictionDriftSevere",
                     "exp_alerts": []},
                ]},
            {   # severe drift: both fire; a healthy version beside it does not
                "interval": "1m",
                "input_series": [{"series": _series("4", 0), "values": "0.9x60"},
                                 {"series": _series("5", 0), "values": "0.05x60"}],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "ModelPredictionDriftSevere",
                     "exp_alerts": [expect("ModelPredictionDriftSevere", "critical", "4")]},
                    {"eval_time": "45m", "alertname": "ModelPredictionDrift",
                     "exp_alerts": [expect("ModelPredictionDrift", "warning", "4")]},
                ]},
            {   # a spike shorter than `for`, then NaN (too few predictions): never fires
                "interval": "1m",
                "input_series": [{"series": _series("6", 0),
                                  "values": "0.9x5 0.1x20 NaN NaN NaN NaN NaN NaN NaN NaN "
                                            "NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN "
                                            "NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN NaN"}],
                "alert_rule_test": [
                    {"eval_time": "55m", "alertname": "ModelPredictionDrift", "exp_alerts": []},
                    {"eval_time": "55m", "alertname": "ModelPredictionDriftSevere",
                     "exp_alerts": []},
                    {"eval_time": "55m", "alertname": "ModelDriftMetricMissing",
                     "exp_alerts": []},
                ]},
            {   # staging's pods drift (same model, same version, another namespace): these
                # rules, production's, stay quiet, and their record keeps the namespace apart
                "interval": "1m",
                "input_series": [{"series": _series("7", 0, ns="ml-staging"), "values": "0.9x60"},
                                 {"series": _series("7", 0), "values": "0.05x60"}],
                "alert_rule_test": [
                    {"eval_time": "45m", "alertname": "ModelPredictionDrift", "exp_alerts": []},
                    {"eval_time": "45m", "alertname": "ModelPredictionDriftSevere",
                     "exp_alerts": []},
                ],
                "promql_expr_test": [
                    {"expr": "model:prediction_psi:avg", "eval_time": "10m",
                     "exp_samples": [{"labels": 'model:prediction_psi:avg{namespace="'
                                                f'{NS}",model="digits-cnn",version="7"}}',
                                      "value": 0.05}]}],
            },
            {   # the runtime is not scraped at all: the missing-metric alert fires after 15m
                "interval": "1m",
                "input_series": [{"series": 'up{job="other"}', "values": "1x40"}],
                "alert_rule_test": [
                    {"eval_time": "10m", "alertname": "ModelDriftMetricMissing",
                     "exp_alerts": []},
                    {"eval_time": "20m", "alertname": "ModelDriftMetricMissing",
                     "exp_alerts": [{
                         "exp_labels": {"severity": "warning", "team": "ml-platform",
                                        "env": "production", "namespace": NS,
                                        "model": "digits-cnn"},
                         "exp_annotations": desc["ModelDriftMetricMissing"]}]},
                ]},
        ]}
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(json.dumps(tests))
    out = run([promtool, "test", "rules", str(test_file)], cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_rules_test_catches_a_wrong_expectation(tmp_path):
    """The rule test can fail: a drift below the threshold must not satisfy an alert."""
    promtool = require_tool("promtool")
    rules = _rules_file(tmp_path, AlertParams())
    tests = {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": _series("3", 0), "values": "0.1x60"}],
        "alert_rule_test": [{"eval_time": "45m", "alertname": "ModelPredictionDrift",
                             "exp_alerts": [_alert("ModelPredictionDrift", "warning", "3")]}],
    }]}
    test_file = tmp_path / "rules_test.yaml"
    test_file.write_text(json.dumps(tests))
    out = run([promtool, "test", "rules", str(test_file)], cwd=tmp_path, check=False)
    assert out.returncode != 0


def test_alert_params_reject_inverted_thresholds():
    with pytest.raises(ConfigError) as exc:
        convert(AlertParams, {"drift_psi_warning": 0.5, "drift_psi_critical": 0.3},
                "alerts", "params.yaml")
    assert "alerts.drift_psi_critical" in str(exc.value)
    assert "0.3" in str(exc.value)


def test_rules_kind_renders_the_params_thresholds(tmp_path):
    """The manifest kind for the renderer's registry: namespace and labels from the render
    context, thresholds from the ``alerts`` params section; its spec passes promtool."""
    from modelops.gitops.alerts import PrometheusRulesKind
    from modelops.gitops.release import Release
    from modelops.gitops.render import build_context
    from modelops.settings import load_settings
    from scripts.canary_demo import ROOT as repo_root

    promtool = require_tool("promtool")
    params = load_settings(repo_root / "params.yaml")
    release = Release(model="digits-cnn", version="5", sha256="a" * 64, dvc_md5="b" * 32,
                      artifact_uri="s3://models/model.onnx", image=params.deploy.image,
                      source_repo="example/model-repo", source_commit="c" * 40,
                      dvc_lock_sha256="d" * 64)
    ctx = build_context(release, params, "production")
    ctx["alerts"] = AlertParams(drift_psi_warning=0.3, drift_psi_critical=0.6)
    (doc,) = PrometheusRulesKind().render(ctx)
    assert doc["metadata"]["namespace"] == "ml-production"
    exprs = {r.get("alert"): r["expr"] for r in doc["spec"]["groups"][0]["rules"]}
    assert exprs["ModelPredictionDrift"].endswith("> 0.3")
    assert exprs["ModelPredictionDriftSevere"].endswith("> 0.6")
    # production's rules see production's pods only, and say so on every alert
    assert all('namespace="ml-production"' in e for e in exprs.values())
    assert {r["labels"]["env"] for r in doc["spec"]["groups"][0]["rules"] if "alert" in r} == \
        {"production"}
    path = tmp_path / "rules.yaml"
    path.write_text(dump_yaml(doc["spec"]))
    run([promtool, "check", "rules", str(path)], cwd=tmp_path)


def test_rendered_rules_are_validated_strictly():
    """Through the vendored prometheus-operator CRD in strict mode, plus Prometheus' own
    rule-file rules the CRD cannot express."""
    from modelops.gitops.alerts import prometheus_rule
    from modelops.gitops.validate import validate_document

    doc = prometheus_rule("digits-cnn", "ml-platform", "ml-production", AlertParams())
    assert validate_document(doc) == []
    rules = doc["spec"]["groups"][0]["rules"]
    rules[1]["record"] = "x"  # an alert and a record at once
    rules[2]["for"] = "ten minutes"
    rules[2]["severity"] = "critical"  # belongs under labels
    doc["spec"]["groups"][0]["interval"] = "1.5m"
    problems = {(p.path, p.message) for p in validate_document(doc)}
    paths = {path for path, _ in problems}
    assert ("spec.groups[0].rules[1]", "needs exactly one of 'alert' and 'record'") in problems
    assert "spec.groups[0].rules[2].for" in paths  # the CRD's duration pattern
    assert "spec.groups[0].interval" in paths
    assert any(path == "spec.groups[0].rules[2]" and "'severity' was unexpected" in message
               for path, message in problems)  # strict: unknown fields refused


def test_recording_rules_cannot_carry_alerting_fields():
    from modelops.gitops.alerts import prometheus_rule
    from modelops.gitops.validate import validate_document

    doc = prometheus_rule("digits-cnn", "ml-platform", "ml-production", AlertParams())
    record = doc["spec"]["groups"][0]["rules"][0]
    record.update({"for": "5m", "annotations": {"summary": "x"}, "record": "not a name"})
    problems = {(p.path, p.message.split(" (")[0]) for p in validate_document(doc)}
    assert ("spec.groups[0].rules[0].for", "only alerting rules have this field") in problems
    assert ("spec.groups[0].rules[0].annotations", "only alerting rules have this field") \
        in problems
    assert ("spec.groups[0].rules[0].record", "not a metric name") in problems


def test_the_prometheus_rule_crd_is_vendored_with_its_license_and_origin():
    from modelops.gitops.crd import CRD_FILES, SCHEMA_DIR, crd_api_versions

    path = SCHEMA_DIR / CRD_FILES["PrometheusRule"]
    assert (path.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
    origin = (SCHEMA_DIR / "ORIGIN.md").read_text()
    assert path.name in origin and "prometheus-operator/prometheus-operator" in origin
    assert crd_api_versions("PrometheusRule") == ["monitoring.coreos.com/v1"]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize("key", ["drift_psi_warning", "drift_psi_critical"])
def test_alert_thresholds_must_be_finite(key, value):
    from modelops.yamlio import load_yaml

    raw = load_yaml(f"{key}: {value}\n")
    with pytest.raises(ConfigError) as exc:
        convert(AlertParams, raw, "modelops.alerts", "params.yaml")
    assert exc.value.path == f"modelops.alerts.{key}"
    assert "finite" in exc.value.problem


@pytest.mark.parametrize(("key", "value", "ok"), [
    ("drift_for", "1h30m", True), ("drift_for", "1d", True), ("severe_for", "0", True),
    ("missing_for", "90s", True), ("drift_for", "1.5h", False), ("drift_for", "30", False),
    ("drift_for", "5 minutes", False), ("severe_for", "-5m", False)])
def test_alert_durations_follow_prometheus(key, value, ok):
    if ok:
        assert getattr(convert(AlertParams, {key: value}, "alerts", "params.yaml"), key) == value
        return
    with pytest.raises(ConfigError) as exc:
        convert(AlertParams, {key: value}, "alerts", "params.yaml")
    assert exc.value.path == f"alerts.{key}" and "Prometheus duration" in exc.value.problem


def test_gitops_render_writes_rules_that_promtool_accepts(tmp_path):
    from scripts.canary_demo import render_analysis_templates

    promtool = require_tool("promtool")
    folder = render_analysis_templates(tmp_path, "http://127.0.0.1:9090").parent
    (doc,) = [load_yaml((folder / "prometheus-rules.yaml").read_text())]
    assert "prometheus-rules.yaml" in (folder / "kustomization.yaml").read_text()
    rules = tmp_path / "rules.yaml"
    rules.write_text(dump_yaml(doc["spec"]))
    out = run([promtool, "check", "rules", str(rules)], cwd=tmp_path)
    assert "SUCCESS: 4 rules found" in out.stdout
