from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from modelops.errors import ConfigError
from modelops.settings import convert, load_settings, parse_settings
from tests.conftest import ROOT


@dataclass(frozen=True)
class Inner:
    n: int = field(default=1, metadata={"min": 1})
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    items: list[Inner] = field(default_factory=list)
    ratio: float | None = None


def test_repository_settings_load():
    settings = load_settings(ROOT / "params.yaml")
    assert settings.model.name == "digits-cnn"
    assert settings.model.artifact.path == "models/model.onnx"


def test_sections_of_the_model_are_left_alone():
    """Only `modelops:` is the suite's; any other section, of any shape, is the model's."""
    raw = {"featurize": {"max_features": 200, "ngrams": [1, 2]}, "train": "anything",
           "model": {"n_estimators": 10}, "modelops": {"model": {"name": "tfidf-clf"}}}
    settings = parse_settings(raw, "params.yaml")
    assert settings.model.name == "tfidf-clf"
    assert settings.gates == {}


def test_missing_suite_section_says_what_to_add():
    with pytest.raises(ConfigError) as info:
        parse_settings({"train": {"epochs": 3}}, "params.yaml")
    assert info.value.path == "modelops"
    assert "model: {name:" in str(info.value)


def test_model_name_is_required():
    with pytest.raises(ConfigError) as info:
        parse_settings({"modelops": {"model": {}}}, "params.yaml")
    assert info.value.path == "modelops.model.name"


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused_with_their_path(bad):
    raw = {"modelops": {"model": {"name": "m"}, "deploy": {"analysis": {"error_rate_max": bad}}}}
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, "params.yaml")
    assert info.value.path == "modelops.deploy.analysis.error_rate_max"
    assert "finite" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "path", "problem"),
    [
        ({"inner": {"nn": 1}}, "inner.nn", "unknown key"),
        ({"inner": {"n": "3"}}, "inner.n", "must be an integer"),
        ({"inner": {"n": 0}}, "inner.n", "must be at least 1"),
        ({"inner": {"mode": "c"}}, "inner.mode", "must be one of"),
        ({"items": [{"n": 1}, {"n": True}]}, "items[1].n", "must be an integer"),
        ({"ratio": "x"}, "ratio", "must be a number"),
    ],
)
def test_bad_fields_name_path_and_value(raw, path, problem):
    with pytest.raises(ConfigError) as info:
        convert(Outer, raw, "", "p.yaml")
    err = info.value
    assert err.path == path
    assert problem in str(err)
    assert str(err).startswith("p.yaml: " + path)


def test_good_values_convert():
    out = convert(Outer, {"inner": {"n": 2, "mode": "b"}, "items": [{}], "ratio": 1}, "", None)
    assert out == Outer(inner=Inner(2, "b"), items=[Inner()], ratio=1.0)


def test_unknown_suite_key_suggests_the_close_one():
    with pytest.raises(ConfigError) as info:
        parse_settings({"modelops": {"model": {"name": "m"}, "deplyo": {}}}, "params.yaml")
    assert info.value.path == "modelops.deplyo"
    assert "did you mean 'deploy'" in str(info.value)


def test_typo_in_a_suite_key_is_named():
    with pytest.raises(ConfigError) as info:
        parse_settings({"modelops": {"model": {"name": "m", "metric": []}}}, "params.yaml")
    assert "modelops.model.metric" in str(info.value) and "metrics" in str(info.value)
