"""Stage ``evaluate``: judge ``models/model.onnx`` with ONNX Runtime on CPU.

Writes ``metrics/metrics.json`` (accuracy, macro F1, per-class precision/recall/F1/support,
model size), plot data (``plots/confusion.csv`` one row per test image, ``plots/per_class.csv``)
and ``metrics/drift_baseline.json``, which the serving runtime, the canary analysis and the
drift report compare live traffic against: the predicted-class distribution on the validation
split and, per pixel of the training split (feature ``8 * row + column``, named
``pixel_<row>_<column>``), its mean, std, range and its distribution over
``evaluate.drift_bins`` bins cut at the training quantiles.

No latency: a figure measured on whatever machine ran the stage is not a property of the model,
and an output that changes on every run churns git and dvc.lock. The pull request measures the
artifact's latency against the base's on its own runner (``modelops-ci timing``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modelops.fsutil import atomic_write_text, write_json
from pipeline._stage import (
    CONFUSION_CSV,
    DRIFT_JSON,
    IMAGE_SHAPE,
    METRICS_JSON,
    MODEL_ONNX,
    N_CLASSES,
    PER_CLASS_CSV,
    progress,
    stage_main,
)
from pipeline.export import INPUT_NAME, OUTPUT_NAME, onnx_session
from pipeline.params import Params
from pipeline.prepare import MAX_PIXEL, load_split

CLASSES = [str(c) for c in range(N_CLASSES)]


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = list(range(N_CLASSES))
    prec, rec, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "macro_f1": round(float(f1_score(y_true, y_pred, labels=labels, average="macro",
                                         zero_division=0)), 6),
        "per_class": {
            CLASSES[c]: {"precision": round(float(prec[c]), 6), "recall": round(float(rec[c]), 6),
                         "f1": round(float(f1[c]), 6), "support": int(support[c])}
            for c in labels
        },
    }


def quantile_edges(column: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges at the ``bins``-quantiles; repeated edges (a pixel that is mostly 0) merge
    bins. Bin k holds ``edges[k-1] <= value < edges[k]`` (numpy.digitize)."""
    return np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))


def drift_baseline(model_name: str, x_val: np.ndarray, pred_val: np.ndarray,
                   x_train: np.ndarray, bins: int) -> dict[str, Any]:
    counts = np.bincount(pred_val, minlength=N_CLASSES).astype(np.float64)
    flat = x_train.reshape(len(x_train), -1).astype(np.float64)
    side = IMAGE_SHAPE[-1]

    def r(a: np.ndarray) -> list[float]:
        return [round(float(v), 6) for v in a]

    def exact(a: np.ndarray) -> list[float]:  # edges and range as they are: no value moves
        return [float(v) for v in a]

    edges = [quantile_edges(flat[:, j], bins) for j in range(flat.shape[1])]
    shares = [np.bincount(np.digitize(flat[:, j], e), minlength=len(e) + 1) / len(flat)
              for j, e in enumerate(edges)]
    dist = counts / counts.sum()
    return {
        "model": model_name,
        "split": "validation",
        "classes": CLASSES,
        "class_distribution": [float(v) for v in dist],
        "n": len(x_val),
        "features": {
            "input": INPUT_NAME,
            "split": "train",
            "n": len(flat),
            "names": [f"pixel_{j // side}_{j % side}" for j in range(flat.shape[1])],
            # the raw data's view (data/raw/digits.csv, data/incoming/*.csv): column p<j>,
            # intensities 0..16 that prepare divides by 16
            "columns": [f"p{j}" for j in range(flat.shape[1])],
            "scale": [1.0 / MAX_PIXEL] * flat.shape[1],
            "mean": r(flat.mean(0)), "std": r(flat.std(0)), "min": exact(flat.min(0)),
            "max": exact(flat.max(0)),
            "binning": "bin k of feature j holds quantile_edges[j][k-1] <= value < "
                       "quantile_edges[j][k] (numpy.digitize); edges are the training "
                       f"{bins}-quantiles, repeated ones merged",
            "quantile_edges": [exact(e) for e in edges],
            "bin_distribution": [r(d) for d in shares],
        },
    }


def confusion_csv(y_true: np.ndarray, y_pred: np.ndarray) -> str:
    rows = ["actual,predicted"] + [f"{int(a)},{int(p)}" for a, p in zip(y_true, y_pred)]
    return "\n".join(rows) + "\n"


def per_class_csv(per_class: dict[str, dict[str, float]]) -> str:
    rows = ["class,precision,recall,f1,support"]
    rows += [f"{c},{m['precision']},{m['recall']},{m['f1']},{m['support']}"
             for c, m in per_class.items()]
    return "\n".join(rows) + "\n"


def predict(session: Any, x: np.ndarray) -> np.ndarray:
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].argmax(1).astype(np.int64)


def run(params: Params) -> None:
    session = onnx_session(MODEL_ONNX)
    x_test, y_test = load_split("test")
    x_val, _ = load_split("val")
    x_train, _ = load_split("train")
    y_pred = predict(session, x_test)
    metrics = classification_metrics(y_test, y_pred)
    progress("evaluate", f"test accuracy {metrics['accuracy']:.4f}, macro F1 "
                         f"{metrics['macro_f1']:.4f} on {len(y_test)} rows")
    out: dict[str, Any] = {
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "model_size_mb": round(Path(MODEL_ONNX).stat().st_size / 1e6, 6),
    }
    out["per_class"] = metrics["per_class"]
    atomic_write_text(CONFUSION_CSV, confusion_csv(y_test, y_pred))
    atomic_write_text(PER_CLASS_CSV, per_class_csv(metrics["per_class"]))
    write_json(DRIFT_JSON, drift_baseline(params.model.name, x_val, predict(session, x_val),
                                          x_train, params.evaluate.drift_bins))
    write_json(METRICS_JSON, out)  # last: its presence means the stage finished
    progress("evaluate", f"wrote {METRICS_JSON}, {DRIFT_JSON}, {CONFUSION_CSV}, "
                         f"{PER_CLASS_CSV}")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("evaluate", "Evaluate models/model.onnx with ONNX Runtime: metrics, "
                      "plot data and the drift baseline.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
