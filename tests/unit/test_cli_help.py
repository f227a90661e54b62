"""``--help`` of every console script: each default said once, and the serving parser built
without the serving runtime."""

from __future__ import annotations

import argparse
import re

import pytest

from modelops.cli import DefaultsHelpFormatter


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    from modelops.ci.__main__ import build_parser as ci
    from modelops.gitops.__main__ import build_parser as gitops
    from modelops.serve.__main__ import build_parser as serve
    from modelops.serve.fetch import build_parser as fetch

    out = []
    for name, build in (("modelops-ci", ci), ("modelops-gitops", gitops),
                        ("modelops-serve", serve), ("fetch", fetch)):
        parser = build()
        out.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                out += [(f"{name} {sub}", p) for sub, p in action.choices.items()]
    return out


@pytest.mark.parametrize(("name", "parser"), _parsers(), ids=lambda v: v if isinstance(v, str)
                         else "")
def test_each_default_is_said_once(name, parser):
    text = " ".join(parser.format_help().split())
    for option in re.split(r"(?= --?[a-z])", text):
        assert option.count("(default") <= 1, f"{name}: {option[:160]}"
    assert "(default: None)" not in text and "(default: False)" not in text, name


def test_the_formatter_adds_a_default_only_where_it_says_something():
    parser = argparse.ArgumentParser(formatter_class=DefaultsHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs")
    parser.add_argument("--model", default=None, help="the model (default: from params)")
    parser.add_argument("--quiet", action="store_true", help="no progress")
    parser.add_argument("--out", default="x", help="where (default: %(default)s)")
    text = " ".join(parser.format_help().split())
    assert "timed runs (default: 5)" in text
    assert "the model (default: from params)" in text and "(default: None)" not in text
    assert "no progress" in text and "(default: False)" not in text
    assert text.count("(default: x)") == 1


def test_the_serving_parser_names_every_backend_without_importing_them():
    from modelops.serve.__main__ import BACKEND_NAMES
    from modelops.serve.backends import BACKENDS

    assert set(BACKEND_NAMES) == set(BACKENDS)
