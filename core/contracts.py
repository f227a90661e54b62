"""Names shared by the serving runtime and what watches it: change a name here and both sides
follow in the same change.

The runtime (:mod:`modelops.serve.metrics`) exports these families; the rendered
AnalysisTemplates (:mod:`modelops.gitops.render`) and the PrometheusRules
(:mod:`modelops.gitops.alerts`) query them. Every series carries the labels in
:data:`SERIES_LABELS`.
"""

from __future__ import annotations

# histogram: wall time of each inference request, in seconds
REQUEST_DURATION = "model_request_duration_seconds"
# counter (exported with the _total suffix), labelled code: inference requests by HTTP status
REQUESTS = "model_requests"
REQUESTS_TOTAL = f"{REQUESTS}_total"
# counter, labelled class: predicted classes (argmax of the output)
PREDICTIONS = "model_predictions"
PREDICTIONS_TOTAL = f"{PREDICTIONS}_total"
# gauge: population stability index of recent predicted classes against the training baseline
PREDICTION_PSI = "model_prediction_psi"

# labels on every series: which model, which release, stable or canary pod
SERIES_LABELS = ("model", "version", "role")
ROLES = ("stable", "canary")

# Input monitoring (modelops.serve.monitor), computed off the request path. Every feature-level
# series carries a ``feature`` label; at most ``--feature-series-max`` feature values per family
# and pod (the cardinality rule in modelops.serve.monitor).
# gauge, labelled feature: PSI of the feature's recent values against its training bins
FEATURE_PSI = "model_feature_psi"
# gauge: the largest FEATURE_PSI over every monitored feature (not only those exported)
FEATURE_PSI_MAX = "model_feature_psi_max"
# gauge: how many features have a PSI at or above the runtime's --feature-psi-threshold
FEATURES_DRIFTED = "model_features_drifted"
# gauge: how many features the runtime monitors (the baseline's), to read the two above against
FEATURES_MONITORED = "model_features_monitored"
# counters, labelled feature: values that are missing (the baseline's missing marker), NaN or
# infinite, or outside the training range [min, max]
FEATURE_MISSING = "model_feature_missing"
FEATURE_MISSING_TOTAL = f"{FEATURE_MISSING}_total"
FEATURE_NONFINITE = "model_feature_nonfinite"
FEATURE_NONFINITE_TOTAL = f"{FEATURE_NONFINITE}_total"
FEATURE_OUT_OF_RANGE = "model_feature_out_of_range"
FEATURE_OUT_OF_RANGE_TOTAL = f"{FEATURE_OUT_OF_RANGE}_total"
# counter: input rows monitored (one value per feature each), the denominator of the three above
INPUT_ROWS = "model_input_rows"
INPUT_ROWS_TOTAL = f"{INPUT_ROWS}_total"
# counter, labelled reason (REJECT_REASONS): inference requests refused before the model ran
INPUT_REJECTED = "model_input_rejected"
INPUT_REJECTED_TOTAL = f"{INPUT_REJECTED}_total"
REJECT_REASONS = ("malformed", "schema", "nonfinite", "limit", "model")
# histogram: the top-class probability of each prediction (softmax of logits when the model
# outputs logits)
PREDICTION_CONFIDENCE = "model_prediction_confidence"
# the ``feature`` value that stands for every feature beyond the cardinality cap (counters)
OTHER_FEATURES = "_other"
# counter: inference requests left out of input monitoring because it fell behind (never
# blocks the request path; a non-zero rate means the pod needs more CPU)
MONITOR_DROPPED = "model_input_monitor_dropped"
MONITOR_DROPPED_TOTAL = f"{MONITOR_DROPPED}_total"

# The target label Prometheus' Kubernetes discovery gives every pod it scrapes (the PodMonitor
# the renderer writes, and the ``prometheus.io/scrape`` annotations' kubernetes-pods job):
# staging and production run the same model and versions in two namespaces of one cluster, so
# every query of one environment's rules, analysis and dashboard selects its namespace.
NAMESPACE_LABEL = "namespace"


def selector(model: str, namespace: str | None = None, *matchers: str) -> str:
    """The PromQL label matchers of ``model``'s series (in ``namespace`` when given), with
    further ``matchers`` (``'code!~"2.."'``): ``{namespace="ml-production",model="digits"}``.
    Both names are DNS-1123 labels (checked by the settings), so they need no escaping."""
    parts = ([f'{NAMESPACE_LABEL}="{namespace}"'] if namespace else []) + [f'model="{model}"']
    return "{" + ",".join([*parts, *matchers]) + "}"
