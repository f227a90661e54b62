"""Alerting rules for input drift and data quality, and the canary's input-drift analysis
metric, on the serving runtime's input-monitoring families (:mod:`modelops.contracts`).

:func:`rule_group` is one Prometheus rules group per model (it goes into the model's
``PrometheusRule`` beside the prediction-drift group of :mod:`gitops.alerts`):

- ``ModelFeatureDrift`` (warning, per feature): the PSI of a feature's recent values against
  its training bins, averaged over a version's pods, above ``feature_psi_warning`` for
  ``feature_drift_for`` (the ``feature`` label says which);
- ``ModelInputDriftWidespread`` (critical): at least ``widespread_share`` of the monitored
  features drifted (PSI at or above the runtime's threshold) for ``feature_drift_for``;
- ``ModelFeatureOutOfRange`` (warning, per feature): more than ``out_of_range_max_share``
  of a feature's values outside the training range over ``quality_window``, for
  ``quality_for`` (a few values beyond the training extremes are normal: the default is 5 %);
- ``ModelInputMissingValues`` and ``ModelInputNonFinite`` (warning, per feature): more than
  ``missing_max_share`` of a feature's values missing, or NaN or infinite;
- ``ModelInputRejected`` (warning): more than ``rejected_max_share`` of the inference
  requests refused for their input (malformed, schema, non-finite) for ``quality_for``;
- ``ModelInputMonitorBehind`` (warning): the runtime left requests out of input monitoring
  (its CPU is short) for ``quality_for``.

A NaN PSI (too few values yet) compares false and never fires; a ratio over no traffic is
empty and never fires either.

:func:`analysis_metric` is the ``input-drift`` metric of the canary analysis: the largest
feature PSI of the canary's pods against ``deploy.analysis``'s bound, with the same
success/failure/inconclusive conditions as the other metrics (:mod:`gitops.render`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelops import contracts as c


@dataclass(frozen=True)
class InputAlertSettings:
    """Thresholds of :func:`rule_group` (``modelops.alerts`` carries them, same names)."""

    feature_psi_warning: float = 0.2
    feature_drift_for: str = "15m"
    widespread_share: float = 0.25
    out_of_range_max_share: float = 0.05
    missing_max_share: float = 0.01
    quality_window: str = "5m"
    quality_for: str = "10m"
    rejected_max_share: float = 0.05
    runbook_url: str = ""

    @classmethod
    def from_alerts(cls, alerts: Any) -> InputAlertSettings:
        """The thresholds of ``modelops.alerts`` (:class:`modelops.settings.alerts.AlertParams`)."""
        return cls(**{f: str(getattr(alerts, f)) if f.endswith(("_for", "_window"))
                      else getattr(alerts, f) for f in cls.__dataclass_fields__})


def _t(x: float) -> str:
    return repr(float(x))


def rule_group(model: str, team: str, s: InputAlertSettings | None = None, *,
               namespace: str | None = None, env: str | None = None) -> dict[str, Any]:
    """The ``<model>-input-drift`` rules group of one environment: its queries select
    ``namespace`` (when given) and keep it, its alerts carry ``env``."""
    s = s or InputAlertSettings()
    sel = c.selector(model, namespace)
    ns = "namespace, " if namespace else ""
    w = s.quality_window
    labels = {"team": team, **({"env": env} if env else {})}
    runbook = {"runbook_url": s.runbook_url} if s.runbook_url else {}
    psi = f"avg by ({ns}model, version, feature) ({c.FEATURE_PSI}{sel})"
    rows = f"sum by ({ns}model, version) (rate({c.INPUT_ROWS_TOTAL}{sel}[{w}]))"

    def share(counter: str) -> str:
        return (f"sum by ({ns}model, version, feature) (rate({counter}{sel}[{w}])) "
                f"/ on ({ns}model, version) group_left {rows}")

    def quality(alert: str, counter: str, what: str, limit: float) -> dict[str, Any]:
        return {
            "alert": alert, "expr": f"{share(counter)} > {_t(limit)}",
            "for": s.quality_for, "labels": {**labels, "severity": "warning"},
            "annotations": {
                "summary": f"{what} in feature {{{{ $labels.feature }}}} of "
                           "{{ $labels.model }} version {{ $labels.version }}",
                "description": f"more than {limit:g} of the values of this "
                               f"feature were {what} over {w}, for {s.quality_for}; check "
                               "the producer upstream (a changed unit, schema or default) "
                               "before retraining",
                **runbook}}

    refused_sel = c.selector(model, namespace, 'reason=~"malformed|schema|nonfinite"')
    refused = f"sum by ({ns}model, version) (rate({c.INPUT_REJECTED_TOTAL}{refused_sel}[{w}]))"
    requests = f"sum by ({ns}model, version) (rate({c.REQUESTS_TOTAL}{sel}[{w}]))"
    return {"name": f"{model}-input-drift", "rules": [
        {"record": "model:feature_psi:avg", "expr": psi},
        {"alert": "ModelFeatureDrift", "expr": f"{psi} > {_t(s.feature_psi_warning)}",
         "for": s.feature_drift_for, "labels": {**labels, "severity": "warning"},
         "annotations": {
             "summary": "input drift in feature {{ $labels.feature }} of {{ $labels.model }} "
                        "version {{ $labels.version }}",
             "description": f"the PSI of this feature's recent values against its training "
                            f"bins has stayed above {s.feature_psi_warning:g} for "
                            f"{s.feature_drift_for}; run `modelops-ci drift-report` on "
                            "recent requests to see how it moved",
             **runbook}},
        {"alert": "ModelInputDriftWidespread",
         "expr": (f"max by ({ns}model, version) ({c.FEATURES_DRIFTED}{sel}) / max by ({ns}"
                  f"model, version) ({c.FEATURES_MONITORED}{sel}) >= "
                  f"{_t(s.widespread_share)}"),
         "for": s.feature_drift_for, "labels": {**labels, "severity": "critical"},
         "annotations": {
             "summary": "widespread input drift on {{ $labels.model }} version "
                        "{{ $labels.version }}",
             "description": f"at least {s.widespread_share:.0%} of the monitored features "
                            f"have drifted for {s.feature_drift_for}: the traffic is unlike "
                            "the training data; retrain, or roll back if a release caused it",
             **runbook}},
        quality("ModelFeatureOutOfRange", c.FEATURE_OUT_OF_RANGE_TOTAL,
                "outside the training range", s.out_of_range_max_share),
        quality("ModelInputMissingValues", c.FEATURE_MISSING_TOTAL, "missing",
                s.missing_max_share),
        quality("ModelInputNonFinite", c.FEATURE_NONFINITE_TOTAL, "NaN or infinite",
                s.missing_max_share),
        {"alert": "ModelInputRejected",
         "expr": f"{refused} / {requests} > {_t(s.rejected_max_share)}",
         "for": s.quality_for, "labels": {**labels, "severity": "warning"},
         "annotations": {
             "summary": "{{ $labels.model }} version {{ $labels.version }} refuses its "
                        "clients' input",
             "description": f"more than {s.rejected_max_share:g} of the inference requests "
                            f"were refused for their input (malformed, wrong schema, NaN) "
                            f"over {w}, for {s.quality_for}; model_input_rejected_total "
                            "says which reason",
             **runbook}},
        {"alert": "ModelInputMonitorBehind",
         "expr": (f"sum by ({ns}model, version) (rate({c.MONITOR_DROPPED_TOTAL}{sel}[{w}])) "
                  "> 0"),
         "for": s.quality_for, "labels": {**labels, "severity": "warning"},
         "annotations": {
             "summary": "input monitoring of {{ $labels.model }} version {{ $labels.version }} "
                        "falls behind",
             "description": "the serving runtime leaves requests out of input monitoring "
                            "(its CPU is short), so drift and data quality see only part of "
                            "the traffic; raise the pod's CPU request",
             **runbook}},
    ]}


def analysis_metric(threshold: float, canary_selector: str) -> dict[str, Any]:
    """The ``input-drift`` metric (name, query, success and failure conditions) of the
    canary analysis, in :func:`gitops.render.analysis_templates`' shape."""
    t = _t(threshold)
    return {"name": "input-drift",
            "query": f"max({c.FEATURE_PSI_MAX}{{{canary_selector}}})",
            "success": f"len(result) > 0 && result[0] < {t}",
            "failure": f"len(result) > 0 && result[0] >= {t}"}
