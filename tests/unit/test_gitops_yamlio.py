"""The one YAML emitter (libyaml through PyYAML's CSafeDumper): whatever the data, the bytes
read back as exactly the data in YAML 1.1 (libyaml and PyYAML's pure loader, as kubectl reads
them) and in YAML 1.2 (ruamel, as DVC reads them); the same data gives the same bytes; no value
adds a key or a document."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops.errors import InputError
from modelops.yamlio import (
    dump_yaml,
    dump_yaml_all,
    is_canonical,
    load_yaml_all,
    load_yaml_all_fast,
)

TRICKY = st.sampled_from([
    "", " ", "a ", " a", "a:", "a: b", "a #b", "a#b", "-x", "- x", "?x", ":x", "'q'", "it's", '"',
    "#", "yes", "Yes", "on", "Off", "y", "n", "~", "null", "NULL", "0x1", "0X1F", "0o17", "0O17",
    "0b1", "0B1", "012", "1e3", "1E3", "1.", ".5", "+.5", "-.5", "1_0", "+_1", "1__2", "0_1",
    "2020-01-01", "2020-01-01T00:00:00Z", "<<", "=", "true", "True", "---", "...", "x...", "a,b",
    "[x", "{x", "x}", "%x", "@x", "`x", "|", ">", "!x", "&x", "*x", "(x)", "a\\b", "-", "--",
    "-1", "-inf", ".inf", ".NaN", "-.inf", "190:20:30", "1:20", "CreateNamespace=true",
    "--port=8080", "a\nb", "a\n", "\n", "\n\n", " \n", "x\n ", "\t", "\r", "\r\n", "\x85",
    "\u2028", "\u2029", "\ufeff", "\x00", "\x1b", "\x7f", "\xa0", "\U0001f600", "é", "line\n\n",
    "{\"json\": [1, 2]}\n", "a" * 300, "k: v\n---\nkind: Secret", "\n---\nkind: Secret\n"])
TEXT = st.one_of(TRICKY, st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
SCALAR = st.one_of(TEXT, st.integers(-10**12, 10**12), st.booleans(), st.none(),
                   st.floats(allow_nan=False, allow_infinity=False))
NODE = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=16)
DOCS = st.lists(st.dictionaries(TEXT, NODE, min_size=1, max_size=5), min_size=1, max_size=3)


@settings(max_examples=400, deadline=None)
@given(DOCS)
def test_output_reads_back_as_the_data_in_yaml_1_1_and_1_2(docs):
    text = dump_yaml_all(docs)
    assert load_yaml_all_fast(text) == docs  # libyaml, YAML 1.1 (kubectl, Argo CD)
    assert list(yaml.load_all(text, Loader=yaml.SafeLoader)) == docs  # pure-Python YAML 1.1
    assert load_yaml_all(text) == docs  # ruamel, YAML 1.2 (DVC), duplicate keys refused
    assert dump_yaml_all(docs) == text  # deterministic
    assert is_canonical(text) == docs  # its own output is canonical


@settings(max_examples=200, deadline=None)
@given(key=TEXT, value=TEXT)
def test_no_value_adds_a_key_or_a_document(key, value):
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
           "data": {key: value}}
    docs = load_yaml_all_fast(dump_yaml(doc))
    assert docs == [doc]
    assert list(docs[0]) == ["apiVersion", "kind", "metadata", "data"]


def test_strings_other_readers_would_retype_are_quoted():
    text = dump_yaml({"a": "yes", "b": "1e3", "c": "0o17", "d": "012", "e": "null",
                      "f": "2020-01-01", "g": "plain-text", "h": 8080, "i": True, "j": None})
    assert text == ("a: 'yes'\nb: '1e3'\nc: '0o17'\nd: '012'\ne: 'null'\nf: '2020-01-01'\n"
                    "g: plain-text\nh: 8080\ni: true\nj: null\n")


def test_an_object_used_twice_is_written_twice_not_aliased():
    shared = {"drop": ["ALL"]}
    text = dump_yaml({"a": shared, "b": shared})
    assert "&" not in text and "*" not in text
    assert load_yaml_all_fast(text) == [{"a": shared, "b": shared}]


def test_multi_line_strings_are_literal_blocks():
    assert dump_yaml({"baseline": '{"k": [1, 2]}\n'}) == 'baseline: |\n  {"k": [1, 2]}\n'


@pytest.mark.parametrize("text", ["a\n\u2028b\n", "a\n\u2029", "x\ry\n", "a\x85b\nc",
                                  '{"ns": "\u2028"}\n'])
def test_multi_line_strings_with_other_line_breaks_read_back_exactly(text):
    """libyaml would put U+2028 (or CR, NEL, U+2029) raw into a literal block, where a reader
    breaks the line there and the block's indentation with it; such text is quoted."""
    out = dump_yaml({"k": text})
    assert not out.startswith("k: |")
    assert load_yaml_all_fast(out) == list(yaml.load_all(out, Loader=yaml.SafeLoader)) == \
        load_yaml_all(out) == [{"k": text}]


def test_str_subclasses_are_written_as_strings():
    class Duration(str):
        pass

    assert dump_yaml({"for": Duration("30m")}) == "for: 30m\n"


def test_canonical_form_refuses_edits_comments_anchors_and_duplicates():
    text = dump_yaml_all([{"a": {"b": 1}, "c": [1, 2]}])
    assert is_canonical(text) == [{"a": {"b": 1}, "c": [1, 2]}]
    for edited in (text + "# a comment\n", text.replace("b: 1", "b:   1"),
                   "a: &x {b: 1}\nc: *x\n", text + "a: 2\n", text.replace("- 1", "  - 1"),
                   "a: {b: 1}\nc: [1, 2]\n"):
        try:
            is_canonical(edited, "rollout.yaml")
        except InputError as exc:
            assert exc.message.startswith("rollout.yaml: ")
        else:
            raise AssertionError(f"accepted {edited!r}")


def test_dvc_lock_reader_reads_what_dvc_reads():
    """modelops.ci.compare reads dvc.lock with load_yaml_as_dvc: DVC's own loader settings."""
    from dvc.utils.serialize import loads_yaml

    from modelops.yamlio import load_yaml, load_yaml_as_dvc
    from tests.conftest import ROOT

    text = (ROOT / "dvc.lock").read_text()
    assert load_yaml_as_dvc(text) == loads_yaml(text) == load_yaml(text)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),
                       st.one_of(st.text(max_size=20), st.integers(), st.booleans()),
                       min_size=1, max_size=5))
def test_dvc_reads_what_we_write(doc):
    from dvc.utils.serialize import loads_yaml

    from modelops.yamlio import load_yaml_as_dvc

    text = dump_yaml(doc)
    assert load_yaml_as_dvc(text) == loads_yaml(text) == doc
