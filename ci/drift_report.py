"""``modelops-ci drift-report``: a batch of data, or a window of logged requests, against the
training baseline, as Markdown and PNG plots a person reads when a drift alert fires (and
that a retraining pull request carries).

Input, one of:

- ``--data FILE``: a CSV with a header (a column per baseline feature, by name; other columns
  such as a label are ignored; an empty cell is a missing value), a Parquet file (the same
  columns; needs ``pyarrow``), or an ``.npz`` with an array ``x`` (rows first, as the
  pipelines' splits). A CSV or Parquet file of *raw* data, whose columns are the baseline's
  ``features.columns``, is turned into the model's input by its ``scale`` and ``offset``;
- ``--requests FILE``: JSON lines, one Open Inference Protocol request body each (as a
  request logger writes them); the monitored input's rows are taken from each, the last
  ``--window`` rows are compared, as the serving runtime does.

The statistic is the serving runtime's own (:mod:`modelops.binning`): per feature, the PSI of
the rows' shares over the baseline's training bins, and the data-quality counts (missing,
NaN or infinite, outside the training range). Writes ``<out>/drift-report.md``,
``<out>/drift-report.json`` and ``<out>/plots/<feature>.png`` (training vs current share of
each bin); every file is rendered before the first is written. Exit 0 (1 with
``--fail-on-drift`` when a feature's PSI reaches ``--threshold``), 2 on bad input.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelops.drift import FeatureBaseline, parse_features, read_baseline
from modelops.errors import GateFailed, InputError
from modelops.fsutil import atomic_write_bytes, atomic_write_text
from modelops.settings import load_settings

if TYPE_CHECKING:
    import numpy as np

# numpy, the binning and matplotlib are imported where they are used: `modelops-ci` loads
# every command module, and the comment job installs the base dependencies only
DEFAULT_OUT = Path("reports") / "drift"
DEFAULT_THRESHOLD = 0.2
DPI = 100
REPORT_MD = "drift-report.md"
REPORT_JSON = "drift-report.json"


# --------------------------------------------------------------------------- reading

@dataclass
class Batch:
    """Rows [n, features] (float64) and where an input cell was empty (missing)."""

    rows: np.ndarray
    empty: np.ndarray
    source: str


def _by_name(f: FeatureBaseline, header: list[str], path: Path) -> tuple[list[int], bool]:
    """Column index of each feature, and whether the header is the raw data's
    (``features.columns``: values go through ``scale`` and ``offset``)."""
    index = {h: i for i, h in enumerate(header)}
    names = f.names
    if f.columns is not None and not all(n in index for n in names) and \
            all(c in index for c in f.columns):
        return [index[c] for c in f.columns], True
    missing = [n for n in names if n not in index]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(f"{path}: no column for feature(s) {shown} of the baseline "
                         f"(header has {len(header)} columns)",
                         hint="the columns are named as the baseline's features.names"
                              + (" (or, raw data, features.columns)" if f.columns else ""))
    return [index[n] for n in names], False


def _raw(rows: np.ndarray, f: FeatureBaseline, raw: bool) -> np.ndarray:
    import numpy as np

    if raw:
        if f.scale is not None:
            rows = rows * np.asarray(f.scale)
        if f.offset is not None:
            rows = rows + np.asarray(f.offset)
    return rows


def read_csv(path: Path, f: FeatureBaseline) -> Batch:
    import numpy as np

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as utf-8 csv ({exc})") from exc
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise InputError(f"{path}: empty file; a header row naming the features is needed")
    cols, raw = _by_name(f, [h.strip() for h in header], path)
    rows, empty = [], []
    for line, record in enumerate(reader, start=2):
        if not record:
            continue
        values, blanks = [], []
        for j, c in zip(range(f.count), cols):
            cell = record[c].strip() if c < len(record) else ""
            if cell == "":
                values.append(math.nan)
                blanks.append(True)
                continue
            try:
                values.append(float(cell))
            except ValueError:
                raise InputError(f"{path}: line {line}: column {f.names[j]!r}: {cell[:40]!r} "
                                 "is not a number") from None
            blanks.append(False)
        rows.append(values)
        empty.append(blanks)
    if not rows:
        raise InputError(f"{path}: no data rows")
    return Batch(_raw(np.array(rows, dtype=np.float64), f, raw), np.array(empty, dtype=bool),
                 str(path))


def read_parquet(path: Path, f: FeatureBaseline) -> Batch:
    import numpy as np

    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise InputError(f"{path}: reading Parquet needs pyarrow",
                         hint="pip install pyarrow, or pass a CSV") from exc
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own types for a bad file
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    cols, raw = _by_name(f, table.column_names, path)
    rows = np.empty((table.num_rows, f.count))
    empty = np.zeros(rows.shape, dtype=bool)
    for j, c in enumerate(cols):
        column = table.column(c)
        try:
            values = column.to_numpy(zero_copy_only=False).astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{path}: column {f.names[j]!r} is not numeric "
                             f"({column.type})") from exc
        empty[:, j] = column.is_null().to_numpy(zero_copy_only=False)
        rows[:, j] = values
    if not len(rows):
        raise InputError(f"{path}: no data rows")
    return Batch(_raw(rows, f, raw), empty, str(path))


def read_npz(path: Path, f: FeatureBaseline) -> Batch:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as data:
            x = data["x"]
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: not an .npz with an array 'x' ({exc})") from exc
    return _rows(x, f, str(path))


def _rows(x: np.ndarray, f: FeatureBaseline, source: str) -> Batch:
    import numpy as np

    rows = np.asarray(x).reshape(len(x), -1) if np.ndim(x) > 1 else np.asarray(x)[:, None]
    if rows.shape[1] != f.count:
        raise InputError(f"{source}: rows of {rows.shape[1]} values, the baseline has "
                         f"{f.count} features")
    if not len(rows):
        raise InputError(f"{source}: no data rows")
    rows = rows.astype(np.float64)
    return Batch(rows, np.zeros(rows.shape, dtype=bool), source)


def read_requests(path: Path, f: FeatureBaseline, window: int | None) -> Batch:
    """Rows of the monitored input from JSON lines of inference request bodies."""
    import numpy as np

    name = f.input
    chunks = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as utf-8 JSON lines ({exc})") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
            inputs = body["inputs"]
            item = (next(i for i in inputs if i.get("name") == name) if name is not None
                    else inputs[0] if len(inputs) == 1 else None)
            if item is None:
                raise InputError(f"{path}: line {n}: {len(inputs)} inputs and the baseline "
                                 "names none (features.input)")
            data = np.asarray(item["data"], dtype=np.float64)
            shape = item["shape"]
            chunks.append(data.reshape(shape[0], -1))
        except InputError:
            raise
        except StopIteration:
            raise InputError(f"{path}: line {n}: no input named {name!r}") from None
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise InputError(f"{path}: line {n}: not an inference request with JSON tensor "
                             f"data ({type(exc).__name__}: {exc})") from None
    if not chunks:
        raise InputError(f"{path}: no requests")
    try:
        rows = np.concatenate(chunks)
    except ValueError:
        raise InputError(f"{path}: requests hold rows of different widths") from None
    if window is not None:
        rows = rows[-window:]
    return _rows(rows, f, str(path))


def read_batch(path: Path, f: FeatureBaseline, *, requests: bool = False,
               window: int | None = None) -> Batch:
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if requests:
        return read_requests(path, f, window)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv(path, f)
    if suffix in (".parquet", ".pq"):
        return read_parquet(path, f)
    if suffix == ".npz":
        return read_npz(path, f)
    raise InputError(f"{path}: unknown data format {suffix!r}",
                     hint="pass a .csv, .parquet or .npz file, or --requests for JSON lines")


# --------------------------------------------------------------------------- computing

@dataclass
class FeatureResult:
    name: str
    psi: float
    drifted: bool
    n: int  # values in the bins
    missing: int
    nonfinite: int
    out_of_range: int
    expected: list[float]
    observed: list[float]
    bins: list[str]
    train_mean: float | None
    mean: float | None

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        for k in ("psi", "train_mean", "mean"):
            if d[k] is not None and not math.isfinite(d[k]):
                d[k] = None
        return d


def _bin_labels(f: FeatureBaseline, j: int) -> list[str]:
    cats = f.categories[j]
    if cats is not None:
        return [f"{c:g}" for c in cats] + ["other"]
    e = f.edges[j]
    if not e:
        return ["all"]
    return ([f"< {e[0]:.4g}"] + [f"[{a:.4g}, {b:.4g})" for a, b in zip(e, e[1:])]
            + [f">= {e[-1]:.4g}"])


def analyse(f: FeatureBaseline, batch: Batch, threshold: float,
            train_mean: list[float] | None = None) -> list[FeatureResult]:
    """PSI and data quality per feature of ``batch`` against ``f``."""
    import numpy as np

    from modelops.binning import Binner

    if not f.binned:
        raise InputError("the baseline's features have no bins (quantile_edges and "
                         "bin_distribution)", hint="regenerate the baseline with the pipeline")
    b = Binner(f)
    missing, nonfinite, out = b.quality(batch.rows)
    missing |= batch.empty
    nonfinite &= ~batch.empty
    counts = b.counts(b.bin(batch.rows, missing | nonfinite))
    psi = b.psi(counts)
    results = []
    for j in range(f.count):
        width = f.bins(j)
        c = counts[j, :width]
        total = int(c.sum())
        present = batch.rows[:, j][~(missing[:, j] | nonfinite[:, j])]
        results.append(FeatureResult(
            name=f.names[j], psi=float(psi[j]),
            drifted=bool(np.isfinite(psi[j]) and psi[j] >= threshold), n=total,
            missing=int(missing[:, j].sum()), nonfinite=int(nonfinite[:, j].sum()),
            out_of_range=int(out[:, j].sum()),
            expected=[float(v) for v in b.expected[j, :width]],
            observed=[float(v) for v in (c / total if total else np.zeros(width))],
            bins=_bin_labels(f, j),
            train_mean=(float(train_mean[j]) if train_mean is not None else None),
            mean=float(present.mean()) if len(present) else None))
    return results


# --------------------------------------------------------------------------- writing

def slug(name: str) -> str:
    """A file name for a feature (distinct names can meet: the index follows)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "feature"


def plot_feature(r: FeatureResult, threshold: float) -> bytes:
    """PNG of the training and the current share of each bin (deterministic bytes)."""
    import matplotlib.style
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure(figsize=(7.0, 3.6), dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        x = np.arange(len(r.bins))
        ax.bar(x - 0.2, r.expected, 0.4, label="training")
        ax.bar(x + 0.2, r.observed, 0.4, label="current", color="tab:red" if r.drifted
               else "tab:green")
        ax.set_xticks(x, r.bins, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("share of values")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", fontsize=8)
        state = "over" if r.drifted else "under"
        psi = f"{r.psi:.3f}" if math.isfinite(r.psi) else "n/a"
        ax.set_title(f"{r.name[:60]}: PSI {psi} ({state} the {threshold:g} threshold)",
                     fontsize=10)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def _n(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.{digits}g}"


def markdown(results: list[FeatureResult], *, model: str, source: str, rows: int,
             threshold: float, images: dict[str, str]) -> str:
    from modelops.ci.markdown import md

    drifted = [r for r in results if r.drifted]
    ranked = sorted(results, key=lambda r: (-(r.psi if math.isfinite(r.psi) else -1), r.name))
    top = ranked[0] if ranked else None
    lines = [
        f"# Input drift report: {md(model)}",
        "",
        f"{md(source)} ({rows} rows) against the training baseline; PSI per feature over "
        f"the baseline's training-quantile bins, threshold {threshold:g}.",
        "",
        f"**{len(drifted)} of {len(results)} features drifted**"
        + (f"; the largest PSI is {_n(top.psi, 3)} ({md(top.name)})." if top else "."),
        "",
        "| feature | PSI | | missing | NaN/inf | out of range | training mean | mean |",
        "|---|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in ranked:
        lines.append(f"| {md(r.name)} | {_n(r.psi, 3)} | "
                     f"{'drifted' if r.drifted else 'ok'} | {r.missing} | {r.nonfinite} | "
                     f"{r.out_of_range} | {_n(r.train_mean)} | {_n(r.mean)} |")
    if images:
        lines += ["", "## Per feature", ""]
        for r in ranked:
            if r.name in images:
                lines += [f"### {md(r.name)}", "", f"![{md(r.name)}]({images[r.name]})", ""]
    return "\n".join(lines).rstrip() + "\n"


@dataclass
class Report:
    results: list[FeatureResult]
    written: list[Path]

    @property
    def drifted(self) -> list[FeatureResult]:
        return [r for r in self.results if r.drifted]


def drift_report(baseline: str | Path, data: str | Path, out: str | Path = DEFAULT_OUT, *,
                 requests: bool = False, window: int | None = None,
                 threshold: float = DEFAULT_THRESHOLD, plots: int | None = None,
                 progress: Callable[[str], None] | None = None) -> Report:
    """Compare ``data`` with ``baseline`` and write the report into ``out`` (all files or
    none). ``plots``: draw the ``plots`` most drifted features (None: every feature)."""

    if not threshold > 0 or not math.isfinite(threshold):
        raise InputError(f"--threshold: must be a number above 0 (got {threshold!r})")
    raw = read_baseline(baseline)
    if raw.get("features") is None:
        raise InputError(f"{baseline}: the drift baseline has no features section",
                         hint="the pipeline must write per-feature bins (see the docs)")
    f = parse_features(raw["features"], baseline)
    batch = read_batch(Path(data), f, requests=requests, window=window)
    say = progress or (lambda _line: None)
    say(f"comparing {len(batch.rows)} rows of {batch.source} with {baseline} "
        f"({f.count} features)")
    results = analyse(f, batch, threshold, raw["features"].get("mean"))
    ranked = sorted(results, key=lambda r: -(r.psi if math.isfinite(r.psi) else -1))
    chosen = ranked if plots is None else ranked[:plots]
    out = Path(out)
    files: dict[Path, bytes] = {}
    images: dict[str, str] = {}
    used: set[str] = set()
    for k, r in enumerate(chosen):
        name = slug(r.name)
        if name in used:
            name = f"{name}-{k}"
        used.add(name)
        images[r.name] = f"plots/{name}.png"
        files[out / "plots" / f"{name}.png"] = plot_feature(r, threshold)
    if chosen:
        say(f"drew {len(chosen)} plot(s)")
    text = markdown(results, model=str(raw.get("model", "")), source=batch.source,
                    rows=len(batch.rows), threshold=threshold, images=images)
    summary = {"model": raw.get("model"), "source": batch.source, "rows": len(batch.rows),
               "threshold": threshold, "drifted": [r.name for r in ranked if r.drifted],
               "features": [r.as_dict() for r in results]}
    for path, blob in files.items():
        atomic_write_bytes(path, blob)
    atomic_write_text(out / REPORT_JSON, json.dumps(summary, indent=2, allow_nan=False) + "\n")
    atomic_write_text(out / REPORT_MD, text)
    return Report(results, [*files, out / REPORT_JSON, out / REPORT_MD])


def _cmd(args: Any) -> int:
    if (args.data is None) == (args.requests is None):
        raise InputError("pass one of --data FILE and --requests FILE")
    baseline = args.baseline
    if baseline is None:
        baseline = load_settings(args.params).model.drift_baseline
        if not baseline:
            raise InputError(f"{args.params}: modelops.model.drift_baseline is '' and no "
                             "--baseline was given")
    report = drift_report(baseline, args.data or args.requests, args.out,
                          requests=args.requests is not None, window=args.window,
                          threshold=args.threshold, plots=args.plots,
                          progress=lambda line: print(line, flush=True))
    print(f"wrote {Path(args.out) / REPORT_MD} ({len(report.drifted)} of "
          f"{len(report.results)} features drifted)")
    if args.fail_on_drift and report.drifted:
        raise GateFailed(f"{len(report.drifted)} feature(s) drifted: "
                         + ", ".join(r.name for r in report.drifted[:5]),
                         hint=f"read {Path(args.out) / REPORT_MD}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``drift-report`` to ``modelops-ci``."""

    p = subparsers.add_parser(
        "drift-report", help="compare a batch of data or logged requests with the training "
                             "baseline: Markdown and PNG plots per feature",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--baseline", default=None,
                   help="the drift baseline (default: modelops.model.drift_baseline of "
                        "--params)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--data", default=None, help="a .csv, .parquet or .npz batch")
    p.add_argument("--requests", default=None,
                   help="JSON lines of inference request bodies")
    p.add_argument("--window", type=int, default=None,
                   help="with --requests: only the last this many rows")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="a feature is drifted at this PSI or above (default: %(default)s)")
    p.add_argument("--plots", type=int, default=None,
                   help="draw only the N most drifted features (default: every feature)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder (default: %(default)s)")
    p.add_argument("--fail-on-drift", action="store_true",
                   help="exit 1 when a feature drifted")
    p.set_defaults(handler=_cmd)


# --------------------------------------------------------------------------- retraining PRs

def pull_request_section(root: str | Path, settings: Any, batch: str | Path,
                         out: str | Path | None = None, top: int = 5) -> str:
    """Markdown for a retraining pull request: the fresh ``batch`` against the baseline of
    the model it would replace (the checkout's ``modelops.model.drift_baseline``, read
    *before* ``dvc repro`` writes the new one). The full report (Markdown and a PNG per
    feature) goes to ``out`` (default ``reports/drift`` under ``root``) for the workflow's
    artifact. Never fails the retraining: a missing or unusable baseline is said in a line."""
    from modelops.ci.markdown import md

    root = Path(root)
    rel = settings.model.drift_baseline
    if not rel:
        return "Input drift: no drift baseline (`modelops.model.drift_baseline` is '')."
    try:
        report = drift_report(root / rel, batch, out or root / DEFAULT_OUT)
    except InputError as exc:
        return f"Input drift: no report ({md(exc.message.splitlines()[0])})."
    ranked = sorted(report.results, key=lambda r: -(r.psi if math.isfinite(r.psi) else -1))
    lines = [f"**Input drift of the fresh data** against the training data of the model it "
             f"replaces: {len(report.drifted)} of {len(report.results)} features at PSI "
             f">= {DEFAULT_THRESHOLD:g} (full report with a plot per feature: the workflow "
             "artifact `drift-report`).", "",
             "| feature | PSI | out of range | missing | NaN/inf |", "|---|---:|---:|---:|---:|"]
    for r in ranked[:top]:
        lines.append(f"| {md(r.name)} | {_n(r.psi, 3)}{' (drifted)' if r.drifted else ''} | "
                     f"{r.out_of_range} | {r.missing} | {r.nonfinite} |")
    return "\n".join(lines)
