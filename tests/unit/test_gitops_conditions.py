"""gitops/conditions.py held to Argo Rollouts' and expr's own cases and to expr v1.17.8's
outcomes (tests/data/argo/conditions.json: what expr v1.17.8, wrapped as Argo's EvalCondition
wraps it, gave for each condition and result)."""

from __future__ import annotations

import contextlib
import json
import math
from collections import Counter

import pytest

from modelops.gitops.conditions import (
    ConditionError,
    Unsupported,
    Vector,
    compile_condition,
    evaluate_condition,
    parse,
)
from tests.conftest import ROOT

TABLE = json.loads((ROOT / "tests" / "data" / "argo" / "conditions.json").read_text())
CASES = TABLE["cases"]


def decode(r: dict):
    kind = r["kind"]
    if kind == "vector":
        return Vector(tuple(float(v) for v in r["values"]))
    if kind == "scalar":
        return float(r["value"])
    if kind == "nil":
        return None
    return r["value"]


def _id(i: int) -> str:
    c = CASES[i]
    return f"{i}:{c['cond'][:40]}"


def test_the_table_holds_every_origin_and_the_licenses_are_beside_it():
    origins = Counter(c["origin"] for c in CASES)
    assert set(origins) == set(TABLE["origins"])
    assert all(n > 0 for n in origins.values())
    assert sum(1 for c in CASES if "argo-rollouts" in c["origin"]) == 30
    folder = ROOT / "tests" / "data" / "argo"
    assert "Apache License" in (folder / "LICENSE-argo-rollouts").read_text()
    assert "MIT License" in (folder / "LICENSE-expr").read_text()


@pytest.mark.parametrize("i", range(len(CASES)), ids=_id)
def test_each_case_as_expr_v1_17_8_in_argo_decides(i):
    case = CASES[i]
    result = decode(case["result"])
    if case.get("preview") == "refused":
        with pytest.raises(Unsupported):
            parse(case["cond"])
        return
    want = case["expr"]
    if "value" in want:
        assert evaluate_condition(case["cond"], result) is want["value"]
    else:
        with pytest.raises(ConditionError) as info:
            evaluate_condition(case["cond"], result)
        assert info.value.stage == want["error"], str(info.value)


# Argo Rollouts' own assertions (utils/evaluate/evaluate_test.go), messages included
@pytest.mark.parametrize("cond, result, message", [
    ("1", True, "expected bool, but got int"),
    ("invalidVariable", True, "unknown name invalidVariable"),
    ("asFloat(result) == 1.1", "NotANum", 'strconv.ParseFloat: parsing "NotANum": invalid '
                                          'syntax'),
    ("asFloat(result) == \"1.1\"", "1.1", "invalid operation: == (mismatched types float64 and "
                                          "string)"),
])
def test_argo_error_messages(cond, result, message):
    with pytest.raises(ConditionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        evaluate_condition(cond, result)


@pytest.mark.parametrize("cond, result, expected", [
    ("2 in result", Vector((2.0, 2.0)), True),
    ("result > 1", 5.0, True),
    ("asInt(result) == 1", "1", True),
    ("asInt(result) == 1", 1, True),
    ("asInt(result) == 1", 1.123, True),
    ("asFloat(result) >= 1.1", "1.1", True),
    ("asFloat(result) == 1", 1, True),
])
def test_argo_success_cases(cond, result, expected):
    assert evaluate_condition(cond, result) is expected


def test_the_issue_s_disagreements_now_agree():
    """Each behaviour found wrong before, as expr v1.17.8 in Argo decides it."""
    with pytest.raises(ConditionError):  # default() returns the whole result: a vector < 0.05
        evaluate_condition("default(result[0], 0) < 0.05", Vector((0.01,)))
    with pytest.raises(ConditionError, match="too many arguments"):
        evaluate_condition("isInf(result[0], 1)", Vector((math.inf,)))
    assert evaluate_condition("asInt(0.7) == 0", Vector(()))
    assert evaluate_condition("0 <= result[0] < 0.05", Vector((0.01,)))
    assert not evaluate_condition("0 <= result[0] < 0.05", Vector((0.07,)))
    with pytest.raises(ConditionError) as info:  # % on a float: a compile error
        evaluate_condition("result[0] % 2 == 0", Vector((math.inf,)))
    assert info.value.stage == "compile"
    # whole-expression type checking: an error even where && would not evaluate it
    with pytest.raises(ConditionError) as info:
        evaluate_condition("len(result) > 5 && result < 1", Vector((0.5,)))
    assert info.value.stage == "compile"
    assert evaluate_condition("isNaN(result[0] / 0)", Vector((math.nan,)))  # NaN / 0 is NaN
    assert evaluate_condition("isInf(result[0] / 0)", Vector((1.0,)))


def test_compile_condition_refuses_what_the_preview_cannot_judge():
    for cond in ("all(result, {# > 1})", "result.x > 1", "true ? 1 : 2", "abs(result[0]) < 1",
                 "result[0] matches 'x'", "result[0:1]", "let x = 1; x > 0"):
        with pytest.raises(Unsupported, match="outside the subset"):
            compile_condition(cond)
    with pytest.raises(ConditionError):
        compile_condition("result[0] <")


def test_no_input_crashes_the_evaluator():
    """Whatever the condition and result, a verdict or a ConditionError, never another error
    (a KeyError on % with an infinite result was one)."""
    import random

    rng = random.Random(1)
    atoms = ["result[0]", "result", "len(result)", "1", "0", "-1", "0.5", "1e308", "true",
             "nil", '"a"', "asInt(result[0])", "asFloat('x')", "default(result, 1)",
             "isNaN(result[0])", "isInf(result[0])", "isNil(result)"]
    ops = ["+", "-", "*", "/", "%", "**", "<", "<=", "==", "!=", "&&", "||", "??", "in"]
    results = [Vector(()), Vector((math.inf,)), Vector((math.nan, -0.0)), math.inf, -math.inf,
               math.nan, 0.0]
    for _ in range(3000):
        cond = " ".join(rng.choice(atoms) if k % 2 == 0 else rng.choice(ops)
                        for k in range(rng.choice((3, 5, 7))))
        with contextlib.suppress(ConditionError):
            evaluate_condition(cond, rng.choice(results))
