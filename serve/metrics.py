"""Prometheus metrics of the serving runtime, and the prediction drift (PSI) they export.

Exactly four metric families, each labelled ``model``, ``version`` and ``role`` (stable|canary);
the rendered AnalysisTemplates and the production alert rules query these names:

- ``model_request_duration_seconds`` (histogram): wall time of each inference request;
- ``model_requests_total{code}``: inference requests by HTTP status code;
- ``model_predictions_total{class}``: predicted classes (argmax of the output);
- ``model_prediction_psi`` (gauge): population stability index of the predicted-class
  distribution over the last ``window`` predictions against the baseline's
  ``class_distribution``. It is NaN until ``min_samples`` predictions are in the window (or
  without a baseline), so an analysis sees "no evidence yet" rather than a fake zero.
"""

from __future__ import annotations

import json
import math
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from modelops import contracts
from modelops.errors import InputError

prometheus_client.disable_created_metrics()

DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    5.0)
PSI_EPSILON = 1e-4  # floor for empty bins, so one unseen class gives a large but finite PSI


def psi(expected: Sequence[float], observed_counts: Sequence[int],
        epsilon: float = PSI_EPSILON) -> float:
    """Population stability index sum((o - e) * ln(o / e)) over classes, bins floored at epsilon.

    ``expected`` is a probability vector; ``observed_counts`` are counts of the same classes.
    """
    total = sum(observed_counts)
    if total <= 0:
        return math.nan
    value = 0.0
    for e, n in zip(expected, observed_counts, strict=True):
        e = max(float(e), epsilon)
        o = max(n / total, epsilon)
        value += (o - e) * math.log(o / e)
    return value


def load_baseline(path: str | Path, n_classes: int | None = None) -> list[float]:
    """Read ``class_distribution`` from a drift baseline JSON (``metrics/drift_baseline.json``)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{p}: drift baseline not found",
                         hint="run `dvc repro` (it writes metrics/drift_baseline.json) "
                              "or pass --drift-baseline") from exc
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: not a readable JSON drift baseline ({exc})") from exc
    dist = data.get("class_distribution") if isinstance(data, dict) else None
    if (not isinstance(dist, list) or not dist
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0
                       for x in dist)):
        raise InputError(f"{p}: class_distribution: must be a list of non-negative numbers "
                         f"(got {str(dist)[:80]!r})",
                         hint="regenerate the baseline with `dvc repro`")
    total = float(sum(dist))
    if not math.isclose(total, 1.0, abs_tol=1e-3):
        raise InputError(f"{p}: class_distribution: must sum to 1 (got sum {total:.4f})")
    if n_classes is not None and len(dist) != n_classes:
        raise InputError(f"{p}: class_distribution: has {len(dist)} classes but the model "
                         f"outputs {n_classes}", hint="use the baseline made with this model")
    return [float(x) for x in dist]


class DriftWindow:
    """The last ``window`` predicted classes; thread-safe; PSI against a baseline on demand."""

    def __init__(self, baseline: Sequence[float] | None, window: int, min_samples: int):
        if window < 1 or min_samples < 1 or min_samples > window:
            raise ValueError("need 1 <= min_samples <= window")
        self.baseline = list(baseline) if baseline is not None else None
        self.window = window
        self.min_samples = min_samples
        n = len(self.baseline) if self.baseline else 0
        self._counts = [0] * n
        self._recent: deque[int] = deque()
        self._lock = threading.Lock()

    def add(self, classes: Sequence[int]) -> None:
        if self.baseline is None:
            return
        n = len(self._counts)
        with self._lock:
            for c in classes:
                if not 0 <= c < n:
                    continue
                self._recent.append(c)
                self._counts[c] += 1
                if len(self._recent) > self.window:
                    self._counts[self._recent.popleft()] -= 1

    def value(self) -> float:
        if self.baseline is None:
            return math.nan
        with self._lock:
            if len(self._recent) < self.min_samples:
                return math.nan
            counts = list(self._counts)
        return psi(self.baseline, counts)


class RoleSource:
    """The ``role`` label: fixed, or read from a downward-API labels file on every scrape.

    Argo Rollouts relabels pods on promotion (canary -> stable) through ``canaryMetadata`` /
    ``stableMetadata``; the kubelet rewrites the mounted labels file, so the label follows
    without a restart. The file holds lines ``key="value"``; ``label`` names the key.
    """

    def __init__(self, default: str, path: str | Path | None = None,
                 label: str = "modelops.io/role"):
        self.default = default
        self.path = Path(path) if path else None
        self.label = label
        self._cache: tuple[float, str] | None = None

    def __call__(self) -> str:
        if self.path is None:
            return self.default
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return self.default
        if self._cache and self._cache[0] == mtime:
            return self._cache[1]
        role = self.default
        try:
            for line in self.path.read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == self.label:
                    role = value.strip().strip('"') or self.default
        except OSError:
            pass
        self._cache = (mtime, role)
        return role


class _WithRole:
    """Collector exporting the inner registry's samples with the current ``role`` label."""

    def __init__(self, inner: CollectorRegistry, role: RoleSource):
        self.inner = inner
        self.role = role

    def collect(self):
        from prometheus_client.metrics_core import Metric

        role = self.role()
        for family in self.inner.collect():
            out = Metric(family.name, family.documentation, family.type, family.unit)
            for s in family.samples:
                labels = dict(s.labels)
                labels["role"] = role
                out.add_sample(s.name, labels, s.value, s.timestamp, s.exemplar)
            yield out


class ServingMetrics:
    """The runtime's metric families in their own registry (nothing else is exported)."""

    def __init__(self, model: str, version: str, role: str | RoleSource, drift: DriftWindow):
        inner = CollectorRegistry(auto_describe=True)
        base = ("model", "version")
        labels = {"model": model, "version": version}
        self.duration = Histogram(
            contracts.REQUEST_DURATION, "Wall time of inference requests, in seconds.",
            base, buckets=DURATION_BUCKETS, registry=inner).labels(**labels)
        self._requests = Counter(
            contracts.REQUESTS, "Inference requests by HTTP status code.",
            (*base, "code"), registry=inner)
        self._predictions = Counter(
            contracts.PREDICTIONS, "Predicted classes (argmax of the model output).",
            (*base, "class"), registry=inner)
        gauge = Gauge(
            contracts.PREDICTION_PSI,
            "Population stability index of recent predicted classes against the training "
            "baseline (NaN until enough predictions are in the window).",
            base, registry=inner)
        gauge.labels(**labels).set_function(drift.value)
        self.role = role if isinstance(role, RoleSource) else RoleSource(role)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_WithRole(inner, self.role))
        self.drift = drift
        self._labels = labels
        self._code_children: dict[int, Counter] = {}
        n = len(drift.baseline) if drift.baseline else 0
        # pre-create children so every class and the 200 code exist from the first scrape
        self._class_children = [self._predictions.labels(**labels, **{"class": str(i)})
                                for i in range(n)]
        self.request(200, 0)

    def request(self, code: int, amount: int = 1) -> None:
        child = self._code_children.get(code)
        if child is None:
            child = self._requests.labels(**self._labels, code=str(code))
            self._code_children[code] = child
        if amount:
            child.inc(amount)

    def predictions(self, classes: Sequence[int]) -> None:
        children = self._class_children
        for c in classes:
            if 0 <= c < len(children):
                children[c].inc()
            else:
                self._predictions.labels(**self._labels, **{"class": str(c)}).inc()
        self.drift.add(classes)

    def exposition(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)
