"""A fast yes/no answer to "is this document valid?" for a jsonschema validator.

``jsonschema``'s ``iter_errors`` walks every node through generic machinery (evolve, descend,
error objects): ~1.5 ms for a rendered Rollout. :func:`compile_check` turns the same schema into
nested closures that only answer *valid or not* (~15x faster). Callers ask the compiled check
first and run ``iter_errors`` only when it says "invalid", so the problems reported (paths,
messages) are exactly jsonschema's.

Sound by construction: a keyword jsonschema applies for the validator's draft and that is not
implemented here (``uniqueItems``, ``if``, ``prefixItems``, ...) makes :func:`compile_check`
return None (no fast path); keywords jsonschema ignores (``description``,
``x-kubernetes-*``) are ignored here too. Types follow the validator's own type checker
(draft 6+: ``1.0`` is an integer, ``True`` is not). Tests compare both answers on mutated
documents.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], bool]


class _Unsupported(Exception):
    pass


def _is_integer(x: Any) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and x.is_integer())


def _is_number(x: Any) -> bool:
    return not isinstance(x, bool) and isinstance(x, numbers.Number)


_TYPES: dict[str, Check] = {
    "array": lambda x: isinstance(x, list),
    "boolean": lambda x: isinstance(x, bool),
    "integer": _is_integer,
    "null": lambda x: x is None,
    "number": _is_number,
    "object": lambda x: isinstance(x, dict),
    "string": lambda x: isinstance(x, str),
}
# Keywords that never assert anything for a validator without a format checker.
_ANNOTATIONS = frozenset({"format", "$defs", "definitions", "default", "description", "title",
                          "examples", "$schema", "$id", "$comment"})


def _always(_x: Any) -> bool:
    return True


def _never(_x: Any) -> bool:
    return False


def type_checks_agree(validator: Any) -> bool:
    """Our type predicates answer like ``validator.is_type`` on representative values."""
    from decimal import Decimal

    samples = [0, 1, -3, True, False, 1.0, 1.5, float("inf"), Decimal("2"), None, "", "1",
               [], [1], {}, {"a": 1}, (1,)]
    return all(check(v) == validator.is_type(v, name)
               for name, check in _TYPES.items() for v in samples)


class _Compiler:
    def __init__(self, validator: Any) -> None:
        import jsonschema
        from jsonschema._utils import equal

        self.equal = equal
        self.keywords = frozenset(type(validator).VALIDATORS)
        self.draft7 = isinstance(validator, jsonschema.Draft7Validator)
        if validator.format_checker is not None and "format" in self.keywords:
            raise _Unsupported("format checker")
        self.memo: dict[tuple[int, int], Check] = {}
        self.keep: list[Any] = []  # schemas and resolvers whose id() keys the memo

    def compile(self, schema: Any, resolver: Any) -> Check:
        if schema is True:
            return _always
        if schema is False:
            return _never
        if not isinstance(schema, dict):
            raise _Unsupported(f"schema {schema!r:.40}")
        key = (id(schema), getattr(resolver, "_base_uri", id(resolver)))
        if key in self.memo:
            return self.memo[key]
        cell: list[Check] = []
        self.memo[key] = lambda x: cell[0](x)  # recursion through $ref
        self.keep.extend((schema, resolver))
        check = self._build(schema, resolver)
        cell.append(check)
        self.memo[key] = check
        return check

    def _build(self, schema: dict, resolver: Any) -> Check:
        if self.draft7 and "$ref" in schema:
            return self._ref(schema["$ref"], resolver)  # draft 7 ignores $ref's siblings
        checks: list[Check] = []
        for key in schema:
            if key not in self.keywords or key in _ANNOTATIONS:
                continue
            if key in ("properties", "patternProperties"):
                continue  # with additionalProperties below
            handler = getattr(self, "_kw_" + key.lstrip("$"), None)
            if handler is None:
                raise _Unsupported(key)
            checks.append(handler(schema[key], schema, resolver))
        if "properties" in schema or "patternProperties" in schema or (
                "additionalProperties" in schema):
            checks.append(self._object(schema, resolver))
        if not checks:
            return _always
        if len(checks) == 1:
            return checks[0]
        if len(checks) == 2:
            a, b = checks
            return lambda x: a(x) and b(x)

        def check_all(x: Any) -> bool:  # a loop beats all(genexpr) here
            for c in checks:  # noqa: SIM110
                if not c(x):
                    return False
            return True
        return check_all

    def _ref(self, ref: str, resolver: Any) -> Check:
        resolved = resolver.lookup(ref)
        return self.compile(resolved.contents, resolved.resolver)

    # ------------------------------------------------------------------ keywords
    def _kw_ref(self, ref: str, _schema: dict, resolver: Any) -> Check:
        return self._ref(ref, resolver)

    def _kw_additionalProperties(self, *_args: Any) -> Check:
        return _always  # handled by _object

    def _object(self, schema: dict, resolver: Any) -> Check:
        props = {k: self.compile(v, resolver) for k, v in (schema.get("properties") or {}).items()}
        patterns = [(re.compile(p), self.compile(v, resolver))
                    for p, v in (schema.get("patternProperties") or {}).items()]
        joined = "|".join(schema.get("patternProperties") or {})
        joined_re = re.compile(joined) if joined else None
        extra = schema.get("additionalProperties", True)
        extra_check = None if extra is True else self.compile(extra, resolver)

        def check(x: Any) -> bool:
            if not isinstance(x, dict):
                return True
            for key, value in x.items():
                prop = props.get(key)
                if prop is not None:
                    if not prop(value):
                        return False
                    continue
                if joined_re is not None and joined_re.search(key):
                    continue  # validated below
                if extra_check is not None and not extra_check(value):
                    return False
            if patterns:
                for regex, sub in patterns:
                    for key, value in x.items():
                        if regex.search(key) and not sub(value):
                            return False
            return True

        if not patterns and joined_re is None and extra_check is None:
            def check_props(x: Any) -> bool:  # the common case, without the extras
                if not isinstance(x, dict):
                    return True
                for key, value in x.items():
                    prop = props.get(key)
                    if prop is not None and not prop(value):
                        return False
                return True
            return check_props
        return check

    def _kw_type(self, types: Any, *_args: Any) -> Check:
        names = [types] if isinstance(types, str) else list(types)
        if any(n not in _TYPES for n in names):
            raise _Unsupported(f"type {names}")
        preds = [_TYPES[n] for n in names]
        if len(preds) == 1:
            return preds[0]
        if names == ["string", "null"] or names == ["null", "string"]:
            return lambda x: x is None or isinstance(x, str)
        return lambda x: any(p(x) for p in preds)

    def _kw_required(self, required: list, *_args: Any) -> Check:
        names = frozenset(required)
        return lambda x: not isinstance(x, dict) or names.issubset(x)

    def _kw_items(self, items: Any, schema: dict, resolver: Any) -> Check:
        if isinstance(items, list) or "prefixItems" in schema:
            raise _Unsupported("tuple items")
        if "additionalItems" in schema and self.draft7:
            pass  # ignored by draft 7 when items is a schema
        sub = self.compile(items, resolver)

        def check_items(x: Any) -> bool:
            if isinstance(x, list):
                for i in x:
                    if not sub(i):
                        return False
            return True
        return check_items

    def _kw_additionalItems(self, _value: Any, schema: dict, _resolver: Any) -> Check:
        if isinstance(schema.get("items", {}), list):
            raise _Unsupported("additionalItems with tuple items")
        return _always

    def _kw_enum(self, enum: list, *_args: Any) -> Check:
        equal = self.equal
        values = list(enum)
        return lambda x: any(equal(v, x) for v in values)

    def _kw_const(self, const: Any, *_args: Any) -> Check:
        equal = self.equal
        return lambda x: equal(x, const)

    def _kw_pattern(self, pattern: str, *_args: Any) -> Check:
        regex = re.compile(pattern)
        return lambda x: not isinstance(x, str) or regex.search(x) is not None

    def _kw_minLength(self, n: int, *_args: Any) -> Check:
        return lambda x: not isinstance(x, str) or len(x) >= n

    def _kw_maxLength(self, n: int, *_args: Any) -> Check:
        return lambda x: not isinstance(x, str) or len(x) <= n

    def _kw_minItems(self, n: int, *_args: Any) -> Check:
        return lambda x: not isinstance(x, list) or len(x) >= n

    def _kw_maxItems(self, n: int, *_args: Any) -> Check:
        return lambda x: not isinstance(x, list) or len(x) <= n

    def _kw_minProperties(self, n: int, *_args: Any) -> Check:
        return lambda x: not isinstance(x, dict) or len(x) >= n

    def _kw_maxProperties(self, n: int, *_args: Any) -> Check:
        return lambda x: not isinstance(x, dict) or len(x) <= n

    def _kw_minimum(self, m: Any, *_args: Any) -> Check:
        return lambda x: not _is_number(x) or x >= m

    def _kw_maximum(self, m: Any, *_args: Any) -> Check:
        return lambda x: not _is_number(x) or x <= m

    def _kw_exclusiveMinimum(self, m: Any, *_args: Any) -> Check:
        if isinstance(m, bool):
            raise _Unsupported("draft 4 exclusiveMinimum")
        return lambda x: not _is_number(x) or x > m

    def _kw_exclusiveMaximum(self, m: Any, *_args: Any) -> Check:
        if isinstance(m, bool):
            raise _Unsupported("draft 4 exclusiveMaximum")
        return lambda x: not _is_number(x) or x < m

    def _kw_anyOf(self, subs: list, _schema: dict, resolver: Any) -> Check:
        checks = [self.compile(s, resolver) for s in subs]
        return lambda x: any(c(x) for c in checks)

    def _kw_allOf(self, subs: list, _schema: dict, resolver: Any) -> Check:
        checks = [self.compile(s, resolver) for s in subs]
        return lambda x: all(c(x) for c in checks)

    def _kw_oneOf(self, subs: list, _schema: dict, resolver: Any) -> Check:
        checks = [self.compile(s, resolver) for s in subs]
        return lambda x: sum(1 for c in checks if c(x)) == 1

    def _kw_not(self, sub: Any, _schema: dict, resolver: Any) -> Check:
        check = self.compile(sub, resolver)
        return lambda x: not check(x)


def compile_check(validator: Any) -> Check | None:
    """A predicate that is True exactly when ``validator.iter_errors(doc)`` yields nothing,
    or None when the schema uses a keyword not covered here (then use ``validator`` alone)."""
    if not type_checks_agree(validator):
        return None
    try:
        compiler = _Compiler(validator)
        check = compiler.compile(validator.schema, validator._resolver)
    except (_Unsupported, RecursionError, AttributeError, LookupError, ImportError):
        return None
    except Exception as exc:  # an unresolvable $ref and the like: jsonschema will say so
        if type(exc).__module__.startswith(("referencing", "jsonschema")):
            return None
        raise
    keep = compiler.keep

    def valid(doc: Any) -> bool:
        _ = keep  # the memo keys are ids of these objects: keep them alive
        try:
            return check(doc)
        except RecursionError:
            return False  # deeply nested input: let jsonschema decide and explain
    return valid
