"""Stage ``ingest``: write the raw data set as CSV (``data/raw/digits.csv``).

The example uses the 8x8 handwritten digits that scikit-learn ships (no download): 1797 images,
64 pixel columns ``p0..p63`` with integer intensities 0..16, and a ``label`` column 0..9.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence

import numpy as np

from ci.config import Params
from ci.fsutil import atomic_write_text
from pipeline._stage import N_FEATURES, RAW_CSV, progress, stage_main

HEADER = [f"p{i}" for i in range(N_FEATURES)] + ["label"]


def load_dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(pixels [N, 64] int, labels [N] int)`` of the bundled data set ``name``."""
    if name != "sklearn-digits":  # params validation only lets known names through
        raise ValueError(name)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data.astype(np.int64), bunch.target.astype(np.int64)


def to_csv(pixels: np.ndarray, labels: np.ndarray) -> str:
    buf = io.StringIO()
    buf.write(",".join(HEADER) + "\n")
    for row, label in zip(pixels, labels, strict=True):
        buf.write(",".join(str(int(v)) for v in row) + f",{int(label)}\n")
    return buf.getvalue()


def run(params: Params) -> None:
    pixels, labels = load_dataset(params.ingest.dataset)
    atomic_write_text(RAW_CSV, to_csv(pixels, labels))
    progress("ingest", f"wrote {RAW_CSV} ({len(labels)} rows, {pixels.shape[1]} features)")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("ingest", "Write the raw example data set to data/raw/digits.csv.", run,
                      argv)


if __name__ == "__main__":
    sys.exit(main())
