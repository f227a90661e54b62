"""``python -m pipeline.summary``: a readable summary of the example model's metrics.

Printed at the end of ``make demo``: quality, per-class scores, size, ONNX parity, the
release identity of ``models/model.onnx`` (sha256 and the DVC md5 from ``dvc.lock``) and where
each output lives.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelops.cli import run_main
from modelops.errors import InputError
from modelops.fsutil import sha256_file
from modelops.yamlio import load_yaml_file
from pipeline._stage import (
    CONFUSION_CSV,
    DRIFT_JSON,
    METRICS_JSON,
    MODEL_ONNX,
    MODEL_PT,
    PARITY_JSON,
    PER_CLASS_CSV,
    PREPARED_DIR,
    RAW_CSV,
    TRAIN_CURVE_CSV,
)

DVC_LOCK = Path("dvc.lock")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: not found", hint="run `dvc repro` first") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})",
                         hint="run `dvc repro --force evaluate`") from None


def lock_md5(path: Path, lock: Path = DVC_LOCK) -> str | None:
    """The md5 that ``dvc.lock`` records for output ``path`` (None when not recorded)."""
    if not lock.exists():
        return None
    data = load_yaml_file(lock) or {}
    for stage in (data.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if out.get("path") == str(path):
                return out.get("md5")
    return None


def render(metrics: dict[str, Any], parity: dict[str, Any] | None, model_name: str,
           onnx_sha256: str | None, onnx_md5: str | None) -> str:
    lines = [f"model {model_name}", ""]
    lines.append(f"  test accuracy        {metrics['accuracy']:.4f}")
    lines.append(f"  macro F1             {metrics['macro_f1']:.4f}")
    lines.append(f"  model size           {metrics['model_size_mb']:.3f} MB (ONNX)")
    if parity:
        lines.append(f"  ONNX vs PyTorch      max |diff| {parity['max_abs_diff']:.3g}, top-1 "
                     f"agreement {parity['top1_agreement']:.4f} on {parity['n']} test rows")
    lines += ["", "  class  precision  recall     f1  support"]
    for cls, m in metrics["per_class"].items():
        lines.append(f"  {cls:>5}  {m['precision']:9.4f}  {m['recall']:6.4f}  {m['f1']:5.4f}  "
                     f"{m['support']:7d}")
    if onnx_sha256:
        lines += ["", f"  release identity     sha256 {onnx_sha256}"]
        if onnx_md5:
            lines.append(f"                       dvc md5 {onnx_md5} (dvc.lock)")
    lines += ["", "outputs"]
    for path, what in [
        (RAW_CSV, "raw data (DVC-tracked)"),
        (PREPARED_DIR, "train/val/test splits (DVC-tracked)"),
        (MODEL_PT, "PyTorch checkpoint (DVC-tracked)"),
        (MODEL_ONNX, "ONNX model, dynamic batch (DVC-tracked)"),
        (METRICS_JSON, "metrics (git-tracked; `dvc metrics diff`)"),
        (PARITY_JSON, "ONNX Runtime vs PyTorch parity (git-tracked)"),
        (DRIFT_JSON, "drift baseline for serving/canary (git-tracked)"),
        (TRAIN_CURVE_CSV, "training curve (`dvc plots show`)"),
        (CONFUSION_CSV, "confusion matrix data"),
        (PER_CLASS_CSV, "per-class scores"),
    ]:
        lines.append(f"  {str(path):<30} {what}")
    return "\n".join(lines)


def summarise(_args: argparse.Namespace) -> int:
    metrics = _read_json(METRICS_JSON)
    parity = _read_json(PARITY_JSON) if PARITY_JSON.exists() else None
    model_name = _read_json(DRIFT_JSON).get("model", "?") if DRIFT_JSON.exists() else "?"
    sha = sha256_file(MODEL_ONNX) if MODEL_ONNX.exists() else None
    try:
        text = render(metrics, parity, model_name, sha, lock_md5(MODEL_ONNX))
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{METRICS_JSON}: missing or malformed field {exc}",
                         hint="run `dvc repro --force evaluate`") from None
    print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.summary",
        description="Print a readable summary of metrics/metrics.json and where each output of "
                    "the example pipeline is. Run from the repository root after `dvc repro`.")
    parser.set_defaults(handler=summarise)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, argv, prog="pipeline.summary")


if __name__ == "__main__":
    sys.exit(main())
