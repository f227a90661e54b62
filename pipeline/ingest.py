"""Stage ``ingest``: write the raw data set as CSV (``data/raw/digits.csv``).

The example uses the 8x8 handwritten digits that scikit-learn ships (no download): 1797 images,
64 pixel columns ``p0..p63`` with integer intensities 0..16, and a ``label`` column 0..9.
Fresh labelled data in ``ingest.incoming`` (``data/incoming/*.csv``, same header, tracked by
DVC) is appended in file-name order; this is how retraining on drift brings in new data.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modelops.fsutil import atomic_write_text
from pipeline._stage import N_FEATURES, RAW_CSV, progress, stage_main
from pipeline.params import Params

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


def read_incoming(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The rows of every ``*.csv`` in ``folder`` (file-name order), checked like the raw file."""
    from pipeline.prepare import read_raw

    pixels, labels, names = [], [], []
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        px, lab = read_raw(path, min_per_class=0,
                           hint="fix or remove the file, then `dvc add` the folder again")
        pixels.append(px)
        labels.append(lab)
        names.append(path.name)
    if not names:
        return (np.empty((0, N_FEATURES), dtype=np.int64), np.empty(0, dtype=np.int64), [])
    return np.concatenate(pixels), np.concatenate(labels), names


def run(params: Params) -> None:
    pixels, labels = load_dataset(params.ingest.dataset)
    extra_px, extra_lab, names = read_incoming(Path(params.ingest.incoming))
    if names:
        progress("ingest", f"appending {len(extra_lab)} fresh row(s) from {len(names)} file(s) "
                           f"in {params.ingest.incoming}")
        pixels = np.concatenate([pixels, extra_px])
        labels = np.concatenate([labels, extra_lab])
    atomic_write_text(RAW_CSV, to_csv(pixels, labels))
    progress("ingest", f"wrote {RAW_CSV} ({len(labels)} rows, {pixels.shape[1]} features)")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("ingest", "Write the raw example data set to data/raw/digits.csv.", run,
                      argv)


if __name__ == "__main__":
    sys.exit(main())
