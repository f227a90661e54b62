"""Stage ``fit``: gradient-boosted trees (scikit-learn) on the training split.

``model`` in params.yaml shapes the ensemble (number of trees, depth, leaf size); ``fit`` says
how it is fitted (learning rate, row subsampling, seed). Writes ``models/classifier.pkl`` (read
only by the ``convert`` stage, which turns it into the ONNX model that ships) and
``eval/plots/importance.csv`` (impurity importance per named feature).
"""

from __future__ import annotations

import pickle
import sys

from common import (
    IMPORTANCE_CSV,
    MODEL_PKL,
    TRAIN_NPZ,
    csv_text,
    load_params,
    load_schema,
    progress,
    read_split,
    rounded,
    run_stage,
    write_bytes,
    write_text,
)


def fit() -> None:
    params = load_params("model", "fit")
    model, how = params["model"], params["fit"]
    schema = load_schema()
    x, y = read_split(TRAIN_NPZ, schema)
    from sklearn.ensemble import GradientBoostingClassifier

    clf = GradientBoostingClassifier(
        n_estimators=model["n_estimators"], max_depth=model["max_depth"],
        min_samples_leaf=model["min_samples_leaf"], learning_rate=how["learning_rate"],
        subsample=how["subsample"], random_state=how["seed"])
    clf.fit(x, y)
    clf.feature_names_schema_ = schema.features  # what convert embeds in the ONNX metadata
    write_bytes(MODEL_PKL, pickle.dumps(clf, protocol=5))
    ranked = sorted(zip(schema.features, clf.feature_importances_), key=lambda kv: -kv[1])
    write_text(IMPORTANCE_CSV, csv_text(["feature", "importance"],
                                        [[name, rounded(value)] for name, value in ranked]))
    progress("fit", f"{model['n_estimators']} trees of depth <= {model['max_depth']} on "
                    f"{len(y)} samples; training accuracy {clf.score(x, y):.4f} -> {MODEL_PKL}")


if __name__ == "__main__":
    sys.exit(run_stage("fit", fit))
