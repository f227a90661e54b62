"""What every stage of this pipeline shares: its parameters (checked here), the column schema,
the paths that ``dvc.yaml`` names, deterministic file writers and one way to fail.

The stages read only their own sections of ``params.yaml`` (``data``, ``model``, ``fit``,
``convert``, ``score``). The ``modelops:`` section belongs to the suite and is left alone here,
except ``modelops.model.name``, which the drift baseline carries.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import math
import os
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ruamel.yaml import YAML, YAMLError

PARAMS_FILE = Path("params.yaml")
SCHEMA_FILE = Path("schema.json")
RAW_CSV = Path("data/raw/breast_cancer.csv")
TRAIN_NPZ = Path("data/split/train.npz")
TEST_NPZ = Path("data/split/test.npz")
MODEL_PKL = Path("models/classifier.pkl")
MODEL_ONNX = Path("models/classifier.onnx")
PARITY_JSON = Path("eval/parity.json")
METRICS_JSON = Path("eval/metrics.json")
SLICES_JSON = Path("eval/slices.json")
DRIFT_JSON = Path("eval/drift_baseline.json")
ROC_CSV = Path("eval/plots/roc.csv")
CONFUSION_CSV = Path("eval/plots/confusion.csv")
IMPORTANCE_CSV = Path("eval/plots/importance.csv")

INPUT_NAME = "features"          # the ONNX model's one input: float32 [N, n_features]
OUTPUT_NAMES = ("probabilities", "label")  # float32 [N, n_classes] first, then int64 [N]

EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2


class StageError(Exception):
    """An expected failure: one line on stderr (and a hint), no traceback."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


class CheckFailed(StageError):
    """A check of the pipeline said no (ONNX parity): exit 1."""

    exit_code = EXIT_CHECK_FAILED


# --------------------------------------------------------------------------- parameters

@dataclass(frozen=True)
class Field:
    """One parameter: its type and its bounds (``gt``/``ge``/``lt``/``le``) or choices."""

    kind: type
    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    choices: tuple[str, ...] = ()

    def problem(self, value: Any) -> str | None:
        if self.kind is str:
            if not isinstance(value, str):
                return "must be a string"
            if self.choices and value not in self.choices:
                return "must be one of " + ", ".join(repr(c) for c in self.choices)
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be an integer" if self.kind is int else "must be a number"
        if self.kind is int and not isinstance(value, int):
            return "must be an integer"
        if not math.isfinite(value):
            return "must be a finite number (not .nan or .inf)"
        for bound, op, word in ((self.gt, float.__gt__, "greater than"),
                                (self.ge, float.__ge__, "at least"),
                                (self.lt, float.__lt__, "less than"),
                                (self.le, float.__le__, "at most")):
            if bound is not None and not op(float(value), float(bound)):
                return f"must be {word} {bound:g}"
        return None


# data.dataset -> the sklearn.datasets loader (shipped with scikit-learn, nothing downloaded)
DATASETS = {"breast_cancer": "load_breast_cancer"}

# section -> key -> Field. Every key is required: params.yaml is the one place for them.
SPEC: dict[str, dict[str, Field]] = {
    "data": {
        "dataset": Field(str, choices=tuple(DATASETS)),
        "test_fraction": Field(float, gt=0.0, le=0.5),
        "seed": Field(int, ge=0),
    },
    "model": {
        "n_estimators": Field(int, ge=1, le=5000),
        "max_depth": Field(int, ge=1, le=32),
        "min_samples_leaf": Field(int, ge=1),
    },
    "fit": {
        "learning_rate": Field(float, gt=0.0, le=1.0),
        "subsample": Field(float, gt=0.0, le=1.0),
        "seed": Field(int, ge=0),
    },
    "convert": {
        "opset": Field(int, ge=9, le=21),
        "atol": Field(float, gt=0.0, le=0.1),
    },
    "score": {
        "bins": Field(int, ge=2, le=50),
        "slice_feature": Field(str),
        "slices": Field(int, ge=2, le=10),
    },
}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_section(raw: Any, section: str, file: Path = PARAMS_FILE) -> dict[str, Any]:
    """The section ``section`` of parsed params, checked against :data:`SPEC`."""
    spec = SPEC[section]
    if not isinstance(raw, dict):
        raise StageError(f"{file}: the top level must be a mapping of sections (got {_show(raw)})")
    values = raw.get(section)
    if values is None:
        raise StageError(f"{file}: {section}: section is missing",
                         hint=f"add '{section}:' with {', '.join(spec)}")
    if not isinstance(values, dict):
        raise StageError(f"{file}: {section}: must be a mapping (got {_show(values)})")
    for key in values:
        if key not in spec:
            near = difflib.get_close_matches(str(key), list(spec), n=1)
            raise StageError(f"{file}: {section}.{key}: unknown key (got {_show(values[key])})",
                             hint=(f"did you mean {near[0]!r}? " if near else "")
                             + f"known keys: {', '.join(spec)}")
    for key, field in spec.items():
        if key not in values:
            raise StageError(f"{file}: {section}.{key}: required key is missing",
                             hint=f"add it under '{section}:' in {file}")
        problem = field.problem(values[key])
        if problem:
            raise StageError(f"{file}: {section}.{key}: {problem} (got {_show(values[key])})",
                             hint=f"fix {section}.{key} in {file}")
    return dict(values)


def read_params(file: Path = PARAMS_FILE) -> dict[str, Any]:
    """``params.yaml`` read as DVC reads it (YAML 1.2, ruamel.yaml): ``1e-5`` is a number here
    as in ``dvc params diff``, and ``yes`` is a string (YAML 1.1 readers differ on both)."""
    try:
        raw = YAML(typ="safe", pure=True).load(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StageError(f"{file}: file not found",
                         hint="run the stage from the repository root (dvc repro does)") from None
    except YAMLError as exc:
        raise StageError(f"{file}: not valid YAML: {exc}") from None
    return raw if raw is not None else {}


def load_params(*sections: str, file: Path = PARAMS_FILE) -> dict[str, dict[str, Any]]:
    """The named sections of ``params.yaml``, each checked; a bad one is a StageError."""
    raw = read_params(file)
    return {name: check_section(raw, name, file) for name in sections}


def model_name(file: Path = PARAMS_FILE) -> str:
    """``modelops.model.name``: the name the drift baseline must carry for the release."""
    raw = read_params(file)
    own = raw.get("modelops") if isinstance(raw, dict) else None
    model = own.get("model") if isinstance(own, dict) else None
    name = model.get("name") if isinstance(model, dict) else None
    if not isinstance(name, str) or not name:
        raise StageError(f"{file}: modelops.model.name: required: the model's name (got "
                         f"{_show(name)})", hint="set modelops.model.name in params.yaml")
    return name


# --------------------------------------------------------------------------- the schema

@dataclass(frozen=True)
class Schema:
    features: tuple[str, ...]
    minimums: tuple[float, ...]
    label: str
    classes: tuple[str, ...]


def load_schema(file: Path = SCHEMA_FILE) -> Schema:
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
        features = raw["features"]
        label = raw["label"]
        schema = Schema(tuple(str(f["name"]) for f in features),
                        tuple(float(f.get("min", -math.inf)) for f in features),
                        str(label["name"]), tuple(str(c) for c in label["classes"]))
    except FileNotFoundError:
        raise StageError(f"{file}: file not found",
                         hint="run the stage from the repository root (dvc repro does)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise StageError(f"{file}: not a column schema ({type(exc).__name__}: {exc})",
                         hint="it needs features: [{name, dtype, min}] and "
                              "label: {name, classes}") from None
    if len(set(schema.features)) != len(schema.features) or len(schema.classes) < 2:
        raise StageError(f"{file}: feature names must be unique and there must be at least "
                         "two classes")
    return schema


def check_slice_feature(score: Mapping[str, Any], schema: Schema) -> int:
    """Index of ``score.slice_feature`` among the schema's features."""
    name = score["slice_feature"]
    if name not in schema.features:
        near = difflib.get_close_matches(name, list(schema.features), n=1)
        raise StageError(f"{PARAMS_FILE}: score.slice_feature: not a feature of "
                         f"{SCHEMA_FILE} (got {_show(name)})",
                         hint=(f"did you mean {near[0]!r}? " if near else "")
                         + f"features are listed in {SCHEMA_FILE}")
    return schema.features.index(name)


# --------------------------------------------------------------------------- files

@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it only when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def rounded(value: float, digits: int = 6) -> float:
    return round(float(value), digits)


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    """CSV (quoted where needed, ``\\n`` line ends) of a header and rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """An ``.npz`` numpy reads, with fixed zip timestamps: the same arrays give the same bytes
    (``np.savez`` stamps the current time, so DVC would see a new file on every run)."""
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())


def read_split(path: Path, schema: Schema) -> tuple[np.ndarray, np.ndarray]:
    """``x`` float32 [N, n_features] and ``y`` int64 [N] of a split, checked against the schema."""
    try:
        with np.load(path, allow_pickle=False) as data:
            x, y, columns = data["x"], data["y"], [str(c) for c in data["columns"]]
    except FileNotFoundError:
        raise StageError(f"{path}: file not found", hint="run `dvc repro split`") from None
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise StageError(f"{path}: not a split written by the split stage ({exc})",
                         hint="run `dvc repro split`") from None
    if tuple(columns) != schema.features:
        raise StageError(f"{path}: its columns are not those of {SCHEMA_FILE}",
                         hint="run `dvc repro split` after changing the schema")
    if x.dtype != np.float32 or y.dtype != np.int64 or x.ndim != 2 or len(x) != len(y):
        raise StageError(f"{path}: expected x float32 [N, {len(columns)}] and y int64 [N] (got "
                         f"x {x.dtype} {list(x.shape)}, y {y.dtype} {list(y.shape)})")
    return x, y


# --------------------------------------------------------------------------- running

def progress(stage: str, message: str) -> None:
    print(f"[{stage}] {message}", flush=True)


def run_stage(name: str, work: Callable[[], None]) -> int:
    """Run a stage; a StageError is one line on stderr and its exit code, no traceback."""
    try:
        work()
    except StageError as exc:
        print(f"{name}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0
