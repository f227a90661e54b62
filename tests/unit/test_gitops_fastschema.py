"""The compiled yes/no schema check answers exactly like jsonschema (it only skips the slow walk
for valid documents; problems are still jsonschema's)."""

from __future__ import annotations

import copy
import random

import jsonschema
import pytest

from modelops.gitops import crd, validate
from modelops.gitops.fastschema import compile_check
from modelops.gitops.render import KINDS, render_docs
from modelops.settings import load_settings
from modelops.yamlio import load_yaml_all
from tests.conftest import ROOT
from tests.unit.test_gitops_release import example_release

PARAMS = load_settings(ROOT / "params.yaml")
UPSTREAM = ROOT / "tests" / "data" / "gitops" / "upstream"
ODD_VALUES = [None, True, False, 0, 1, -1, 1.0, 1.5, "", "x", "25%", "-bad-", "a" * 300,
              "Has Space", [], [1], ["x"], {}, {"unknown": 1}, {"name": "x"}, [{}]]


def _validator_and_check(doc):
    kind, api = doc["kind"], doc["apiVersion"]
    if kind in crd.CRD_FILES:
        return crd._validator(kind), crd._fast_valid(kind)
    return validate._core_validator(api, kind), validate._core_fast_valid(api, kind)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*prefix, i))


def _parent(doc, path):
    node = doc
    for part in path[:-1]:
        node = node[part]
    return node


def _mutants(doc, rng, n):
    paths = [p for p in _paths(doc) if p]
    for _ in range(n):
        new = copy.deepcopy(doc)
        path = rng.choice(paths)
        parent = _parent(new, path)
        action = rng.randrange(3)
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent[path[-1]], dict):
            parent[path[-1]][rng.choice(["unknownField", "name", "value", "port"])] = \
                copy.deepcopy(rng.choice(ODD_VALUES))
        else:
            parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))
        yield new


def _rendered_docs():
    docs = []
    for env in ("staging", "production"):
        rendered = render_docs(example_release(), PARAMS, env)
        for filename, file_docs in rendered.items():
            kind = next(k for k in KINDS.values() if k.filename == filename)
            if kind.validated:
                docs.extend(d for d in file_docs if d.get("kind") != "PrometheusRule")
    return docs


def test_every_rendered_kind_gets_a_compiled_check():
    docs = _rendered_docs()
    assert {d["kind"] for d in docs} >= {"Rollout", "Service", "AnalysisTemplate", "Application"}
    for doc in docs:
        validator, check = _validator_and_check(doc)
        assert check is not None, doc["kind"]
        assert check(doc) is True
        assert list(validator.iter_errors(doc)) == []


def test_compiled_check_agrees_with_jsonschema_on_mutated_documents():
    rng = random.Random(20240611)
    docs = _rendered_docs()
    for f in ("rollout-canary.yaml", "analysis-templates.yaml"):
        docs += load_yaml_all((UPSTREAM / "argo-rollouts" / f).read_text())
    invalid = 0
    for doc in docs:
        validator, check = _validator_and_check(doc)
        for mutant in _mutants(doc, rng, 150):
            expected = not any(True for _ in validator.iter_errors(mutant))
            assert check(mutant) is expected, (doc["kind"], mutant)
            invalid += not expected
    assert invalid > 300  # the mutations really do break documents, in many ways


SCHEMA_CASES = [
    ({"type": "integer"}, [1, 1.0, True, "1", None, 2.5]),
    ({"type": ["string", "null"]}, ["a", None, 0]),
    ({"enum": [1, "a", False]}, [1, True, 0, False, "a", "b", 1.0]),
    ({"const": {"a": [1]}}, [{"a": [1]}, {"a": [True]}, {"a": []}]),
    ({"pattern": "^a+$", "minLength": 2, "maxLength": 3}, ["aa", "a", "aaaa", "ab", 5]),
    ({"minimum": 1, "exclusiveMaximum": 3}, [1, 0, 3, 2.9, True, "2"]),
    ({"minItems": 1, "maxItems": 2, "items": {"type": "string"}}, [[], ["a"], ["a", 1], "x"]),
    ({"properties": {"a": {"type": "string"}}, "patternProperties": {"^x-": {"type": "integer"}},
      "additionalProperties": False, "required": ["a"]},
     [{"a": "s"}, {"a": 1}, {"a": "s", "x-1": 2}, {"a": "s", "x-1": "2"}, {"a": "s", "b": 1}, {},
      "notadict"]),
    ({"additionalProperties": {"type": "boolean"}}, [{"a": True}, {"a": 1}, {}]),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, [1, "a", None, 1.5]),
    ({"oneOf": [{"type": "integer"}, {"minimum": 0}]}, [1, -1, 0.5, -0.5]),
    ({"allOf": [{"minimum": 0}, {"maximum": 1}], "not": {"const": 0.5}}, [0, 0.5, 2]),
    ({"minProperties": 1, "maxProperties": 1}, [{}, {"a": 1}, {"a": 1, "b": 2}]),
    ({"items": False}, [[], [1]]),
    ({"$ref": "#/definitions/n", "definitions": {"n": {"type": "object", "properties": {
        "next": {"$ref": "#/definitions/n"}}, "additionalProperties": False}}},
     [{}, {"next": {"next": {}}}, {"next": {"next": {"x": 1}}}]),
]


@pytest.mark.parametrize("cls", [jsonschema.Draft7Validator, jsonschema.Draft202012Validator])
@pytest.mark.parametrize(("schema", "instances"), SCHEMA_CASES)
def test_each_keyword_agrees_with_jsonschema(cls, schema, instances):
    validator = cls(schema)
    check = compile_check(validator)
    assert check is not None
    for instance in instances:
        assert check(instance) is validator.is_valid(instance), instance


@pytest.mark.parametrize("schema", [{"uniqueItems": True}, {"if": {"type": "string"}},
                                    {"properties": {"a": {"multipleOf": 2}}},
                                    {"items": [{"type": "string"}]}])
def test_keywords_not_compiled_fall_back_to_jsonschema(schema):
    assert compile_check(jsonschema.Draft7Validator(schema)) is None


def test_a_format_checker_disables_the_fast_path():
    validator = jsonschema.Draft7Validator({"format": "email"},
                                           format_checker=jsonschema.FormatChecker())
    assert compile_check(validator) is None
