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
