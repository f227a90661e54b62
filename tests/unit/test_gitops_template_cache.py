"""Parsing each shape of template text once gives exactly the documents of parsing every text:
for the real templates with hostile values, and for templates that use ``j`` in ways where the
shortcut must not be taken (keys, comments, anchors, inside strings, ``j | j``)."""

from __future__ import annotations

import dataclasses
import datetime

import jinja2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops.errors import InputError
from modelops.gitops import template_cache
from modelops.gitops.release import Release
from modelops.gitops.render import KINDS, build_context
from modelops.gitops.template_cache import render_parsed
from modelops.gitops.templating import jinja_env, to_json
from modelops.settings import load_settings
from modelops.yamlio import load_yaml_all_fast
from tests.conftest import ROOT
from tests.unit.test_gitops_release import example_release
from tests.unit.test_gitops_render_props import HOSTILE

PARAMS = load_settings(ROOT / "params.yaml")
TEMPLATES = sorted({k.template for k in KINDS.values() if hasattr(k, "template")})
FIELDS = [f.name for f in dataclasses.fields(Release) if f.type in ("str", str)]


def _typed(node):
    """Value and type, all the way down (1 == 1.0 == True must not pass)."""
    if isinstance(node, dict):
        return {k: _typed(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_typed(v) for v in node]
    return (type(node).__name__, node)


def _reference(base, name, context):
    return load_yaml_all_fast(base.get_template(name).render(**context), f"template {name}")


def test_real_templates_take_the_fast_path_and_give_the_same_documents():
    before = dict(template_cache.stats)
    for env in ("staging", "production"):
        for model in ("digits-cnn", "other-model"):
            context = build_context(example_release(model=model), PARAMS, env)
            for name in TEMPLATES:
                assert _typed(render_parsed(name, context)) == _typed(
                    _reference(jinja_env(), name, context))
    assert template_cache.stats["fast"] - before["fast"] == 4 * len(TEMPLATES)
    assert template_cache.stats["one render"] - before["one render"] == 4 * len(TEMPLATES)
    assert template_cache.stats["slow"] == before["slow"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=HOSTILE, env=st.sampled_from(["staging",
                                                                          "production"]))
def test_hostile_release_values_give_the_same_documents(field, value, env):
    release = dataclasses.replace(example_release(), **{field: value})
    context = build_context(release, PARAMS, env)
    for name in TEMPLATES:
        try:
            expected = _typed(_reference(jinja_env(), name, context))
        except (InputError, ValueError) as exc:
            with pytest.raises(type(exc)):
                render_parsed(name, context)
            continue
        assert _typed(render_parsed(name, context)) == expected


def _env(templates: dict[str, str]) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.DictLoader(templates),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["j"] = to_json
    return env


CASES = {
    # template, whether the shortcut may be taken (True: for some values; documents equal)
    "plain": ("a: {{ v | j }}\nb: [{{ v | j }}]\n", True),
    "key": ("{{ v | j }}: 1\n", False),
    "comment": ("a: 1 # {{ v | j }}\n", False),
    "inside a string": ("a: pre-{{ v | j }}\n", False),
    "j of j": ("a: {{ v | j | j }}\n", False),
    "anchor": ("a: &x {{ v | j }}\nb: *x\n", False),
    "shared mapping": ("a: &x {k: {{ v | j }}}\nb: *x\n", False),
    "continued scalar": ("a: {{ v | j }}\n  more\n", False),
    "marker in template": ('a: {{ v | j }}\nb: "\ue000"\n', False),
    "sliced": ("a: {{ (v | j)[1:-1] }}\n", False),
    "several documents": ("---\na: {{ v | j }}\n---\nb: {{ v | j }}\n", True),
    "constants": ('a: {{ "x y" | j }}\nb: {{ 5 | j }}\nc: {{ v | j }}\n', True),
    "loop": ("{% for i in [1, 2] %}\n- {{ i | j }}: {{ v | j }}\n{% endfor %}\n", False),
    "set": ("{% set w = v | j %}a: {{ w }}\n", True),
    "default": ("a: {{ v | j | default('x') }}\n", True),
    "macro": ("{% macro m(x) %}{{ x | j }}{% endmacro %}a: {{ m(v) }}\n", True),
    "filter block": ("{% filter upper %}a: {{ v | j }}{% endfilter %}\n", True),
}
VALUES = [None, True, 0, -7, 10**30, 1.5, 1e-05, 2.0, "", "x y", "yes", "1e3", "a\"b", "\u2028",
          "\ue000", "#", [1, "a", None], {"k": [1.25, {"n": "v"}]}, {"\ue001": 1}, []]


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_tricky_templates_give_the_same_documents_or_the_same_error(case, value):
    template, shortcut = CASES[case]
    base = _env({"t": template})
    context = {"v": value}
    try:
        expected = _typed(_reference(base, "t", context))
    except InputError as exc:
        with pytest.raises(InputError, match="template t"):
            render_parsed("t", context, base)
        assert str(exc)
        return
    before = dict(template_cache.stats)
    assert _typed(render_parsed("t", context, base)) == expected
    if not shortcut:
        assert template_cache.stats["slow"] == before["slow"] + 1
    if case in ("default", "macro", "set", "filter block", "sliced", "j of j"):
        assert template_cache.stats["one render"] == before["one render"]  # rendered twice


def test_values_are_fresh_copies():
    base = _env({"t": "a: {{ v | j }}\nb: {x: 1}\n"})
    first = render_parsed("t", {"v": {"k": [1]}}, base)
    first[0]["a"]["k"].append(2)
    first[0]["b"]["x"] = 2
    assert render_parsed("t", {"v": {"k": [1]}}, base) == [{"a": {"k": [1]}, "b": {"x": 1}}]


def test_a_set_or_a_date_in_the_template():
    base = _env({"s": "a: !!set {x: null}\nb: {{ v | j }}\n",
                 "d": "a: 2024-01-02\nb: {{ v | j }}\n"})
    assert render_parsed("s", {"v": 1}, base) == [{"a": {"x"}, "b": 1}]
    assert render_parsed("d", {"v": 1}, base) == [{"a": datetime.date(2024, 1, 2), "b": 1}]


@given(st.text(st.characters(min_codepoint=0, max_codepoint=0x7f), max_size=20))
def test_plain_ascii_strings_are_their_own_json(value):
    if template_cache._BORING.fullmatch(value):
        assert to_json(value) == '"' + value + '"'
        assert load_yaml_all_fast(to_json(value)) == [value]


def test_another_j_filter_means_two_renders_and_a_comparison():
    base = _env({"t": "a: {{ v | j }}\n"})
    base.filters["j"] = lambda v: to_json(str(v).upper())
    before = dict(template_cache.stats)
    assert render_parsed("t", {"v": "abc"}, base) == [{"a": "ABC"}]
    assert template_cache.stats["one render"] == before["one render"]



JSONISH = st.recursive(
    st.one_of(HOSTILE, st.integers(-10**9, 10**9), st.booleans(), st.none(),
              st.floats(allow_nan=False, allow_infinity=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.one_of(HOSTILE, st.sampled_from(["k", "a-b"])),
                                            inner, max_size=3)), max_leaves=10)


@settings(max_examples=200, deadline=None)
@given(JSONISH)
def test_containers_of_hostile_values_give_the_same_documents(value):
    """Objects and arrays are taken member by member: the same as parsing their JSON whole."""
    base = _env({"t": "a: {{ v | j }}\nb: 1\n"})
    try:
        expected = _typed(_reference(base, "t", {"v": value}))
    except (InputError, ValueError) as exc:
        with pytest.raises(type(exc)):
            render_parsed("t", {"v": value}, base)
        return
    assert _typed(render_parsed("t", {"v": value}, base)) == expected
