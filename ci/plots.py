"""``modelops-ci plots``: PNG images of the model's plot files, for the workflow artifact.

The plot files are ``modelops.model.plots`` (``[]`` = every plot ``dvc.yaml`` declares), read
and interpreted by DVC itself (``repo.plots.show``): the rows of each CSV, TSV, JSON or YAML
file and its ``dvc.yaml`` plot definition (``x``, ``y``, ``template``, ``title``, ``x_label``,
``y_label``). Each becomes ``<out>/<file stem>.png``:

- ``template: confusion`` (or ``confusion_normalized``): a confusion matrix of the ``x``
  (actual) and ``y`` (predicted) columns;
- otherwise one series per ``y`` column (default: the last column) against ``x`` (default: the
  row number, DVC's ``step``): lines when ``x`` is numeric (markers only for ``scatter``),
  grouped bars when it is a label (a class name), horizontal bars for ``bar_horizontal``
  (in DVC's own shape too: a numeric ``x`` value per ``y`` label, ``x: importance, y: feature``);
- image plots (``.png``, ``.jpg``, ``.svg``, ``.gif``) are copied as they are.

The images are attached to the workflow run as the artifact :data:`ARTIFACT` (never sent to an
image host); the PR comment names it. Output is deterministic: matplotlib's default style
whatever the local ``matplotlibrc`` says, the headless Agg canvas, a fixed size and dpi, and no
``Software`` or date entries in the PNG metadata: the same rows give the same bytes. Every file
is read and every image rendered before the first file is written, so bad input leaves nothing
behind.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from modelops.errors import ExternalError, InputError
from modelops.fsutil import atomic_write_bytes
from modelops.settings import load_settings

ARTIFACT = "model-plots"
DEFAULT_OUT = Path("reports") / "plots"
DPI = 100
SIZE = (8.0, 4.5)           # inches; times DPI gives the PNG's pixel size
CONFUSION_SIZE = (6.4, 5.6)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".svg", ".gif")
CONFUSION_TEMPLATES = ("confusion", "confusion_normalized")
HINT = "run the pipeline (dvc repro) to write it again, or fix its plot definition in dvc.yaml"
MAX_CONFUSION_CLASSES = 30


@dataclass
class Plot:
    """One plot file at one revision: DVC's rows (``None`` for an image or when unreadable)
    and its merged plot definition."""

    path: str
    props: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] | None = None
    error: str | None = None

    @property
    def is_image(self) -> bool:
        return self.path.lower().endswith(IMAGE_SUFFIXES)

    @property
    def template(self) -> str:
        return str(self.props.get("template") or "linear")

    @property
    def stem(self) -> str:
        return PurePosixPath(self.path).stem


# --------------------------------------------------------------------------- reading (DVC)

def _definitions(result: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``file -> props`` from a ``plots show`` revision result: stage-level plot options first,
    then top-level ``plots:`` definitions, which may name several files under ``y``."""
    out: dict[str, dict[str, Any]] = {}
    defs = ((result.get("definitions") or {}).get("data") or {})
    ordered = sorted(defs.items(), key=lambda kv: kv[0] != "")  # stage-level ("") first
    for _dvcfile, entry in ordered:
        for key, props in ((entry or {}).get("data") or {}).items():
            props = dict(props or {})
            y = props.get("y")
            if isinstance(y, Mapping):  # {file: columns}: one plot id over several files
                x = props.get("x")
                for file, columns in y.items():
                    merged = {**out.get(str(file), {}), **props, "y": columns}
                    if isinstance(x, Mapping):
                        merged["x"] = x.get(file)
                    out[str(file)] = merged
            else:
                out[str(key)] = {**out.get(str(key), {}), **props}
    return out


def plots_from_show(result: Mapping[str, Any], files: Sequence[str] | None = None
                    ) -> list[Plot]:
    """The plots of one revision of ``repo.plots.show()``, in ``files`` order when given."""
    from modelops.ci.metrics import normalise

    defs = {normalise(k): v for k, v in _definitions(result).items()}
    sources = ((result.get("sources") or {}).get("data") or {})
    found: dict[str, Plot] = {}
    for path, source in sources.items():
        key = normalise(path)
        plot = Plot(key, dict(defs.get(key) or {}))
        if "error" in (source or {}):
            plot.error = str(source["error"]).strip() or type(source["error"]).__name__
        elif not plot.is_image:
            data = (source or {}).get("data")
            plot.rows = data if isinstance(data, list) else None
        found[key] = plot
    for key, props in defs.items():  # declared, no source at this revision
        if key not in found and not key.endswith("/"):
            found[key] = Plot(key, dict(props), error="not found")
    order = [normalise(f) for f in files] if files else list(found)
    return [found.get(f) or Plot(f, error="not found") for f in order]


@contextlib.contextmanager
def _dvc_repo(root: Path) -> Iterator[Any]:
    try:
        from dvc.repo import Repo
    except ImportError as exc:  # pragma: no cover - dvc is in the [ci] extra
        raise ExternalError(f"cannot import dvc: {exc}",
                            hint="install the suite's ci extra: pip install "
                                 "'modelops-suite[ci]'") from exc
    if not (root / ".dvc").is_dir():
        raise InputError(f"{root.resolve().name!r} is not a DVC repository (no .dvc/ folder)",
                         hint="run the command from the root of the model repository")
    with contextlib.chdir(root), Repo(os.curdir) as repo:
        yield repo


def show(repo: Any, files: Sequence[str] | None, revs: Sequence[str] | None = None
         ) -> dict[str, list[Plot]]:
    """``repo.plots.show`` of ``files`` (``None``/empty: every declared plot) at ``revs``
    (``None``: the workspace), as :class:`Plot` lists per revision."""
    targets = list(files) if files else None
    try:
        result = repo.plots.show(targets=targets, revs=list(revs) if revs else None)
    except Exception as exc:  # DVC's own errors: a broken dvc.yaml, ...
        text = str(exc).strip() or type(exc).__name__
        raise ExternalError(f"dvc plots show failed: {text[-600:]}") from exc
    out: dict[str, list[Plot]] = {}
    for rev, entry in result.items():
        out[rev] = plots_from_show(entry or {}, targets)
    return out


def workspace_plots(root: str | Path = ".", files: Sequence[str] | None = None) -> list[Plot]:
    """The plot files in the workspace with their definitions."""
    with _dvc_repo(Path(root)) as repo:
        return show(repo, files).get("workspace", [])


# --------------------------------------------------------------------------- values

def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _columns(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _label_key(label: str) -> tuple[int, float | str]:
    number = _number(label)
    return (0, number) if number is not None else (1, label)


def _need_rows(plot: Plot) -> list[dict[str, Any]]:
    if plot.error:
        raise InputError(f"{plot.path}: plot data not readable ({plot.error})", hint=HINT)
    if not plot.rows:
        raise InputError(f"{plot.path}: no data rows", hint=HINT)
    return plot.rows


def _need_column(plot: Plot, rows: list[dict[str, Any]], column: str) -> None:
    if column not in rows[0]:
        raise InputError(f"{plot.path}: missing column {column!r} (columns: "
                         f"{', '.join(map(str, rows[0]))})", hint=HINT)


def confusion_counts(plot: Plot) -> tuple[list[str], list[list[int]]]:
    """Labels and counts of a confusion plot (``x`` actual, ``y`` predicted)."""
    rows = _need_rows(plot)
    x = str(plot.props.get("x") or "actual")
    y = (_columns(plot.props.get("y")) or ["predicted"])[0]
    for column in (x, y):
        _need_column(plot, rows, column)
    pairs = []
    for i, row in enumerate(rows, start=1):
        a, p = row.get(x), row.get(y)
        if a in (None, "") or p in (None, ""):
            raise InputError(f"{plot.path}: row {i}: column {x if a in (None, '') else y!r} "
                             "is empty", hint=HINT)
        pairs.append((str(a).strip(), str(p).strip()))
    labels = sorted({a for a, _ in pairs} | {p for _, p in pairs}, key=_label_key)
    index = {c: i for i, c in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for a, p in pairs:
        matrix[index[a]][index[p]] += 1
    return labels, matrix


def labels_on_y(plot: Plot) -> bool:
    """Whether a ``bar_horizontal`` plot is in DVC's own shape: its templates put the value on
    ``x`` (quantitative) and the category on ``y`` (nominal), e.g. ``x: importance, y:
    feature``. A numeric ``x`` with one ``y`` column holding labels is read that way; any other
    shape keeps ``x`` as the category and each ``y`` column as a value."""
    if not plot.template.startswith("bar_horizontal") or not plot.rows:
        return False
    x, ys = plot.props.get("x"), _columns(plot.props.get("y"))
    if not isinstance(x, str) or not x or len(ys) != 1:
        return False
    rows = plot.rows
    return all(_number(r.get(x)) is not None for r in rows) and \
        all(r.get(ys[0]) not in (None, "") for r in rows) and \
        any(_number(r.get(ys[0])) is None for r in rows)


def series(plot: Plot) -> tuple[str, list[Any], dict[str, list[float]]]:
    """``(category/x name, category/x values, {value column: values})`` of a non-confusion
    plot; for DVC's own ``bar_horizontal`` shape (:func:`labels_on_y`) the categories are the
    ``y`` column and the values the ``x`` column."""
    rows = _need_rows(plot)
    x = plot.props.get("x")
    x = str(x) if isinstance(x, str) and x else None
    ys = _columns(plot.props.get("y")) or [c for c in rows[0] if c != x][-1:]
    if x is not None:
        _need_column(plot, rows, x)
    for column in ys:
        _need_column(plot, rows, column)
    if labels_on_y(plot):
        x, ys = ys[0], [x]
    xs = [row.get(x) for row in rows] if x else list(range(len(rows)))
    values: dict[str, list[float]] = {}
    for column in ys:
        out = []
        for i, row in enumerate(rows, start=1):
            number = _number(row.get(column))
            if number is None:
                got = row.get(column)
                what = "is empty" if got in (None, "") else f"{got!r} is not a number"
                raise InputError(f"{plot.path}: row {i}: column {column!r} {what}", hint=HINT)
            out.append(number)
        values[column] = out
    return x or "step", xs, values


# --------------------------------------------------------------------------- drawing

def _draw_confusion(fig: Any, plot: Plot) -> None:
    labels, counts = confusion_counts(plot)
    ax = fig.add_subplot()
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    peak = max(max(row) for row in counts) or 1
    if len(labels) <= MAX_CONFUSION_CLASSES:
        for i, row in enumerate(counts):
            for j, n in enumerate(row):
                if n:
                    ax.text(j, i, str(n), ha="center", va="center", fontsize=8,
                            color="white" if n > peak / 2 else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel(str(plot.props.get("y_label") or "predicted"))
    ax.set_ylabel(str(plot.props.get("x_label") or "actual"))
    correct = sum(counts[i][i] for i in range(len(labels)))
    total = sum(map(sum, counts))
    ax.set_title(str(plot.props.get("title") or f"Confusion matrix ({correct}/{total} correct)"))


def _draw_series(fig: Any, plot: Plot) -> None:
    x_name, xs, values = series(plot)
    ax = fig.add_subplot()
    numeric = all(_number(v) is not None for v in xs)
    horizontal = plot.template.startswith("bar_horizontal")
    if horizontal or not numeric:
        labels = [str(v) for v in xs]
        if labels_on_y(plot):  # DVC's order: the rows', by value for bar_horizontal_sorted
            first = next(iter(values.values()))
            order = sorted(range(len(labels)), key=lambda i: -first[i]) \
                if plot.template == "bar_horizontal_sorted" else list(range(len(labels)))
            ax.invert_yaxis()  # the first row on top, as DVC draws it
        else:
            order = sorted(range(len(labels)), key=lambda i: _label_key(labels[i])) \
                if not numeric else list(range(len(labels)))
        width = 0.8 / max(1, len(values))
        for k, (name, ys) in enumerate(values.items()):
            positions = [i + (k - (len(values) - 1) / 2) * width for i in range(len(order))]
            heights = [ys[i] for i in order]
            (ax.barh if horizontal else ax.bar)(positions, heights, width, label=name)
        (ax.set_yticks if horizontal else ax.set_xticks)(range(len(order)),
                                                         [labels[i] for i in order])
        ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    else:
        xv = [_number(v) for v in xs]
        for name, ys in values.items():
            if plot.template.startswith("scatter"):
                ax.scatter(xv, ys, s=12, label=name)
            else:
                ax.plot(xv, ys, label=name)
        ax.grid(alpha=0.3)
    x_label = str(plot.props.get("x_label") or x_name)
    y_label = str(plot.props.get("y_label") or ", ".join(values))
    if labels_on_y(plot):  # DVC's titles: x_label is the value axis, y_label the categories
        x_label = str(plot.props.get("y_label") or x_name)
        y_label = str(plot.props.get("x_label") or ", ".join(values))
    ax.set_xlabel(y_label if horizontal else x_label)
    ax.set_ylabel(x_label if horizontal else y_label)
    if len(values) > 1:  # beside the axes, never on the data
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.set_title(str(plot.props.get("title") or plot.path))


def render(plot: Plot) -> bytes:
    """The PNG bytes of one plot (Agg canvas, default style, no metadata that varies)."""

    import matplotlib.style
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    confusion = plot.template in CONFUSION_TEMPLATES
    with matplotlib.style.context("default"):
        fig = Figure(figsize=CONFUSION_SIZE if confusion else SIZE, dpi=DPI,
                     layout="constrained")
        FigureCanvasAgg(fig)
        (_draw_confusion if confusion else _draw_series)(fig, plot)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def output_names(plots: Sequence[Plot]) -> dict[str, str]:
    """``path -> output file name``: the stem, or the whole path where stems collide."""
    stems: dict[str, int] = {}
    for p in plots:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    names = {}
    for p in plots:
        suffix = PurePosixPath(p.path).suffix.lower() if p.is_image else ".png"
        base = p.stem if stems[p.stem] == 1 else \
            str(PurePosixPath(p.path).with_suffix("")).replace("/", "-")
        names[p.path] = base + suffix
    return names


def make_plots(plots: Sequence[Plot], out: str | Path = DEFAULT_OUT, *, root: str | Path = ".",
               progress: Callable[[str], None] | None = None) -> list[Path]:
    """Write one image per plot into ``out``; return the paths written. All files are read and
    all images rendered first: a bad file raises InputError and nothing is written."""

    if not plots:
        raise InputError("no plot files: modelops.model.plots is empty and dvc.yaml declares "
                         "no plots", hint="declare them in dvc.yaml (plots:) or list them in "
                                          "modelops.model.plots")
    out = Path(out)
    names = output_names(plots)
    images = []
    for plot in plots:
        if plot.is_image:
            src = Path(root) / plot.path
            if not src.is_file():
                raise InputError(f"{plot.path}: image plot not found", hint=HINT)
            images.append((out / names[plot.path], src.read_bytes()))
            continue
        if progress:
            progress(f"rendering {names[plot.path]} from {plot.path} "
                     f"({len(plot.rows or [])} rows, template {plot.template})")
        images.append((out / names[plot.path], render(plot)))
    for path, data in images:
        atomic_write_bytes(path, data)
    return [path for path, _ in images]


def artifact_name(out: str | Path | None = DEFAULT_OUT) -> str | None:
    """:data:`ARTIFACT` when ``out`` holds plot images (made for this revision), else ``None``:
    the comment names no artifact that was not made."""
    if not out:
        return None
    out = Path(out)
    has = out.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in out.iterdir())
    return ARTIFACT if has else None


def _cmd_plots(args: Any) -> int:
    root = Path(".")
    files = args.files or list(load_settings(args.params).model.plots)
    plots = workspace_plots(root, files)
    if not plots:
        print("plots: no plot files (modelops.model.plots is empty and dvc.yaml declares "
              "none): nothing to render")
        return 0
    written = make_plots(plots, args.out, root=root,
                         progress=lambda line: print(line, flush=True))
    for path in written:
        print(f"wrote {path}")
    print(f"attach {args.out} to the workflow run as the artifact {ARTIFACT!r}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``plots`` to ``modelops-ci``."""
    p = subparsers.add_parser(
        "plots", help="render the model's plot files as PNG files for the workflow artifact",
        description="Render the plot files (modelops.model.plots, or every plot dvc.yaml "
                    "declares) as PNG images with matplotlib (headless), following each "
                    "file's dvc.yaml plot definition (x, y, template: confusion, linear, "
                    "scatter, bar_horizontal; title, x_label, y_label). Image plots are "
                    "copied. The output is byte-for-byte reproducible. In GitHub Actions, "
                    f"upload the folder as the artifact {ARTIFACT!r}; the PR comment points "
                    "there. Exit 2 when a file is missing or malformed (nothing is written "
                    "then). No plot files at all is not an error: nothing is written.")
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="plot files to render (default: modelops.model.plots, else every plot "
                        "in dvc.yaml)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="folder for the PNG files (default: %(default)s)")
    p.set_defaults(handler=_cmd_plots)
