"""Mermaid ``xychart-beta`` charts for the pull-request comment: GitHub draws them in the
comment itself, so no image leaves the repository.

The grammar is Mermaid's own (``packages/mermaid/src/diagrams/xychart/parser/xychart.jison``):

- ``xychart-beta`` is the keyword every Mermaid with XY charts accepts (10.6 on); the bare
  ``xychart`` only from 11.10.
- Text is a double-quoted string that cannot contain ``"`` (there is no escape), or one bare
  word. Every text here is quoted and never empty.
- A number is ``[+-]?(\\d+(\\.\\d+)?|\\.\\d+)``: no exponent, no ``NaN`` or ``Infinity``.
- ``bar`` and ``line`` take a name, which Mermaid parses and throws away: the chart has no
  legend. Two bar series are drawn on top of each other. So a chart here holds at most one bar
  series (the base) and one line (the head), and says so in its title and in the line under it.
- Bars rise from the bottom of the y axis, so a bar chart's axis starts at 0 (or below).
- Categories are a d3 band scale: two equal labels are one category, so labels are made unique.
- Before parsing, Mermaid applies a ``%%{...}%%`` directive found anywhere in the text (inside a
  quoted string too), drops lines that start with ``%%``, reads ``---`` front matter at the start,
  and turns ``#name;`` into an HTML entity. Untrusted text is therefore cleaned by :func:`text`:
  no ``"``, backtick, newline, control or format character, ``<``/``>``, ``%%`` or ``#name;``
  survives; the fence around a chart can then never be closed by a label either.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal
from typing import Any

MAX_POINTS = 24       # points of a line (a longer series is downsampled evenly, last kept)
MAX_CATEGORIES = 30   # labels of a bar chart
MAX_LABEL = 24        # characters of a category label
MAX_TITLE = 100       # characters of a title or axis name

_BREAKING = {'"': "'", "`": "'", "<": "‹", ">": "›"}


def text(value: Any, limit: int = MAX_TITLE) -> str:
    """Untrusted text as the inside of a Mermaid string: printable, on one line, without a
    character that ends the string, starts a directive, comment or entity, or opens HTML."""
    raw = "" if value is None else str(value)
    out = []
    for ch in raw:
        if ch in _BREAKING:
            out.append(_BREAKING[ch])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            out.append(" ")  # newlines, tabs, bidi overrides, zero-width characters
        else:
            out.append(ch)
    cleaned = " ".join("".join(out).split())
    cleaned = re.sub(r"%+", "%", cleaned)              # no %% comment or %%{init}%% directive
    cleaned = re.sub(r"#(?=\w+;)", "#\u200b", cleaned)  # no #quot; entity
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned or "–"


def quote(value: Any, limit: int = MAX_TITLE) -> str:
    return f'"{text(value, limit)}"'


def number(value: float) -> str:
    """A finite number as Mermaid reads it: plain decimal, six significant digits."""
    if not is_finite(value):
        raise ValueError(f"not a finite number: {value!r}")
    rounded = float(f"{float(value):.6g}")
    if rounded == 0:
        return "0"
    out = format(Decimal(repr(rounded)), "f")
    if "." in out:
        out = out.rstrip("0").rstrip(".")
    return out


def is_finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def evenly(n: int, limit: int = MAX_POINTS) -> list[int]:
    """Indices of at most ``limit`` of ``n`` points, evenly spread, the first and last kept."""
    if n <= limit:
        return list(range(n))
    if limit < 2:
        return [n - 1]
    step = (n - 1) / (limit - 1)
    return sorted({round(i * step) for i in range(limit)})


def unique(labels: list[str]) -> list[str]:
    """Labels made distinct (Mermaid merges equal categories into one)."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        candidate, k = label, 1
        while candidate in seen:
            k += 1
            candidate = f"{label} ({k})"
        seen[candidate] = 1
        out.append(candidate)
    return out


def axis_range(values: list[float], *, from_zero: bool) -> tuple[float, float]:
    low, high = min(values), max(values)
    if from_zero:
        low, high = min(0.0, low), max(0.0, high)
    if high <= low:  # one value: give the axis some height
        pad = abs(high) * 0.1 or 1.0
        low, high = (low - pad if not from_zero or low < 0 else low), high + pad
    return low, high


def xychart(*, title: str, x_title: str, categories: list[str], y_title: str,
            y_range: tuple[float, float] | None, bar: list[float] | None,
            line: list[float] | None) -> str:
    """The source of one chart (no fence). ``title``, ``x_title``, ``y_title`` and
    ``categories`` may be untrusted; every value must be finite and there must be one per
    category."""
    for series in (bar, line):
        if series is not None and len(series) != len(categories):
            raise ValueError("a series needs one value per category")
    if bar is None and line is None:
        raise ValueError("a chart needs a series")
    labels = unique([text(c, MAX_LABEL) for c in categories])
    lines = ["xychart-beta", f"  title {quote(title)}",
             f"  x-axis {quote(x_title)} [" + ", ".join(f'"{c}"' for c in labels) + "]"]
    y = f"  y-axis {quote(y_title)}"
    if y_range is not None:
        y += f" {number(y_range[0])} --> {number(y_range[1])}"
    lines.append(y)
    if bar is not None:
        lines.append("  bar [" + ", ".join(number(v) for v in bar) + "]")
    if line is not None:
        lines.append("  line [" + ", ".join(number(v) for v in line) + "]")
    return "\n".join(lines) + "\n"
