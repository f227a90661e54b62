"""All YAML of the suite is read and written here, with one set of ruamel settings.

Reading uses the safe loader (no tags, no arbitrary objects). Writing is deterministic: the same
data gives the same bytes (key order as inserted, block style, 2-space indent, no line folding).
"""

from __future__ import annotations

import functools
import io
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver, implicit_resolvers
from ruamel.yaml.tag import Tag

from modelops.errors import InputError


def _safe() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.allow_duplicate_keys = False
    return yaml


_BOTH_VERSIONS = [(tag, regexp, first) for versions, tag, regexp, first in implicit_resolvers
                  if (1, 1) in versions or (1, 2) in versions]


@functools.lru_cache(maxsize=8192)
def _implicit_tag(value: str) -> str | None:
    """The non-string tag YAML 1.1 or 1.2 would give ``value`` as a plain scalar, if any."""
    for tag, regexp, first in _BOTH_VERSIONS:
        if value and first is not None and value[0] not in first:
            continue
        if regexp.match(value):
            return tag
    return None


class _Yaml11SafeResolver(VersionedResolver):
    """Writer resolver that quotes a string YAML 1.1 *or* 1.2 would read as another type.

    Kubernetes tooling (kubectl, Argo CD) reads YAML 1.1, where plain ``yes``, ``on``, ``0b1``
    or ``1_000`` are not strings; YAML 1.2 alone would leave them unquoted.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            tag = _implicit_tag(value)
            return Tag(suffix=tag) if tag else self.DEFAULT_SCALAR_TAG
        return super().resolve(kind, value, implicit)


def _writer(yaml11_safe: bool = False) -> YAML:
    yaml = YAML(typ="safe", pure=True)
    if yaml11_safe:
        yaml.Resolver = _Yaml11SafeResolver
    yaml.default_flow_style = False
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096
    yaml.sort_base_mapping_type_on_output = False  # keep insertion order
    yaml.allow_unicode = True
    return yaml


def load_yaml(text: str, source: str = "<string>") -> Any:
    """Parse one YAML document; a syntax error names the source and the line."""
    try:
        return _safe().load(text)
    except YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from exc


def load_yaml_as_dvc(text: str, source: str = "<string>") -> Any:
    """Parse a file DVC writes and reads (``dvc.lock``) the way DVC reads it
    (``dvc.utils.serialize.loads_yaml``: ruamel's safe loader, on libyaml through
    ruamel.yaml.clib when installed): what DVC sees, 4-5x faster than the pure-Python loader."""
    yaml = YAML(typ="safe")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from exc


def load_yaml_all(text: str, source: str = "<string>") -> list[Any]:
    try:
        return [d for d in _safe().load_all(text) if d is not None]
    except YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from exc


def _libyaml_loader() -> Any:
    try:
        import yaml as pyyaml

        return pyyaml, pyyaml.CSafeLoader
    except (ImportError, AttributeError):
        return None, None


def load_yaml_all_fast(text: str, source: str = "<string>") -> list[Any]:
    """Parse documents with libyaml's safe loader (YAML 1.1, as kubectl and Argo CD read them).

    10-15x faster than the pure-Python loader; falls back to it when PyYAML lacks libyaml.
    Only for text whose plain scalars mean the same in YAML 1.1 and 1.2: rendered manifests
    (every value JSON-quoted, see gitops/render.py) and vendored CRD schemas.
    """
    pyyaml, loader = _libyaml_loader()
    if loader is None:
        return load_yaml_all(text, source)
    try:
        return [d for d in pyyaml.load_all(text, Loader=loader) if d is not None]  # noqa: S506
    except pyyaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}".replace("\n", " ")) from exc


def load_yaml_large(text: str, source: str = "<string>") -> Any:
    """Parse one big, trusted data document (a vendored CRD schema) with libyaml when present
    (7-10x faster on a 600 KB CRD); same caveats as :func:`load_yaml_all_fast`."""
    docs = load_yaml_all_fast(text, source)
    return docs[0] if docs else None


def load_yaml_file(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{p}: file not found") from exc
    return load_yaml(text, str(p))


def dump_yaml(data: Any) -> str:
    buf = io.StringIO()
    _writer().dump(data, buf)
    return buf.getvalue()


# ------------------------------------------------------------------ fast path (same bytes)
# The pure-Python ruamel emitter costs ~10 ms per manifest. For documents made only of mappings,
# sequences of scalars/mappings, ints, bools, null and "boring" ASCII strings (that ruamel would
# write plain), the writer below produces the exact bytes ruamel would (tests compare the two on
# generated documents); anything else goes to ruamel.

_PLAIN_CANDIDATE = re.compile(r"(?:[A-Za-z0-9_./=(]|-(?=[!-~]))[ -~]{0,999}")  # "-m" is plain
_PRINTABLE = re.compile(r"[ -~]{0,1000}")
_NEVER_PLAIN_FIRST = frozenset("#,[]{}&*!|>'\"%@` ")


class _NotFast(Exception):
    pass


_STR_CACHE: dict[str, str | None] = {}  # string -> how it is written (None: not fast)


def _fast_scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        out = _STR_CACHE.get(value)
        if out is None:
            if value in _STR_CACHE:
                raise _NotFast
            if len(_STR_CACHE) >= 65536:
                _STR_CACHE.clear()
            try:
                out = _STR_CACHE[value] = _fast_str(value)
            except _NotFast:
                _STR_CACHE[value] = None
                raise
        return out
    if kind is bool:
        return "true" if value else "false"
    if value is None:
        return "null"
    if kind is int:
        return str(value)
    raise _NotFast


def _fast_str(value: str) -> str:
    if not _PRINTABLE.fullmatch(value):
        raise _NotFast
    if not value:
        return "''"
    if value.startswith(("---", "...")):
        raise _NotFast  # document markers: ruamel's own rules apply
    if (_PLAIN_CANDIDATE.fullmatch(value) and value[-1] not in " :" and ": " not in value
            and " #" not in value and _implicit_tag(value) is None):
        return value
    if "'" not in value and (_implicit_tag(value) is not None or value[0] in _NEVER_PLAIN_FIRST
                             or value[-1] in " :" or ": " in value or " #" in value):
        return "'" + value + "'"  # what ruamel writes for these
    raise _NotFast


def _fast_mapping(data: dict, indent: int, out: list[str], first: str | None = None,
                  chain: tuple[str, ...] | None = None,
                  spliced: list[tuple[str, Any, str]] | None = None) -> None:
    pad = " " * indent
    for i, (key, value) in enumerate(data.items()):
        if type(key) is not str or len(key) > 100:
            raise _NotFast
        lead = (first if first is not None and i == 0 else pad) + _fast_scalar(key) + ":"
        kind = type(value)
        if kind is dict:
            if not value:
                out.append(lead + " {}\n")
            else:
                out.append(lead + "\n")
                _fast_mapping(value, indent + 2, out,
                              chain=None if chain is None else (*chain, key), spliced=spliced)
        elif kind is list:
            if not value:
                out.append(lead + " []\n")
            else:
                out.append(lead + "\n")
                _fast_sequence(value, indent + 2, out)
        else:
            try:
                out.append(lead + " " + _fast_scalar(value) + "\n")
            except _NotFast:
                if chain is None:
                    raise
                text = _ruamel_value(chain, key, value)
                out.append(lead + text)
                if spliced is not None:
                    spliced.append((key, value, text))


_SPLICE_CACHE: dict[tuple[Any, ...], str] = {}  # (chain, key, string) -> text after "key:"


def _ruamel_value(chain: tuple[str, ...], key: str, value: Any) -> str:
    """:func:`_ruamel_text`, remembered: the same release rendered for two environments writes
    the same long strings at the same places. A string with a line break (ruamel always writes
    it double-quoted) is written by :func:`_double_quoted` instead."""
    if type(value) is not str:
        return _ruamel_text(chain, key, value)
    cache_key = (chain, key, value)
    text = _SPLICE_CACHE.get(cache_key)
    if text is None:
        if "\n" in value and _implicit_tag(value) is None:
            column = 2 * len(chain) + len(_fast_scalar(key)) + 1  # after "key:"
            text = _double_quoted(value, column, 2 * (len(chain) + 1)) + "\n"
        else:
            text = _ruamel_text(chain, key, value)
        if len(_SPLICE_CACHE) >= 256:
            _SPLICE_CACHE.clear()
        _SPLICE_CACHE[cache_key] = text
    return text


def _reads_back(key: str, value: Any, text: str) -> bool:
    """Whether ``key:`` + ``text`` (a spliced value) reads back as ``{key: value}`` with
    libyaml's YAML 1.1 loader, as kubectl reads it: the one value checked on its own, so a
    spliced document needs no parse of the whole to know it reads back exactly."""
    pyyaml, loader = _libyaml_loader()
    if loader is None:
        return False
    try:
        docs = list(pyyaml.load_all(_fast_scalar(key) + ":" + text, Loader=loader))  # noqa: S506
    except pyyaml.YAMLError:
        return False
    return docs == [{key: value}]


_ESCAPES = {"\x00": "0", "\x07": "a", "\x08": "b", "\t": "t", "\n": "n", "\x0b": "v",
            "\x0c": "f", "\r": "r", "\x1b": "e", '"': '"', "\\": "\\", "\x85": "N",
            "\xa0": "_", "\u2028": "L", "\u2029": "P"}


# What write_double_quoted escapes: '"', backslash, NEL, LS, PS, BOM and non-printables.
_TO_ESCAPE = re.compile('["\\\\\x85\u2028\u2029\ufeff]|[^\x20-\x7e\xa0-\ud7ff\ue000-\ufffd'
                        '\U00010000-\U0010ffff]')


def _escape(match: re.Match) -> str:
    ch = match.group()
    if ch in _ESCAPES:
        return "\\" + _ESCAPES[ch]
    if ch <= "\xff":
        return f"\\x{ord(ch):02X}"
    if ch <= "\uffff":
        return f"\\u{ord(ch):04X}"
    return f"\\U{ord(ch):08X}"


def _double_quoted(text: str, column: int, indent: int, best_width: int = 4096) -> str:
    """``' "text"'`` as ruamel's ``Emitter.write_double_quoted`` writes a block mapping value
    (allow_unicode, split) starting at ``column``, continuation lines at ``indent``: the same
    escapes and the same folding (a port of it, compared byte for byte in the tests)."""
    escaped = _TO_ESCAPE.sub(_escape, text)
    if column + 2 + len(escaped) <= best_width:
        return ' "' + escaped + '"'  # fits: the fold test below can never pass
    out = [' "']
    column += 2
    start = end = 0
    n = len(text)
    while end <= n:
        ch = text[end] if end < n else None
        if ch is None or ch in '"\\\x85\u2028\u2029\ufeff' or not (
                "\x20" <= ch <= "\x7e" or "\xa0" <= ch <= "\ud7ff"
                or "\ue000" <= ch <= "\ufffd" or "\U00010000" <= ch <= "\U0010ffff"):
            if start < end:
                data = text[start:end]
                column += len(data)
                out.append(data)
                start = end
            if ch is not None:
                if ch in _ESCAPES:
                    data = "\\" + _ESCAPES[ch]
                elif ch <= "\xff":
                    data = f"\\x{ord(ch):02X}"
                elif ch <= "\uffff":
                    data = f"\\u{ord(ch):04X}"
                else:
                    data = f"\\U{ord(ch):08X}"
                column += len(data)
                out.append(data)
                start = end + 1
        if (0 < end < n - 1 and (ch == " " or start >= end)
                and column + (end - start) > best_width):
            need_backslash = True
            try:
                space_pos = text.index(" ", end)
                line_break = text.find("\n", end, space_pos)
                if line_break != -1:
                    space_pos = line_break
                if text[space_pos] == "\n" and text[space_pos + 1] != " ":
                    pass
                elif ('"' not in text[end:space_pos] and "'" not in text[end:space_pos]
                      and text[space_pos + 1] not in " \n" and text[end - 1:end + 1] != "  "
                      and start != end):
                    need_backslash = False
            except (ValueError, IndexError):
                pass
            data = text[start:end] + ("\\" if need_backslash else "")
            if start < end:
                start = end
            column += len(data)
            out.append(data)
            out.append("\n" + " " * indent)  # write_indent after a line: break, then indent
            column = indent
            if text[start] == " ":
                if not need_backslash:
                    start += 1
                data = "\\" if need_backslash else ""
                column += len(data)
                out.append(data)
        end += 1
    out.append('"')
    return "".join(out)


def _ruamel_text(chain: tuple[str, ...], key: str, value: Any) -> str:
    """What ruamel writes after ``key:`` for a scalar the fast writer does not handle (a long
    or escaped string, a float), reached through mappings only: ruamel writes the same keys,
    nested the same way, around this one value, and the text after ``key:`` is taken. The
    emitter is then in the same state (column, indent, context) as in the whole document."""
    mini: Any = {key: value}
    for k in reversed(chain):
        mini = {k: mini}
    buf = io.StringIO()
    _writer(True).dump_all([mini], buf)
    text = buf.getvalue()
    prefix = "".join(" " * (2 * i) + _fast_scalar(k) + ":\n" for i, k in enumerate(chain))
    prefix += " " * (2 * len(chain)) + _fast_scalar(key) + ":"
    if not text.startswith(prefix) or not text.endswith("\n"):
        raise _NotFast
    return text[len(prefix):]


def _fast_sequence(items: list, indent: int, out: list[str]) -> None:
    lead = " " * indent + "- "
    for item in items:
        kind = type(item)
        if kind is dict:
            if not item:
                out.append(lead + "{}\n")
            else:
                _fast_mapping(item, indent + 2, out, first=lead)
        elif kind is list:
            raise _NotFast
        else:
            out.append(lead + _fast_scalar(item) + "\n")


def dump_yaml_all_fast(docs: list[Any], *, splice: bool = False) -> str | None:
    """The bytes ``dump_yaml_all(docs, yaml11_safe=True)`` writes, when the fast path applies
    (else None). Its output reads back as exactly ``docs`` in YAML 1.1 and 1.2 (tested).
    ``splice`` also takes documents with long or escaped strings and floats under mappings,
    each written as ruamel writes it and checked to read back on its own
    (:func:`_reads_back`)."""
    return _dump_fast(docs, splice=splice, check=True)


def _dump_fast(docs: list[Any], splice: bool = False, check: bool = False) -> str | None:
    """The bytes ruamel would write for ``docs`` (yaml11_safe settings), or None. ``splice``:
    scalars the fast writer does not handle, under mappings only, are written by ruamel
    alone (:func:`_ruamel_value`); ``check``: None unless each of those reads back as itself
    (:func:`_reads_back`), so that the whole output does."""
    parts = []
    try:
        for doc in docs:
            if type(doc) is not dict or not doc:
                return None
            out: list[str] = []
            spliced: list[tuple[str, Any, str]] = []
            _fast_mapping(doc, 0, out, chain=() if splice else None, spliced=spliced)
            if check and not all(_reads_back(*s) for s in spliced):
                return None
            parts.append("".join(out))
    except _NotFast:
        return None
    return "---\n".join(parts)


def dump_yaml_all(docs: list[Any], *, yaml11_safe: bool = False) -> str:
    """Dump documents; ``yaml11_safe`` also quotes strings YAML 1.1 readers would retype
    (and takes a fast path that writes the same bytes for plain JSON-like documents)."""
    if yaml11_safe and docs:
        fast = _dump_fast(docs, splice=True)
        if fast is not None:
            return fast
    buf = io.StringIO()
    _writer(yaml11_safe).dump_all(docs, buf)
    return buf.getvalue()
