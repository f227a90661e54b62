"""Stage ``load``: the data set scikit-learn ships, as a CSV with named columns.

Reads ``load_breast_cancer()`` (bundled with scikit-learn; nothing is downloaded), checks it
against the column schema in ``schema.json`` (names and order of the features, the label's
classes, finite values within bounds) and writes ``data/raw/breast_cancer.csv``: one header
row with the feature names and ``diagnosis``, then one row per sample with the class name.
"""

from __future__ import annotations

import csv
import io
import math
import sys

from common import (
    DATASETS,
    RAW_CSV,
    StageError,
    load_params,
    load_schema,
    progress,
    run_stage,
    write_text,
)


def load() -> None:
    params = load_params("data")["data"]
    schema = load_schema()
    import sklearn.datasets

    # data.dataset -> scikit-learn's loader (common.SPEC lists the same names)
    bunch = getattr(sklearn.datasets, DATASETS[params["dataset"]])()
    names = tuple(str(n) for n in bunch.feature_names)
    if names != schema.features:
        diff = [f"{i}: {a!r} != {b!r}" for i, (a, b) in enumerate(zip(names, schema.features))
                if a != b][:3]
        raise StageError(f"the data set's columns differ from schema.json ({len(names)} vs "
                         f"{len(schema.features)} features; {'; '.join(diff)})",
                         hint="update schema.json deliberately, then rerun dvc repro")
    classes = tuple(str(c) for c in bunch.target_names)
    if classes != schema.classes:
        raise StageError(f"the data set's classes {list(classes)} differ from schema.json "
                         f"{list(schema.classes)}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*schema.features, schema.label])
    for i, (row, target) in enumerate(zip(bunch.data, bunch.target)):
        for name, low, value in zip(schema.features, schema.minimums, row):
            if not math.isfinite(value) or value < low:
                raise StageError(f"sample {i}: {name!r} is {value!r}, outside schema.json "
                                 f"(finite, at least {low:g})")
        writer.writerow([repr(float(v)) for v in row] + [schema.classes[int(target)]])
    write_text(RAW_CSV, out.getvalue())
    progress("load", f"{len(bunch.data)} samples x {len(names)} features -> {RAW_CSV}")


if __name__ == "__main__":
    sys.exit(run_stage("load", load))
