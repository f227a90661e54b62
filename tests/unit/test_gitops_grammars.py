"""Go durations, Prometheus durations and Kubernetes quantities, held to the upstream parsers'
own test tables (``tests/data/grammars/``, carried over as data)."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from modelops.k8s import (
    argo_pause_seconds,
    go_duration_problem,
    parse_go_duration,
    parse_prom_duration,
    parse_quantity,
    quantity_problem,
)
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "grammars"
GO = json.loads((DATA / "go_parse_duration.json").read_text(encoding="utf-8"))
PROM = json.loads((DATA / "prometheus_parse_duration.json").read_text(encoding="utf-8"))
QUANTITY = json.loads((DATA / "kubernetes_quantity.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", GO["valid"], ids=lambda c: c["in"])
def test_go_durations_go_accepts(case):
    assert parse_go_duration(case["in"]) == case["ns"]


@pytest.mark.parametrize("text", GO["invalid"])
def test_go_durations_go_refuses(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


@pytest.mark.parametrize("case", PROM["valid"], ids=lambda c: c["in"])
def test_prometheus_durations_prometheus_accepts(case):
    assert parse_prom_duration(case["in"]) == case["ms"]


@pytest.mark.parametrize("text", PROM["invalid"])
def test_prometheus_durations_prometheus_refuses(text):
    with pytest.raises(ValueError):
        parse_prom_duration(text)


def _fraction(text: str) -> Fraction:
    num, _, den = text.partition("/")
    return Fraction(int(num), int(den or 1))


@pytest.mark.parametrize("case", QUANTITY["valid"], ids=lambda c: c["in"])
def test_quantities_apimachinery_accepts(case):
    want = _fraction(case["value"])
    assert parse_quantity(case["in"]) == want
    assert parse_quantity("-" + case["in"]) == -want
    assert parse_quantity("+" + case["in"]) == want


@pytest.mark.parametrize("text", QUANTITY["invalid"])
def test_quantities_apimachinery_refuses(text):
    with pytest.raises(ValueError):
        parse_quantity(text)
    assert quantity_problem(text) is not None


@pytest.mark.parametrize(("value", "seconds"), [
    (30, 30), ("30", 30), ("+30", 30), ("1h30m", 5400), ("1.5h", 5400), ("90s", 90),
    ("500ms", 0), ("2m30.9s", 150)])
def test_argo_pause_durations(value, seconds):
    """RolloutPause.DurationSeconds: int32 seconds, else a Go duration truncated to seconds."""
    assert argo_pause_seconds(value) == seconds


@pytest.mark.parametrize("value", ["5 minutes", "1d", "", "3", "2147483648x", True, 1.5])
def test_argo_pause_refusals(value):
    if value == "3":  # an integer string is seconds for Argo, unlike for time.ParseDuration
        assert argo_pause_seconds(value) == 3
        return
    with pytest.raises(ValueError):
        argo_pause_seconds(value)


def test_duration_problems_read_like_the_settings_errors():
    assert go_duration_problem("1h30m") is None
    assert go_duration_problem("1d") is not None and "Go duration" in go_duration_problem("1d")
    assert go_duration_problem("0", positive=True) == "must be a duration above zero"
    assert go_duration_problem("-5s") == "must not be negative"
    assert quantity_problem("-1") == "must not be negative"
    assert quantity_problem("-1", negative=True) is None
