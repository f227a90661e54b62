"""Production alerting rules for prediction drift, rendered with the manifests.

The canary analysis guards a rollout for minutes; these rules watch the promoted model for as
long as it runs. Three prediction-drift alerts per model, all from the serving runtime's
metrics (and, for a release whose drift baseline describes its features, the input-drift and
data-quality group of :mod:`gitops.input_alerts` in the same PrometheusRule):

- ``ModelPredictionDrift`` (warning): the PSI of recent predicted classes against the training
  baseline stays above ``alerts.drift_psi_warning`` for ``alerts.drift_for``;
- ``ModelPredictionDriftSevere`` (critical): above ``alerts.drift_psi_critical`` for
  ``alerts.severe_for``;
- ``ModelDriftMetricMissing`` (warning): no ``model_prediction_psi`` series at all for
  ``alerts.missing_for`` (the runtime is down or not scraped: drift would go unseen).

The PSI is averaged over the pods of one model version in one environment's namespace
(``avg by (namespace, model, version)``: staging's rules never fire for production's pods, and
each alert carries ``env``); a NaN (too few predictions yet) compares false and never fires.
The rules file is a ``monitoring.coreos.com/v1`` ``PrometheusRule`` whose ``spec`` is a plain
Prometheus rules file (``promtool check rules`` accepts the spec as it is).
"""

from __future__ import annotations

from typing import Any

from modelops.contracts import PREDICTION_PSI, selector
from modelops.settings.alerts import AlertParams
from modelops.yamlio import dump_yaml


def rule_labels(team: str, env: str | None) -> dict[str, str]:
    """The labels every alert of one environment's rules carries (Alertmanager routes on
    them): the team, and the environment the firing pods run in."""
    return {"team": team, **({"env": env} if env else {})}


def rule_groups(model: str, team: str, alerts: AlertParams, namespace: str | None = None,
                env: str | None = None) -> dict[str, Any]:
    """The Prometheus rules file (``groups:``) for one model, in one environment: every
    query selects ``namespace`` (when given) and keeps it, so the staging and the production
    rules, which one Prometheus evaluates side by side, each see their own pods and record
    distinct series."""
    by = "namespace, model, version" if namespace else "model, version"
    series = f"{PREDICTION_PSI}{selector(model, namespace)}"
    psi = f"avg by ({by}) ({series})"
    labels = rule_labels(team, env)
    runbook = {"runbook_url": alerts.runbook_url} if alerts.runbook_url else {}
    return {"groups": [{
        "name": f"{model}-prediction-drift",
        "rules": [
            {"record": "model:prediction_psi:avg",
             "expr": psi},
            {"alert": "ModelPredictionDrift",
             "expr": f"{psi} > {alerts.drift_psi_warning}",
             "for": str(alerts.drift_for),
             "labels": {**labels, "severity": "warning"},
             "annotations": {
                 "summary": "prediction drift on {{ $labels.model }} version "
                            "{{ $labels.version }}",
                 "description": f"the PSI of predicted classes against the training baseline "
                                f"has stayed above {alerts.drift_psi_warning} for "
                                f"{alerts.drift_for}; check the input data, then retrain or "
                                "roll back",
                 **runbook}},
            {"alert": "ModelPredictionDriftSevere",
             "expr": f"{psi} > {alerts.drift_psi_critical}",
             "for": str(alerts.severe_for),
             "labels": {**labels, "severity": "critical"},
             "annotations": {
                 "summary": "severe prediction drift on {{ $labels.model }} version "
                            "{{ $labels.version }}",
                 "description": f"the PSI of predicted classes has stayed above "
                                f"{alerts.drift_psi_critical} for {alerts.severe_for}; the "
                                "model sees data unlike its training data: roll back with "
                                f"`modelops-gitops rollback --env {env or '<env>'} "
                                f"--model {model}`",
                 **runbook}},
            {"alert": "ModelDriftMetricMissing",
             "expr": f"absent({series})",
             "for": str(alerts.missing_for),
             "labels": {**labels, "severity": "warning", "model": model,
                        **({"namespace": namespace} if namespace else {})},
             "annotations": {
                 "summary": f"no drift metric from {model}",
                 "description": f"{PREDICTION_PSI} for {model} has been absent for "
                                f"{alerts.missing_for}: the serving runtime is down or not "
                                "scraped, so drift would go unseen",
                 **runbook}},
        ]}]}


def prometheus_rule(model: str, team: str, namespace: str, alerts: AlertParams,
                    release_labels: dict[str, str] | None = None, *,
                    input_rules: bool = False, env: str | None = None) -> dict[str, Any]:
    """The ``PrometheusRule`` object (prometheus-operator) wrapping :func:`rule_groups`, and
    with ``input_rules`` (a release whose drift baseline describes its features) the input-drift
    and data-quality group of :mod:`gitops.input_alerts`."""
    spec = rule_groups(model, team, alerts, namespace, env)
    if input_rules:
        from modelops.gitops.input_alerts import InputAlertSettings, rule_group

        spec["groups"].append(rule_group(model, team, InputAlertSettings.from_alerts(alerts),
                                         namespace=namespace, env=env))
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": f"{model}-drift", "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": model, "team": team,
                                **(release_labels or {})}},
        "spec": spec,
    }


def render_rules(model: str, team: str, namespace: str, alerts: AlertParams,
                 release_labels: dict[str, str] | None = None,
                 env: str | None = None) -> bytes:
    """``prometheus-rules.yaml`` as written into the GitOps repository."""
    return dump_yaml(prometheus_rule(model, team, namespace, alerts,
                                     release_labels, env=env)).encode("utf-8")


class PrometheusRulesKind:
    """The ``prometheus-rules`` manifest kind for :data:`gitops.render.KINDS`.

    Reads ``alerts`` (the params section) from the render context when present, else defaults.
    ``gitops.validate`` checks it against the vendored prometheus-operator CRD in strict mode
    (``gitops/schemas/prometheus-operator/``) plus Prometheus' own rule-file rules; ``promtool``
    checks the rules in the tests.
    """

    filename = "prometheus-rules.yaml"
    in_kustomization = True
    validated = True
    kinds = ("PrometheusRule",)

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        release = context["release"]
        alerts = context.get("alerts") or AlertParams()
        labels = context.get("labels") or {}
        team = labels.get("modelops.io/team", "")
        release_labels = {k: v for k, v in labels.items() if k.startswith("app.kubernetes.io/")}
        prometheus = context.get("prometheus")
        if prometheus is not None:  # the operator's ruleSelector
            release_labels.update(prometheus.monitor_labels)
        return [prometheus_rule(release.model, team, context["env"].namespace, alerts,
                                release_labels, input_rules=release.has_feature_bins(),
                                env=context.get("env_name"))]
