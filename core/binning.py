"""Numbers behind input drift: bins of a :class:`~modelops.drift.FeatureBaseline`, the PSI per
feature, data-quality masks, and a sliding window of binned rows.

One implementation for the serving runtime (:mod:`modelops.serve.monitor`) and the drift
report (:mod:`modelops.ci.drift_report`), so a dashboard and the report a person reads
compute the same statistic. The PSI of a feature is ``sum((o - e) * ln(o / e))`` over its
bins, ``e`` the training share of each bin, ``o`` the observed share, both floored at
:data:`PSI_EPSILON` (an empty bin gives a large but finite term).
"""

from __future__ import annotations

import math

import numpy as np

from modelops.drift import FeatureBaseline

PSI_EPSILON = 1e-4


def psi(expected: np.ndarray, counts: np.ndarray, epsilon: float = PSI_EPSILON) -> np.ndarray:
    """PSI per row: ``expected`` shares and observed ``counts``, both [features, bins] (pad
    unused bins with 0 in both). NaN where a row has no count."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        o = np.maximum(counts / total, epsilon)
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    out = ((o - e) * np.log(o / e)).sum(axis=1)
    out[total[:, 0] <= 0] = math.nan
    return out


class Binner:
    """Turns rows of a model input (batch first, the rest flattened) into bin indices per
    feature, and masks of data-quality problems.

    ``IGNORED`` (= the widest feature's bin count) marks a value left out of the bins
    (missing or non-finite). ``expected`` is [features, IGNORED] with zeros past each
    feature's own bins.
    """

    def __init__(self, baseline: FeatureBaseline):
        self.baseline = baseline
        self.count = baseline.count
        self.names = baseline.names
        self.binned = baseline.binned
        widths = [baseline.bins(j) for j in range(self.count)] if self.binned else [0]
        self.IGNORED = max(widths)
        self.widths = np.array(widths if self.binned else [0] * self.count)
        self.expected = np.zeros((self.count, max(self.IGNORED, 1)))
        if self.binned:
            for j, d in enumerate(baseline.expected):
                self.expected[j, :len(d)] = d
        self._edges = ([np.asarray(e, dtype=np.float64) if e is not None else None
                        for e in baseline.edges] if baseline.edges is not None else None)
        self._cats = [np.asarray(c, dtype=np.float64) if c is not None else None
                      for c in baseline.categories]
        self.low = (np.asarray(baseline.minimum, dtype=np.float64)
                    if baseline.minimum is not None else None)
        self.high = (np.asarray(baseline.maximum, dtype=np.float64)
                     if baseline.maximum is not None else None)
        mv = baseline.missing_value
        self.nan_is_missing = mv is not None and math.isnan(mv)
        self.missing_marker = mv if mv is not None and not math.isnan(mv) else None

    def rows(self, x: np.ndarray, dtype: type | None = np.float64) -> np.ndarray:
        """``x`` as [rows, features], as ``dtype`` (None: as it is); a ValueError when its
        width is not the baseline's."""
        x = np.asarray(x)
        rows = x.reshape(x.shape[0], -1) if x.ndim > 1 else x.reshape(-1, 1)
        if rows.shape[1] != self.count:
            raise ValueError(f"rows of {rows.shape[1]} values, the baseline has {self.count} "
                             "features")
        return rows if dtype is None else rows.astype(dtype, copy=False)

    def clean(self, rows: np.ndarray) -> bool:
        """True when :meth:`quality` would find nothing: every value finite, none equal to
        the missing marker, each within its feature's training range. Decided from each
        column's minimum and maximum (two passes, no masks), so the usual case costs a
        fraction of :meth:`quality`; False is only "look closer", never a finding. Features
        with categories always look closer."""
        if not len(rows):
            return True
        if any(c is not None for c in self._cats):
            return False
        lo, hi = rows.min(axis=0), rows.max(axis=0)  # NaN anywhere in a column -> NaN
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return False
        m = self.missing_marker
        if m is not None and ((lo <= m) & (m <= hi)).any():
            return False
        return self.low is None or bool((lo >= self.low).all() and (hi <= self.high).all())

    def quality(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks [rows, features]: missing, non-finite (NaN or inf, unless NaN means
        missing), outside the training range (numeric: below min or above max; categorical:
        an unknown code)."""
        finite = np.isfinite(rows)
        nan = np.isnan(rows)
        if self.nan_is_missing:
            missing = nan
            nonfinite = ~finite & ~nan
        else:
            missing = (rows == self.missing_marker if self.missing_marker is not None
                       else np.zeros(rows.shape, dtype=bool))
            nonfinite = ~finite
        present = finite & ~missing
        out = np.zeros(rows.shape, dtype=bool)
        if self.low is not None:
            with np.errstate(invalid="ignore"):
                out = present & ((rows < self.low) | (rows > self.high))
        for j, cats in enumerate(self._cats):
            if cats is not None:
                out[:, j] = present[:, j] & ~np.isin(rows[:, j], cats)
        return missing, nonfinite, out

    def bin(self, rows: np.ndarray, leave_out: np.ndarray | None = None) -> np.ndarray:
        """Bin index [rows, features] (int16); ``IGNORED`` where ``leave_out`` (missing or
        non-finite) is set."""
        out = np.empty(rows.shape, dtype=np.int16)
        for j in range(self.count):
            col = rows[:, j]
            cats = self._cats[j]
            if cats is not None:
                order = np.argsort(cats)
                pos = np.searchsorted(cats[order], col)
                pos = np.minimum(pos, len(cats) - 1)
                hit = cats[order][pos] == col
                out[:, j] = np.where(hit, order[pos], len(cats))
            else:
                out[:, j] = np.searchsorted(self._edges[j], col, side="right")
        if leave_out is not None:
            out[leave_out] = self.IGNORED
        return out

    def counts(self, bins: np.ndarray) -> np.ndarray:
        """Counts [features, IGNORED + 1] of binned rows (the last column: left out)."""
        width = self.IGNORED + 1
        flat = bins.astype(np.int64) + np.arange(self.count, dtype=np.int64) * width
        return np.bincount(flat.ravel(), minlength=self.count * width).reshape(
            self.count, width)

    def psi(self, counts: np.ndarray) -> np.ndarray:
        """PSI per feature of ``counts`` (as from :meth:`counts`), left-out values excluded."""
        return psi(self.expected, counts[:, :self.IGNORED])


class SlidingBins:
    """Bin counts of the last ``window`` rows (a ring of binned rows), for a per-feature PSI
    over a sliding window. Not thread-safe: its owner serialises calls."""

    def __init__(self, binner: Binner, window: int, min_samples: int):
        if window < 1 or not 1 <= min_samples <= window:
            raise ValueError("need 1 <= min_samples <= window")
        self.binner = binner
        self.window = window
        self.min_samples = min_samples
        # empty slots hold IGNORED, counted in the left-out column: the counts are always
        # those of the ring, so a row leaving the window is one subtraction
        self._ring = np.full((window, binner.count), binner.IGNORED, dtype=np.int16)
        self._counts = binner.counts(self._ring)
        self._pos = 0

    def add(self, bins: np.ndarray) -> None:
        n = len(bins)
        if n == 0:
            return
        if n >= self.window:
            self._ring[:] = bins[-self.window:]
            self._pos = 0
            self._counts = self.binner.counts(self._ring)
            return
        idx = (self._pos + np.arange(n)) % self.window
        self._counts -= self.binner.counts(self._ring[idx])
        self._ring[idx] = bins
        self._counts += self.binner.counts(bins)
        self._pos = (self._pos + n) % self.window

    @property
    def counts(self) -> np.ndarray:
        return self._counts

    def samples(self) -> np.ndarray:
        """Values in the window per feature (left-out ones not counted)."""
        return self._counts[:, :self.binner.IGNORED].sum(axis=1)

    def psi(self) -> np.ndarray:
        """PSI per feature; NaN where fewer than ``min_samples`` values are in the window."""
        out = self.binner.psi(self._counts)
        out[self.samples() < self.min_samples] = math.nan
        return out
