"""The comment's plots as Mermaid charts GitHub draws in the comment: base as bars, head as a
line, said in each chart's title and in the line under it; untrusted text cannot leave the
chart; long series are downsampled, the plots section stays within its budget, and a value
that is not a finite number is said, not drawn.

The charts are parsed with Mermaid's own parser (``tools/mermaid``, npm: mermaid + jsdom): it
must accept every chart, hold the data that was meant, and apply no directive. Without it the
parser tests skip locally and fail in CI. Fenced blocks are found as CommonMark (GitHub's
Markdown) finds them, with markdown-it-py.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from modelops.ci import charts
from modelops.ci.markdown import PLOT_BUDGET, plot_block, render_comment
from tests.conftest import ROOT, require_npm_tool, require_tool

DATA = Path(__file__).resolve().parents[1] / "data" / "comment"
REV = {"base": {"rev": "origin/main", "sha": "a1b2c3d4" + "0" * 32},
       "head": {"rev": "workspace", "sha": "e5f6a7b8" + "0" * 32}}


def series_plot(series: dict, *, x: str = "epoch", xs: dict | None = None,
                title: str | None = "Loss") -> dict:
    n_head = len(next(iter(series.values()))["head"])
    base = next(iter(series.values())).get("base")
    n_base = len(base) if base else None
    xs = xs or {"head": list(range(1, n_head + 1)),
                "base": list(range(1, n_base + 1)) if n_base else None}
    return {"file": "plots/train_curve.csv", "title": title, "template": "linear",
            "changed": True, "kind": "series", "x": x, "series": series,
            "points": {"head": n_head, "base": n_base}, "x_values": xs}


def bars_plot(labels: list, values: dict, x: str = "class") -> dict:
    return {"file": "plots/per_class.csv", "title": None, "template": "bar_horizontal",
            "changed": True, "kind": "bars", "x": x, "labels": labels, "values": values}


def fences(markdown: str) -> list[tuple[str, str]]:
    """(info, content) of every fenced code block, as a CommonMark parser sees them."""
    return [(t.info.strip(), t.content) for t in MarkdownIt("commonmark").parse(markdown)
            if t.type == "fence"]


def mermaid_sources(markdown: str) -> list[str]:
    return [content for info, content in fences(markdown) if info == "mermaid"]


def report_with(plots: list[dict]) -> dict:
    report = json.loads((DATA / "report.json").read_text(encoding="utf-8"))
    report["revisions"] = copy.deepcopy(REV)
    report["sections"]["evaluate"]["plots"] = plots
    return report


# --------------------------------------------------------------------------- exact text

def test_a_bars_plot_is_base_bars_and_head_line_with_the_legend_under_it():
    plot = bars_plot(["0", "1", "2"], {"f1": {"base": [0.9, 0.8, 0.7],
                                              "head": [0.9, 0.85, 0.6]}})
    assert plot_block(plot, REV) == """\
**plots/per_class.csv** (`plots/per_class.csv`)

```mermaid
xychart-beta
  title "f1: bars base a1b2c3d, line head e5f6a7b"
  x-axis "class" ["0", "1", "2"]
  y-axis "f1" 0 --> 0.9
  bar [0.9, 0.8, 0.7]
  line [0.9, 0.85, 0.6]
```

bars: base `a1b2c3d`, line: head `e5f6a7b`

| class | f1 base | f1 head |
|---|---:|---:|
| 1 | 0.8 | 0.85 |
| 2 | 0.7 | 0.6 |

<sub>1 unchanged row(s) not shown</sub>"""


def test_a_series_plot_draws_each_series_in_its_own_chart():
    plot = series_plot({"train_loss": {"base": [1.0, 0.5, 0.25], "head": [0.9, 0.4, 0.2]},
                        "val_loss": {"base": [1.1, 0.6, 0.3], "head": [1.0, 0.5, 0.2]}})
    block = plot_block(plot, REV)
    assert block.startswith("""\
**Loss** (`plots/train_curve.csv`)

```mermaid
xychart-beta
  title "train_loss: bars base a1b2c3d, line head e5f6a7b"
  x-axis "epoch" ["1", "2", "3"]
  y-axis "train_loss" 0 --> 1
  bar [1, 0.5, 0.25]
  line [0.9, 0.4, 0.2]
```

bars: base `a1b2c3d`, line: head `e5f6a7b`

```mermaid
xychart-beta
  title "val_loss: bars base a1b2c3d, line head e5f6a7b"
""")
    assert len(mermaid_sources(block)) == 2
    assert block.count("bars: base `a1b2c3d`, line: head `e5f6a7b`") == 2
    # the table with the exact numbers stays, below the charts
    assert "| train_loss | `█▄▁` | `▇▃▁` | 0.25 → 0.2 |" in block
    assert block.index("```mermaid") < block.index("| series | base | head |")


def test_without_shas_the_legend_still_says_base_and_head():
    plot = bars_plot(["a", "b"], {"f1": {"base": [0.5, 0.6], "head": [0.7, 0.6]}})
    block = plot_block(plot, {"base": {}, "head": {"sha": None}})
    assert 'title "f1: bars base, line head"' in block
    assert "bars: base, line: head" in block


def test_different_x_values_get_one_line_chart_each_on_one_y_scale():
    plot = series_plot({"val_loss": {"base": [1.0, 0.5, 0.4, 0.3], "head": [0.8, 0.2]}},
                       xs={"base": [1, 2, 3, 4], "head": [1, 2]})
    sources = mermaid_sources(plot_block(plot, REV))
    assert len(sources) == 2
    assert 'title "val_loss: line base a1b2c3d"' in sources[0]
    assert 'title "val_loss: line head e5f6a7b"' in sources[1]
    assert all("bar [" not in s for s in sources)  # no bar series whose x it does not have
    assert all('y-axis "val_loss" 0.2 --> 1' in s for s in sources)
    assert 'x-axis "epoch" ["1", "2", "3", "4"]' in sources[0]


def test_a_new_series_is_the_head_alone_and_says_so():
    plot = series_plot({"val_acc": {"base": None, "head": [0.5, 0.7, 0.9]}})
    block = plot_block(plot, REV)
    assert "no base values for this series: the head only" in block
    [source] = mermaid_sources(block)
    assert 'title "val_acc: line head e5f6a7b"' in source and "bar [" not in source


def test_bars_start_at_zero_so_their_heights_compare():
    plot = bars_plot(["a", "b"], {"acc": {"base": [0.96, 0.97], "head": [0.98, 0.99]}})
    assert 'y-axis "acc" 0 --> 0.99' in plot_block(plot, REV)


def test_a_label_new_in_the_head_is_left_out_of_the_chart_and_counted():
    plot = bars_plot(["a", "b", "c"], {"f1": {"base": [0.5, 0.6, None],
                                              "head": [0.7, 0.6, 0.9]}})
    block = plot_block(plot, REV)
    assert 'x-axis "class" ["a", "b"]' in block
    assert "1 label(s) without a base value only in the table" in block
    assert "| c | – | 0.9 |" in block


# --------------------------------------------------------------------------- numbers

@pytest.mark.parametrize(("value", "text"), [
    (0.1, "0.1"), (1e-7, "0.0000001"), (-2.5e-5, "-0.000025"), (1234567.0, "1234570"),
    (3, "3"), (0.0, "0"), (-0.0, "0"), (1 / 3, "0.333333"), (2.0e20, "200000000000000000000")])
def test_numbers_have_no_exponent_as_mermaids_grammar_needs(value, text):
    assert charts.number(value) == text
    assert re.fullmatch(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)", text)  # NUMBER_WITH_DECIMAL


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, None, "1", True])
def test_number_refuses_what_is_not_a_finite_number(value):
    with pytest.raises(ValueError, match="not a finite number"):
        charts.number(value)


@pytest.mark.parametrize(("where", "series"), [
    ("head", {"base": [1.0, 0.5], "head": [1.0, math.nan]}),
    ("base", {"base": [math.inf, 0.5], "head": [1.0, 0.4]}),
    ("head", {"base": [1.0, 0.5], "head": [1.0, None]}),
])
def test_a_non_finite_point_is_said_not_drawn(where, series):
    block = plot_block(series_plot({"val_loss": series}), REV)
    assert "```mermaid" not in block
    assert f"no chart for `val_loss`: the {where} has a value that is not a finite number" \
        in block
    assert "| val_loss |" in block  # the table still shows what there is


def test_a_non_finite_bar_value_is_said_not_drawn():
    plot = bars_plot(["a", "b"], {"f1": {"base": [0.5, 0.6], "head": [math.nan, 0.6]},
                                  "recall": {"base": [0.5, 0.6], "head": [0.4, 0.6]}})
    block = plot_block(plot, REV)
    assert "no chart for `f1`: the head has a value that is not a finite number (row 1: " \
        "`nan`)" in block
    [source] = mermaid_sources(block)  # the other column is still drawn
    assert source.startswith('xychart-beta\n  title "recall: bars base')


def test_a_single_point_is_not_drawn_as_an_invisible_line():
    block = plot_block(series_plot({"loss": {"base": [1.0], "head": [0.5]}}), REV)
    assert "```mermaid" not in block and "the head has 1 point(s); see the table" in block


# --------------------------------------------------------------------------- bounds

def test_a_long_series_is_downsampled_evenly_keeping_the_first_and_last_point():
    n = 500
    head = [1.0 / (i + 1) for i in range(n)]
    base = [2.0 / (i + 1) for i in range(n)]
    plot = series_plot({"loss": {"base": base, "head": head}},
                       xs={"base": list(range(n)), "head": list(range(n))})
    [source] = mermaid_sources(plot_block(plot, REV))
    categories = re.search(r'x-axis "epoch" \[(.*)\]', source).group(1).split(", ")
    assert len(categories) == charts.MAX_POINTS
    assert categories[0] == '"0"' and categories[-1] == f'"{n - 1}"'
    steps = {int(b.strip('"')) - int(a.strip('"')) for a, b in zip(categories, categories[1:])}
    assert steps <= {21, 22}  # even: 499 / 23 apart
    line = re.search(r"line \[(.*)\]", source).group(1).split(", ")
    assert line[-1] == charts.number(head[-1]) and len(line) == charts.MAX_POINTS


def test_charts_with_many_labels_keep_the_ones_that_changed_most():
    labels = [f"class {i}" for i in range(100)]
    base = [0.5] * 100
    head = [0.5 + (0.001 * i if i % 3 else 0.0) for i in range(100)]
    block = plot_block(bars_plot(labels, {"f1": {"base": base, "head": head}}), REV)
    [source] = mermaid_sources(block)
    shown = re.findall(r'"(class \d+)"', source)
    assert len(shown) == charts.MAX_CATEGORIES
    changed_most = sorted((i for i in range(100) if i % 3), key=lambda i: -i)[:30]
    assert shown == [f"class {i}" for i in sorted(changed_most)]
    assert "the 30 labels that changed most" in block


def test_long_labels_and_titles_are_clipped():
    plot = bars_plot(["x" * 500, "y"], {"f1": {"base": [0.5, 0.6], "head": [0.7, 0.6]}},
                     x="z" * 500)
    [source] = mermaid_sources(plot_block(plot, REV))
    assert f'"{"x" * (charts.MAX_LABEL - 1)}…"' in source
    assert f'"{"z" * (charts.MAX_TITLE - 1)}…"' in source


def test_many_plots_stay_within_the_budget_and_the_comment_limit():
    series = {f"s{k}": {"base": [float(i) for i in range(24)],
                        "head": [float(i) * 1.5 for i in range(24)]} for k in range(6)}
    plots = []
    for j in range(80):
        plot = series_plot(copy.deepcopy(series), title=f"curve {j}")
        plot["file"] = f"plots/curve_{j}.csv"
        plots.append(plot)
    body = render_comment(report_with(plots))
    assert len(body) <= 65536
    section = body[body.index("<summary>Plots, base → head"):]
    section = section[: section.index("</details>")]
    assert len(section) <= PLOT_BUDGET[3] + 1000
    left = int(re.search(r"(\d+) changed plot\(s\) not shown here", section).group(1))
    assert 0 < left < 80
    assert "80 changed" in section
    # every fence GitHub sees is closed: the footer is outside all of them
    assert not any("modelops-suite · report schema" in c for _, c in fences(body))


def test_one_chart_stays_small():
    source = charts.xychart(title="t" * 1000, x_title="x" * 1000,
                            categories=[f"{'c' * 100}{i}" for i in range(charts.MAX_CATEGORIES)],
                            y_title="y" * 1000, y_range=(0.0, 1.0),
                            bar=[1 / 3] * charts.MAX_CATEGORIES,
                            line=[2 / 3] * charts.MAX_CATEGORIES)
    assert len(source) < 2500


# --------------------------------------------------------------------------- hostile text

HOSTILE = [
    "```\n## injected heading",
    "~~~",
    'a"] \n  bar [999',
    "%%{init: {'theme': 'dark'}}%%",
    "%%%{init: {\"themeVariables\": {\"primaryColor\": \"#f00\"}}}%%%",
    "\n%% a comment line",
    "---\ntitle: front matter\n---",
    "<img src=x onerror=alert(1)>",
    "<br/>two lines",
    "#quot; #60;script#62;",
    "`md string`",
    "\u202eevil\u200b",
    "line\r\nbreak\u2028sep",
    "@octocat",
    "",
]


def hostile_plots(text: str) -> list[dict]:
    # the base has a third epoch: each series is one chart per revision
    series = series_plot({text or "s": {"base": [1.0, 0.5, 0.3], "head": [0.9, 0.4]},
                          f"{text}2": {"base": [1.0, 0.5, 0.2], "head": [0.9, 0.4]}},
                         x=text, title=text)
    series["x_values"] = {"head": [1, 2], "base": [1, 2, 3]}
    bars = bars_plot([text, f"{text} b", text], {text or "v": {"base": [0.5, 0.6, 0.7],
                                                               "head": [0.7, 0.6, 0.1]}},
                     x=text)
    return [series, bars]


def check_chart_source(source: str) -> None:
    lines = source.splitlines()
    assert lines[0] == "xychart-beta"
    for line in lines[1:]:
        # a keyword, then only quoted strings (no quote inside), numbers and punctuation
        assert re.fullmatch(r'  (title|x-axis|y-axis|bar|line)\b.*', line), line
        outside = re.sub(r'"[^"\n]*"', "S", line[2:])
        assert re.fullmatch(r'(title|x-axis|y-axis|bar|line)( S)?( \[[S0-9., -]*\]'
                            r'| [0-9.-]+ --> [0-9.-]+)?', outside), line
    assert "%%" not in source and "`" not in source and "<" not in source
    assert not re.search(r"#\w+;", source)


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_stays_inside_its_chart(text):
    body = render_comment(report_with(hostile_plots(text)))
    benign = render_comment(report_with(hostile_plots("benign")))
    blocks = fences(body)
    sources = [c for info, c in blocks if info == "mermaid"]
    assert len(sources) == 5  # two series, a chart per revision each; one bar column
    # no fence opened or closed elsewhere: the same blocks as with a harmless name
    assert [info for info, _ in blocks] == [info for info, _ in fences(benign)]
    for source in sources:
        check_chart_source(source)
    # the rest of the comment is what it is without the hostile text
    tail = body[body.index("</details>", body.index("Plots, base")):]
    assert tail == benign[benign.index("</details>", benign.index("Plots, base")):]
    assert body[: body.index("<summary>Plots")] == benign[: benign.index("<summary>Plots")]


def test_text_keeps_other_languages_and_punctuation():
    assert charts.text("chien, 犬 (ß) 50% & <b>") == "chien, 犬 (ß) 50% & ‹b›"
    assert charts.text("  ") == "–"
    assert charts.unique(["a", "a", "a (2)", "a"]) == ["a", "a (2)", "a (2) (2)", "a (3)"]


# --------------------------------------------------------------------------- real Mermaid

MERMAID = ROOT / "tools" / "mermaid"


def parse_with_mermaid(sources: list[str]) -> list[dict]:
    node = require_tool("node")
    require_npm_tool("mermaid", "mermaid")
    proc = subprocess.run([node, str(MERMAID / "parse.mjs")], input=json.dumps(sources),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert len(results) == len(sources)
    return results


def test_mermaid_parses_every_chart_of_a_comment_as_meant():
    longer = series_plot({"val_loss": {"base": [1.0, 0.6], "head": [0.9, 0.5, 0.1]}},
                         xs={"base": [1, 2], "head": [1, 2, 3]})
    longer["file"] = "plots/val.csv"
    plots = [series_plot({"train_loss": {"base": [1.0, 0.5, 0.25], "head": [0.9, 0.4, 0.2]}}),
             longer,
             bars_plot(["0", "1 , one", "2 \"two\""],
                       {"f1": {"base": [0.9, 0.8, 0.7], "head": [0.95, 0.85, 0.6]}})]
    sources = mermaid_sources(render_comment(report_with(plots)))
    assert len(sources) == 4
    results = parse_with_mermaid(sources)
    assert all(r["ok"] and r["type"] == "xychart" and r["config"] == {} for r in results), \
        results
    overlay, base_only, head_only, per_class = (r["chart"] for r in results)
    assert overlay["title"] == "train_loss: bars base a1b2c3d, line head e5f6a7b"
    assert overlay["xAxis"] == {"type": "band", "title": "epoch", "categories": ["1", "2", "3"]}
    assert overlay["yAxis"] == {"type": "linear", "title": "train_loss", "min": 0, "max": 1}
    assert overlay["plots"] == [
        {"type": "bar", "data": [["1", 1], ["2", 0.5], ["3", 0.25]]},
        {"type": "line", "data": [["1", 0.9], ["2", 0.4], ["3", 0.2]]}]
    assert base_only["title"] == "val_loss: line base a1b2c3d"
    assert [p["type"] for p in base_only["plots"]] == ["line"]
    assert head_only["plots"][0]["data"] == [["1", 0.9], ["2", 0.5], ["3", 0.1]]
    assert per_class["xAxis"]["categories"] == ["0", "1 , one", "2 'two'"]
    assert per_class["plots"][1]["data"] == [["0", 0.95], ["1 , one", 0.85], ["2 'two'", 0.6]]


def test_mermaid_reads_hostile_text_as_text():
    sources = []
    for text in HOSTILE:
        sources += mermaid_sources(render_comment(report_with(hostile_plots(text))))
    results = parse_with_mermaid(sources)
    for source, result in zip(sources, results):
        assert result["ok"], (source, result)
        assert result["config"] == {}, (source, result)  # no directive or front matter applied
        assert [p["type"] for p in result["chart"]["plots"]] in (["bar", "line"], ["line"])


def test_mermaid_itself_applies_a_directive_in_a_label_and_refuses_an_exponent():
    """The facts the emitter guards against, shown on Mermaid itself (so a Mermaid that
    changes them is noticed)."""
    raw = ['xychart-beta\n  title "a %%{init: {\'theme\': \'dark\'}}%% b"\n  line [1, 2]\n',
           "xychart-beta\n  line [1e-7, 2]\n",
           'xychart-beta\n  x-axis ["a", "a"]\n  bar [1, 2]\n']
    directive, exponent, same = parse_with_mermaid(raw)
    assert directive["ok"] and directive["config"] == {"theme": "dark"}
    assert not exponent["ok"]
    assert same["chart"]["xAxis"]["categories"] == ["a", "a"]  # one band of the d3 scale


# --------------------------------------------------------------------------- from the report

def test_the_report_gives_each_series_plot_its_x_values_and_the_comment_draws_them():
    from modelops.ci.plots import Plot
    from modelops.ci.report import PLOT_POINTS, plot_summaries

    def curve(epochs: int) -> Plot:
        return Plot("plots/train_curve.csv", {"x": "epoch", "y": ["val_loss"], "title": "Loss"},
                    [{"epoch": str(e), "val_loss": str(1.0 / e)} for e in range(1, epochs + 1)])

    [same] = plot_summaries({"b": [curve(3)], "h": [curve(3)]}, "b", "h")
    assert same["x_values"] == {"head": [1, 2, 3], "base": [1, 2, 3]} and not same["changed"]
    [entry] = plot_summaries({"b": [curve(3)], "h": [curve(100)]}, "b", "h")
    assert entry["points"] == {"head": 100, "base": 3}
    assert len(entry["x_values"]["head"]) == PLOT_POINTS
    assert entry["x_values"]["head"][0] == 1 and entry["x_values"]["head"][-1] == 100
    assert entry["x_values"]["base"] == [1, 2, 3]
    # 3 epochs against 100: one line chart per revision, each on its own x values
    sources = mermaid_sources(plot_block(entry, REV))
    assert [s.split("\n")[1] for s in sources] == ['  title "val_loss: line base a1b2c3d"',
                                                   '  title "val_loss: line head e5f6a7b"']
    assert 'x-axis "epoch" ["1", "2", "3"]' in sources[0]
    assert '"100"]' in sources[1]
    [new] = plot_summaries({"b": [], "h": [curve(2)]}, "b", "h")
    assert new["x_values"]["base"] is None


def test_a_base_of_one_point_is_said_and_the_head_drawn_alone():
    plot = series_plot({"loss": {"base": [1.0], "head": [0.9, 0.5]}},
                       xs={"base": [1], "head": [1, 2]})
    block = plot_block(plot, REV)
    assert "the base has one point (see the table): the head only" in block
    [source] = mermaid_sources(block)
    assert 'title "loss: line head e5f6a7b"' in source


def test_only_what_changed_is_drawn():
    plot = series_plot({"train_loss": {"base": [1.0, 0.5], "head": [1.0, 0.5]},
                        "val_loss": {"base": [1.0, 0.6], "head": [0.9, 0.5]}})
    block = plot_block(plot, REV)
    assert "<sub>`train_loss`: no change</sub>" in block
    assert [s.split("\n")[1] for s in mermaid_sources(block)] == [
        '  title "val_loss: bars base a1b2c3d, line head e5f6a7b"']
    bars = bars_plot(["a", "b"], {"recall": {"base": [0.5, 0.6], "head": [0.5, 0.6]},
                                  "f1": {"base": [0.5, 0.6], "head": [0.7, 0.6]}})
    block = plot_block(bars, REV)
    assert "<sub>`recall`: no change</sub>" in block and len(mermaid_sources(block)) == 1
