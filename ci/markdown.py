"""Render ``report.json`` as the Markdown of the sticky pull-request comment.

:func:`render_comment` is what ``modelops-ci comment`` posts (and writes to
``reports/pr-comment.md`` without a token). The body starts with the hidden marker
``<!-- modelops-suite:sticky:<model> -->`` by which the comment is found again, and stays under
``max_chars`` (GitHub's limit is 65,536): detail blocks are shortened first, then the body is cut
at a line with a note and a link to the full report.

Everything that comes from the change under review (branch names, PR titles, metric, parameter,
class and file names, the model card) is untrusted: :func:`md` escapes it so it cannot mention
people or teams, reference issues, open HTML, make links or images, or break a table row; text in
code blocks uses a fence longer than any backtick run inside it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import math
import re
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from modelops.ci import charts

MARKER_PREFIX = "<!-- modelops-suite:sticky:"
GITHUB_MAX_CHARS = 65536
TEMPLATES = Path(__file__).parent / "templates"
MAX_INLINE = 200

_ZWSP = "&#8203;"
# characters with a Markdown or HTML meaning, escaped with a backslash; `$` opens GitHub's
# math ($...$, $$...$$)
_MD_SPECIAL = re.compile(r"([\\`*{}\[\]()#!|~$])")
# `_` between two letters or digits can neither open nor close emphasis (CommonMark's flanking
# rules), so `roc_auc` stays readable; every other `_` is escaped
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")
_WWW = re.compile(r"(?i)\bwww\.")
# what GitHub turns into links by itself: GH-12 (an issue), a commit sha (7 to 40 hex digits
# with a letter among them, or 40 digits), owner/repo#12 and owner/repo@sha
_GH_REF = re.compile(r"(?i)\b(GH)-(?=\d)")
_SHA = re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]{7,}\b|\b[0-9]{40,}\b", re.I)


def marker(model: str) -> str:
    """The hidden first line by which the sticky comment of ``model`` is recognised."""
    safe = re.sub(r"[^a-z0-9._-]", "-", model.lower())
    return f"{MARKER_PREFIX}{safe} -->"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def md(value: Any, limit: int = MAX_INLINE) -> str:
    """Escape untrusted text for inline Markdown (also safe inside a table cell)."""
    if value is None:
        return "–"
    text = " ".join(str(value).split())  # newlines and tabs cannot end a table row
    text = _clip(text, limit)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    text = _UNDERSCORE.sub(r"\\_", text)
    text = _SHA.sub(lambda m: _ZWSP.join(re.findall(".{1,6}", m.group(0))), text)  # no commit link
    text = _GH_REF.sub(lambda m: m.group(1) + _ZWSP + "-", text)   # no GH-12 issue link
    text = text.replace("@", "@" + _ZWSP)          # no @user / @org/team mentions
    text = text.replace("://", ":" + _ZWSP + "//")  # no autolinks
    text = _WWW.sub(lambda m: m.group(0)[:3] + _ZWSP + ".", text)
    text = re.sub(r"(?<=\w)/(?=[\w.-]+\\?#)", "/" + _ZWSP, text)  # no owner/repo#1 refs
    return text


def code(value: Any, limit: int = MAX_INLINE) -> str:
    """Text for inside single backticks in a table: no backtick, pipe or newline can escape."""
    if value is None:
        return "–"
    text = " ".join(str(value).split())
    # a code span shows entities literally: a real zero-width space keeps "@x" from mentioning
    return _clip(text, limit).replace("`", "'").replace("|", "¦").replace("@", "@\u200b")


def fence(text: str, lang: str = "") -> str:
    """A fenced code block that no content can close early."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{ticks}{lang}\n{body}{ticks}"


def num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return md(value, 40)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.3g}"  # small values (errors, tolerances) keep their digits
    return f"{value:.{digits}f}".rstrip("0").rstrip(".") if value != 0 else "0"


def signed(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return md(value, 40)
    if abs(value) < 1e-12:
        return "±0"
    text = num(abs(value), digits)
    if text == "0":
        return "±0"
    return ("+" if value > 0 else "−") + text


BLOCKS = " ▏▎▍▌▋▊▉█"


def bar(value: Any, width: int = 20) -> str:
    """A Unicode bar for a value in [0, 1]."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return ""
    eighths = round(max(0.0, min(1.0, float(value))) * width * 8)
    full, rest = divmod(eighths, 8)
    return ("█" * full + (BLOCKS[rest] if rest else "")).ljust(width, " ")


STATUS_ICON = {"pass": "✅", "fail": "❌", "no-baseline": "⚪", "skipped": "⏭️", None: ""}


def icon(status: Any) -> str:
    return STATUS_ICON.get(status, "❔")


def safe_url(url: Any) -> str | None:
    """Only plain https URLs (no spaces, quotes or brackets) are linked."""
    if not isinstance(url, str) or not re.fullmatch(r"https://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+",
                                                    url):
        return None
    return url.replace("(", "%28").replace(")", "%29")


SHADES = " ░▒▓█"


def confusion_table(cm: dict[str, Any]) -> str:
    """The confusion matrix as a Markdown table: counts, a shade for the share of the actual
    class, and the change against the base in brackets."""
    classes = [md(c, 20) for c in cm.get("classes", [])]
    head, base = cm.get("head") or [], cm.get("base")
    lines = ["| actual ＼ predicted | " + " | ".join(classes) + " |",
             "|---|" + "---:|" * len(classes)]
    for i, row in enumerate(head):
        total = sum(row) or 1
        cells = []
        for j, count in enumerate(row):
            shade = SHADES[min(4, round(count / total * 4))] if count else ""
            text = (f"{shade} {count}".strip() if count else "·") if i != j else f"**{count}**"
            if base is not None:
                change = count - base[i][j]
                if change:
                    text += f" ({'+' if change > 0 else '−'}{abs(change)})"
            cells.append(text)
        lines.append(f"| {classes[i] if i < len(classes) else '?'} | " + " | ".join(cells)
                     + " |")
    return "\n".join(lines)


SECTION_RENDERERS: dict[str, tuple[str, str]] = {
    # section name -> (module, function(section) -> Markdown); the section owner escapes its text
    "compile": ("modelops.ci.compile.markdown", "render_compile_section"),
    "timing": ("modelops.ci.compile.timing", "render_timing_section"),
    "compute": ("modelops.ci.cost_markdown", "render_compute_section"),
}


def _section_block(name: str, section: dict[str, Any]) -> str | None:
    target = SECTION_RENDERERS.get(name)
    if target is None or section.get("status") == "skipped":
        return None
    try:
        render = getattr(importlib.import_module(target[0]), target[1])
        return str(render(section)).rstrip("\n")
    except Exception:  # a broken renderer costs its block, never the comment
        return None


# The options the comment's template is compiled with: they shape the compiled code, so they
# name its bytecode cache (jinja2 keys a cached template by its name and source only).
ENV_OPTIONS: dict[str, Any] = {
    "undefined": jinja2.StrictUndefined, "autoescape": False, "keep_trailing_newline": True,
    "trim_blocks": True, "lstrip_blocks": True}


class _BytecodeCache(jinja2.FileSystemBytecodeCache):
    """jinja2's own file cache of compiled templates, beside the templates as Python's
    ``__pycache__`` is beside modules (the package's environment is what CI caches and
    restores): compiling the comment's template costs each process 0.1 s. A folder that cannot
    be written, or a file that cannot be read, only means compiling again; jinja2 itself drops
    an entry whose source, jinja2 or Python version changed."""

    def __init__(self, directory: Path) -> None:
        fingerprint = hashlib.sha256(repr(sorted(
            (k, getattr(v, "__name__", v)) for k, v in ENV_OPTIONS.items())).encode())
        super().__init__(str(directory), f"__jinja2_{fingerprint.hexdigest()[:12]}_%s.cache")
        self._directory = directory

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError, ValueError, EOFError):
            super().load_bytecode(bucket)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            self._directory.mkdir(exist_ok=True)
            super().dump_bytecode(bucket)


@cache
def _env() -> jinja2.Environment:
    # Markdown, not HTML: untrusted values pass through the md/code filters instead
    env = jinja2.Environment(  # noqa: S701 - autoescape off: see ENV_OPTIONS
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        bytecode_cache=_BytecodeCache(TEMPLATES / "__pycache__"), **ENV_OPTIONS)
    env.filters.update(md=md, code=code, num=num, signed=signed, bar=bar, icon=icon,
                       fence=fence)
    return env


# --------------------------------------------------------------------------- plots

SPARKS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[Any], low: float, high: float) -> str:
    """Values as block characters on the scale ``[low, high]`` (shared by base and head, so the
    two lines compare)."""
    out = []
    for v in values:
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            out.append(" ")
            continue
        frac = 0.0 if high <= low else (float(v) - low) / (high - low)
        out.append(SPARKS[min(len(SPARKS) - 1, max(0, round(frac * (len(SPARKS) - 1))))])
    return "".join(out)


def _finite(values: list[Any] | None) -> list[float]:
    return [float(v) for v in values or [] if isinstance(v, (int, float))
            and not isinstance(v, bool) and math.isfinite(v)]


MAX_SERIES_CHARTS = 6   # series of one plot drawn (the rest only in its table)
MAX_COLUMN_CHARTS = 4   # value columns of one bar plot drawn
# characters the plots section may take at each detail level (render_comment tries 3, then 2);
# a plot that does not fit is shown without its charts, then not at all (counted)
PLOT_BUDGET = {3: 30000, 2: 12000}


def _revision_names(revisions: dict[str, Any] | None) -> tuple[str, str]:
    """``("base `1111111`", "head `2222222`")`` for the line under a chart; the short shas."""
    revisions = revisions or {}
    out = []
    for side in ("base", "head"):
        sha = str((revisions.get(side) or {}).get("sha") or "")
        out.append(re.sub(r"[^0-9a-fA-F]", "", sha)[:7])
    return out[0], out[1]


def _side(name: str, sha: str, markdown: bool) -> str:
    if not sha:
        return name
    return f"{name} `{sha}`" if markdown else f"{name} {sha}"


def _chart(source: str, legend: str) -> str:
    return fence(source, "mermaid") + "\n\n" + legend


def _first_bad(values: list[Any]) -> tuple[int, Any] | None:
    for i, v in enumerate(values):
        if not charts.is_finite(v):
            return i, v
    return None


def _bad_text(name: str, side: str, bad: tuple[int, Any], what: str) -> str:
    value = "missing" if bad[1] is None else code(bad[1], 20)
    shown = f"`{value}`" if bad[1] is not None else value
    return (f"<sub>no chart for `{code(name, 60)}`: the {side} has a value that is not a "
            f"finite number ({what} {bad[0] + 1}: {shown}); see the table</sub>")


def _x_grid(values: Any, n: int) -> list[float] | None:
    if isinstance(values, list) and len(values) == n and all(charts.is_finite(v) for v in values):
        return values
    return None


def _series_charts(plot: dict[str, Any], name: str, pair: dict[str, Any],
                   shas: tuple[str, str]) -> list[str]:
    """The charts of one series: base as bars and head as a line on one x axis when both have
    the same x values, else one line chart each on a shared y scale."""
    head, base = list(pair.get("head") or []), pair.get("base")
    base = list(base) if base else None
    for side, values in (("head", head), ("base", base or [])):
        bad = _first_bad(values)
        if bad is not None:
            return [_bad_text(name, side, bad, "point")]
    if len(head) < 2:
        return [f"<sub>no chart for `{code(name, 60)}`: the head has "
                f"{len(head)} point(s); see the table</sub>"]
    x_values = plot.get("x_values") or {}
    x_title = plot.get("x") or "step"
    hx = _x_grid(x_values.get("head"), len(head))
    bx = _x_grid(x_values.get("base"), len(base)) if base else None
    if hx is None:  # no x values in the report: the points' positions
        hx, x_title = list(range(1, len(head) + 1)), f"{x_title} (point)"
        bx = list(range(1, len(base) + 1)) if base and len(base) == len(head) else None
    base_name, head_name = shas
    if base == head and bx == hx:  # only what changed is drawn
        return [f"<sub>`{code(name, 60)}`: no change</sub>"]
    if base and bx == hx:
        keep = charts.evenly(len(head))
        title = (f"{name}: bars {_side('base', base_name, False)}, "
                 f"line {_side('head', head_name, False)}")
        y_range = charts.axis_range(base + head, from_zero=True)
        source = charts.xychart(title=title, x_title=x_title,
                                categories=[charts.number(hx[i]) for i in keep], y_title=name,
                                y_range=y_range, bar=[base[i] for i in keep],
                                line=[head[i] for i in keep])
        return [_chart(source, f"bars: {_side('base', base_name, True)}, "
                               f"line: {_side('head', head_name, True)}")]
    out = []
    shared = charts.axis_range(head + (base or []), from_zero=False)
    sides = [("head", head_name, head, hx)]
    if base and len(base) >= 2:
        sides.insert(0, ("base", base_name, base, bx or list(range(1, len(base) + 1))))
        out.append("<sub>base and head have different x values: one chart each, on the same "
                   "y scale</sub>")
    elif not base:
        out.append("<sub>no base values for this series: the head only</sub>")
    else:
        out.append("<sub>the base has one point (see the table): the head only</sub>")
    for side, sha, values, xs in sides:
        keep = charts.evenly(len(values))
        source = charts.xychart(title=f"{name}: line {_side(side, sha, False)}", x_title=x_title,
                                categories=[charts.number(xs[i]) for i in keep], y_title=name,
                                y_range=shared, bar=None, line=[values[i] for i in keep])
        out.append(_chart(source, f"line: {_side(side, sha, True)}"))
    return out


def _bar_charts(plot: dict[str, Any], column: str, labels: list[str],
                shas: tuple[str, str]) -> list[str]:
    """One chart of a bar plot's value column over its labels: base as bars, head as a line;
    at most :data:`charts.MAX_CATEGORIES` labels (the ones that changed most when there are
    more)."""
    values = (plot.get("values") or {}).get(column) or {}
    head, base = list(values.get("head") or []), list(values.get("base") or [])
    base += [None] * (len(labels) - len(base))
    for side, vals in (("head", head), ("base", base)):
        bad = next(((i, v) for i, v in enumerate(vals)
                    if v is not None and not charts.is_finite(v)), None)
        if bad is not None:
            return [_bad_text(column, side, bad, "row")]
    if any(v is None for v in head) or len(head) != len(labels):
        return [f"<sub>no chart for `{code(column, 60)}`: the head lacks values; see the "
                "table</sub>"]
    both = [i for i in range(len(labels)) if base[i] is not None]
    notes = []
    if len(both) < len(labels):
        notes.append(f"{len(labels) - len(both)} label(s) without a base value only in the "
                     "table")
    if len(both) > charts.MAX_CATEGORIES:
        moved = sorted(both, key=lambda i: -abs(head[i] - base[i]))[:charts.MAX_CATEGORIES]
        both = sorted(moved)
        notes.append(f"the {len(both)} labels that changed most")
    if len(both) < 2:
        return [f"<sub>no chart for `{code(column, 60)}`: fewer than two labels have a base "
                "and a head value; see the table</sub>"]
    if all(base[i] == head[i] for i in range(len(labels))):  # only what changed is drawn
        return [f"<sub>`{code(column, 60)}`: no change</sub>"]
    base_name, head_name = shas
    title = (f"{column}: bars {_side('base', base_name, False)}, "
             f"line {_side('head', head_name, False)}")
    chosen_b, chosen_h = [base[i] for i in both], [head[i] for i in both]
    source = charts.xychart(title=title, x_title=plot.get("x") or "label",
                            categories=[labels[i] for i in both], y_title=column,
                            y_range=charts.axis_range(chosen_b + chosen_h, from_zero=True),
                            bar=chosen_b, line=chosen_h)
    legend = f"bars: {_side('base', base_name, True)}, line: {_side('head', head_name, True)}"
    if notes:
        legend += " <sub>(" + "; ".join(notes) + ")</sub>"
    return [_chart(source, legend)]


def plot_block(plot: dict[str, Any], revisions: dict[str, Any] | None = None, *,
               with_charts: bool = True) -> str:
    """One plot file, base against head: Mermaid charts GitHub draws in the comment (base as
    bars, head as a line, said in each chart's title and in the line under it), then the
    table with the exact numbers: a series plot as one sparkline per revision (on a shared
    scale) and its last values; a bar plot as the labels whose values changed."""
    title = md(plot.get("title") or plot.get("file"), 120)
    head_line = f"**{title}** (`{code(plot.get('file'))}`)"
    shas = _revision_names(revisions)
    if plot.get("kind") == "series":
        series = plot.get("series") or {}
        drawn: list[str] = []
        if with_charts:
            for name in list(series)[:MAX_SERIES_CHARTS]:
                drawn += _series_charts(plot, str(name), series[name], shas)
            if len(series) > MAX_SERIES_CHARTS:
                drawn.append(f"<sub>{len(series) - MAX_SERIES_CHARTS} more series only in "
                             "the table</sub>")
        lines = [head_line, "", *[piece + "\n" for piece in drawn],
                 "| series | base | head | last: base → head |", "|---|---|---|---:|"]
        for name, pair in series.items():
            base, head = pair.get("base"), pair.get("head")
            values = _finite(base) + _finite(head)
            low, high = (min(values), max(values)) if values else (0.0, 1.0)
            base_cell = f"`{sparkline(base, low, high)}`" if base else "–"
            last_b = num(_finite(base)[-1]) if _finite(base) else "–"
            last_h = num(_finite(head)[-1]) if _finite(head) else "–"
            lines.append(f"| {md(name, 60)} | {base_cell} | `{sparkline(head or [], low, high)}`"
                         f" | {last_b} → {last_h} |")
        points = plot.get("points") or {}
        lines += ["", f"<sub>{md(plot.get('x'), 40)}: {points.get('base') or '–'} → "
                      f"{points.get('head') or '–'} points, each line on the scale of both"
                      "</sub>"]
        return "\n".join(lines)
    if plot.get("kind") == "bars":
        values = plot.get("values") or {}
        labels = [str(v) for v in plot.get("labels") or []]
        columns = list(values)
        drawn = []
        if with_charts:
            for column in columns[:MAX_COLUMN_CHARTS]:
                drawn += _bar_charts(plot, str(column), labels, shas)
            if len(columns) > MAX_COLUMN_CHARTS:
                drawn.append(f"<sub>{len(columns) - MAX_COLUMN_CHARTS} more column(s) only in "
                             "the table</sub>")

        def cell(c: str, side: str, i: int) -> Any:
            vals = values[c].get(side) or []
            return vals[i] if i < len(vals) else None

        changed = [i for i, _ in enumerate(labels)
                   if any(cell(c, "base", i) != cell(c, "head", i) for c in columns)]
        header = " | ".join(f"{md(c, 30)} base | {md(c, 30)} head" for c in columns)
        lines = [head_line, "", *[piece + "\n" for piece in drawn],
                 f"| {md(plot.get('x'), 30)} | {header} |",
                 "|---|" + "---:|---:|" * len(columns)]
        for i in changed:
            cells = " | ".join(f"{num(cell(c, 'base', i))} | {num(cell(c, 'head', i))}"
                               for c in columns)
            lines.append(f"| {md(labels[i], 40)} | {cells} |")
        same = len(labels) - len(changed)
        if same:
            lines += ["", f"<sub>{same} unchanged row(s) not shown</sub>"]
        return "\n".join(lines)
    if plot.get("kind") == "error":
        return f"{head_line}: cannot be compared ({md(plot.get('error'), 300)})"
    return ""


def plot_blocks(plots: list[dict[str, Any]], revisions: dict[str, Any] | None,
                budget: int) -> tuple[list[str], int]:
    """The blocks of the changed ``plots`` within ``budget`` characters, and how many were left
    out: a plot whose charts do not fit is shown with its table only."""
    blocks: list[str] = []
    used = 0
    for n, plot in enumerate(plots):
        for with_charts in (True, False):
            block = plot_block(plot, revisions, with_charts=with_charts)
            if not block or used + len(block) + 2 <= budget:
                break
        else:
            return blocks, len(plots) - n
        if block:
            blocks.append(block)
            used += len(block) + 2
    return blocks, 0


# --------------------------------------------------------------------------- view model

CHANGE_ICON = {"better": "🟢 better", "worse": "🔴 worse", "unchanged": "unchanged",
               "new": "new", "missing": "❌ missing"}


def _order(name: str, headline: list[str]) -> tuple[int, str]:
    """Headline metrics first (in the order params.yaml gives them), then by name."""
    return (headline.index(name) if name in headline else len(headline), name)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _unchanged(row: dict[str, Any]) -> bool:
    return row.get("base") is not None and row.get("base") == row.get("head")


def _gate_text(change: dict[str, Any]) -> str:
    def side(v: Any) -> str:
        return "none" if v is None else num(v)
    return f"{md(change['metric'])}.{md(change['rule'])} {side(change['base'])} → " \
           f"{side(change['head'])}"


def _view(report: dict[str, Any], run_url: str | None, detail: int) -> dict[str, Any]:
    sections = report.get("sections", {})
    evaluate = sections.get("evaluate", {})
    gates = evaluate.get("gates", [])
    rank = {"pass": 0, "no-baseline": 1, "fail": 2}
    gate_by_metric: dict[tuple[Any, str], str] = {}
    for g in gates:  # keyed by (file, path in the file); old reports have no file
        name, file = str(g["metric"]), g.get("file")
        if file and name.startswith(f"{file}:"):
            name = name[len(file) + 1:]
        for key in ((file, name), (None, name)):
            current = gate_by_metric.get(key)
            if current is None or rank.get(g["status"], 2) > rank.get(current, 2):
                gate_by_metric[key] = g["status"]
    headline = [{**h, "change_text": CHANGE_ICON.get(h.get("change"), h.get("change") or "")}
                for h in evaluate.get("headline", [])]
    primary = evaluate.get("metrics_file") or next(
        (m.get("file") for m in evaluate.get("metrics", [])), None)
    names = [str(h["name"]).split(":", 1)[-1] if h.get("file") == primary else h["name"]
             for h in headline]
    rows = [m for m in evaluate.get("metrics", []) if not str(m["name"]).startswith("per_class.")]
    metrics = sorted((m for m in rows if m.get("file", primary) == primary),
                     key=lambda m: _order(str(m["name"]), names))
    other_rows = sorted((m for m in rows if m.get("file", primary) != primary
                         and (_is_number(m.get("base")) or _is_number(m.get("head")))),
                        key=lambda m: (str(m.get("file")), str(m["name"])))
    metrics = [{**m, "gate": gate_by_metric.get((m.get("file"), str(m["name"])),
                                                 gate_by_metric.get((None, str(m["name"]))))}
               for m in metrics]
    # only what changed is shown; a gated metric always is
    shown = [m for m in metrics if not _unchanged(m) or m.get("gate")]
    others = [{"name": name, "status": s} for name, s in sections.items()
              if name not in ("evaluate", "card")]
    card = sections.get("card", {})
    diff = card.get("diff") or ""
    budget = {3: None, 2: 20000, 1: 4000, 0: 0}[detail]
    diff_lines = diff.splitlines()
    if budget is not None and len(diff) > budget:
        kept, size = [], 0
        for line in diff_lines:
            if size + len(line) + 1 > budget:
                break
            kept.append(line)
            size += len(line) + 1
        diff = "\n".join(kept + [f"... {len(diff_lines) - len(kept)} more line(s) in the full "
                                 "report"]) if kept or budget else ""
    context = {"pr_number": None, "pr_title": None, "head_ref": None, "base_ref": None,
               **(report.get("context") or {})}
    empty = {"base": None, "head": None, "delta": None}
    per_class = [{"class": c.get("class"), "support": c.get("support"),
                  **{k: {**empty, **(c.get(k) or {})} for k in ("precision", "recall", "f1")}}
                 for c in evaluate.get("per_class", [])]
    changed_classes = [c for c in per_class
                       if any(not _unchanged(c[k]) for k in ("precision", "recall", "f1"))]
    gates_from = evaluate.get("gates_from") or {}
    plots = [p for p in evaluate.get("plots") or [] if p.get("kind") in ("series", "bars",
                                                                          "error")]
    changed_plots = [p for p in plots if p.get("changed")]
    shown_plots, plots_left = plot_blocks(changed_plots, report.get("revisions"),
                                          PLOT_BUDGET.get(detail, 0))
    reproduction = sections.get("reproduction") or {}
    return {
        "marker": marker(str(report.get("model", {}).get("name", "model"))),
        "report": report, "model": report.get("model", {}), "context": context,
        "revisions": report.get("revisions", {}),
        "verdict": report.get("verdict", "fail"), "evaluate": evaluate,
        "incomplete": bool(evaluate.get("incomplete")),
        "metrics": shown, "unchanged_metrics": [m for m in metrics if m not in shown],
        "headline": headline, "primary": primary,
        "gates": gates, "per_class": changed_classes if detail >= 1 else [],
        "unchanged_classes": len(per_class) - len(changed_classes),
        "params": evaluate.get("params", []), "data": evaluate.get("data", []),
        "stages": evaluate.get("stages", []), "notes": evaluate.get("notes", []),
        "errors": evaluate.get("errors", []),
        "base_unreadable": evaluate.get("base_unreadable", []),
        "gate_changes": [_gate_text(c) for c in gates_from.get("changes") or []],
        "verdict_under_own": gates_from.get("verdict_under_own"),
        "failed_under_own": gates_from.get("failed_under_own") or [],
        "gates_from_sha": str(gates_from.get("from") or "")[:12],
        "reproduction": reproduction,
        "others": others, "card": card, "card_diff": diff, "detail": detail,
        "other_metrics": [m for m in other_rows if not _unchanged(m)] if detail >= 2 else [],
        "other_unchanged": sum(1 for m in other_rows if _unchanged(m)),
        "plot_blocks": shown_plots, "plots_left": plots_left,
        "changed_plots": len(changed_plots),
        "unchanged_plots": [p["file"] for p in evaluate.get("plots") or []
                            if not p.get("changed")],
        "blocks": [b for b in (_section_block(o["name"], o["status"]) for o in others) if b]
        if detail >= 1 else [],
        "confusion": confusion_table(evaluate["confusion"])
        if detail >= 2 and isinstance(evaluate.get("confusion"), dict) else None,
        "run_url": safe_url(run_url or context.get("run_url")),
        "failed": [g for g in gates if g["status"] == "fail"],
    }


def render_comment(report: dict[str, Any], *, run_url: str | None = None,
                   max_chars: int = GITHUB_MAX_CHARS) -> str:
    """Markdown for the sticky PR comment of ``report`` (the dict of ``report.json``).

    The result is at most ``max_chars`` characters. When the full body is longer, the card diff
    and per-class details are shortened; if that is not enough the body is cut at a line and
    ends with a note linking to ``run_url`` (the workflow run with the full report artifact).
    """
    template = _env().get_template("comment.md.j2")
    for detail in (3, 2, 1, 0):
        body = template.render(**_view(report, run_url, detail))
        if len(body) <= max_chars:
            return body
    return _cut(body, max_chars, safe_url(run_url or report.get("context", {}).get("run_url")))


def _cut(body: str, max_chars: int, url: str | None) -> str:
    where = f"[the workflow run]({url})" if url else "`reports/report.json`"
    note = (f"\n\n> [!NOTE]\n> This report was cut to fit GitHub's comment size limit. "
            f"The full report is in {where}.\n")
    room = max(0, max_chars - len(note) - 40)
    head = body[:room]
    head = head[: head.rfind("\n") + 1] if "\n" in head else ""
    # close what the cut left open, so the note renders as text
    fences = re.findall(r"^(`{3,})", head, flags=re.M)
    closing = ""
    if len(fences) % 2 == 1:
        closing += fences[-1] + "\n"
    opened = head.count("<details>") - head.count("</details>")
    closing += "</details>\n" * max(0, opened)
    out = head + closing + note
    return out[:max_chars]
