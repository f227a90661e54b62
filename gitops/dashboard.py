"""The Grafana dashboard of one model, built with grafana-foundation-sdk (Grafana's typed
builders: the JSON is Grafana's dashboard model, not hand-written), and the ConfigMap that
Grafana's dashboard sidecar loads (label ``grafana_dashboard: "1"``).

Panels, every query on the serving runtime's families (:mod:`modelops.contracts`) of the
dashboard's model:

- traffic split stable/canary (requests per second by ``role``, stacked);
- latency p99 by role against the SLO (``deploy.analysis.latency_p99_max_seconds``, a line);
- errors: the share of non-2xx answers by role;
- prediction drift: the PSI of predicted classes by role and version, against its threshold;
- input drift: the most drifted features (``topk`` of ``model_feature_psi``), the number of
  drifted features and the largest feature PSI;
- data quality: missing, NaN/inf and out-of-range values per second, refused requests by
  reason, and the features most often outside the training range;
- confidence: median and 10th percentile of the top-class probability by role, and the share
  of predictions under 0.6.

Queries use Grafana's ``$__rate_interval`` and the ``${datasource}`` variable;
:func:`panel_queries` interpolates them as Grafana would, for checks against a Prometheus.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from modelops import contracts as c
from modelops.settings.alerts import AlertParams

if TYPE_CHECKING:
    from grafana_foundation_sdk.cog.builder import Builder

# grafana-foundation-sdk and orjson (the gitops extra) are imported where the dashboard is
# built: the renderer imports this module for DashboardKind, and must import without the extra

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
SIDECAR_LABEL = {"grafana_dashboard": "1"}
LOW_CONFIDENCE = 0.6
TOP_FEATURES = 10


def dashboard_uid(model: str, env: str | None = None) -> str:
    """``modelops-<model>-<env>``, or a digest of it where that passes Grafana's 40 characters:
    one uid per environment, since the sidecar of a Grafana that watches every namespace loads
    staging's and production's dashboards side by side."""
    uid = f"modelops-{model}" + (f"-{env}" if env else "")
    if len(uid) <= 40:
        return uid
    return "modelops-" + hashlib.sha256(uid.encode("utf-8")).hexdigest()[:31]


def _q(expr: str, legend: str, ref: str, instant: bool = False) -> Any:
    from grafana_foundation_sdk.builders import prometheus as prom

    q = prom.Dataquery().expr(expr).legend_format(legend).ref_id(ref)
    return q.instant() if instant else q.range()


def _steps(*pairs: tuple[float | None, str]) -> Any:
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.models import dashboard as dm

    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=col) for v, col in pairs])


def _line(threshold: float, unit: str, title: str) -> Builder:
    from grafana_foundation_sdk.builders import common, timeseries
    from grafana_foundation_sdk.models import common as cm

    return (timeseries.Panel().title(title).unit(unit)
            .thresholds(_steps((None, "green"), (threshold, "red")))
            .thresholds_style(common.GraphThresholdsStyleConfig().mode(
                cm.GraphTresholdsStyleMode.LINE)))


def panels(model: str, *, slo_p99_seconds: float, drift_psi_max: float,
           feature_psi_max: float, namespace: str | None = None) -> list[tuple[str, Builder]]:
    """(row title, panel builder) in dashboard order; every query selects ``namespace`` when
    given (the environment's pods only)."""

    def _sel(model: str, extra: str = "") -> str:
        return c.selector(model, namespace, *([extra] if extra else []))

    from grafana_foundation_sdk.builders import bargauge, common, stat, timeseries
    from grafana_foundation_sdk.models import common as cm

    s = _sel(model)
    req = f"sum by (role) (rate({c.REQUESTS_TOTAL}{s}[{RATE}]))"
    non2xx = _sel(model, 'code!~"2.."')
    errors = f"sum by (role) (rate({c.REQUESTS_TOTAL}{non2xx}[{RATE}]))"
    traffic = (timeseries.Panel().title("Traffic split: requests/s by role").unit("reqps")
               .stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))
               .fill_opacity(40)
               .description("Inference requests per second answered by the stable and the "
                            "canary pods (all status codes).")
               .with_target(_q(req, "{{role}}", "A")))
    latency = (_line(slo_p99_seconds, "s", "Latency p99 by role, against the SLO")
               .description(f"99th percentile of model_request_duration_seconds; the red "
                            f"line is the SLO ({slo_p99_seconds:g} s, the canary analysis' "
                            "bound).")
               .with_target(_q(f"histogram_quantile(0.99, sum by (le, role) (rate("
                               f"{c.REQUEST_DURATION}_bucket{s}[{RATE}])))", "p99 {{role}}",
                               "A")))
    error_share = (timeseries.Panel().title("Errors: share of non-2xx answers").unit(
        "percentunit").min(0)
        .description("Non-2xx answers over all answers, by role (0 when there were none).")
        .with_target(_q(f"({errors} or (0 * {req})) / {req}", "{{role}}", "A")))
    prediction = (_line(drift_psi_max, "none", "Prediction drift: PSI of predicted classes")
                  .description("model_prediction_psi by role and version: the predicted-class "
                               "mix of recent requests against the training baseline.")
                  .with_target(_q(f"max by (role, version) ({c.PREDICTION_PSI}{s})",
                                  "{{role}} v{{version}}", "A")))
    top = (bargauge.Panel().title(f"Most drifted features (top {TOP_FEATURES} PSI)")
           .thresholds(_steps((None, "green"), (feature_psi_max, "red")))
           .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
           .orientation(cm.VizOrientation.HORIZONTAL).min(0)
           .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
           .description("PSI of each feature's recent values against its training bins; "
                        "red at the feature-drift alert threshold.")
           .with_target(_q(f"topk({TOP_FEATURES}, max by (feature) ({c.FEATURE_PSI}{s}))",
                           "{{feature}}", "A", instant=True)))
    drifted = (stat.Panel().title("Features drifted").unit("none")
               .thresholds(_steps((None, "green"), (1, "red")))
               .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
               .description("Features whose PSI is at or above the runtime's threshold, of "
                            "those monitored (the worst pod).")
               .with_target(_q(f"max({c.FEATURES_DRIFTED}{s})", "drifted", "A"))
               .with_target(_q(f"max({c.FEATURES_MONITORED}{s})", "monitored", "B")))
    feature_max = (_line(feature_psi_max, "none", "Largest feature PSI by role")
                   .with_target(_q(f"max by (role) ({c.FEATURE_PSI_MAX}{s})", "{{role}}",
                                   "A")))
    quality = (timeseries.Panel().title("Data quality: bad values/s").unit("short").min(0)
               .description("Input values that are missing, NaN or infinite, or outside "
                            "the training range, and requests refused before the model ran, "
                            "by reason.")
               .with_target(_q(f"sum(rate({c.FEATURE_MISSING_TOTAL}{s}[{RATE}]))", "missing",
                               "A"))
               .with_target(_q(f"sum(rate({c.FEATURE_NONFINITE_TOTAL}{s}[{RATE}]))",
                               "NaN/inf", "B"))
               .with_target(_q(f"sum(rate({c.FEATURE_OUT_OF_RANGE_TOTAL}{s}[{RATE}]))",
                               "out of range", "C"))
               .with_target(_q(f"sum by (reason) (rate({c.INPUT_REJECTED_TOTAL}{s}[{RATE}]))",
                               "refused: {{reason}}", "D")))
    out_of_range = (bargauge.Panel().title("Features most often outside the training range")
                    .unit("short").min(0).display_mode(cm.BarGaugeDisplayMode.BASIC)
                    .orientation(cm.VizOrientation.HORIZONTAL)
                    .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
                    .with_target(_q(f"topk({TOP_FEATURES}, sum by (feature) (rate("
                                    f"{c.FEATURE_OUT_OF_RANGE_TOTAL}{s}[{RATE}])))",
                                    "{{feature}}", "A", instant=True)))
    conf = f"sum by (le, role) (rate({c.PREDICTION_CONFIDENCE}_bucket{s}[{RATE}]))"
    under = _sel(model, f'le="{LOW_CONFIDENCE}"')
    confidence = (timeseries.Panel().title("Confidence: top-class probability").unit(
        "percentunit").min(0).max(1)
        .description("Median and 10th percentile of the top-class probability, by role.")
        .with_target(_q(f"histogram_quantile(0.5, {conf})", "median {{role}}", "A"))
        .with_target(_q(f"histogram_quantile(0.1, {conf})", "p10 {{role}}", "B")))
    low = (timeseries.Panel().title(f"Predictions under {LOW_CONFIDENCE:g} confidence")
           .unit("percentunit").min(0)
           .with_target(_q(f"sum by (role) (rate({c.PREDICTION_CONFIDENCE}_bucket"
                           f"{under}[{RATE}])) / sum by "
                           f"(role) (rate({c.PREDICTION_CONFIDENCE}_count{s}[{RATE}]))",
                           "{{role}}", "A")))
    return [("Traffic and SLO", traffic), ("Traffic and SLO", latency),
            ("Traffic and SLO", error_share), ("Drift", prediction), ("Drift", top),
            ("Drift", drifted), ("Drift", feature_max), ("Data quality", quality),
            ("Data quality", out_of_range), ("Confidence", confidence), ("Confidence", low)]


def dashboard(model: str, *, slo_p99_seconds: float = 0.25, drift_psi_max: float = 0.2,
              feature_psi_max: float = 0.2, version: str = "", namespace: str | None = None,
              env: str | None = None) -> dict[str, Any]:
    """Grafana's dashboard JSON model for ``model`` in one environment (uid
    :func:`dashboard_uid`; queries on ``namespace``)."""
    from grafana_foundation_sdk.builders import dashboard as db
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import dashboard as dm

    title = f"Model {model}" + (f" ({env})" if env else "")
    builder = (db.Dashboard(title).uid(dashboard_uid(model, env))
               .tags(["modelops", model, *([env] if env else [])])
               .refresh("30s").time("now-3h", "now")
               .timezone("browser").editable()
               .description(f"Serving, drift, data quality and confidence of {model}"
                            + (f" (release {version})" if version else ""))
               .with_variable(db.DatasourceVariable("datasource").label("Prometheus")
                              .type("prometheus")))
    row = None
    for title, panel in panels(model, slo_p99_seconds=slo_p99_seconds,
                               drift_psi_max=drift_psi_max, feature_psi_max=feature_psi_max,
                               namespace=namespace):
        if title != row:
            builder = builder.with_row(db.Row(title))
            row = title
        builder = builder.with_panel(panel.datasource(dm.DataSourceRef(
            type_val="prometheus", uid="${datasource}")).height(8).span(12))
    board = json.loads(json.dumps(builder.build(), cls=JSONEncoder, sort_keys=True))
    for i, panel in enumerate(board["panels"], start=1):  # unique ids, as Grafana saves them
        panel["id"] = i
        if panel.get("options") is None:
            panel.pop("options", None)
    return board


def _pretty(board: dict[str, Any]) -> str:
    """The dashboard as Grafana saves it (two-space indent, sorted keys): orjson writes the same
    bytes as ``json.dumps(indent=2, sort_keys=True)`` for these documents, 40 times faster
    (the gitops extra, like the SDK)."""
    import orjson

    return orjson.dumps(board, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode() + "\n"


def dashboard_json(model: str, **kw: Any) -> str:
    return _pretty(dashboard(model, **kw))


def panel_queries(board: dict[str, Any], rate_interval: str = "1m"
                  ) -> list[tuple[str, str, str]]:
    """(panel title, ref id, PromQL) of every panel target, with Grafana's variables put in
    as Grafana would (``$__rate_interval``)."""
    out = []
    for panel in board.get("panels", []):
        for target in panel.get("targets") or []:
            expr = target["expr"].replace("$__rate_interval", rate_interval)
            out.append((panel["title"], target.get("refId", ""), expr))
    return out


def configmap(model: str, namespace: str, board: dict[str, Any],
              labels: dict[str, str] | None = None, folder: str | None = None,
              env: str | None = None) -> dict[str, Any]:
    """The ConfigMap Grafana's sidecar (the grafana Helm chart's ``sidecar.dashboards``)
    picks up by its label ``grafana_dashboard: "1"``; the optional annotation
    ``grafana_folder`` names the folder (the chart's ``folderAnnotation``). Its file is
    ``<model>-<env>.json``: the sidecar writes every namespace's files into one folder."""
    key = f"{model}-{env}.json" if env else f"{model}.json"
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"{model}-dashboard", "namespace": namespace,
                     "labels": {**(labels or {}), **SIDECAR_LABEL},
                     **({"annotations": {"grafana_folder": folder}} if folder else {})},
        "data": {key: _pretty(board)},
    }


class DashboardKind:
    """``dashboard.yaml`` for :data:`gitops.render.KINDS`: the model's dashboard as the
    ConfigMap the Grafana sidecar loads, thresholds from the params (the SLO and the drift
    bounds of ``deploy.analysis``, the feature-drift alert threshold of ``alerts``). The sidecar
    must watch the model's namespace (the grafana chart's ``sidecar.dashboards.searchNamespace``,
    ``ALL`` or a list)."""

    filename = "dashboard.yaml"
    in_kustomization = True
    validated = True
    kinds = ("ConfigMap",)

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        release = context["release"]
        analysis = context["analysis"]
        alerts = context.get("alerts") or AlertParams()
        board = dashboard(release.model, slo_p99_seconds=analysis.latency_p99_max_seconds,
                          drift_psi_max=analysis.drift_psi_max,
                          feature_psi_max=alerts.feature_psi_warning,
                          namespace=context["env"].namespace, env=context.get("env_name"))
        return [configmap(release.model, context["env"].namespace, board,
                          labels=context.get("labels"), env=context.get("env_name"))]
