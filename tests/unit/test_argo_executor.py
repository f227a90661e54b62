"""The local Argo emulation (tests/argo_executor.py) held to Argo's own test tables
(tests/data/argo-workflows/conformance.json) and to its documented rules."""

from __future__ import annotations

import json

import pytest

from tests.argo_executor import (
    EmulationError,
    aggregated_json_value_list,
    eval_retry_expression,
    generate_node_name,
    item_string,
    process_item,
    should_retry,
    substitute_value,
)
from tests.conftest import ROOT

CASES = json.loads((ROOT / "tests/data/argo-workflows/conformance.json").read_text())


@pytest.mark.parametrize(("values", "want"), CASES["aggregated_json_value_list"])
def test_aggregation_matches_argo(values, want):
    assert aggregated_json_value_list(values) == want


@pytest.mark.parametrize(("name", "index", "desc", "want"), CASES["generate_node_name"])
def test_node_names_match_argo(name, index, desc, want):
    assert generate_node_name(name, index, item_string(desc)) == want


@pytest.mark.parametrize(("expression", "last", "want"), CASES["retry_expressions"])
def test_retry_expressions_decide_as_documented(expression, last, want):
    assert eval_retry_expression(expression, last) is want


def test_retry_policy_and_expression_must_both_allow():
    ours = {"limit": 2, "expression": 'lastRetry.status == "Error" || (lastRetry.status == '
                                      '"Failed" && asInt(lastRetry.exitCode) in [75])'}
    assert should_retry(ours, 1, "Error", None, "pod deleted", 1)
    assert should_retry(ours, 1, "Failed", 75, "", 1)
    assert not should_retry(ours, 1, "Failed", 1, "", 1)  # a deterministic failure
    assert not should_retry(ours, 3, "Error", None, "", 1)  # past the limit
    assert not should_retry({**ours, "retryPolicy": "OnFailure"}, 1, "Error", None, "", 1)
    assert should_retry({"limit": 1}, 1, "Failed", 1, "", 1)  # default OnFailure
    assert not should_retry({"limit": 1}, 1, "Error", None, "", 1)


def test_items_substitute_like_process_item():
    task = {"name": "t", "template": "x", "withItems": [{"b": 2, "a": "x y"}],
            "arguments": {"parameters": [{"name": "p", "value": "{{item.a}}-{{item.b}}"},
                                         {"name": "q", "value": "{{item}}"}]}}
    child = process_item(task, 0, task["withItems"][0], {})
    assert child["name"] == "t(0:a:x y,b:2)"
    params = {p["name"]: p["value"] for p in child["arguments"]["parameters"]}
    assert params == {"p": "x y-2", "q": '{"a":"x y","b":2}'}
    assert "withItems" not in child


def test_substitution_escapes_values_as_argo_does():
    assert substitute_value('say {{inputs.parameters.m}}', {"inputs.parameters.m": 'a "b"\n'}) \
        == 'say a "b"\n'
    with pytest.raises(EmulationError, match="failed to resolve"):
        substitute_value("{{inputs.parameters.nope}}", {})
    with pytest.raises(EmulationError, match="expression tag"):
        substitute_value("{{=1+1}}", {})
