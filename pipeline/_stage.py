"""What every stage shares: the command line (``--params``, ``--help``), error handling with the
suite's exit codes, and the paths of the pipeline's files (the same ones ``dvc.yaml`` names)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from modelops.cli import run_main
from pipeline.params import Params, load_params

RAW_CSV = Path("data/raw/digits.csv")
PREPARED_DIR = Path("data/prepared")
SPLITS = ("train", "val", "test")
MODEL_PT = Path("models/model.pt")
MODEL_ONNX = Path("models/model.onnx")
METRICS_JSON = Path("metrics/metrics.json")
PARITY_JSON = Path("metrics/parity.json")
DRIFT_JSON = Path("metrics/drift_baseline.json")
TRAIN_CURVE_CSV = Path("plots/train_curve.csv")
CONFUSION_CSV = Path("plots/confusion.csv")
PER_CLASS_CSV = Path("plots/per_class.csv")

N_FEATURES = 64
N_CLASSES = 10
IMAGE_SHAPE = (1, 8, 8)


def split_path(split: str) -> Path:
    return PREPARED_DIR / f"{split}.npz"


def progress(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", flush=True)


def stage_main(name: str, description: str, work: Callable[[Params], None],
               argv: Sequence[str] | None = None) -> int:
    """Run one stage: parse the command line, load params.yaml, call ``work(params)``.

    A :class:`modelops.errors.SuiteError` becomes one line on stderr and its exit code (2 bad input,
    1 a check said no); anything else is a bug (exit 3, with traceback).
    """

    def build_parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog=f"python -m pipeline.{name}", description=description,
            epilog="Run from the repository root (dvc repro does). Exit codes: 0 ok, 1 a check "
                   "said no, 2 bad input or config, 3 internal error.")
        parser.add_argument("--params", default="params.yaml", type=Path,
                            help="params file (default: %(default)s)")
        parser.set_defaults(handler=lambda args: work(load_params(args.params)))
        return parser

    return run_main(build_parser, argv, prog=f"pipeline.{name}")
