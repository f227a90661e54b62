"""Input monitoring of the serving runtime: per-feature drift, data quality and prediction
confidence, computed off the request path.

The request path only appends ``(inputs, scores)`` of each answered request to a queue (a
``deque.append``, well under a microsecond: ``bench/serve.py`` measures it). A background
thread (every ``interval``, 0.1 s: small chunks, so it never holds the interpreter for long),
and every ``/metrics`` scrape before it exports, drains the queue and does the work in bulk,
vectorised over the whole chunk: counts the data-quality problems of every row (a column
minimum and maximum settle the usual clean chunk), observes the confidence histogram, and
keeps the last ``window`` rows of the monitored input. Those are binned against the training
baseline (:mod:`modelops.binning`) into a ring per feature, and the PSI gauges set, when
someone looks: at each scrape. Rows that leave the window before then are never binned, and
the gauges are the same as if every row had been. When the queue holds ``max_pending`` requests the
newest are left out and counted (``model_input_monitor_dropped_total``): monitoring never
blocks or slows an answer.

Families (each labelled ``model``, ``version`` and, on export, ``role``):

- ``model_feature_psi{feature}`` (gauge): PSI of the feature's values among the last
  ``window`` rows against its training bins; NaN until ``min_samples`` values are in;
- ``model_feature_psi_max``, ``model_features_drifted`` (PSI >= ``threshold``) and
  ``model_features_monitored`` (gauges) over *every* feature;
- ``model_feature_missing_total{feature}``, ``model_feature_nonfinite_total{feature}``,
  ``model_feature_out_of_range_total{feature}`` (counters) and ``model_input_rows_total``:
  values equal to the baseline's missing marker; NaN or infinity (requests refused by the NaN
  policy included); outside the training ``[min, max]`` (or an unknown category);
- ``model_input_rejected_total{reason}``: requests refused before the model ran, by reason
  (``malformed``, ``schema``, ``nonfinite``, ``limit``, ``model``);
- ``model_prediction_confidence`` (histogram): the top-class probability of each prediction
  (the first output's row, through a softmax unless it already is a probability vector).

**Cardinality** (``series_max``, ``--feature-series-max``, default 64): a model with up to
``series_max`` features exports every feature. Beyond that, ``model_feature_psi`` carries the
``series_max`` features with the highest PSI at each scrape (the most drifted always show; the
summary gauges still cover every feature), and the data-quality counters give the first
``series_max`` features of the baseline their own ``feature`` value and count the others
together as ``feature="_other"`` (counters must not come and go). So a pod exports at most
``4 * series_max + 4`` feature series, whatever the model.
"""

from __future__ import annotations

import math
import sys
import threading
from collections import deque
from collections.abc import Sequence

import numpy as np
from prometheus_client import Counter, Gauge

from modelops import contracts
from modelops.binning import Binner, SlidingBins
from modelops.drift import FeatureBaseline
from modelops.errors import InputError
from modelops.serve.metrics import ServingMetrics

CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
SCORES = ("auto", "logits", "probabilities")


def top_probability(scores: np.ndarray, kind: str = "auto") -> np.ndarray:
    """Top-class probability per row of class scores [rows, classes]; rows that are not
    finite are left out. ``auto``: rows that are already probability vectors (non-negative,
    summing to 1) are taken as they are, others go through a softmax."""
    s = np.asarray(scores, dtype=np.float64)
    s = s[np.isfinite(s).all(axis=1)]
    if not len(s):
        return np.empty(0)
    if kind == "probabilities" or (kind == "auto" and (s >= 0).all()
                                   and np.allclose(s.sum(axis=1), 1.0, atol=1e-3)):
        return s.max(axis=1)
    z = np.exp(s - s.max(axis=1, keepdims=True))
    return 1.0 / z.sum(axis=1)  # the top class's exp is 1 after the shift


class BulkHistogram:
    """A Prometheus histogram observed a whole array at a time (one ``searchsorted``, not a
    call per value): a custom collector, exported as a plain histogram family."""

    def __init__(self, name: str, documentation: str, labels: dict[str, str],
                 buckets: Sequence[float]):
        self.name, self.documentation = name, documentation
        self.labels = labels
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # the last: +Inf only
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        v = np.asarray(values, dtype=np.float64)
        if not v.size:
            return
        idx = np.searchsorted(self.bounds, v, side="left")  # le: value <= bound
        add = np.bincount(idx, minlength=len(self._counts))
        with self._lock:
            self._counts += add
            self._sum += float(v.sum())

    def collect(self):
        from prometheus_client.core import HistogramMetricFamily

        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        family = HistogramMetricFamily(self.name, self.documentation,
                                       labels=list(self.labels))
        buckets = [(repr(float(b)) if b != int(b) else f"{b:.1f}", c)
                   for b, c in zip(self.bounds.tolist(), cumulative)]
        family.add_metric(list(self.labels.values()), [*buckets, ("+Inf", cumulative[-1])],
                          total)
        yield family

    def describe(self):
        return list(self.collect())


class InputMonitor:
    """The monitored families of one runtime, fed by :meth:`observe` (request path) and
    computed in :meth:`flush` (background thread and scrapes)."""

    def __init__(self, metrics: ServingMetrics, features: FeatureBaseline | None, *,
                 window: int = 1000, min_samples: int = 200, threshold: float = 0.2,
                 series_max: int = 64, scores: str = "auto", max_pending: int = 4096,
                 interval: float = 0.1):
        if series_max < 1 or max_pending < 1 or not threshold > 0 or scores not in SCORES:
            raise ValueError("bad monitor settings")
        self.metrics = metrics
        self.features = features
        self.threshold = threshold
        self.series_max = series_max
        self.scores = scores
        self.max_pending = max_pending
        self.interval = interval
        self.input_name: str | None = features.input if features is not None else None
        self._pending: deque = deque()
        self._unbinned: deque = deque()  # (rows, left-out mask or None) not yet in the window
        self._unbinned_rows = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        labels = metrics.labels()
        self._confidence = BulkHistogram(contracts.PREDICTION_CONFIDENCE,
                                         "Top-class probability of each prediction.",
                                         labels, CONFIDENCE_BUCKETS)
        metrics.families.register(self._confidence)
        rejected = metrics.family(Counter, contracts.INPUT_REJECTED,
                                  "Inference requests refused before the model ran, by "
                                  "reason.", ("reason",))
        self._rejected = {r: rejected.labels(**labels, reason=r)
                          for r in contracts.REJECT_REASONS}
        self._dropped = metrics.family(
            Counter, contracts.MONITOR_DROPPED,
            "Inference requests left out of input monitoring because it fell behind."
        ).labels(**labels)
        self.binner = Binner(features) if features is not None else None
        self.window = (SlidingBins(self.binner, window, min_samples)
                       if self.binner is not None and self.binner.binned else None)
        metrics.on_collect(self.flush)
        if self.binner is None:
            return
        n = self.binner.count
        names = self.binner.names
        own = min(n, series_max)
        self._quality_labels = [names[j] if j < own else contracts.OTHER_FEATURES
                                for j in range(n)]
        shown = [*names[:own], *([contracts.OTHER_FEATURES] if n > own else [])]
        self._rows = metrics.family(Counter, contracts.INPUT_ROWS,
                                    "Input rows monitored (one value per feature each)."
                                    ).labels(**labels)
        self._quality = {}
        for key, name, doc in (
                ("missing", contracts.FEATURE_MISSING,
                 "Input values equal to the baseline's missing marker, per feature."),
                ("nonfinite", contracts.FEATURE_NONFINITE,
                 "Input values that are NaN or infinite, per feature (refused ones too)."),
                ("out_of_range", contracts.FEATURE_OUT_OF_RANGE,
                 "Input values outside the training range (or an unknown category), per "
                 "feature.")):
            family = metrics.family(Counter, name, doc, ("feature",))
            self._quality[key] = {f: family.labels(**labels, feature=f) for f in shown}
        self._psi = metrics.family(Gauge, contracts.FEATURE_PSI,
                                   "PSI of each feature's recent values against its training "
                                   "bins (NaN until enough values).", ("feature",))
        self._psi_shown: dict[str, Gauge] = {}
        self._psi_max = metrics.family(Gauge, contracts.FEATURE_PSI_MAX,
                                       "The largest feature PSI over every monitored "
                                       "feature.").labels(**labels)
        self._drifted = metrics.family(Gauge, contracts.FEATURES_DRIFTED,
                                       f"Features whose PSI is at or above {threshold:g}."
                                       ).labels(**labels)
        monitored = metrics.family(Gauge, contracts.FEATURES_MONITORED,
                                   "Features the runtime monitors (the baseline's)."
                                   ).labels(**labels)
        monitored.set(n if self.window is not None else 0)
        self._publish(self.window.psi() if self.window is not None else None)

    # ------------------------------------------------------------------ set-up
    def bind(self, inputs: Sequence) -> None:
        """Pick the monitored input among the model's (``inputs``: TensorSpecs) and check its
        row width against the baseline; an :class:`InputError` when they cannot match."""
        if self.binner is None:
            return
        names = [s.name for s in inputs]
        chosen = self.features.input
        if chosen is None:
            if len(names) != 1:
                raise InputError(f"the drift baseline does not say which of the model's inputs "
                                 f"{names} its features describe",
                                 hint="set features.input in the baseline")
            chosen = names[0]
        spec = next((s for s in inputs if s.name == chosen), None)
        if spec is None:
            raise InputError(f"features.input {chosen!r} of the drift baseline is not "
                             f"an input of the model ({', '.join(names)})",
                             hint="use the baseline made with this model")
        dims = spec.shape[1:]
        if all(d > 0 for d in dims) and math.prod(dims) != self.binner.count:
            raise InputError(f"the drift baseline describes {self.binner.count} features but "
                             f"rows of input {spec.name!r} {list(spec.shape)} hold "
                             f"{math.prod(dims)} values",
                             hint="use the baseline made with this model")
        self.input_name = chosen

    def start(self) -> InputMonitor:
        self._thread = threading.Thread(target=self._run, daemon=True, name="input-monitor")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.metrics.settle()  # the prediction counters' queue, off the request path
                self.flush(publish=False)
            except Exception as exc:  # a bug here must not stop monitoring for good
                print(f"serve: input monitoring failed: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ request path
    def observe(self, inputs: np.ndarray | None, scores: np.ndarray | None) -> None:
        """Queue one answered request's monitored input and class scores (cheap)."""
        if len(self._pending) >= self.max_pending:
            self._dropped.inc()
            return
        self._pending.append((inputs, scores, False))

    def rejected(self, reason: str, input_name: str | None = None,
                 array: np.ndarray | None = None) -> None:
        """Count a refused request; a refused monitored input still feeds the data-quality
        counters (never the drift window)."""
        child = self._rejected.get(reason)
        if child is not None:
            child.inc()
        if (array is not None and self.binner is not None and input_name == self.input_name
                and len(self._pending) < self.max_pending):
            self._pending.append((array, None, True))

    # ------------------------------------------------------------------ off the path
    def flush(self, publish: bool = True) -> None:
        """Take everything queued and update the families (thread-safe). The counters and the
        confidence histogram take every request; the rows that may still be in the drift
        window wait, unbinned, until ``publish`` (each scrape, and a direct call), which bins
        them and sets the PSI gauges. Rows replaced before anyone looks are never binned:
        the window, and so each gauge, is the same as if every chunk had been binned."""
        with self._lock:
            pending = self._pending
            items = [pending.popleft() for _ in range(len(pending))]
            if items:
                self._take(items)
            if publish and self._unbinned:
                rows = np.concatenate([r for r, _ in self._unbinned])
                leave = (None if all(m is None for _, m in self._unbinned) else np.concatenate(
                    [m if m is not None else np.zeros(r.shape, dtype=bool)
                     for r, m in self._unbinned]))
                self._unbinned.clear()
                self._unbinned_rows = 0
                self.window.add(self.binner.bin(rows, leave))
                self._publish(self.window.psi())

    def _take(self, items: list) -> None:
        scores = [s for _, s, _ in items if s is not None and s.ndim == 2 and s.shape[1] > 1]
        if scores:
            self._confidence.observe_many(top_probability(np.concatenate(scores), self.scores))
        if self.binner is None:
            return
        served = self._rows_of([x for x, _, r in items if x is not None and not r])
        refused = self._rows_of([x for x, _, r in items if x is not None and r])
        if not len(served) and not len(refused):
            return
        rows = np.concatenate([served, refused]) if len(refused) else served
        self._rows.inc(len(rows))
        leave = None  # values left out of the bins: missing or non-finite
        if not self.binner.clean(rows):  # the usual case needs no masks
            missing, nonfinite, out = self.binner.quality(rows)
            for key, mask in (("missing", missing), ("nonfinite", nonfinite),
                              ("out_of_range", out)):
                if not mask.any():  # a column sum of every row costs more
                    continue
                per = mask.sum(axis=0)
                for j in np.flatnonzero(per).tolist():
                    self._quality[key][self._quality_labels[j]].inc(int(per[j]))
            leave = (missing | nonfinite)[:len(served)]
        if self.window is None or not len(served):
            return
        keep = self.window.window
        first = max(0, len(served) - keep)  # older rows would leave the window at once
        self._unbinned.append((served[first:], leave[first:] if leave is not None else None))
        self._unbinned_rows += len(served) - first
        while self._unbinned_rows - len(self._unbinned[0][0]) >= keep:
            self._unbinned_rows -= len(self._unbinned.popleft()[0])

    def _rows_of(self, arrays: list[np.ndarray]) -> np.ndarray:
        """The rows of many requests' inputs as one [rows, features] array, in the inputs'
        own dtype (one concatenation when their shapes agree, as they do for one model)."""
        if not arrays:
            return np.empty((0, self.binner.count))
        try:
            return self.binner.rows(np.concatenate(arrays), dtype=None)
        except ValueError:  # shapes differ, or one the baseline does not describe
            out = []
            for x in arrays:
                try:
                    out.append(self.binner.rows(x, dtype=None))
                except ValueError:
                    continue
            return np.concatenate(out) if out else np.empty((0, self.binner.count))

    def _publish(self, psi: np.ndarray | None) -> None:
        if psi is None:
            return
        known = ~np.isnan(psi)
        self._psi_max.set(float(psi[known].max()) if known.any() else math.nan)
        self._drifted.set(int((psi[known] >= self.threshold).sum()) if known.any()
                          else math.nan)
        names = self.binner.names
        if len(names) <= self.series_max:
            chosen = range(len(names))
        else:  # the most drifted first; NaN last
            chosen = np.argsort(np.where(known, -psi, np.inf), kind="stable")[
                : self.series_max].tolist()
        labels = self.metrics.labels()
        keep = {}
        for j in chosen:
            name = names[j]
            child = self._psi_shown.get(name) or self._psi.labels(**labels, feature=name)
            child.set(float(psi[j]))
            keep[name] = child
        for name in self._psi_shown.keys() - keep.keys():
            self._psi.remove(labels["model"], labels["version"], name)
        self._psi_shown = keep
