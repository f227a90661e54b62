"""The input-drift and data-quality rules (gitops/input_alerts.py) in `promtool test rules`:
series that fire and series that stay quiet; and the canary's input-drift analysis metric
under the preview of Argo's decision."""

from __future__ import annotations

import json

import pytest

from modelops.gitops.input_alerts import InputAlertSettings, analysis_metric, rule_group
from modelops.yamlio import dump_yaml
from tests.conftest import require_tool, run

M = "breast-cancer-gbt"
TEAM = "oncology-ml"
NS, ENV = "ml-production", "production"  # the environment the rules are rendered for


def pod(name: str, version: str = "3", i: int = 0, ns: str = NS, **labels) -> str:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return (f'{name}{{namespace="{ns}",model="{M}",version="{version}",role="stable",'
            f'pod="p{i}"{extra}}}')


def rules_file(tmp_path, settings: InputAlertSettings | None = None):
    path = tmp_path / "rules.yaml"
    path.write_text(dump_yaml({"groups": [rule_group(M, TEAM, settings, namespace=NS,
                                                     env=ENV)]}))
    return path


def annotations_of(path) -> dict[str, dict]:
    from modelops.yamlio import load_yaml

    return {r["alert"]: r["annotations"] for r in load_yaml(path.read_text())["groups"][0]["rules"]
            if "alert" in r}


def expect(ann: dict, name: str, severity: str, **labels) -> dict:
    filled = {}
    for k, v in ann[name].items():
        for key, value in {"model": M, **labels}.items():
            v = v.replace(f"{{{{ $labels.{key} }}}}", value)
        filled[k] = v
    return {"exp_labels": {"severity": severity, "team": TEAM, "env": ENV, "namespace": NS,
                           "model": M, **labels},
            "exp_annotations": filled}


def promtool_test(tmp_path, rules, tests) -> str:
    promtool = require_tool("promtool")
    path = tmp_path / "rules_test.yaml"
    path.write_text(json.dumps({"rule_files": [rules.name], "evaluation_interval": "1m",
                                "tests": tests}))
    out = run([promtool, "test", "rules", str(path)], cwd=tmp_path, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_rules_pass_promtool_check(tmp_path):
    promtool = require_tool("promtool")
    out = run([promtool, "check", "rules", str(rules_file(tmp_path))], cwd=tmp_path)
    assert "SUCCESS: 8 rules found" in out.stdout


def test_feature_drift_fires_for_the_drifted_feature_only(tmp_path):
    rules = rules_file(tmp_path)
    ann = annotations_of(rules)
    drift = [expect(ann, "ModelFeatureDrift", "warning", version="3", feature="mean radius")]
    psi = "model_feature_psi"
    promtool_test(tmp_path, rules, [
        {"interval": "1m", "input_series": [
            # two pods see the rescaled feature; its neighbours stay calm
            {"series": pod(psi, i=0, feature="mean radius"), "values": "0.05x5 0.9x40"},
            {"series": pod(psi, i=1, feature="mean radius"), "values": "0.05x5 0.7x40"},
            {"series": pod(psi, i=0, feature="mean texture"), "values": "0.05x45"},
            {"series": pod(psi, i=1, feature="mean texture"), "values": "0.08x45"},
            # a spike shorter than `for`, then no evidence (NaN): never fires
            {"series": pod(psi, i=0, feature="worst area"),
             "values": "0.9x5 " + " ".join(["NaN"] * 40)},
            {"series": pod("model_features_drifted", i=0), "values": "1x45"},
            {"series": pod("model_features_monitored", i=0), "values": "30x45"}],
         "alert_rule_test": [
             {"eval_time": "15m", "alertname": "ModelFeatureDrift", "exp_alerts": []},
             {"eval_time": "25m", "alertname": "ModelFeatureDrift", "exp_alerts": drift},
             {"eval_time": "40m", "alertname": "ModelFeatureDrift", "exp_alerts": drift},
             {"eval_time": "40m", "alertname": "ModelInputDriftWidespread", "exp_alerts": []}],
         "promql_expr_test": [
             {"expr": 'model:feature_psi:avg{feature="mean radius"}', "eval_time": "30m",
              "exp_samples": [{"labels": 'model:feature_psi:avg{namespace="ml-production",'
                                         'model="breast-cancer-gbt",version="3",'
                                         'feature="mean radius"}',
                               "value": 0.8}]}]},
        {"interval": "1m", "input_series": [  # a third of the features drifted: critical
            {"series": pod("model_features_drifted", version="4"), "values": "2x5 10x30"},
            {"series": pod("model_features_monitored", version="4"), "values": "30x35"}],
         "alert_rule_test": [
             {"eval_time": "10m", "alertname": "ModelInputDriftWidespread", "exp_alerts": []},
             {"eval_time": "30m", "alertname": "ModelInputDriftWidespread",
              "exp_alerts": [expect(ann, "ModelInputDriftWidespread", "critical",
                                    version="4")]}]},
    ])


def test_data_quality_fires_on_a_share_of_bad_values_not_on_a_few(tmp_path):
    rules = rules_file(tmp_path)
    ann = annotations_of(rules)
    promtool_test(tmp_path, rules, [{
        "interval": "1m", "input_series": [
            {"series": pod("model_input_rows_total"), "values": "0+600x40"},  # 10 rows/s
            # 1 value/s of 'mean area' outside the range (10 %); 'mean radius' 2 % (a few
            # values beyond the training extremes: normal)
            {"series": pod("model_feature_out_of_range_total", feature="mean area"),
             "values": "0+60x40"},
            {"series": pod("model_feature_out_of_range_total", feature="mean radius"),
             "values": "0+12x40"},
            {"series": pod("model_feature_missing_total", feature="worst area"),
             "values": "0x10 0+120x30"},
            {"series": pod("model_feature_nonfinite_total", feature="worst area"),
             "values": "0x40"},
            {"series": pod("model_requests_total", code="200"), "values": "0+600x40"},
            {"series": pod("model_input_rejected_total", reason="schema"),
             "values": "0+60x40"},  # 1 of 11 requests refused for their schema
            {"series": pod("model_input_rejected_total", reason="limit"),
             "values": "0+600x40"},  # too large: the client's batching, not its input
            {"series": pod("model_input_monitor_dropped_total"), "values": "0x20 0+5x20"}],
        "alert_rule_test": [
            {"eval_time": "5m", "alertname": "ModelFeatureOutOfRange", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "ModelFeatureOutOfRange",
             "exp_alerts": [expect(ann, "ModelFeatureOutOfRange", "warning", version="3",
                                   feature="mean area")]},
            {"eval_time": "20m", "alertname": "ModelInputMissingValues", "exp_alerts": []},
            {"eval_time": "35m", "alertname": "ModelInputMissingValues",
             "exp_alerts": [expect(ann, "ModelInputMissingValues", "warning", version="3",
                                   feature="worst area")]},
            {"eval_time": "35m", "alertname": "ModelInputNonFinite", "exp_alerts": []},
            {"eval_time": "20m", "alertname": "ModelInputRejected",
             "exp_alerts": [expect(ann, "ModelInputRejected", "warning", version="3")]},
            {"eval_time": "15m", "alertname": "ModelInputMonitorBehind", "exp_alerts": []},
            {"eval_time": "38m", "alertname": "ModelInputMonitorBehind",
             "exp_alerts": [expect(ann, "ModelInputMonitorBehind", "warning",
                                   version="3")]}]}])


def test_thresholds_come_from_the_settings(tmp_path):
    """The same series as a firing case stay quiet under looser settings (the test can fail)."""
    rules = rules_file(tmp_path, InputAlertSettings(feature_psi_warning=0.95,
                                                    out_of_range_max_share=0.5))
    psi = "model_feature_psi"
    promtool_test(tmp_path, rules, [{
        "interval": "1m", "input_series": [
            {"series": pod(psi, feature="mean radius"), "values": "0.9x40"},
            {"series": pod("model_input_rows_total"), "values": "0+600x40"},
            {"series": pod("model_feature_out_of_range_total", feature="mean area"),
             "values": "0+60x40"}],
        "alert_rule_test": [
            {"eval_time": "30m", "alertname": "ModelFeatureDrift", "exp_alerts": []},
            {"eval_time": "30m", "alertname": "ModelFeatureOutOfRange", "exp_alerts": []}]}])
    promtool = require_tool("promtool")
    wrong = tmp_path / "wrong_test.yaml"
    wrong.write_text(json.dumps({"rule_files": [rules.name], "evaluation_interval": "1m",
                                 "tests": [{"interval": "1m", "input_series": [
                                     {"series": pod(psi, feature="mean radius"),
                                      "values": "0.9x40"}],
                                     "alert_rule_test": [{
                                         "eval_time": "30m", "alertname": "ModelFeatureDrift",
                                         "exp_alerts": [{"exp_labels": {"feature": "x"}}]}]}]}))
    assert run([promtool, "test", "rules", str(wrong)], cwd=tmp_path,
               check=False).returncode != 0


@pytest.mark.parametrize(("values", "phase"), [([0.05], "Successful"), ([0.9], "Failed"),
                                                ([], "Inconclusive"),
                                                ([float("nan")], "Inconclusive")])
def test_the_input_drift_metric_decides_as_the_other_analysis_metrics(values, phase):
    from modelops.gitops.conditions import Vector, evaluate_condition

    m = analysis_metric(0.2, 'model="m",version="2",role="canary"')
    assert m["query"] == 'max(model_feature_psi_max{model="m",version="2",role="canary"})'
    ok = evaluate_condition(m["success"], Vector(tuple(values)))
    bad = evaluate_condition(m["failure"], Vector(tuple(values)))
    got = "Successful" if ok else "Failed" if bad else "Inconclusive"
    assert got == phase
