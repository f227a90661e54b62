"""The fast YAML writer used for rendered manifests writes exactly ruamel's bytes."""

from __future__ import annotations

import io
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from modelops.yamlio import _dump_fast, _writer, dump_yaml_all, load_yaml_all, load_yaml_all_fast

ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
TRICKY = st.sampled_from(["", " ", "a ", " a", "a:", "a: b", "a #b", "a#b", "-x", "- x", "?x",
                          ":x", "'q'", "it's", '"', "#", "yes", "on", "Off", "~", "null", "0x1",
                          "012", "1e3", "1_0", "0b1", "2020-01-01", "<<", "=", "true", "---",
                          "...", "x...", "a,b", "[x", "{x", "x}", "%x", "@x", "`x", "|", ">",
                          "!x", "&x", "*x", "(x)", "a\\b", "CreateNamespace=true", "-m",
                          "--port=8080", "-", "--", "-1", "-.5", "-inf", "-x: y", "-x #c",
                          "-:", "-#", "-'", "-x ", "--- x", "-?"])
SCALAR = st.one_of(ASCII, TRICKY, st.integers(-10**6, 10**6), st.booleans(), st.none())
KEY = st.one_of(ASCII, TRICKY)
NODE = st.recursive(SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEY, inner, max_size=4)), max_leaves=12)
DOC = st.dictionaries(KEY, NODE, min_size=1, max_size=5)


def _ruamel(docs) -> str:
    buf = io.StringIO()
    _writer(True).dump_all(docs, buf)
    return buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.lists(DOC, min_size=1, max_size=3))
def test_fast_writer_matches_ruamel_byte_for_byte(docs):
    fast = _dump_fast(docs)
    if fast is not None:
        assert fast == _ruamel(docs)
        assert load_yaml_all(fast) == docs  # YAML 1.2 (ruamel)
        assert load_yaml_all_fast(fast) == docs  # YAML 1.1 (libyaml, as kubectl reads)
    assert dump_yaml_all(docs, yaml11_safe=True) == _ruamel(docs)


def test_fast_writer_takes_the_common_manifest_shapes():
    doc = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "m", "labels": {"a": "true", "b": "x: y"}, "empty": {}},
           "spec": {"ports": [{"name": "http", "port": 8080}], "list": [], "n": None}}
    assert _dump_fast([doc]) is not None
    assert _dump_fast([{"command": ["python", "-m", "modelops.serve.fetch"]}]) is not None
    assert _dump_fast([{"x": 1.5}]) is None  # floats go to ruamel
    assert _dump_fast([{"x": [[1]]}]) is None  # nested sequences too


# Scalars the fast writer hands to ruamel: long, escaped, quoted, multi-line strings, floats.
ODD = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=990, max_size=1100),
    st.builds(lambda a, n: (a + " ") * n, st.sampled_from(["x", "ab", "it's", '"q"', "a\nb"]),
              st.integers(200, 1500)),
    st.builds(lambda n: '{"k":[' + ",".join(["0.25"] * n) + ']}\n', st.integers(300, 900)),
    st.floats(allow_nan=False), st.sampled_from(["a\nb", "\t", "x\x85y", "'", "a'b c",
                                                 "\u2028", "\ufeff", " lead", "trail "]))
SPLICE_KEY = st.one_of(st.sampled_from(["data", "drift_baseline.json", "k", "a" * 60]), ASCII)
SPLICE_NODE = st.recursive(st.one_of(SCALAR, ODD), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(SPLICE_KEY, inner, max_size=3)), max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.dictionaries(SPLICE_KEY, SPLICE_NODE, min_size=1, max_size=4), min_size=1,
                max_size=2))
def test_ruamel_written_scalars_spliced_into_fast_output_match_ruamel(docs):
    spliced = _dump_fast(docs, splice=True)
    if spliced is not None:
        assert spliced == _ruamel(docs)
    checked = _dump_fast(docs, splice=True, check=True)
    if checked is not None:
        assert checked == spliced
        # each spliced value was checked to read back, so the whole document does (what lets
        # gitops.render.dump_manifests skip parsing it again)
        assert load_yaml_all_fast(checked) == docs
    assert dump_yaml_all(docs, yaml11_safe=True) == _ruamel(docs)


def test_a_spliced_value_that_would_not_read_back_is_not_spliced():
    from modelops.yamlio import dump_yaml_all_fast

    assert dump_yaml_all_fast([{"x": 1e20}], splice=True) is None  # YAML 1.1 reads "1e+20" as text
    assert load_yaml_all_fast(_ruamel([{"x": 1e20}])) != [{"x": 1e20}]
    doc = {"metadata": {"annotations": {"baseline": '{"k":[' + "0.25," * 900 + '0]}\n'}}}
    assert load_yaml_all_fast(dump_yaml_all_fast([doc], splice=True)) == [doc]


def test_a_configmap_with_a_long_json_string_is_spliced_not_whole_ruamel():
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m"},
           "data": {"baseline.json": '{"mean":[' + ",".join(["0.123456"] * 400) + ']}\n'}}
    assert _dump_fast([doc]) is None  # not the exact-read-back fast path
    assert _dump_fast([doc], splice=True) == _ruamel([doc])


def test_double_quoted_port_matches_ruamel_on_long_and_escaped_strings():
    # Strings with a line break are written double-quoted: folding past the 4096-column width
    # (with and without a backslash), every escape, at several depths and key lengths.
    rng = random.Random(11)
    words = ["x", "ab", "it's", '"q"', "a\nb", "\n", "\n ", " \n", "\u00e9", "\t", "0.25,",
             "{", ":", "#", " ", "  ", "-", "\u2028", "\\", "\x85", "\ufeff", "\x01",
             "\U0001f600", "\xa0", "\ud800"]
    checked = 0
    for _ in range(250):
        n = rng.choice([3, 400, 1000, 3000, 4090, 4100, 9000])
        text = rng.choice(["", " ", ",", "\n", "  "]).join(
            rng.choice(words) for _ in range(n // 2 + 1))[:n] + "\n"
        doc = {"x" * rng.randrange(1, 40): text}
        for _ in range(rng.randrange(0, 5)):
            doc = {rng.choice(["a", "data", "k" * rng.randrange(1, 60)]): doc}
        docs = [{"apiVersion": "v1", **doc}]
        assert _dump_fast(docs, splice=True) == _ruamel(docs)
        checked += 1
    assert checked == 250



@settings(max_examples=150, deadline=None)
@given(DOC)
def test_dvc_lock_reader_reads_what_dvc_reads(doc):
    """modelops.ci.compare reads dvc.lock with load_yaml_as_dvc: DVC's own loader settings, so any
    text
    DVC writes (ruamel, YAML 1.2) parses to what DVC and the pure-Python loader see."""
    from dvc.utils.serialize import dumps_yaml, loads_yaml

    from modelops.yamlio import load_yaml, load_yaml_as_dvc

    text = dumps_yaml(doc)  # how DVC writes dvc.lock
    assert load_yaml_as_dvc(text) == loads_yaml(text) == load_yaml(text)


def test_dvc_lock_reader_on_the_committed_lock():
    from dvc.utils.serialize import loads_yaml

    from modelops.yamlio import load_yaml, load_yaml_as_dvc
    from tests.conftest import ROOT

    text = (ROOT / "dvc.lock").read_text()
    assert load_yaml_as_dvc(text) == loads_yaml(text) == load_yaml(text)
