from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from ci.config import convert, load_params, parse_params
from ci.errors import ConfigError
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


def test_repository_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.train.epochs >= 1
    assert params.model.name == "digits-cnn"


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


def test_unknown_section_suggests_the_close_one():
    with pytest.raises(ConfigError) as info:
        parse_params({"trian": {}}, "params.yaml")
    assert "did you mean 'train'" in str(info.value)


def test_typo_in_train_key_is_named():
    with pytest.raises(ConfigError) as info:
        parse_params({"train": {"epoch": 3}}, "params.yaml")
    assert "train.epoch" in str(info.value) and "epochs" in str(info.value)
