"""Stage ``score``: the ONNX model (what ships) judged on the test split, and its drift baseline.

Runs ``models/classifier.onnx`` with ONNX Runtime, never the pickled scikit-learn model, and
writes:

* ``eval/metrics.json``: the headline metrics. ``malignant`` is the positive class:
  ``roc_auc`` and ``sensitivity`` (its recall) are better higher, ``log_loss`` and ``brier``
  better lower;
* ``eval/slices.json``: precision/recall/F1 per class, and accuracy per quantile bin of one
  feature (``score.slice_feature``, bins from the training split);
* ``eval/plots/roc.csv`` and ``eval/plots/confusion.csv``;
* ``eval/drift_baseline.json``: what production traffic is compared with, from the training
  split: per feature its mean, std, min, max and its distribution over ``score.bins`` bins cut
  at the training quantiles (the serving runtime's input-drift and data-quality reference),
  and the distribution of the predicted class.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
from common import (
    CONFUSION_CSV,
    DRIFT_JSON,
    INPUT_NAME,
    METRICS_JSON,
    MODEL_ONNX,
    OUTPUT_NAMES,
    ROC_CSV,
    SLICES_JSON,
    TEST_NPZ,
    TRAIN_NPZ,
    Schema,
    StageError,
    check_slice_feature,
    csv_text,
    load_params,
    load_schema,
    model_name,
    progress,
    read_split,
    rounded,
    run_stage,
    write_json,
    write_text,
)

POSITIVE = 0  # index of the positive class (malignant) in schema.json's classes


def onnx_predict(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, str]]:
    import onnx
    import onnxruntime as ort

    try:
        data = MODEL_ONNX.read_bytes()
    except FileNotFoundError:
        raise StageError(f"{MODEL_ONNX}: file not found", hint="run `dvc repro convert`") from None
    meta = {p.key: p.value for p in onnx.load_from_string(data).metadata_props}
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    probabilities, labels = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x})
    return probabilities.astype(np.float64), labels, meta


def headline(y: np.ndarray, p: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    from sklearn.metrics import (
        accuracy_score,
        balanced_accuracy_score,
        brier_score_loss,
        log_loss,
        recall_score,
        roc_auc_score,
    )

    positive = (y == POSITIVE).astype(int)
    return {
        "roc_auc": rounded(roc_auc_score(positive, p[:, POSITIVE])),
        "log_loss": rounded(log_loss(y, p, labels=list(range(p.shape[1])))),
        "accuracy": rounded(accuracy_score(y, pred)),
        "balanced_accuracy": rounded(balanced_accuracy_score(y, pred)),
        "sensitivity": rounded(recall_score(y, pred, pos_label=POSITIVE, average="binary")),
        "specificity": rounded(recall_score(y, pred, pos_label=1 - POSITIVE, average="binary")),
        "brier": rounded(brier_score_loss(positive, p[:, POSITIVE])),
        "n_test": len(y),
    }


def quantile_edges(column: np.ndarray, bins: int) -> np.ndarray:
    """Inner edges at the ``bins``-quantiles; repeated edges (many equal values) merge bins."""
    return np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))


def slices(schema: Schema, y: np.ndarray, p: np.ndarray, pred: np.ndarray, x: np.ndarray,
           x_train: np.ndarray, score: dict[str, Any]) -> dict[str, Any]:
    from sklearn.metrics import precision_recall_fscore_support

    labels = list(range(len(schema.classes)))
    prec, rec, f1, support = precision_recall_fscore_support(y, pred, labels=labels,
                                                             zero_division=0)
    out: dict[str, Any] = {"per_class": {
        schema.classes[c]: {"precision": rounded(prec[c]), "recall": rounded(rec[c]),
                            "f1": rounded(f1[c]), "support": int(support[c])} for c in labels}}
    j = check_slice_feature(score, schema)
    edges = quantile_edges(x_train[:, j], score["slices"])
    which = np.digitize(x[:, j], edges)
    lowers = [schema.minimums[j], *edges.tolist()]
    by: dict[str, Any] = {}
    for k, lower in enumerate(lowers):
        rows = which == k
        n = int(rows.sum())
        by[f"q{k + 1}"] = {
            "lower": rounded(lower), "n": n,
            "accuracy": rounded((pred[rows] == y[rows]).mean()) if n else 0.0,
            "malignant_rate": rounded((y[rows] == POSITIVE).mean()) if n else 0.0,
            "mean_p_malignant": rounded(p[rows, POSITIVE].mean()) if n else 0.0,
        }
    out["by_" + schema.features[j].replace(" ", "_")] = by
    return out


def drift_baseline(name: str, schema: Schema, x_train: np.ndarray, pred_train: np.ndarray,
                   y_train: np.ndarray, bins: int) -> dict[str, Any]:
    n_classes = len(schema.classes)
    x = x_train.astype(np.float64)
    edges = [quantile_edges(x[:, j], bins) for j in range(x.shape[1])]
    distribution = [np.bincount(np.digitize(x[:, j], e), minlength=len(e) + 1) / len(x)
                    for j, e in enumerate(edges)]

    def r(values: Any) -> list[float]:
        return [rounded(v) for v in values]

    def exact(values: Any) -> list[float]:
        return [float(v) for v in values]

    return {
        "model": name,
        "split": "train",
        "n": len(x),
        "classes": list(schema.classes),
        "class_distribution": [float(v) for v in
                               np.bincount(pred_train, minlength=n_classes) / len(pred_train)],
        "label_distribution": [float(v) for v in
                               np.bincount(y_train, minlength=n_classes) / len(y_train)],
        "features": {
            "input": INPUT_NAME,
            "names": list(schema.features),
            # min/max exactly (a training value is never outside its own range)
            "mean": r(x.mean(0)), "std": r(x.std(0)), "min": exact(x.min(0)),
            "max": exact(x.max(0)),
            "binning": "bin k of feature j holds quantile_edges[j][k-1] <= value < "
                       "quantile_edges[j][k] (numpy.digitize); edges are the training "
                       f"{bins}-quantiles, repeated ones merged",
            # edges exactly: a quantile often is a training value, and a rounded edge would
            # move that value (and the bin shares) to the neighbouring bin
            "quantile_edges": [exact(e) for e in edges],
            "bin_distribution": [r(d) for d in distribution],
        },
    }


def score() -> None:
    params = load_params("score")["score"]
    schema = load_schema()
    check_slice_feature(params, schema)
    name = model_name()
    x_train, y_train = read_split(TRAIN_NPZ, schema)
    x_test, y_test = read_split(TEST_NPZ, schema)
    p, pred, meta = onnx_predict(x_test)
    if json.loads(meta.get("feature_names", "[]")) != list(schema.features):
        raise StageError(f"{MODEL_ONNX}: its feature_names metadata is not schema.json's "
                         "columns", hint="run `dvc repro convert`")
    metrics = headline(y_test, p, pred)
    write_json(METRICS_JSON, metrics)
    write_json(SLICES_JSON, slices(schema, y_test, p, pred, x_test, x_train, params))

    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve((y_test == POSITIVE).astype(int), p[:, POSITIVE])
    write_text(ROC_CSV, csv_text(["fpr", "tpr"],
                                 [[rounded(a), rounded(b)] for a, b in zip(fpr, tpr)]))
    write_text(CONFUSION_CSV, csv_text(["actual", "predicted"],
                                       [[schema.classes[a], schema.classes[b]]
                                        for a, b in zip(y_test, pred)]))
    _, pred_train, _ = onnx_predict(x_train)
    write_json(DRIFT_JSON, drift_baseline(name, schema, x_train, pred_train, y_train,
                                          params["bins"]))
    progress("score", f"roc_auc {metrics['roc_auc']}, log_loss {metrics['log_loss']}, "
                      f"sensitivity {metrics['sensitivity']} on {len(y_test)} test samples")


if __name__ == "__main__":
    sys.exit(run_stage("score", score))
