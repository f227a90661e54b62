"""Production alerting rules for prediction drift, rendered with the manifests.

The canary analysis guards a rollout for minutes; these rules watch the promoted model for as
long as it runs. Three alerts per model, all from the serving runtime's metrics:

- ``ModelPredictionDrift`` (warning): the PSI of recent predicted classes against the training
  baseline stays above ``alerts.drift_psi_warning`` for ``alerts.drift_for``;
- ``ModelPredictionDriftSevere`` (critical): above ``alerts.drift_psi_critical`` for
  ``alerts.severe_for``;
- ``ModelDriftMetricMissing`` (warning): no ``model_prediction_psi`` series at all for
  ``alerts.missing_for`` (the runtime is down or not scraped: drift would go unseen).

The PSI is averaged over the pods of one model version (``avg by (model, version)``); a NaN
(too few predictions yet) compares false and never fires. The rules file is a
``monitoring.coreos.com/v1`` ``PrometheusRule`` whose ``spec`` is a plain Prometheus rules file
(``promtool check rules`` accepts the spec as it is).
"""

from __future__ import annotations

from typing import Any

from modelops.contracts import PREDICTION_PSI
from modelops.settings.alerts import AlertParams


def _selector(model: str) -> str:
    return f'{PREDICTION_PSI}{{model="{model}"}}'


def rule_groups(model: str, team: str, alerts: AlertParams) -> dict[str, Any]:
    """The Prometheus rules file (``groups:``) for one model."""
    psi = f"avg by (model, version) ({_selector(model)})"
    labels = {"team": team}
    runbook = {"runbook_url": alerts.runbook_url} if alerts.runbook_url else {}
    return {"groups": [{
        "name": f"{model}-prediction-drift",
        "rules": [
            {"record": "model:prediction_psi:avg",
             "expr": psi},
            {"alert": "ModelPredictionDrift",
             "expr": f"{psi} > {alerts.drift_psi_warning}",
             "for": alerts.drift_for,
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
             "for": alerts.severe_for,
             "labels": {**labels, "severity": "critical"},
             "annotations": {
                 "summary": "severe prediction drift on {{ $labels.model }} version "
                            "{{ $labels.version }}",
                 "description": f"the PSI of predicted classes has stayed above "
                                f"{alerts.drift_psi_critical} for {alerts.severe_for}; the "
                                "model sees data unlike its training data: roll back with "
                                "`modelops-gitops rollback`",
                 **runbook}},
            {"alert": "ModelDriftMetricMissing",
             "expr": f"absent({_selector(model)})",
             "for": alerts.missing_for,
             "labels": {**labels, "severity": "warning", "model": model},
             "annotations": {
                 "summary": f"no drift metric from {model}",
                 "description": f"{PREDICTION_PSI} for {model} has been absent for "
                                f"{alerts.missing_for}: the serving runtime is down or not "
                                "scraped, so drift would go unseen",
                 **runbook}},
        ]}]}


def prometheus_rule(model: str, team: str, namespace: str, alerts: AlertParams,
                    release_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """The ``PrometheusRule`` object (prometheus-operator) wrapping :func:`rule_groups`."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": f"{model}-drift", "namespace": namespace,
                     "labels": {"app.kubernetes.io/name": model, "team": team,
                                **(release_labels or {})}},
        "spec": rule_groups(model, team, alerts),
    }


def render_rules(model: str, team: str, namespace: str, alerts: AlertParams,
                 release_labels: dict[str, str] | None = None) -> bytes:
    """``prometheus-rules.yaml`` as written into the GitOps repository."""
    from modelops.yamlio import dump_yaml

    return dump_yaml(prometheus_rule(model, team, namespace, alerts,
                                     release_labels)).encode("utf-8")


class PrometheusRulesKind:
    """The ``prometheus-rules`` manifest kind for :data:`gitops.render.KINDS`.

    Reads ``alerts`` (the params section) from the render context when present, else defaults.
    ``gitops.validate`` checks it with :func:`rule_problems`; ``promtool`` checks the rules in
    the tests.
    """

    filename = "prometheus-rules.yaml"
    in_kustomization = True
    validated = True

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        release = context["release"]
        alerts = context.get("alerts") or AlertParams()
        labels = context.get("labels") or {}
        team = labels.get("modelops.io/team", "")
        release_labels = {k: v for k, v in labels.items() if k.startswith("app.kubernetes.io/")}
        return [prometheus_rule(release.model, team, context["env"].namespace, alerts,
                                release_labels)]


# --------------------------------------------------------------------------- validation

_PROM_DURATION = r"0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?"
_GROUP_KEYS = {"name", "interval", "limit", "partial_response_strategy", "rules"}
_RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"


def rule_problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(field path, problem) for a ``monitoring.coreos.com/v1`` PrometheusRule, strictly:
    the fields prometheus-operator's CRD defines, unknown keys rejected, one of alert/record
    per rule, durations and label names in Prometheus' syntax."""
    import re

    out: list[tuple[str, str]] = []
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        out.append(("apiVersion", f"must be 'monitoring.coreos.com/v1' "
                                  f"(got {doc.get('apiVersion')!r})"))
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec"):
            out.append((str(key), "unknown field"))
    spec = doc.get("spec")
    if not isinstance(spec, dict) or set(spec) - {"groups"}:
        return out + [("spec", "must be a mapping with only 'groups'")]
    groups = spec.get("groups")
    if not isinstance(groups, list):
        return out + [("spec.groups", "must be a list")]
    names = set()
    for i, g in enumerate(groups):
        gp = f"spec.groups[{i}]"
        if not isinstance(g, dict):
            out.append((gp, "must be a mapping"))
            continue
        out += [(f"{gp}.{k}", "unknown field") for k in g if k not in _GROUP_KEYS]
        if not isinstance(g.get("name"), str) or not g.get("name"):
            out.append((f"{gp}.name", "required, a non-empty string"))
        elif g["name"] in names:
            out.append((f"{gp}.name", f"duplicate group name {g['name']!r}"))
        names.add(g.get("name"))
        if "interval" in g and not re.fullmatch(_PROM_DURATION, str(g["interval"])):
            out.append((f"{gp}.interval", f"not a duration (got {g['interval']!r})"))
        for j, r in enumerate(g.get("rules") or []):
            rp = f"{gp}.rules[{j}]"
            if not isinstance(r, dict):
                out.append((rp, "must be a mapping"))
                continue
            out += [(f"{rp}.{k}", "unknown field") for k in r if k not in _RULE_KEYS]
            if ("alert" in r) == ("record" in r):
                out.append((rp, "needs exactly one of 'alert' and 'record'"))
            if "record" in r and not re.fullmatch(_METRIC_NAME, str(r["record"])):
                out.append((f"{rp}.record", f"not a metric name (got {r['record']!r})"))
            if not isinstance(r.get("expr"), (str, int)) or r.get("expr") == "":
                out.append((f"{rp}.expr", "required, a PromQL expression"))
            for key in ("for", "keep_firing_for"):
                if key in r and not re.fullmatch(_PROM_DURATION, str(r[key])):
                    out.append((f"{rp}.{key}", f"not a duration (got {r[key]!r})"))
            for key in ("labels", "annotations"):
                m = r.get(key, {})
                if not isinstance(m, dict):
                    out.append((f"{rp}.{key}", "must be a mapping of strings"))
                    continue
                for k, v in m.items():
                    if not isinstance(v, str):
                        out.append((f"{rp}.{key}.{k}", f"must be a string (got {v!r})"))
                    if key == "labels" and not re.fullmatch(_LABEL_NAME, str(k)):
                        out.append((f"{rp}.{key}.{k}", "not a Prometheus label name"))
            if "record" in r and "annotations" in r:
                out.append((f"{rp}.annotations", "only alerting rules have annotations"))
    return out
