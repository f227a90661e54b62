"""``modelops-ci plots``: PNG images of the pipeline's plot files, for the workflow artifact.

Reads ``plots/confusion.csv`` (``actual,predicted`` rows), ``plots/per_class.csv``
(``class,precision,recall,f1,support``) and ``plots/train_curve.csv``
(``epoch,train_loss,val_loss,val_accuracy``) and writes ``confusion.png``, ``per_class.png`` and
``train_curve.png``. The images are attached to the workflow run as the artifact
:data:`ARTIFACT` (never sent to an image host); the PR comment names it.

Output is deterministic: matplotlib's default style whatever the local ``matplotlibrc`` says,
the headless Agg canvas, a fixed size and dpi (so fixed pixel dimensions), and no ``Software``
or date entries in the PNG metadata: the same CSVs give the same bytes. Every CSV is read and
every image is rendered before the first file is written, so bad input leaves nothing behind.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.errors import InputError

ARTIFACT = "model-plots"
DEFAULT_PLOTS = Path("plots")
DEFAULT_OUT = Path("plots") / "png"  # the `figures` stage of dvc.yaml writes here
DPI = 100
HINT = "run the pipeline (dvc repro) to write it again, or pass --plots"


@dataclass(frozen=True)
class PlotSpec:
    name: str                      # output file stem, and the CSV's stem
    columns: tuple[str, ...]       # required header columns
    types: tuple[type, ...]        # how each column parses
    size: tuple[float, float]      # inches; times DPI gives the PNG's pixel size
    draw: Callable[[Any, list[dict[str, Any]]], None]


def _read_csv(path: Path, spec: PlotSpec) -> list[dict[str, Any]]:
    """Rows of ``path`` with typed values; one InputError naming file, line and column."""
    if not path.is_file():
        raise InputError(f"{path}: plot data not found", hint=HINT)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read it as utf-8 csv ({exc})", hint=HINT) from exc
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in spec.columns if c not in header]
    if missing:
        raise InputError(f"{path}: missing column {missing[0]!r} (header is "
                         f"{','.join(header)!r}; expected {','.join(spec.columns)!r})", hint=HINT)
    rows = []
    for row in reader:
        line = reader.line_num
        typed: dict[str, Any] = {}
        for column, kind in zip(spec.columns, spec.types, strict=True):
            value = row.get(column)
            try:
                if value is None or value.strip() == "":
                    raise ValueError
                typed[column] = kind(value) if kind is not str else value.strip()
                if kind is float and not math.isfinite(typed[column]):
                    raise ValueError
            except ValueError:
                what = "a number" if kind is not str else "a label"
                got = "is empty" if value is None or not value.strip() else \
                    f"{value!r} is not {what}"
                raise InputError(f"{path}: line {line}: column {column!r} {got}",
                                 hint=HINT) from None
        rows.append(typed)
    if not rows:
        raise InputError(f"{path}: no data rows", hint=HINT)
    return rows


def _label_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))
    except ValueError:
        return (1, label)


def _draw_confusion(fig: Any, rows: list[dict[str, Any]]) -> None:
    labels = sorted({r["actual"] for r in rows} | {r["predicted"] for r in rows}, key=_label_key)
    index = {label: i for i, label in enumerate(labels)}
    counts = [[0] * len(labels) for _ in labels]
    for r in rows:
        counts[index[r["actual"]]][index[r["predicted"]]] += 1
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    peak = max(max(row) for row in counts) or 1
    for i, row in enumerate(counts):
        for j, n in enumerate(row):
            if n:
                ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                        color="white" if n > peak / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    correct = sum(counts[i][i] for i in range(len(labels)))
    ax.set_title(f"Confusion matrix ({correct}/{len(rows)} correct)")


def _draw_per_class(fig: Any, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: _label_key(r["class"]))
    ax = fig.add_subplot()
    width = 0.27
    for k, metric in enumerate(("precision", "recall", "f1")):
        ax.bar([i + (k - 1) * width for i in range(len(rows))], [r[metric] for r in rows],
               width, label=metric)
    ax.set_xticks(range(len(rows)), [r["class"] for r in rows])
    ax.set_xlabel("class")
    ax.set_ylim(0, 1.18)  # headroom: the legend sits above the bars, never on them
    ax.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax.set_ylabel("score")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", ncol=3)
    ax.set_title("Per-class precision, recall and F1 (test split)")


def _draw_train_curve(fig: Any, rows: list[dict[str, Any]]) -> None:
    rows = sorted(rows, key=lambda r: r["epoch"])
    epochs = [r["epoch"] for r in rows]
    ax = fig.add_subplot()
    ax.plot(epochs, [r["train_loss"] for r in rows], label="train loss")
    ax.plot(epochs, [r["val_loss"] for r in rows], label="validation loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    acc = ax.twinx()
    acc.plot(epochs, [r["val_accuracy"] for r in rows], color="tab:green",
             label="validation accuracy")
    acc.set_ylabel("accuracy")
    acc.set_ylim(0, 1.05)
    lines = ax.get_lines() + acc.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center right")
    ax.set_title("Training curve")


SPECS: tuple[PlotSpec, ...] = (
    PlotSpec("confusion", ("actual", "predicted"), (str, str), (6.4, 5.6), _draw_confusion),
    PlotSpec("per_class", ("class", "precision", "recall", "f1"), (str, float, float, float),
             (8.0, 4.5), _draw_per_class),
    PlotSpec("train_curve", ("epoch", "train_loss", "val_loss", "val_accuracy"),
             (int, float, float, float), (8.0, 4.5), _draw_train_curve),
)


def render(spec: PlotSpec, rows: list[dict[str, Any]]) -> bytes:
    """The PNG bytes of one plot (Agg canvas, default style, no metadata that varies)."""
    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    with matplotlib.style.context("default"):
        fig = Figure(figsize=spec.size, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)
        spec.draw(fig, rows)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def make_plots(plots_dir: str | Path = DEFAULT_PLOTS, out: str | Path = DEFAULT_OUT,
               names: tuple[str, ...] | None = None,
               progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write ``<out>/<name>.png`` for each plot; return the paths written.

    All CSVs are read and all images rendered first: a bad file raises InputError and nothing
    is written.
    """
    from modelops.fsutil import atomic_write_bytes

    plots_dir, out = Path(plots_dir), Path(out)
    specs = [s for s in SPECS if names is None or s.name in names]
    images = []
    for spec in specs:
        rows = _read_csv(plots_dir / f"{spec.name}.csv", spec)
        if progress:
            progress(f"rendering {spec.name}.png from {plots_dir / spec.name}.csv "
                     f"({len(rows)} rows)")
        images.append((out / f"{spec.name}.png", render(spec, rows)))
    for path, data in images:
        atomic_write_bytes(path, data)
    return [path for path, _ in images]


def artifact_name(out: str | Path = DEFAULT_OUT) -> str | None:
    """:data:`ARTIFACT` when ``out`` holds every PNG of this module (the ``figures`` stage's
    output, reproduced or checked out for this revision), else ``None``: the comment names no
    artifact that was not made."""
    out = Path(out)
    return ARTIFACT if all((out / f"{s.name}.png").is_file() for s in SPECS) else None


def _cmd_plots(args: Any) -> int:
    written = make_plots(args.plots, args.out, progress=lambda line: print(line, flush=True))
    for path in written:
        print(f"wrote {path}")
    print(f"attach {args.out} to the workflow run as the artifact {ARTIFACT!r}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``plots`` to ``modelops-ci``."""
    p = subparsers.add_parser(
        "plots", help="render plots/*.csv as PNG files for the workflow artifact",
        description="Render the pipeline's plot data (plots/confusion.csv, plots/per_class.csv, "
                    "plots/train_curve.csv) as confusion.png, per_class.png and train_curve.png "
                    "with matplotlib (headless). The output is byte-for-byte reproducible. In "
                    f"GitHub Actions, upload the folder as the artifact {ARTIFACT!r}; the PR "
                    "comment points there. Exit 2 when a CSV is missing or malformed (nothing "
                    "is written then).")
    p.add_argument("--plots", default=str(DEFAULT_PLOTS),
                   help="folder with the plot CSVs (default: %(default)s)")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="folder for the PNG files (default: %(default)s)")
    p.set_defaults(handler=_cmd_plots)
