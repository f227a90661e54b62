"""Stage ``split``: a stratified, seeded train/test split of the CSV, as ``.npz`` arrays.

Reads ``data/raw/breast_cancer.csv`` against ``schema.json`` (header, class names, numbers)
and writes ``data/split/train.npz`` and ``data/split/test.npz``: ``x`` float32 [N, 30] in the
schema's column order, ``y`` int64 [N] (the class's index in the schema) and ``columns`` (the
feature names). That is the layout the suite's compile step reads for parity and latency.
"""

from __future__ import annotations

import csv
import math
import sys

import numpy as np
from common import (
    RAW_CSV,
    TEST_NPZ,
    TRAIN_NPZ,
    Schema,
    StageError,
    load_params,
    load_schema,
    progress,
    run_stage,
    write_npz,
)


def read_csv(schema: Schema) -> tuple[np.ndarray, np.ndarray]:
    try:
        with RAW_CSV.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise StageError(f"{RAW_CSV}: file not found", hint="run `dvc repro load`") from None
    header = [*schema.features, schema.label]
    if not rows or rows[0] != header:
        raise StageError(f"{RAW_CSV}: the header is not the columns of schema.json",
                         hint="run `dvc repro load`")
    x = np.empty((len(rows) - 1, len(schema.features)), dtype=np.float64)
    y = np.empty(len(rows) - 1, dtype=np.int64)
    for i, row in enumerate(rows[1:]):
        line = i + 2
        if len(row) != len(header):
            raise StageError(f"{RAW_CSV}:{line}: {len(row)} fields, expected {len(header)}")
        if row[-1] not in schema.classes:
            raise StageError(f"{RAW_CSV}:{line}: {schema.label} {row[-1]!r} is not one of "
                             f"{list(schema.classes)}")
        y[i] = schema.classes.index(row[-1])
        for j, text in enumerate(row[:-1]):
            try:
                value = float(text)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value < schema.minimums[j]:
                raise StageError(f"{RAW_CSV}:{line}: {schema.features[j]!r} is {text!r}, "
                                 f"expected a finite number >= {schema.minimums[j]:g}")
            x[i, j] = value
    return x, y


def split() -> None:
    params = load_params("data")["data"]
    schema = load_schema()
    x, y = read_csv(schema)
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y, minlength=len(schema.classes))
    if counts.min() < 2:
        raise StageError(f"{RAW_CSV}: every class needs at least 2 samples to stratify "
                         f"(counts {dict(zip(schema.classes, counts.tolist()))})")
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=params["test_fraction"], random_state=params["seed"], stratify=y)
    columns = np.array(schema.features)
    for path, xs, ys in ((TRAIN_NPZ, x_train, y_train), (TEST_NPZ, x_test, y_test)):
        write_npz(path, x=xs.astype(np.float32), y=ys.astype(np.int64), columns=columns)
        progress("split", f"{len(ys)} samples -> {path}")


if __name__ == "__main__":
    sys.exit(run_stage("split", split))
