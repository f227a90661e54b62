"""The drift baseline: what a model's pipeline writes about its training data, and what the
serving runtime, the drift report and the release read (``metrics/drift_baseline.json``).

Pure Python (no numpy), so the release can check a baseline without the serving extras. The
numeric work (binning, PSI, the sliding window) is :mod:`modelops.binning`.

The file is one JSON object::

    {"model": "breast-cancer-gbt",            # the model it was made with
     "classes": ["malignant", "benign"],      # optional: class names
     "class_distribution": [0.37, 0.63],      # predicted-class shares (prediction drift)
     "features": {                            # optional: input drift and data quality
       "input": "features",                   # optional: the input tensor (default: the only one)
       "names": ["mean radius", ...],         # optional: one per feature of a flattened row
       "min": [...], "max": [...],            # the training range (data quality)
       "mean": [...], "std": [...],           # informative
       "quantile_edges": [[...], ...],        # per feature: increasing inner bin edges
       "bin_distribution": [[...], ...],      # per feature: training share of each bin
       "categories": [null, [0, 1, 2], ...],  # optional: categorical features' codes
       "missing_value": "NaN",                # optional: the marker of a missing value
       "columns": ["p0", ...],                # optional: each feature's column in raw data
       "scale": [0.0625, ...], "offset": [...]}}  # optional: input = raw * scale + offset

Feature ``j`` is column ``j`` of the input tensor with its batch axis first and every other
axis flattened, row-major (pixel ``[r, c]`` of an 8x8 image is feature ``8 * r + c``).
Binning (the same everywhere, as ``numpy.digitize``): bin ``k`` of a numeric feature holds
``edges[k-1] <= value < edges[k]``, so ``len(edges) + 1`` bins; a categorical feature has one
bin per code in ``categories`` and a last one for any other value. ``missing_value``: a number,
or ``"NaN"`` when NaN means missing (then NaN is counted as missing, not as non-finite);
missing and non-finite values are left out of the bins.

``columns``, ``scale`` and ``offset`` describe the raw data the pipeline prepares into the model
input (the digits' CSV has columns ``p0..p63`` of intensities 0..16, the model sees
``intensity / 16``): the drift report reads a batch of raw data through them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.errors import InputError
from modelops.fsutil import read_json

SHARE_TOLERANCE = 1e-3  # a distribution's shares must sum to 1 within this
_LISTS = ("names", "min", "max", "mean", "std", "quantile_edges", "bin_distribution",
          "categories", "columns", "scale", "offset")
_KEYS = {*_LISTS, "input", "missing_value", "binning", "split", "n"}


@dataclass(frozen=True)
class FeatureBaseline:
    """The ``features`` section, checked. ``edges[j]`` is ``None`` for a categorical feature;
    ``expected`` is ``None`` when the baseline has no bins (data quality only)."""

    names: tuple[str, ...]
    minimum: tuple[float, ...] | None
    maximum: tuple[float, ...] | None
    edges: tuple[tuple[float, ...] | None, ...] | None
    categories: tuple[tuple[float, ...] | None, ...]
    expected: tuple[tuple[float, ...], ...] | None
    missing_value: float | None  # NaN: NaN means missing
    input: str | None
    columns: tuple[str, ...] | None = None  # raw-data column of each feature
    scale: tuple[float, ...] | None = None  # model input = raw * scale + offset
    offset: tuple[float, ...] | None = None

    @property
    def count(self) -> int:
        return len(self.names)

    @property
    def binned(self) -> bool:
        return self.expected is not None

    def bins(self, j: int) -> int:
        """Number of bins of feature ``j``."""
        cats = self.categories[j]
        if cats is not None:
            return len(cats) + 1
        return len(self.edges[j]) + 1 if self.edges is not None else 0


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _shown(v: Any) -> str:
    text = json.dumps(v) if not isinstance(v, str) else repr(v)
    return text if len(text) <= 80 else text[:77] + "..."


def _numbers(value: Any, n: int | None) -> str | None:
    if not isinstance(value, list) or not all(_number(v) for v in value):
        return "must be a list of finite numbers"
    if n is not None and len(value) != n:
        return f"must have one entry per feature ({n})"
    return None


def feature_problems(features: Any) -> list[tuple[str, Any, str]]:
    """(field path, value, problem) for a ``features`` section; empty when it is sound."""
    if not isinstance(features, dict):
        return [("features", features, "must be a JSON object")]
    out: list[tuple[str, Any, str]] = []
    for key in features:
        if key not in _KEYS:
            out.append((f"features.{key}", features[key],
                        f"unknown key; known keys: {', '.join(sorted(_KEYS))}"))
    lengths = {k: len(features[k]) for k in _LISTS if isinstance(features.get(k), list)}
    n = next(iter(lengths.values()), None)
    if n is None:
        return out + [("features", features, "needs names, min/max or quantile_edges (one "
                                              "entry per feature)")]
    if n == 0:
        return out + [("features", features, "has no features")]
    for key, size in lengths.items():
        if size != n:
            out.append((f"features.{key}", f"{size} entries",
                        f"must have one entry per feature ({n}, as "
                        f"{next(iter(lengths))})"))
    if out:
        return out
    names = features.get("names")
    if names is not None:
        if not all(isinstance(s, str) and s for s in names):
            out.append(("features.names", names, "must be non-empty strings"))
        elif len(set(names)) != len(names):
            out.append(("features.names", names, "must be unique"))
    columns = features.get("columns")
    if columns is not None:
        if not all(isinstance(s, str) and s for s in columns):
            out.append(("features.columns", columns, "must be non-empty strings"))
        elif len(set(columns)) != len(columns):
            out.append(("features.columns", columns, "must be unique"))
    for key in ("scale", "offset"):
        if key in features:
            problem = _numbers(features[key], n)
            if problem:
                out.append((f"features.{key}", features[key], problem))
            elif key == "scale" and any(v == 0 for v in features[key]):
                out.append(("features.scale", features[key], "must not be 0"))
    for key in ("min", "max", "mean", "std"):
        if key in features:
            problem = _numbers(features[key], n)
            if problem:
                out.append((f"features.{key}", features[key], problem))
    if "min" in features and "max" in features and not out:
        for j, (lo, hi) in enumerate(zip(features["min"], features["max"])):
            if lo > hi:
                out.append((f"features.min[{j}]", lo, f"is above features.max[{j}] ({hi})"))
                break
    if ("min" in features) != ("max" in features):
        out.append(("features", sorted(features), "min and max go together"))
    cats = features.get("categories")
    if cats is not None:
        for j, c in enumerate(cats):
            if c is None:
                continue
            if (not isinstance(c, list) or not c or not all(_number(v) for v in c)
                    or len(set(c)) != len(c)):
                out.append((f"features.categories[{j}]", c,
                            "must be null (numeric) or a list of distinct numeric codes"))
    edges = features.get("quantile_edges")
    dist = features.get("bin_distribution")
    if (edges is None) != (dist is None):
        out.append(("features", sorted(features),
                    "quantile_edges and bin_distribution go together"))
    if edges is not None and dist is not None:
        for j in range(n):
            e, d = edges[j], dist[j]
            categorical = cats is not None and isinstance(cats[j], list)
            if categorical:
                want = len(cats[j]) + 1
            else:
                if (not isinstance(e, list) or not all(_number(v) for v in e)
                        or any(b <= a for a, b in zip(e, e[1:]))):
                    out.append((f"features.quantile_edges[{j}]", e,
                                "must be strictly increasing finite numbers"))
                    continue
                want = len(e) + 1
            if (not isinstance(d, list) or not all(_number(v) and v >= 0 for v in d)):
                out.append((f"features.bin_distribution[{j}]", d,
                            "must be a list of non-negative shares"))
            elif len(d) != want:
                out.append((f"features.bin_distribution[{j}]", f"{len(d)} shares",
                            f"must have {want} (one per bin: "
                            + ("its categories and one for any other value)" if categorical
                               else "len(quantile_edges) + 1)")))
            elif not math.isclose(sum(d), 1.0, abs_tol=SHARE_TOLERANCE):
                out.append((f"features.bin_distribution[{j}]", d,
                            f"must sum to 1 (got {sum(d):.4f})"))
    missing = features.get("missing_value")
    if missing is not None and missing != "NaN" and not _number(missing):
        out.append(("features.missing_value", missing, "must be a number or \"NaN\""))
    inp = features.get("input")
    if inp is not None and (not isinstance(inp, str) or not inp):
        out.append(("features.input", inp, "must be the name of the model's input"))
    return out


def parse_features(features: Any, source: str | Path = "drift baseline") -> FeatureBaseline:
    """The checked ``features`` section; an :class:`InputError` naming ``source``, the field
    and the value when it is not sound."""
    problems = feature_problems(features)
    if problems:
        path, value, problem = problems[0]
        raise InputError(f"{source}: {path}: {problem} (got {_shown(value)})",
                         hint="regenerate the baseline with the pipeline (dvc repro)")
    lengths = [len(features[k]) for k in _LISTS if isinstance(features.get(k), list)]
    n = lengths[0]
    names = features.get("names") or [f"{features.get('input') or 'x'}[{j}]" for j in range(n)]
    cats_raw = features.get("categories") or [None] * n
    categories = tuple(tuple(float(v) for v in c) if isinstance(c, list) else None
                       for c in cats_raw)
    edges = features.get("quantile_edges")
    dist = features.get("bin_distribution")
    missing = features.get("missing_value")

    def floats(key: str) -> tuple[float, ...] | None:
        v = features.get(key)
        return tuple(float(x) for x in v) if v is not None else None

    return FeatureBaseline(
        names=tuple(names),
        minimum=floats("min"), maximum=floats("max"),
        edges=(tuple(None if categories[j] is not None else tuple(float(x) for x in edges[j])
                     for j in range(n)) if edges is not None else None),
        categories=categories,
        expected=(tuple(tuple(float(x) for x in d) for d in dist) if dist is not None
                  else None),
        missing_value=(math.nan if missing == "NaN" else
                       float(missing) if missing is not None else None),
        input=features.get("input"),
        columns=tuple(features["columns"]) if features.get("columns") is not None else None,
        scale=floats("scale"), offset=floats("offset"))


def read_baseline(path: str | Path) -> dict[str, Any]:
    """The drift baseline file as a JSON object (an :class:`InputError` if it is not one)."""
    p = Path(path)
    data = read_json(p, "drift baseline",
                     hint="run `dvc repro` (the pipeline writes it) or pass its path")
    if not isinstance(data, dict):
        raise InputError(f"{p}: a drift baseline is a JSON object (got {_shown(data)})")
    return data


def load_features(path: str | Path) -> FeatureBaseline | None:
    """The ``features`` section of the baseline at ``path``, or None when it has none."""
    data = read_baseline(path)
    if data.get("features") is None:
        return None
    return parse_features(data["features"], path)
