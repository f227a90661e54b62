"""All YAML of the suite is read and written here.

Reading: :func:`load_yaml` and :func:`load_yaml_all` use ruamel's safe loader (YAML 1.2, no
tags, duplicate keys refused), the way DVC reads ``params.yaml``; :func:`load_yaml_as_dvc` is
DVC's own reading of ``dvc.lock``; :func:`load_yaml_all_fast` is libyaml's safe loader (YAML
1.1, as kubectl and Argo CD read manifests).

Writing: one emitter, libyaml through PyYAML's ``CSafeDumper``, with one set of settings
(:data:`DUMP_SETTINGS`): block style, key order as inserted, no line folding, Unicode kept,
multi-line strings as literal blocks. The same data gives the same bytes. A string that any
reader of the output (YAML 1.1 such as PyYAML and kubectl's go-yaml, or YAML 1.2 such as
ruamel and DVC) would read as something else (``yes``, ``on``, ``012``, ``1e3``, ``0o17``,
``null``, ``2020-01-01`` ...) is quoted, so the output reads back as exactly the data in every
one of them (tested on generated documents). Values can never add keys or documents: the
emitter writes data, not text.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from modelops.errors import InputError

# --------------------------------------------------------------------------- reading


def _safe() -> YAML:
    yaml = YAML(typ="safe", pure=True)
    yaml.allow_duplicate_keys = False
    return yaml


def _problem(source: str, exc: Exception) -> InputError:
    return InputError(f"{source}: not valid YAML: {exc}".replace("\n", " "))


_CACHED_TEXT = 256 * 1024  # params.yaml and its like; big documents are parsed every time


@functools.lru_cache(maxsize=32)
def _parsed(text: str) -> Any:
    return _safe().load(text)


def load_yaml(text: str, source: str = "<string>") -> Any:
    """Parse one YAML document; a syntax error names the source and the line.

    One job reads the same ``params.yaml`` several times (settings, gates, timing, the
    report): the pure-Python parse of a given text is done once per process, and each caller
    gets its own copy of the data."""
    try:
        if len(text) > _CACHED_TEXT:
            return _safe().load(text)
        return copy.deepcopy(_parsed(text))
    except YAMLError as exc:
        raise _problem(source, exc) from exc


def load_yaml_as_dvc(text: str, source: str = "<string>") -> Any:
    """Parse a file DVC writes and reads (``dvc.lock``) the way DVC reads it
    (``dvc.utils.serialize.loads_yaml``: ruamel's safe loader, on libyaml through
    ruamel.yaml.clib when installed): what DVC sees, 4-5x faster than the pure-Python loader."""
    yaml = YAML(typ="safe")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except YAMLError as exc:
        raise _problem(source, exc) from exc


def load_yaml_all(text: str, source: str = "<string>") -> list[Any]:
    try:
        return [d for d in _safe().load_all(text) if d is not None]
    except YAMLError as exc:
        raise _problem(source, exc) from exc


def load_yaml_all_fast(text: str, source: str = "<string>") -> list[Any]:
    """Parse documents with libyaml's safe loader (YAML 1.1, as kubectl and Argo CD read them).

    10-15x faster than the pure-Python loader. For text this suite wrote (its output reads the
    same in YAML 1.1 and 1.2) and for vendored CRD schemas; duplicate keys are not refused
    here (the last one wins, as in kubectl), so checks of foreign text compare it with its own
    re-dump (:func:`is_canonical`)."""
    try:
        return [d for d in pyyaml.load_all(text, Loader=pyyaml.CSafeLoader) if d is not None]
    except pyyaml.YAMLError as exc:
        raise _problem(source, exc) from exc


def load_yaml_large(text: str, source: str = "<string>") -> Any:
    """Parse one big, trusted data document (a vendored CRD schema) with libyaml (7-10x faster
    on a 600 KB CRD than the pure-Python loader)."""
    docs = load_yaml_all_fast(text, source)
    return docs[0] if docs else None


def load_yaml_file(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{p}: file not found") from exc
    return load_yaml(text, str(p))


# --------------------------------------------------------------------------- writing

_STR = "tag:yaml.org,2002:str"
# Plain scalars YAML 1.2 (ruamel, DVC) or go-yaml (kubectl, Argo CD: it strips '_' and tries
# strconv.ParseInt(s, 0, 64) and a YAML-style float, and takes y/Y/n/N as booleans, as YAML 1.1
# does) reads as something else, beyond what PyYAML's own YAML 1.1 resolvers already know:
# 1e3, 1., 0o17, 0X1F, 0B1, +_1, y, N ...
_RETYPED_ELSEWHERE = re.compile(
    r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
    r"|[-+]?0[xX][0-9a-fA-F]+|[-+]?0[oO][0-7]+|[-+]?0[bB][01]+|[-+]?\.(?:inf|Inf|INF)"
    r"|\.(?:nan|NaN|NAN)|[yYnN]")


_YAML11 = pyyaml.resolver.Resolver()


@functools.lru_cache(maxsize=65536)
def _scalar_tag(value: str, implicit: tuple[bool, bool]) -> str:
    """The tag a plain scalar ``value`` resolves to in PyYAML's YAML 1.1 resolver, or a
    non-string tag when YAML 1.2 or go-yaml would read it as something else (the emitter then
    quotes such strings). Pure, so remembered: manifests repeat most of their scalars."""
    tag = _YAML11.resolve(pyyaml.ScalarNode, value, implicit)
    if (tag == _STR and implicit[0] and value
            and _RETYPED_ELSEWHERE.fullmatch(value.replace("_", ""))):
        return "tag:yaml.org,2002:float"
    return tag


_SCALAR = pyyaml.ScalarNode


class _Resolver(pyyaml.resolver.Resolver):
    """PyYAML's YAML 1.1 resolver plus the readers it does not know (:func:`_scalar_tag`)."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is _SCALAR:
            return _scalar_tag(value, implicit)  # (bool, bool) tuples: hashable
        return super().resolve(kind, value, implicit)


class _Dumper(pyyaml.CSafeDumper, _Resolver):
    """libyaml's emitter, PyYAML's safe representer, the resolver above; never an anchor or
    alias (an object used twice is written twice)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_OTHER_BREAKS = ("\r", "\x85", "\u2028", "\u2029")  # str.__contains__: a C search each


def _represent_str(dumper: Any, data: str) -> Any:
    # multi-line text (a JSON document with its final newline) as a literal block; libyaml
    # falls back to a quoted style where a block cannot hold the text exactly. It lets the
    # other line breaks YAML knows (CR, NEL, U+2028, U+2029) into a block raw, where a reader
    # breaks the line and the indentation with it: such text is quoted, with escapes
    style = "|" if "\n" in data and not any(b in data for b in _OTHER_BREAKS) else None
    return dumper.represent_scalar(_STR, str(data), style=style)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_multi_representer(str, _represent_str)  # str subclasses (settings value types)

# The one set of settings every YAML file the suite writes is dumped with.
DUMP_SETTINGS: dict[str, Any] = {
    "Dumper": _Dumper,
    "default_flow_style": False,
    "sort_keys": False,  # keep insertion order
    "allow_unicode": True,
    "width": -1,  # never fold a line
    "indent": 2,
    "explicit_start": False,
}


def dump_yaml_all(docs: list[Any]) -> str:
    """Documents as YAML text (``---`` between them); see the module docstring."""
    try:
        return pyyaml.dump_all(docs, **DUMP_SETTINGS)
    except (pyyaml.YAMLError, UnicodeEncodeError) as exc:
        raise InputError(f"a value cannot be written as YAML: {exc}".replace("\n", " "),
                         hint="remove lone surrogates or other unencodable characters") from exc


def dump_yaml(data: Any) -> str:
    """One document as YAML text."""
    return dump_yaml_all([data])


def is_canonical(text: str, source: str = "<string>") -> list[Any]:
    """The documents of ``text`` when it is exactly what :func:`dump_yaml_all` writes for them
    (so it reads the same in YAML 1.1 and 1.2, with no duplicate keys, anchors, tags or
    comments); InputError naming the first line that differs otherwise."""
    docs = load_yaml_all_fast(text, source)
    again = dump_yaml_all(docs) if docs else ""
    if again != text:
        line = next((i for i, (a, b) in enumerate(
            zip(text.splitlines(), again.splitlines(), strict=False), 1) if a != b),
            min(len(text.splitlines()), len(again.splitlines())) + 1)
        shown = (text.splitlines() or [""])[min(line, max(len(text.splitlines()), 1)) - 1]
        raise InputError(f"{source}: line {line}: not in the form modelops-gitops writes "
                         f"(got {shown[:80]!r})",
                         hint="render the folder again with `modelops-gitops render` instead "
                              "of editing it; hand edits, comments, anchors, duplicate keys "
                              "and other YAML spellings are refused")
    return docs
