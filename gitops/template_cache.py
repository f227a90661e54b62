"""Render a template and parse it, parsing each distinct *shape* of YAML only once.

Every value enters a template through the ``j`` filter (JSON, see :mod:`gitops.render`), so two
renders for different models usually differ only in those values. Here ``j`` writes a
placeholder ``"\\ue000<n>\\ue001"`` instead and records the value; the text with placeholders
(the same for every model of a fleet) is parsed once and cached, and each render gets a copy of
that tree with every placeholder replaced by what the JSON text of its value parses to on its
own. The documents are exactly those of parsing the real text, because the shortcut is taken
only when:

- the real text is the placeholder text with each ``"\\ue000<n>\\ue001"`` replaced by the JSON
  text of value n (``j``'s output went in as written, nothing sliced or re-quoted it). When
  every ``j`` in the template's syntax tree is a whole ``{{ ... | j }}`` output (no macro,
  block, include, finalize), that holds by construction; otherwise the template is also
  rendered with the real ``j`` and the two texts compared;
- each placeholder parses as a whole scalar value: not a key, not part of a longer string, not
  in a comment, not behind an anchor (each one found exactly once; no container is shared);
- the template has no placeholder characters of its own and no value contains them;
- the JSON text of each value parses on its own (a string of printable ASCII without quote or
  backslash is itself, as are ints, bools, null and containers of those; an object with such
  keys, or an array, is its members each taken the same way; anything else is parsed on its
  own, cached).

Otherwise the real text is parsed as usual (with the usual error for text that is not YAML).
"""

from __future__ import annotations

import datetime
import functools
import re
import threading
from typing import Any

MARK, END = "\ue000", "\ue001"
_PLACEHOLDER = re.compile("\ue000([0-9]+)\ue001")
_QUOTED = re.compile('"\ue000([0-9]+)\ue001"')
_BORING = re.compile(r'[ !#-\[\]-~]*')  # printable ASCII but '"' and '\': JSON "..." is itself
_MAX_SHAPES = 512
_MAX_VALUES = 4096

_SCALARS = (int, float, bool, type(None), str, datetime.date, datetime.datetime)
_state = threading.local()
_shapes: dict[str, Any] = {}  # text with placeholders -> (tree, placeholder count) or None
_parsed_values: dict[str, Any] = {}  # JSON text -> what it parses to (as YAML, on its own)
_MISSING = object()
stats = {"fast": 0, "slow": 0, "one render": 0}


class _Poisoned(Exception):
    pass


def _record(value: Any) -> str:
    from modelops.gitops.templating import to_json

    # A plain ASCII string: exactly what to_json writes (tested). Anything else goes through
    # to_json, so the real filter's errors (NaN, unserialisable) stay the same.
    boring = type(value) is str and _BORING.fullmatch(value)
    text = '"' + value + '"' if boring else to_json(value)
    values = _state.values
    if MARK in text or END in text:
        _state.poisoned = True
    values.append((value, text))
    return f'"{MARK}{len(values) - 1}{END}"'


@functools.lru_cache(maxsize=8)
def _recording_env(base: Any) -> Any:
    env = base.overlay(cache_size=400)  # its own compiled templates, bound to its own filters
    env.filters = {**base.filters, "j": _record}
    return env


def _shape(text: str, count: int) -> Any:
    """The parsed tree of ``text`` when every placeholder is a whole, unshared scalar value."""
    from modelops.errors import InputError
    from modelops.yamlio import load_yaml_all_fast

    if text.count(MARK) != count or text.count(END) != count:
        return None  # the template has such characters itself, or hid a placeholder
    try:
        docs = load_yaml_all_fast(text, "template")
    except InputError:
        return None
    found: list[int] = []
    containers: set[int] = set()

    def walk(node: Any) -> None:
        kind = type(node)
        if kind is dict or kind is list:
            if id(node) in containers:
                raise _Poisoned  # an alias: copies would lose the sharing
            containers.add(id(node))
            if kind is dict:
                for key, value in node.items():
                    if isinstance(key, str) and (MARK in key or END in key):
                        raise _Poisoned
                    walk(value)
            else:
                for value in node:
                    walk(value)
        elif kind is str and (MARK in node or END in node):
            match = _PLACEHOLDER.fullmatch(node)
            if match is None:
                raise _Poisoned
            found.append(int(match.group(1)))
        elif kind not in _SCALARS:
            raise _Poisoned  # a !!set or !!binary: not worth the risk

    try:
        walk(docs)
    except _Poisoned:
        return None
    if sorted(found) != list(range(count)):
        return None
    return docs


def _plain(value: Any) -> bool:
    """JSON of ``value`` reads back as ``value`` itself (no parse needed)."""
    kind = type(value)
    if kind is str:
        return _BORING.fullmatch(value) is not None
    if kind is int or kind is bool or value is None:
        return True
    if kind is dict:
        return all(type(k) is str and _BORING.fullmatch(k) and _plain(v)
                   for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return False


class _Unparsable(Exception):
    pass


def _value(value: Any, text: str) -> Any:
    if type(value) is str and _BORING.fullmatch(value):
        return value
    if _plain(value):
        return _copy(value)
    kind = type(value)
    if (kind is dict and all(type(k) is str and _BORING.fullmatch(k) for k in value)) \
            or kind is list:
        # A JSON object or array is a YAML flow collection of its members' JSON texts: each
        # member on its own, so one long string (a pod template's drift baseline annotation)
        # costs its own parse, not a parse of the whole mapping around it for every model.
        from modelops.gitops.templating import to_json

        if kind is list:
            return [_value(v, to_json(v)) for v in value]
        return {k: _value(v, to_json(v)) for k, v in value.items()}
    docs = _parsed_values.get(text, _MISSING)
    if docs is _MISSING:
        from modelops.errors import InputError
        from modelops.yamlio import load_yaml_all_fast

        try:
            docs = load_yaml_all_fast(text, "value")
        except InputError:
            docs = _Unparsable
        if len(_parsed_values) >= _MAX_VALUES:
            _parsed_values.clear()
        _parsed_values[text] = docs
    if docs is _Unparsable or len(docs) > 1:
        raise _Unparsable
    return _copy(docs[0]) if docs else None


def _copy(node: Any) -> Any:
    kind = type(node)
    if kind is dict:
        return {k: _copy(v) for k, v in node.items()}
    if kind is list:
        return [_copy(v) for v in node]
    return node


def _fill(node: Any, values: list[Any]) -> Any:
    kind = type(node)
    if kind is dict:
        return {k: _fill(v, values) for k, v in node.items()}
    if kind is list:
        return [_fill(v, values) for v in node]
    if kind is str and node[:1] == MARK:
        return values[int(node[1:-1])]
    return node


_NOT_VERBATIM = ("Include", "Import", "FromImport", "Extends", "Macro", "CallBlock",
                 "FilterBlock", "AssignBlock", "Block")
_verbatim_cache: dict[Any, bool] = {}


def _verbatim(env: Any, template: Any, name: str) -> bool:
    """Whether every ``j`` in the template is a whole ``{{ ... | j }}`` output, written as is:
    not fed to another filter, test, call or variable, no macros, blocks or includes, no
    finalize or autoescape. Then the real text is the recorded one with each quoted
    placeholder replaced by its JSON, with no need to render it again to compare."""
    known = _verbatim_cache.get(template)
    if known is not None:
        return known
    from jinja2 import nodes

    from modelops.gitops.templating import to_json

    ok = (env.finalize is None and env.autoescape is False
          and getattr(env, "linked_to", None) is not None
          and env.linked_to.filters.get("j") is to_json)  # what _record writes is the real j
    if ok:
        try:
            source = env.loader.get_source(env, name)[0]
            tree = env.parse(source, name)
        except Exception:  # noqa: BLE001 - any doubt: render twice and compare
            ok = False
    if ok:
        unsafe = tuple(getattr(nodes, n) for n in _NOT_VERBATIM)
        whole = {id(n) for out in tree.find_all(nodes.Output) for n in out.nodes
                 if isinstance(n, nodes.Filter) and n.name == "j"}
        ok = not any(True for _ in tree.find_all(unsafe)) and all(
            id(f) in whole for f in tree.find_all(nodes.Filter) if f.name == "j")
    if len(_verbatim_cache) > 64:
        _verbatim_cache.clear()
    _verbatim_cache[template] = ok
    return ok


def render_parsed(name: str, context: dict[str, Any], base: Any = None) -> list[Any]:
    """The documents of template ``name`` rendered with ``context`` (see the module doc);
    ``base``: the Jinja environment with the real ``j`` filter (default: gitops.render's)."""
    from modelops.yamlio import load_yaml_all_fast

    if base is None:
        from modelops.gitops.templating import jinja_env

        base = jinja_env()
    recording = _recording_env(base)
    template = recording.get_template(name)
    verbatim = _verbatim(recording, template, name)
    real = None if verbatim else base.get_template(name).render(**context)
    _state.values, _state.poisoned = [], False
    try:
        text = template.render(**context)  # the same errors as the real filter would raise
        recorded, poisoned = _state.values, _state.poisoned
    finally:
        _state.values = None
    tree = None
    if not poisoned and text.count(MARK) == len(recorded) == text.count(END):
        if not verbatim:
            try:  # the real text is this one with each quoted placeholder replaced by its JSON
                spliced = _QUOTED.sub(lambda m: recorded[int(m.group(1))][1], text)
            except IndexError:
                spliced = None
        if verbatim or spliced == real:
            tree = _shapes.get(text, _MISSING)
            if tree is _MISSING:  # (get, not "in" then [...]: another thread may clear)
                tree = _shape(text, len(recorded))
                if len(_shapes) >= _MAX_SHAPES:
                    _shapes.clear()
                _shapes[text] = tree
    if tree is not None:
        try:
            values = [_value(v, t) for v, t in recorded]
        except _Unparsable:
            pass
        else:
            stats["fast"] += 1
            stats["one render"] += verbatim
            return _fill(tree, values)
    stats["slow"] += 1
    if real is None:
        real = base.get_template(name).render(**context)
    return load_yaml_all_fast(real, f"template {name}")
