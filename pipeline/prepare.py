"""Stage ``prepare``: validate the raw CSV and split it, stratified and seeded, into
``data/prepared/{train,val,test}.npz`` (arrays ``x`` float32 [N, 1, 8, 8] scaled to [0, 1] and
``y`` int64)."""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modelops.errors import InputError
from modelops.fsutil import atomic_path
from pipeline._stage import (
    IMAGE_SHAPE,
    N_CLASSES,
    N_FEATURES,
    RAW_CSV,
    SPLITS,
    progress,
    split_path,
    stage_main,
)
from pipeline.ingest import HEADER
from pipeline.params import Params

MAX_PIXEL = 16
_FIX = ("regenerate it with `dvc repro --force ingest` (or restore it with `dvc pull`)")


def read_raw(path: Path = RAW_CSV, *, hint: str = _FIX,
             min_per_class: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Parse and check the raw CSV; return ``(pixels [N, 64] int64, labels [N] int64)``.

    A missing, truncated or corrupt file raises :class:`InputError` naming the file and line.
    ``min_per_class`` is what a stratified split needs (0 for a batch of fresh data).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: raw data file not found", hint=hint) from None
    if not data.endswith(b"\n"):
        raise InputError(f"{path}: file is truncated (the last line has no end)", hint=hint)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if not lines or lines[0].split(",") != HEADER:
        got = lines[0][:40] if lines else ""
        raise InputError(f"{path}: line 1: expected the header 'p0,...,p63,label' "
                         f"(got {got!r})", hint=hint)
    rows = np.empty((len(lines) - 1, N_FEATURES + 1), dtype=np.int64)
    for n, line in enumerate(lines[1:], start=2):
        fields = line.split(",")
        if len(fields) != N_FEATURES + 1:
            raise InputError(f"{path}: line {n}: expected {N_FEATURES + 1} fields, got "
                             f"{len(fields)} ({line[:40]!r})", hint=hint)
        try:
            rows[n - 2] = [int(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not f.strip().lstrip("-").isdigit())
            raise InputError(f"{path}: line {n}: {bad!r} is not an integer", hint=hint) from None
    pixels, labels = rows[:, :N_FEATURES], rows[:, N_FEATURES]
    if len(labels) == 0:
        raise InputError(f"{path}: no data rows", hint=hint)
    bad_px = np.argwhere((pixels < 0) | (pixels > MAX_PIXEL))
    if len(bad_px):
        r, c = bad_px[0]
        raise InputError(f"{path}: line {r + 2}: pixel p{c} = {int(pixels[r, c])!r} is outside "
                         f"0..{MAX_PIXEL}", hint=hint)
    bad_lab = np.flatnonzero((labels < 0) | (labels >= N_CLASSES))
    if len(bad_lab):
        r = bad_lab[0]
        raise InputError(f"{path}: line {r + 2}: label {int(labels[r])!r} is outside "
                         f"0..{N_CLASSES - 1}", hint=hint)
    counts = np.bincount(labels, minlength=N_CLASSES)
    if counts.min() < min_per_class:
        cls = int(counts.argmin())
        raise InputError(f"{path}: class {cls} has {int(counts[cls])} row(s); a stratified "
                         f"split needs at least {min_per_class} per class", hint=hint)
    return pixels, labels


def split_indices(labels: np.ndarray, val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, np.ndarray]:
    """Seeded, stratified train/val/test split of row indices (each sorted)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_fraction, stratify=labels,
                                  random_state=seed)
    val_share = val_fraction / (1.0 - test_fraction)
    train, val = train_test_split(rest, test_size=val_share, stratify=labels[rest],
                                  random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Write an ``.npz`` atomically and byte-for-byte reproducibly (fixed zip timestamps)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(arr), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(x float32 [N, 1, 8, 8], y int64 [N])`` of a prepared split."""
    path = split_path(split)
    try:
        with np.load(path, allow_pickle=False) as npz:
            x, y = npz["x"], npz["y"]
    except FileNotFoundError:
        raise InputError(f"{path}: prepared split not found",
                         hint="run `dvc repro prepare` first") from None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a valid prepared split ({exc})",
                         hint="run `dvc repro --force prepare`") from None
    if x.dtype != np.float32 or x.shape[1:] != IMAGE_SHAPE or y.shape != (len(x),):
        raise InputError(f"{path}: unexpected arrays x{x.shape} {x.dtype}, y{y.shape}",
                         hint="run `dvc repro --force prepare`")
    return x, y


def run(params: Params) -> None:
    p = params.prepare
    pixels, labels = read_raw(RAW_CSV)
    progress("prepare", f"read {RAW_CSV}: {len(labels)} rows")
    x = (pixels.astype(np.float32) / MAX_PIXEL).reshape(-1, *IMAGE_SHAPE)
    parts = split_indices(labels, p.val_fraction, p.test_fraction, p.seed)
    for split in SPLITS:
        idx = parts[split]
        save_npz(split_path(split), x=x[idx], y=labels[idx].astype(np.int64))
        progress("prepare", f"wrote {split_path(split)} ({len(idx)} rows)")


def main(argv: Sequence[str] | None = None) -> int:
    return stage_main("prepare", "Validate data/raw/digits.csv and split it (stratified, "
                      "seeded) into data/prepared/{train,val,test}.npz.", run, argv)


if __name__ == "__main__":
    sys.exit(main())
