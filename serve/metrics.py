"""Prometheus metrics of the serving runtime, and the prediction drift (PSI) they export.

Four metric families here, each labelled ``model``, ``version`` and ``role`` (stable|canary),
and those of input monitoring (:mod:`modelops.serve.monitor`: feature drift, data quality,
confidence); the rendered AnalysisTemplates and the production alert rules query these names:

- ``model_request_duration_seconds`` (histogram): time to answer each inference request, from
  its whole body received to the answer ready (decoding, queueing for a worker, inference,
  encoding; not the client's upload nor the download);
- ``model_requests_total{code}``: inference requests by HTTP status code;
- ``model_predictions_total{class}``: predicted classes (argmax of the output);
- ``model_prediction_psi`` (gauge): population stability index of the predicted-class
  distribution over the last ``window`` predictions against the baseline's
  ``class_distribution``. It is NaN until ``min_samples`` predictions are in the window (or
  without a baseline), so an analysis sees "no evidence yet" rather than a fake zero.

One registry (:attr:`ServingMetrics.families`) holds every family; ``/metrics`` exports it with
the current ``role`` added to each sample. A new family is one call of
:meth:`ServingMetrics.family` (it gets the ``model``/``version`` labels and the registry), so
input monitoring (:mod:`modelops.serve.monitor`: feature drift, data quality, confidence)
adds its families that way, without touching the transport.
The hot path is one counter, one histogram and a queue append of the answer's class scores;
the predicted classes are counted from that queue in bulk (:meth:`ServingMetrics.settle`),
before every export, so a scrape always sees every answered request. ``bench/serve.py``
measures both.
"""

from __future__ import annotations

import math
import sys
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from modelops import contracts
from modelops.drift import read_baseline
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
    data = read_baseline(p)
    dist = data.get("class_distribution")
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
    """The last ``window`` predicted classes; thread-safe; PSI against a baseline on demand.

    The window is a queue of the requests' class arrays and their per-class counts: adding a
    batch is a few numpy calls whatever its size, and the oldest classes leave whole arrays at
    a time (the last one cut), so the counts are always exactly those of the last ``window``
    valid classes (a unit test holds it to a plain sliding window)."""

    def __init__(self, baseline: Sequence[float] | None, window: int, min_samples: int):
        if window < 1 or min_samples < 1 or min_samples > window:
            raise ValueError("need 1 <= min_samples <= window")
        self.baseline = list(baseline) if baseline is not None else None
        self.window = window
        self.min_samples = min_samples
        self.classes = len(self.baseline) if self.baseline else 0
        self._counts = np.zeros(self.classes, dtype=np.int64)
        self._recent: deque[np.ndarray] = deque()
        self._total = 0
        self._lock = threading.Lock()

    def add(self, classes: Sequence[int] | np.ndarray, counts: np.ndarray | None = None) -> None:
        """Add a batch of predicted classes; classes outside the baseline's are left out.
        ``counts``: their ``np.bincount`` (minlength ``classes``), when the caller has it
        and every class is valid."""
        if self.baseline is None:
            return
        n = self.classes
        arr = np.asarray(classes, dtype=np.int64).ravel()
        if counts is None:
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                arr = arr[(arr >= 0) & (arr < n)]
            if not arr.size:
                return
            counts = np.bincount(arr, minlength=n)
        elif not arr.size:
            return
        with self._lock:
            self._recent.append(arr)
            self._counts += counts
            self._total += arr.size
            excess = self._total - self.window
            while excess > 0:
                old = self._recent[0]
                if old.size <= excess:
                    self._recent.popleft()
                    self._counts -= np.bincount(old, minlength=n)
                    taken = old.size
                else:
                    self._counts -= np.bincount(old[:excess], minlength=n)
                    self._recent[0] = old[excess:]
                    taken = excess
                self._total -= taken
                excess -= taken

    def value(self) -> float:
        if self.baseline is None:
            return math.nan
        with self._lock:
            if self._total < self.min_samples:
                return math.nan
            counts = self._counts.tolist()
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

    BASE_LABELS = ("model", "version")
    SETTLE_EVERY = 256  # queued answers counted on the request path at the latest

    def __init__(self, model: str, version: str, role: str | RoleSource, drift: DriftWindow):
        self.families = CollectorRegistry(auto_describe=True)
        labels = {"model": model, "version": version}
        self._labels = labels
        self.duration = self.family(
            Histogram, contracts.REQUEST_DURATION,
            "Time to answer inference requests, from the whole body received to the answer "
            "ready, in seconds.", buckets=DURATION_BUCKETS).labels(**labels)
        self._requests = self.family(Counter, contracts.REQUESTS,
                                     "Inference requests by HTTP status code.", ("code",))
        self._predictions = self.family(Counter, contracts.PREDICTIONS,
                                        "Predicted classes (argmax of the model output).",
                                        ("class",))
        gauge = self.family(
            Gauge, contracts.PREDICTION_PSI,
            "Population stability index of recent predicted classes against the training "
            "baseline (NaN until enough predictions are in the window).")
        gauge.labels(**labels).set_function(drift.value)
        self.role = role if isinstance(role, RoleSource) else RoleSource(role)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_WithRole(self.families, self.role))
        self.drift = drift
        self._code_children: dict[int, Counter] = {}
        n = len(drift.baseline) if drift.baseline else 0
        # pre-create children so every class and the 200 code exist from the first scrape
        self._class_children = [self._predictions.labels(**labels, **{"class": str(i)})
                                for i in range(n)]
        self._answered: deque[np.ndarray] = deque()  # class scores not yet counted
        self._settle_lock = threading.Lock()
        self._before_export: list = [self.settle]
        self.request(200, 0)

    def on_collect(self, hook) -> None:
        """Call ``hook()`` before each export (work kept off the request path, such as
        :class:`modelops.serve.monitor.InputMonitor`'s, is brought up to date then)."""
        self._before_export.append(hook)

    def family(self, kind: type[MetricWrapperBase], name: str, documentation: str,
               labels: Sequence[str] = (), **kwargs) -> MetricWrapperBase:
        """A new metric family in this runtime's registry, labelled ``model``, ``version``
        (filled by :meth:`labels`), ``labels`` and, on export, ``role``."""
        return kind(name, documentation, (*self.BASE_LABELS, *labels), registry=self.families,
                    **kwargs)

    def labels(self, **extra: str) -> dict[str, str]:
        """The ``model``/``version`` labels, plus ``extra``, for ``family(...).labels(...)``."""
        return {**self._labels, **extra}

    def request(self, code: int, amount: int = 1) -> None:
        child = self._code_children.get(code)
        if child is None:
            child = self._requests.labels(**self._labels, code=str(code))
            self._code_children[code] = child
        if amount:
            child.inc(amount)

    def answered(self, scores: np.ndarray) -> None:
        """Queue an answered request's class scores [rows, classes] for the prediction
        counters and the drift window (a ``deque.append`` on the request path). The argmax
        and the counting happen in bulk, in order, in :meth:`settle`: before each export, on
        the input monitor's thread, and here once ``SETTLE_EVERY`` requests are waiting, so
        the queue stays short with no thread at all. Scores of another shape are not
        predictions of classes and are not queued."""
        if scores.ndim != 2 or scores.shape[1] < 2:
            return
        queue = self._answered
        queue.append(scores)
        if len(queue) >= self.SETTLE_EVERY:
            self.settle()

    def settle(self) -> None:
        """Count the predicted classes of every queued answer (thread-safe, in order)."""
        with self._settle_lock:
            queue = self._answered
            items = [queue.popleft() for _ in range(len(queue))]
            if not items:
                return
            try:
                classes = np.argmax(np.concatenate(items), axis=1)
            except ValueError:  # answers with different class counts: one at a time
                for scores in items:
                    self.predictions(np.argmax(scores, axis=1))
                return
            self.predictions(classes)

    def predictions(self, classes: Sequence[int] | np.ndarray) -> None:
        """Count a batch of predicted classes: one ``bincount``, one increment per class
        present (the request path queues its answers for :meth:`settle`, which calls this
        once for the whole queue)."""
        arr = np.asarray(classes, dtype=np.int64).ravel()
        if arr.size == 0:
            return
        if arr.min() < 0:  # not argmax classes: count them one by one, as given
            for c in arr.tolist():
                self._predictions.labels(**self._labels, **{"class": str(c)}).inc()
            self.drift.add(arr)
            return
        counts = np.bincount(arr, minlength=self.drift.classes)
        children = self._class_children
        for c in np.flatnonzero(counts).tolist():
            while c >= len(children):
                children.append(self._predictions.labels(
                    **self._labels, **{"class": str(len(children))}))
            children[c].inc(int(counts[c]))
        if len(counts) == self.drift.classes:  # every class is one of the baseline's
            self.drift.add(arr, counts)
        else:
            self.drift.add(arr)

    def exposition(self) -> bytes:
        for hook in self._before_export:
            try:
                hook()
            except Exception as exc:  # a bug there must not take /metrics down with it
                print(f"serve: updating metrics failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
        return prometheus_client.generate_latest(self.registry)
