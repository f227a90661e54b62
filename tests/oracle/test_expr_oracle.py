"""Differential check of gitops/conditions.py against expr v1.17.8 itself, wrapped as Argo's
EvalCondition wraps it (tests/oracle/expr/main.go).

Not part of `make test`: it needs Go and the expr module from the Go module proxy, which an
offline CI machine does not reach. `make oracle` runs it, and there a missing Go or an
unreachable proxy fails it. What CI checks is the case table carried over from Argo's and
expr's own tests (tests/unit/test_gitops_conditions.py, tests/data/argo/conditions.json)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess

import pytest

from modelops.gitops.conditions import ConditionError, Unsupported, evaluate_condition
from tests.conftest import ROOT
from tests.unit.test_gitops_conditions import decode

ORACLE = ROOT / "tests" / "oracle" / "expr"


@pytest.fixture(scope="module")
def oracle(tmp_path_factory):
    go = shutil.which("go")
    if go is None:
        pytest.fail("go is not installed (apt-get install golang-go)", pytrace=False)
    out = tmp_path_factory.mktemp("oracle")
    for name in ("main.go", "go.mod"):
        shutil.copy(ORACLE / name, out / name)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPATH": str(out / "gopath"),
           "GOCACHE": str(out / "gocache")}
    try:
        build = subprocess.run([go, "build", "-o", str(out / "oracle"), "."], cwd=out, env=env,
                               capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("building the expr oracle timed out (module proxy unreachable?)",
                    pytrace=False)
    if build.returncode != 0:
        pytest.fail(f"cannot build the expr v1.17.8 oracle here: {build.stderr.strip()[-300:]}",
                    pytrace=False)
    return out / "oracle"


def test_random_conditions_agree_with_expr(oracle):
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    atoms = ["result[0]", "result[-1]", "len(result)", "0", "1", "2", "0.05", "-1", "true",
             "false", "nil", "isNaN(result[0])", "isInf(result[0])", "asInt(result[0])",
             "asFloat('0.5')", "default(result[0], 0)", "isNil(result)", "result"]
    ops = ["+", "-", "*", "/", "%", "**", "<", "<=", ">", ">=", "==", "!=", "&&", "||", "??",
           "in"]
    results = [{"kind": "vector", "values": v} for v in
               ([], ["0.01"], ["NaN"], ["+Inf"], ["0.04", "0.3"], ["-0"])] + [
        {"kind": "scalar", "value": v} for v in ("0.5", "NaN", "-Inf")]

    def gen(depth: int) -> str:
        if depth == 0 or rng.random() < 0.3:
            return rng.choice(atoms)
        k = rng.random()
        if k < 0.1:
            return f"!({gen(depth - 1)})"
        if k < 0.2:
            return f"({gen(depth - 1)})"
        return f"{gen(depth - 1)} {rng.choice(ops)} {gen(depth - 1)}"

    cases = [{"cond": gen(3), "result": rng.choice(results)} for _ in range(2000)]
    proc = subprocess.run([str(oracle)], input="".join(json.dumps(c) + "\n" for c in cases),
                          capture_output=True, text=True, timeout=120, check=True)
    disagree = []
    for case, line in zip(cases, proc.stdout.splitlines()):
        want = json.loads(line)
        try:
            got = {"value": evaluate_condition(case["cond"], decode(case["result"]))}
        except Unsupported:
            continue
        except ConditionError as exc:
            got = {"stage": exc.stage}
        if ("value" in want) != ("value" in got) or want.get("value") != got.get("value") \
                or want.get("stage") != got.get("stage"):
            disagree.append((case, want, got))
    assert not disagree, disagree[:5]
