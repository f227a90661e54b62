"""Comment Markdown: golden file, escaping of untrusted text, the size limit."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops.ci.markdown import code, fence, marker, md, render_comment

DATA = Path(__file__).resolve().parents[1] / "data" / "comment"


def example() -> dict:
    return json.loads((DATA / "report.json").read_text(encoding="utf-8"))


def check_golden(name: str, text: str) -> None:
    """Compare with tests/data/comment/<name>; rewrite it only when UPDATE_GOLDEN=1 (never CI)."""
    path = DATA / name
    if os.environ.get("UPDATE_GOLDEN") == "1" and not os.environ.get("CI"):
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with UPDATE_GOLDEN=1 once"
    assert text == path.read_text(encoding="utf-8"), f"{name} differs (UPDATE_GOLDEN=1 rewrites)"


def test_example_report_matches_golden():
    body = render_comment(example())
    check_golden("comment.md", body)
    assert body.startswith(marker("digits-cnn") + "\n")
    assert "| accuracy | 0.855 | 0.8141 | −0.0409 | ❌ fail |" in body
    assert "`train.epochs` | `30` | `2`" in body
    # the example changed no plot file: no chart (tests/unit/test_comment_charts.py draws
    # them); the per-class bars are a table whose headers are the legend
    assert "```mermaid" not in body and "| F1 base (bar) | F1 head (bar) |" in body
    assert "[workflow run](https://github.com/example/digits" in body


def test_passing_report_headline():
    report = example()
    report["verdict"] = "pass"
    report["sections"]["evaluate"]["status"] = "pass"
    report["sections"]["evaluate"]["gates"] = []
    body = render_comment(report)
    assert "## ✅ digits-cnn: gates passed" in body
    assert "Failed gates" not in body


HOSTILE = [
    "@octocat please look",
    "@org/team",
    "<img src=x onerror=alert(1)>",
    "[click](https://evil.example/x)",
    "![img](https://evil.example/p.png)",
    "a | b | c",
    "line\nbreak",
    "https://evil.example/autolink",
    "www.evil.example",
    "owner/repo#12",
    "`code` and ``` fence",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_md_escape_neutralises(text):
    out = md(text)
    assert "\n" not in out
    assert not re.search(r"@[A-Za-z]", out), out                 # no mention
    assert "<" not in out and ">" not in out                     # no HTML
    assert not re.search(r"(?<!\\)\]\(", out), out               # no [text](link)
    assert not re.search(r"(?<!\\)\|", out), out                 # no table break
    assert "://" not in out and "www." not in out                # no autolink
    assert not re.search(r"\w/[\w.-]+#\d", out)                  # no cross-repo reference
    assert "`" not in out.replace("\\`", "")


@pytest.mark.parametrize(("text", "linked"), [
    ("fixes GH-12", r"\bGH-12"),
    ("at 0123456789abcdef0123456789abcdef01234567", r"[0-9a-f]{7}"),
    ("short sha 3f9a2c1 too", r"[0-9a-f]{7}"),
    ("$$\\sum x$$ and $x$", r"(?<!\\)\$"),
])
def test_md_escapes_what_github_would_link_or_typeset(text, linked):
    out = md(text)
    assert not re.search(linked, out), out
    assert md("roc_auc of log_loss") == "roc_auc of log_loss"  # intraword: no emphasis
    assert md("_x_ and __y__") == "\\_x\\_ and \\_\\_y\\_\\_"
    assert md("1234567 runs") == "1234567 runs"                # a number is no commit


def test_code_span_and_fence_cannot_be_escaped():
    assert code("a`b|c\nd") == "a'b¦c d"
    assert code("@team") == "@\u200bteam"
    text = "before\n````\n@mention <b>\n"
    block = fence(text, "diff")
    first = block.splitlines()[0]
    assert first == "`````diff" and block.endswith("\n`````")


def test_untrusted_fields_in_the_report_are_escaped():
    report = example()
    report["context"]["pr_title"] = "@octocat <script>x</script> [a](https://e.example)"
    report["context"]["head_ref"] = "feat`|@admins"
    row = report["sections"]["evaluate"]["metrics"][0]
    row["name"] = "acc | <b>@x</b>"
    report["sections"]["evaluate"]["per_class"][0]["class"] = "@all|"
    report["sections"]["card"]["diff"] += "+```\n+@octocat <img src=x>\n"
    body = render_comment(report)
    outside_code = re.sub(r"(?ms)^(`{3,}).*?^\1\s*$", "", body)
    assert not re.search(r"@[A-Za-z]", outside_code)
    assert "<script>" not in body and "<b>" not in outside_code
    assert "<img" not in outside_code
    # the metric table row still has exactly 5 cells
    checked = False
    for line in body.splitlines():
        if line.startswith("| acc \\|"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 6
            checked = True
    assert checked


def test_run_url_must_be_plain_https():
    report = example()
    report["context"]["run_url"] = "javascript:alert(1)"
    body = render_comment(report)
    assert "javascript" not in body
    body = render_comment(example(), run_url="https://ci.example/run/9")
    assert "(https://ci.example/run/9)" in body


@pytest.mark.parametrize("limit", [65536, 8000, 3000, 1200])
def test_body_stays_under_limit_with_note(limit):
    report = example()
    big = "".join(f"+line {i} " + "x" * 80 + "\n" for i in range(3000))
    report["sections"]["card"]["diff"] += big
    report["sections"]["evaluate"]["params"] = [
        {"file": "params.yaml", "name": f"p{i}", "base": i, "head": i + 1} for i in range(400)]
    body = render_comment(report, max_chars=limit)
    assert len(body) <= limit
    assert body.startswith(marker("digits-cnn"))
    if limit < 20000:
        assert "cut to fit GitHub's comment size limit" in body
        assert "https://github.com/example/digits/actions/runs/7" in body
        # nothing left open: fences and details balanced
        assert len(re.findall(r"(?m)^`{3,}", body)) % 2 == 0
        assert body.count("<details>") == body.count("</details>")
    else:
        assert "more line(s) in the full report" in body


def test_render_is_pure():
    report = example()
    before = copy.deepcopy(report)
    assert render_comment(report) == render_comment(report)
    assert report == before


def test_confusion_matrix_with_changes_against_base():
    report = example()
    cm = report["sections"]["evaluate"]["confusion"]
    body = render_comment(report)
    assert "Confusion matrix" in body
    matrix = body.split("Confusion matrix", 1)[1]
    row9 = next(line for line in matrix.splitlines() if line.startswith("| 9 | "))
    assert f"**{cm['head'][9][9]}**" in row9
    change = cm["head"][9][9] - cm["base"][9][9]
    assert f"**{cm['head'][9][9]}** (−{-change})" in row9
    cm["classes"][0] = "<b>@x</b>|"
    assert "<b>" not in render_comment(report)


def test_section_renderer_adds_its_block_and_survives_a_broken_one(monkeypatch):
    import modelops.ci.markdown as m

    report = example()
    report["sections"]["canary"] = {"status": "pass", "steps": 3}
    monkeypatch.setitem(m.SECTION_RENDERERS, "canary", ("json", "dumps"))
    body = render_comment(report)
    assert '{"status": "pass", "steps": 3}' in body
    monkeypatch.setitem(m.SECTION_RENDERERS, "canary", ("no_such_module_here", "render"))
    body = render_comment(report)
    assert '"steps"' not in body and "| canary | ✅ pass |" in body



@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
       | st.text(alphabet="@<>|[]()!`\\#/:.w \n-_*aZ", max_size=80))
def test_md_escape_property(text):
    out = md(text)
    assert "\n" not in out and "\r" not in out and "\u2028" not in out
    assert "<" not in out and ">" not in out
    assert not re.search(r"@\w", out)
    assert not re.search(r"(?<!\\)(?:\\\\)*\|", out)
    assert "://" not in out


def test_other_metrics_files_go_to_details_and_small_values_keep_digits():
    report = example()
    report["sections"]["evaluate"]["metrics"] += [
        {"file": "metrics/compile.json", "name": "parity.max_abs_error", "base": 7.6e-06,
         "head": 9.1e-06, "delta": 1.5e-06},
        {"file": "metrics/compile.json", "name": "accuracy", "base": 0.5, "head": 0.5,
         "delta": 0.0},
        {"file": "metrics/compile.json", "name": "backend", "base": "onnxruntime",
         "head": "tensorrt", "delta": None},
    ]
    body = render_comment(report)
    main_table = body.split("### Metrics", 1)[1].split("<details>", 1)[0]
    assert main_table.count("| accuracy |") == 1 and "0.5" not in main_table
    # only what changed is listed; the unchanged value is counted
    other = body.split("Other metrics files (1 changed, 1 unchanged)", 1)[1].split(
        "</details>", 1)[0]
    assert "| `metrics/compile.json` | parity.max_abs_error | 7.6e-06 | 9.1e-06 | +1.5e-06 |" \
        in other
    assert "backend" not in other and "| accuracy |" not in other
