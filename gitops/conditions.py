"""Argo Rollouts' ``successCondition`` / ``failureCondition``, evaluated as Argo evaluates them:
expr-lang v1.17.8 (the version Argo Rollouts pins) with the environment of Argo's
``EvalCondition`` (``utils/evaluate/evaluate.go``). This is an emulation of that engine for a
documented subset of the language, held to cases carried over from Argo Rollouts and expr and
to cases whose expected outcomes were produced by expr v1.17.8 itself
(``tests/data/argo/conditions.json``); an expression outside the subset is refused when it is
compiled (:class:`Unsupported`), so ``gitops render`` can refuse a template the preview cannot
judge.

The environment, as Argo builds it:

- ``result``: a Prometheus vector is ``[]float64`` (empty, never nil, with no samples), a scalar
  ``float64``; its *static type* is that of the value, so the whole expression is type-checked
  against it before anything runs (``result < 1`` on a vector is an error even behind a false
  ``&&``);
- ``isNaN(float64) bool``, ``isInf(float64) bool`` (one argument: infinity of either sign);
- ``asInt(any) int64`` (floats truncate toward zero, strings parse as base-10 integers),
  ``asFloat(any) float64`` (strings parse as Go floats; out of range is an error);
- ``isNil(any) bool`` and ``default(any, any) any`` ignore their first argument: they look at
  ``result`` itself (``default(result[0], 0)`` is the whole ``result`` whenever ``result`` is not
  nil, so ``default(result[0], 0) < 0.05`` is a runtime error on a vector);
- the output must be a bool (``expected bool, but got int``).

The subset: number literals (``1`` is an int, ``1.5`` a float; ``0x``/``0b``/``0o`` and ``_``),
``true``/``false``/``nil``, quoted strings; ``result``; indexing ``x[i]`` (negative from the end);
``len`` and the functions above; unary ``!``/``not``/``-``/``+``; ``**`` (``^``), ``* / %``,
``+ -``, comparisons (chained: ``0 <= x < 1`` is ``0 <= x && x < 1``), ``in``/``not in``,
``==``/``!=``, ``&&``/``and``, ``||``/``or``, ``??``; parentheses. With expr's rules: ``/`` and
``**`` always give float64; ``%`` takes integers only (on floats it is a compile error);
integer arithmetic wraps at 64 bits; float division follows IEEE 754 (``x / 0`` is ±Inf,
``0 / 0`` NaN); comparisons with NaN are false; literal subexpressions are folded at compile time
as expr folds them (``x && false`` is false without evaluating ``x``; ``1 % 0`` anywhere is a
compile error).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INT_MIN, INT_MAX = -(1 << 63), (1 << 63) - 1


class ConditionError(Exception):
    """The condition cannot be compiled or run (Argo: the measurement is an Error)."""

    def __init__(self, message: str, stage: str = "run"):
        super().__init__(message)
        self.stage = stage  # compile | run | type


class Unsupported(ConditionError):
    """Valid expr, perhaps, but outside the subset this preview emulates."""

    def __init__(self, message: str):
        super().__init__(message, "unsupported")


# --------------------------------------------------------------------------- values

@dataclass(frozen=True)
class Vector:
    """A Prometheus instant vector as Argo passes it: ``[]float64``."""

    values: tuple[float, ...]

    def __len__(self) -> int:
        return len(self.values)


def wrap(n: int) -> int:
    """Go's int arithmetic: 64-bit two's complement."""
    return ((n - INT_MIN) % (1 << 64)) + INT_MIN


def _gotype(v: Any) -> str:
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, Vector):
        return "[]float64"
    return type(v).__name__


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_nil(v: Any) -> bool:
    return v is None


def rt_equal(a: Any, b: Any) -> bool:
    if _num(a) and _num(b):
        if isinstance(a, int) and isinstance(b, int):
            return a == b
        return float(a) == float(b)
    if isinstance(a, Vector) and isinstance(b, Vector):
        return len(a) == len(b) and all(x == y for x, y in zip(a.values, b.values))
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    return _is_nil(a) and _is_nil(b)  # else reflect.DeepEqual of different types: false


def _compare(op: str, a: Any, b: Any) -> bool:
    if _num(a) and _num(b):
        if not (isinstance(a, int) and isinstance(b, int)):
            a, b = float(a), float(b)
    elif not (isinstance(a, str) and isinstance(b, str)):
        raise ConditionError(f"invalid operation: {_gotype(a)} {op} {_gotype(b)}")
    if isinstance(a, str):
        a, b = a.encode(), b.encode()
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def _float_div(a: float, b: float) -> float:
    if b == 0.0:
        if a == 0.0 or math.isnan(a):
            return math.nan
        sign = math.copysign(1.0, a) * math.copysign(1.0, b)
        return math.copysign(math.inf, sign)
    return a / b


def go_pow(x: float, y: float) -> float:
    """Go's math.Pow, special cases included (Python's raises where Go returns Inf/NaN)."""
    try:
        return math.pow(x, y)
    except OverflowError:
        odd = y == math.floor(y) and abs(y) < 2 ** 63 and int(y) % 2 == 1
        return -math.inf if x < 0 and odd else math.inf
    except ValueError:
        if x == 0.0:  # 0 ** negative
            odd = y == math.floor(y) and int(y) % 2 == 1
            return math.copysign(math.inf, x) if odd else math.inf
        return math.nan


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+" and isinstance(a, str) and isinstance(b, str):
        return a + b
    if not (_num(a) and _num(b)):
        raise ConditionError(f"invalid operation: {_gotype(a)} {op} {_gotype(b)}")
    if op == "/":
        return _float_div(float(a), float(b))
    if op in ("**", "^"):
        return go_pow(float(a), float(b))
    if op == "%":
        if isinstance(a, float) or isinstance(b, float):
            raise ConditionError(f"invalid operation: {_gotype(a)} % {_gotype(b)}")
        if b == 0:
            raise ConditionError("integer divide by zero")
        q = abs(a) // abs(b)
        return wrap(a - b * (q if (a >= 0) == (b >= 0) else -q))
    if isinstance(a, int) and isinstance(b, int):
        return wrap({"+": a + b, "-": a - b, "*": a * b}[op])
    a, b = float(a), float(b)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    return a * b


def _to_int(v: Any) -> int:
    if _num(v):
        if isinstance(v, float):
            return int(v) if math.isfinite(v) else INT_MIN
        return v
    raise ConditionError(f"cannot convert {_gotype(v)} to int")


def _fetch(base: Any, index: Any) -> Any:
    if isinstance(base, (Vector, str)):
        seq = base.values if isinstance(base, Vector) else base.encode()
        i = _to_int(index)
        n = len(seq)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise ConditionError(f"index out of range: {i} (array length is {n})")
        return seq[i]
    raise ConditionError(f"cannot fetch {index!r} from {_gotype(base)}")


_GO_INT = re.compile(r"[+-]?[0-9]+")
_GO_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)")
_GO_SPECIAL = re.compile(r"([+-]?)(inf|infinity|nan)", re.IGNORECASE)


def go_parse_int(s: str) -> int:
    """strconv.ParseInt(s, 10, 64)."""
    if not _GO_INT.fullmatch(s):
        raise ConditionError(f'strconv.ParseInt: parsing "{s}": invalid syntax')
    n = int(s)
    if not INT_MIN <= n <= INT_MAX:
        raise ConditionError(f'strconv.ParseInt: parsing "{s}": value out of range')
    return n


_GO_HEX_FLOAT = re.compile(r"([+-]?)0[xX]([0-9a-fA-F]*\.?[0-9a-fA-F]*)[pP]([+-]?[0-9]+)")


def _underscores_ok(s: str) -> bool:
    """Go's strconv underscoreOK: each '_' sits between digits (or after a base prefix)."""
    s = s[1:] if s[:1] in "+-" else s
    saw, i, hexa = "^", 0, False
    if len(s) >= 2 and s[0] == "0" and s[1].lower() in "box":
        i, saw, hexa = 2, "0", s[1].lower() == "x"
    for c in s[i:]:
        if c.isdigit() or (hexa and c in "abcdefABCDEF"):
            saw = "0"
        elif c == "_":
            if saw != "0":
                return False
            saw = "_"
        else:
            if saw == "_":
                return False
            saw = "!"
    return saw != "_"


def go_parse_float(s: str) -> float:
    """strconv.ParseFloat(s, 64): Go's decimal and hexadecimal float syntax, the special
    names, ``_`` between digits; out of range is an error, as in Go."""
    if "_" in s:
        if not _underscores_ok(s):
            raise ConditionError(f'strconv.ParseFloat: parsing "{s}": invalid syntax')
        s_clean = s.replace("_", "")
    else:
        s_clean = s
    hexm = _GO_HEX_FLOAT.fullmatch(s_clean)
    if hexm and any(c not in "." for c in hexm.group(2)):
        value = float.fromhex(s_clean)
        if math.isinf(value):
            raise ConditionError(f'strconv.ParseFloat: parsing "{s}": value out of range')
        return value
    m = _GO_SPECIAL.fullmatch(s)
    if m:
        if m.group(2).lower() == "nan":
            if m.group(1):
                raise ConditionError(f'strconv.ParseFloat: parsing "{s}": invalid syntax')
            return math.nan
        return -math.inf if m.group(1) == "-" else math.inf
    if not _GO_FLOAT.fullmatch(s_clean):
        raise ConditionError(f'strconv.ParseFloat: parsing "{s}": invalid syntax')
    value = float(s_clean)
    if math.isinf(value):
        raise ConditionError(f'strconv.ParseFloat: parsing "{s}": value out of range')
    return value


def _as_int(v: Any) -> int:
    if isinstance(v, bool) or v is None or isinstance(v, Vector):
        raise ConditionError(f"asInt() not supported on {_gotype(v)} {v!r}")
    if isinstance(v, str):
        return go_parse_int(v)
    if isinstance(v, float):
        if not math.isfinite(v) or not -2.0 ** 63 <= v < 2.0 ** 63:
            return INT_MIN  # Go's float64 -> int64 conversion on amd64
        return int(v)
    return v


def _as_float(v: Any) -> float:
    if isinstance(v, bool) or v is None or isinstance(v, Vector):
        raise ConditionError(f"asFloat() not supported on {_gotype(v)} {v!r}")
    if isinstance(v, str):
        return go_parse_float(v)
    return float(v)


def _float_arg(name: str, v: Any) -> float:
    if not isinstance(v, float):
        raise ConditionError(f"interface conversion: interface {{}} is {_gotype(v)}, not "
                             f"float64 (calling {name})")
    return v


def _len(v: Any) -> int:
    if isinstance(v, Vector):
        return len(v)
    if isinstance(v, str):
        return len(v)  # expr counts runes
    raise ConditionError(f"invalid argument for len (type {_gotype(v)})")


# --------------------------------------------------------------------------- static types
# A "nature" is the static type expr's checker gives a node.

BOOL, INT, INT64, FLOAT, STRING, NIL, VECTOR, UNKNOWN, ANY = (
    "bool", "int", "int64", "float64", "string", "nil", "[]float64", "unknown", "interface {}")
_INTEGER = (INT, INT64)
_NUMBER = (INT, INT64, FLOAT)


def _unknown(t: str) -> bool:
    return t in (UNKNOWN, ANY)


def _maybe(a: str, b: str, kinds: tuple[str, ...]) -> bool:
    return ((_unknown(a) and _unknown(b)) or (_unknown(a) and b in kinds)
            or (_unknown(b) and a in kinds))


def _comparable(a: str, b: str) -> bool:
    return (_unknown(a) or _unknown(b) or NIL in (a, b)
            or (a in _NUMBER and b in _NUMBER) or a == b)


def nature_of(result: Any) -> str:
    if isinstance(result, Vector):
        return VECTOR
    if result is None:
        return NIL
    return _gotype(result)


# --------------------------------------------------------------------------- AST

@dataclass
class Node:
    pos: int
    nature: str = field(default=UNKNOWN, init=False)


@dataclass
class Lit(Node):
    value: Any  # int | float | bool | str | None


@dataclass
class Name(Node):
    name: str


@dataclass
class Unary(Node):
    op: str
    node: Node


@dataclass
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass
class Index(Node):
    base: Node
    index: Node


@dataclass
class Call(Node):
    name: str
    args: list[Node]


# --------------------------------------------------------------------------- lexer

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+
           |[0-9][0-9_]*(?:\.[0-9][0-9_]*)?(?:[eE][-+]?[0-9]+)?
           |[0-9][0-9_]*\.(?![.0-9]))
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_$][A-Za-z0-9_]*)
  | (?P<op>\*\*|&&|\|\||<=|>=|==|!=|\?\?|\?\.|\.\.|::|[-+*/%<>!()\[\],^?:.{}#|;=`~&@])
""", re.VERBOSE)
_WORD_OPS = {"and", "or", "not", "in", "matches", "contains", "startsWith", "endsWith", "let",
             "if", "else"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v"}


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[Tok]:
    out, pos = [], 0
    for mark in ("//", "/*"):
        at = text.find(mark)
        if at >= 0:
            raise Unsupported(f"comments (position {at}) are outside the subset this preview "
                              "evaluates")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ConditionError(f"unrecognized character: {text[pos]!r} (position {pos})",
                                 "compile")
        kind = m.lastgroup or ""
        if kind == "name" and m.group() in _WORD_OPS:
            kind = "op"
        if kind != "ws":
            out.append(Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(Tok("end", "", len(text)))
    return out


def _unquote(tok: Tok) -> str:
    body = tok.text[1:-1]
    out, i = [], 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            nxt = body[i + 1]
            if nxt not in _ESCAPES:
                raise Unsupported(f"string escape \\{nxt} at position {tok.pos} is outside the "
                                  "subset this preview evaluates")
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


# --------------------------------------------------------------------------- parser
# Precedences and associativity as expr's parser/operator/operator.go.

_BINARY = {"or": 10, "||": 10, "and": 15, "&&": 15, "==": 20, "!=": 20, "<": 20, ">": 20,
           ">=": 20, "<=": 20, "in": 20, "+": 30, "-": 30, "*": 60, "/": 60, "%": 60,
           "**": 100, "^": 100, "??": 500}
_RIGHT = {"**", "^"}
_COMPARISON = {"<", ">", "<=", ">="}
_UNARY = {"not": 50, "!": 50, "-": 90, "+": 90}
_UNSUPPORTED_OPS = {"matches", "contains", "startsWith", "endsWith", "..", "|", "?", "?.",
                    ".", "let", "if", "::", "{", "#", ";"}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    @property
    def cur(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> None:
        self.i += 1

    def error(self, message: str, tok: Tok | None = None) -> ConditionError:
        tok = tok or self.cur
        return ConditionError(f"{message} (position {tok.pos})", "compile")

    def unsupported(self, tok: Tok, what: str) -> Unsupported:
        return Unsupported(f"{what} at position {tok.pos} is outside the subset this preview "
                           "evaluates (result, indexing, len, isNaN, isInf, isNil, default, "
                           "asInt, asFloat, arithmetic, comparisons, in, ??, &&, ||, !)")

    def expect(self, text: str) -> None:
        if self.cur.text != text or self.cur.kind not in ("op",):
            raise self.error(f"unexpected token {self._shown(self.cur)}")
        self.next()

    @staticmethod
    def _shown(tok: Tok) -> str:
        return "EOF" if tok.kind == "end" else repr(tok.text)

    def parse(self) -> Node:
        if self.cur.kind == "end":
            raise self.error("unexpected token EOF")
        node = self.expression(0)
        if self.cur.kind != "end":
            tok = self.cur
            if tok.text in _UNSUPPORTED_OPS:
                raise self.unsupported(tok, f"{tok.text!r}")
            raise self.error(f"unexpected token {self._shown(tok)}")
        return node

    def expression(self, precedence: int) -> Node:
        left = self.primary()
        prev = ""
        while self.cur.kind == "op":
            tok = self.cur
            negate = False
            if tok.text == "not":
                ahead = self.toks[self.i + 1]
                if ahead.text != "in":
                    if ahead.text in _UNSUPPORTED_OPS:
                        raise self.unsupported(ahead, f"'not {ahead.text}'")
                    raise self.error(f"unexpected token {self._shown(ahead)}", ahead)
                if _BINARY["in"] < precedence:
                    break
                negate = True
                self.next()
                tok = self.cur
            if tok.text in _UNSUPPORTED_OPS and tok.text not in ("?",):
                raise self.unsupported(tok, f"operator {tok.text!r}")
            prec = _BINARY.get(tok.text)
            if prec is None or prec < precedence:
                if tok.text == "?":
                    raise self.unsupported(tok, "the ternary operator")
                break
            self.next()
            if prev == "??" and tok.text != "??":
                raise self.error(f"Operator ({tok.text}) and coalesce expressions (??) cannot "
                                 "be mixed. Wrap either by parentheses.", tok)
            if tok.text in _COMPARISON:
                left = self.comparison(left, tok, prec)
            else:
                right = self.expression(prec if tok.text in _RIGHT else prec + 1)
                left = Binary(tok.pos, tok.text, left, right)
                if negate:
                    left = Unary(tok.pos, "not", left)
            prev = tok.text
        if precedence == 0 and self.cur.text == "?":
            raise self.unsupported(self.cur, "the ternary operator")
        return left

    def comparison(self, left: Node, tok: Tok, prec: int) -> Node:
        root: Node | None = None
        while True:
            right = self.expression(prec + 1)
            cmp = Binary(tok.pos, tok.text, left, right)
            root = cmp if root is None else Binary(tok.pos, "&&", root, cmp)
            left = right
            tok = self.cur
            if not (tok.kind == "op" and tok.text in _COMPARISON):
                return root
            self.next()

    def primary(self) -> Node:
        tok = self.cur
        if tok.kind == "op" and tok.text in _UNARY:
            self.next()
            inner = self.expression(_UNARY[tok.text])
            return self.postfix(Unary(tok.pos, tok.text, inner))
        if tok.kind == "op" and tok.text == "(":
            self.next()
            inner = self.expression(0)
            if self.cur.text == ";":
                raise self.unsupported(self.cur, "';' sequences")
            self.expect(")")
            return self.postfix(inner)
        return self.secondary()

    def secondary(self) -> Node:
        tok = self.cur
        if tok.kind == "name":
            self.next()
            if tok.text in ("true", "false"):
                return Lit(tok.pos, tok.text == "true")
            if tok.text == "nil":
                return Lit(tok.pos, None)
            if self.cur.text == "(":
                return self.postfix(self.call(tok))
            return self.postfix(Name(tok.pos, tok.text))
        if tok.kind == "num":
            self.next()
            return self.postfix(Lit(tok.pos, self.number(tok)))
        if tok.kind == "str":
            self.next()
            return self.postfix(Lit(tok.pos, _unquote(tok)))
        if tok.kind == "op" and tok.text in ("[", "{", "#", ".", "`"):
            raise self.unsupported(tok, "array, map and predicate literals")
        if tok.kind == "op" and tok.text in ("if", "let", "::"):
            raise self.unsupported(tok, f"{tok.text!r} expressions")
        raise self.error(f"unexpected token {self._shown(tok)}")

    def number(self, tok: Tok) -> int | float:
        text = tok.text.replace("_", "")
        low = text.lower()
        try:
            if low.startswith(("0x", "0b", "0o")):
                value = int(text, 0)
            elif "." in low or "e" in low:
                value = float(text)
                if math.isinf(value):
                    raise ValueError
                return value
            else:
                value = int(text, 10)
        except ValueError:
            raise self.error(f"invalid number literal {tok.text!r}", tok) from None
        if value > INT_MAX:
            raise self.error("integer literal is too large", tok)
        return value

    def call(self, name: Tok) -> Node:
        if name.text not in FUNCTIONS:
            raise self.unsupported(name, f"function {name.text!r}")
        self.expect("(")
        args: list[Node] = []
        while self.cur.text != ")":
            if args:
                self.expect(",")
                if self.cur.text == ")":
                    break
            args.append(self.expression(0))
        self.expect(")")
        return Call(name.pos, name.text, args)

    def postfix(self, node: Node) -> Node:
        while self.cur.kind == "op" and self.cur.text in ("[", ".", "?."):
            tok = self.cur
            if tok.text != "[":
                raise self.unsupported(tok, "member access")
            self.next()
            if self.cur.text == ":":
                raise self.unsupported(self.cur, "slices")
            index = self.expression(0)
            if self.cur.text == ":":
                raise self.unsupported(self.cur, "slices")
            self.expect("]")
            node = Index(tok.pos, node, index)
        return node


# --------------------------------------------------------------------------- checker

# name -> (parameter natures, result nature); "any" parameters take anything
FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "len": ((ANY,), INT), "isNaN": ((FLOAT,), BOOL), "isInf": ((FLOAT,), BOOL),
    "asInt": ((ANY,), INT64), "asFloat": ((ANY,), FLOAT), "isNil": ((ANY,), BOOL),
    "default": ((ANY, ANY), ANY),
}


def _floatify(node: Node) -> Node:
    """expr's traverseAndReplaceIntegerNodesWithFloatNodes (an int given for a float64)."""
    if isinstance(node, Lit) and _num(node.value) and isinstance(node.value, int):
        new = Lit(node.pos, float(node.value))
        new.nature = FLOAT
        return new
    if isinstance(node, Unary):
        node.node = _floatify(node.node)
    elif isinstance(node, Binary) and node.op in ("+", "-", "*"):
        node.left = _floatify(node.left)
        node.right = _floatify(node.right)
    return node


def _mismatch(op: str, a: str, b: str) -> ConditionError:
    return ConditionError(f"invalid operation: {op} (mismatched types {a} and {b})", "compile")


def check(node: Node, env: dict[str, str]) -> str:
    node.nature = _check(node, env)
    return node.nature


def _lit_nature(v: Any) -> str:
    if v is None:
        return NIL
    return _gotype(v)


def _check(node: Node, env: dict[str, str]) -> str:
    if isinstance(node, Lit):
        return _lit_nature(node.value)
    if isinstance(node, Name):
        if node.name not in env:
            raise ConditionError(f"unknown name {node.name}", "compile")
        return env[node.name]
    if isinstance(node, Unary):
        t = check(node.node, env)
        if node.op in ("!", "not"):
            if t == BOOL or _unknown(t):
                return BOOL
        elif t in _NUMBER:
            return t
        elif _unknown(t):
            return UNKNOWN
        raise ConditionError(f"invalid operation: {node.op} (mismatched type {t})", "compile")
    if isinstance(node, Index):
        base = check(node.base, env)
        idx = check(node.index, env)
        if _unknown(base):
            return UNKNOWN
        if base == VECTOR:
            if idx not in _INTEGER and not _unknown(idx):
                raise ConditionError("array elements can only be selected using an integer "
                                     f"(got {idx})", "compile")
            return FLOAT
        raise ConditionError(f"type {base}[{idx}] is undefined", "compile")
    if isinstance(node, Call):
        return _check_call(node, env)
    assert isinstance(node, Binary)
    a, b = check(node.left, env), check(node.right, env)
    op = node.op
    if op in ("==", "!="):
        if _comparable(a, b):
            return BOOL
    elif op in ("||", "or", "&&", "and"):
        if (a == BOOL and b == BOOL) or _maybe(a, b, (BOOL,)):
            return BOOL
    elif op in _COMPARISON:
        if (a in _NUMBER and b in _NUMBER) or (a == STRING and b == STRING):
            return BOOL
        if _maybe(a, b, (*_NUMBER, STRING)):
            return BOOL
    elif op in ("-", "*"):
        if a in _NUMBER and b in _NUMBER:
            return FLOAT if FLOAT in (a, b) else INT
        if _maybe(a, b, _NUMBER):
            return UNKNOWN
    elif op in ("/", "**", "^"):
        if (a in _NUMBER and b in _NUMBER) or _maybe(a, b, _NUMBER):
            return FLOAT
    elif op == "%":
        if (a in _INTEGER and b in _INTEGER) or _maybe(a, b, _INTEGER):
            return INT
    elif op == "+":
        if a in _NUMBER and b in _NUMBER:
            return FLOAT if FLOAT in (a, b) else INT
        if a == STRING and b == STRING:
            return STRING
        if _maybe(a, b, (*_NUMBER, STRING)):
            return UNKNOWN
    elif op == "in":
        if b == VECTOR:
            if not _comparable(a, FLOAT):
                raise ConditionError(f"cannot use {a} as type float64 in array", "compile")
            return BOOL
        if _unknown(a) and b in (STRING, VECTOR):
            return BOOL
        if _unknown(b):
            return BOOL
    elif op == "??":
        if a == NIL and b != NIL:
            return b
        if a != NIL and b == NIL:
            return a
        if a == NIL and b == NIL:
            return NIL
        if a in (b, ANY):
            return a
        return UNKNOWN
    raise _mismatch(op, a, b)


def _check_call(node: Call, env: dict[str, str]) -> str:
    params, out = FUNCTIONS[node.name]
    if node.name == "len":
        if len(node.args) != 1:
            for arg in node.args:
                check(arg, env)
            raise ConditionError(f"invalid number of arguments (expected 1, got "
                                 f"{len(node.args)})", "compile")
        t = check(node.args[0], env)
        if t in (VECTOR, STRING) or _unknown(t):
            return INT
        raise ConditionError(f"invalid argument for len (type {t})", "compile")
    if len(node.args) != len(params):
        for arg in node.args:
            check(arg, env)
        many = len(node.args) > len(params)
        raise ConditionError(f"{'too many' if many else 'not enough'} arguments to call "
                             f"{node.name}", "compile")
    for i, (arg, want) in enumerate(zip(node.args, params)):
        t = check(arg, env)
        if want == ANY:
            continue
        if want == FLOAT and t in _INTEGER:
            node.args[i] = _floatify(arg)
            continue
        if t == NIL:
            raise ConditionError(f"cannot use nil as argument (type {want}) to call "
                                 f"{node.name}", "compile")
        if t != want and not _unknown(t):
            raise ConditionError(f"cannot use {t} as argument (type {want}) to call "
                                 f"{node.name}", "compile")
    return out


# --------------------------------------------------------------------------- folding
# expr's optimizer/fold.go: literal subexpressions are computed at compile time.

def fold(node: Node) -> Node:
    for _ in range(1000):
        changed = [False]
        node = _fold(node, changed)
        if not changed[0]:
            return node
    return node


def _lit(node: Node, kinds: tuple[type, ...]) -> Lit | None:
    if isinstance(node, Lit) and isinstance(node.value, kinds) and (
            bool in kinds or not isinstance(node.value, bool)):
        return node
    return None


def _new_lit(old: Node, value: Any) -> Lit:
    new = Lit(old.pos, value)
    new.nature = _lit_nature(value)
    return new


def _fold(node: Node, changed: list[bool]) -> Node:
    if isinstance(node, Unary):
        node.node = _fold(node.node, changed)
        inner = node.node
        if node.op in ("-", "+") and isinstance(inner, Lit) and _num(inner.value):
            changed[0] = True
            v = inner.value
            return _new_lit(node, (wrap(-v) if isinstance(v, int) else -v)
                            if node.op == "-" else v)
        if node.op in ("!", "not") and _lit(inner, (bool,)):
            changed[0] = True
            return _new_lit(node, not inner.value)
        return node
    if isinstance(node, Index):
        node.base = _fold(node.base, changed)
        node.index = _fold(node.index, changed)
        return node
    if isinstance(node, Call):
        node.args = [_fold(a, changed) for a in node.args]
        return node
    if not isinstance(node, Binary):
        return node
    node.left = _fold(node.left, changed)
    node.right = _fold(node.right, changed)
    op, left, right = node.op, node.left, node.right
    ai, bi = _lit(left, (int,)), _lit(right, (int,))
    af, bf = _lit(left, (float,)), _lit(right, (float,))
    if op in ("+", "-", "*"):
        if ai and bi:
            changed[0] = True
            return _new_lit(node, _arith(op, ai.value, bi.value))
        if (ai or af) and (bi or bf):
            changed[0] = True
            return _new_lit(node, _arith(op, float(left.value), float(right.value)))
    elif op == "/":
        if (ai or af) and (bi or bf):
            changed[0] = True
            return _new_lit(node, _float_div(float(left.value), float(right.value)))
    elif op == "%":
        if ai and bi:
            if bi.value == 0:
                raise ConditionError("integer divide by zero", "compile")
            changed[0] = True
            return _new_lit(node, _arith("%", ai.value, bi.value))
    elif op in ("**", "^"):
        if (ai or af) and (bi or bf):
            changed[0] = True
            return _new_lit(node, go_pow(float(left.value), float(right.value)))
    elif op in ("and", "&&"):
        a, b = _lit(left, (bool,)), _lit(right, (bool,))
        if a is not None and a.value:
            changed[0] = True
            return right
        if b is not None and b.value:
            changed[0] = True
            return left
        if (a is not None and not a.value) or (b is not None and not b.value):
            changed[0] = True
            return _new_lit(node, False)
    elif op in ("or", "||"):
        a, b = _lit(left, (bool,)), _lit(right, (bool,))
        if a is not None and not a.value:
            changed[0] = True
            return right
        if b is not None and not b.value:
            changed[0] = True
            return left
        if (a is not None and a.value) or (b is not None and b.value):
            changed[0] = True
            return _new_lit(node, True)
    elif op == "==":
        for kinds in ((int,), (str,), (bool,)):
            a, b = _lit(left, kinds), _lit(right, kinds)
            if a is not None and b is not None and (kinds != (int,) or (
                    not isinstance(a.value, bool) and not isinstance(b.value, bool))):
                changed[0] = True
                return _new_lit(node, a.value == b.value)
    return node


# --------------------------------------------------------------------------- evaluation

def _truth(v: Any, op: str) -> bool:
    if not isinstance(v, bool):
        raise ConditionError(f"interface conversion: interface {{}} is {_gotype(v)}, not bool "
                             f"({op})")
    return v


class _Eval:
    def __init__(self, env: dict[str, Any]):
        self.env = env

    def run(self, node: Node) -> Any:
        if isinstance(node, Lit):
            return node.value
        if isinstance(node, Name):
            return self.env[node.name]
        if isinstance(node, Unary):
            v = self.run(node.node)
            if node.op in ("!", "not"):
                return not _truth(v, node.op)
            if not _num(v):
                raise ConditionError(f"invalid operation: {node.op} {_gotype(v)}")
            if node.op == "+":
                return v
            return wrap(-v) if isinstance(v, int) else -v
        if isinstance(node, Index):
            return _fetch(self.run(node.base), self.run(node.index))
        if isinstance(node, Call):
            return self.call(node)
        assert isinstance(node, Binary)
        op = node.op
        if op in ("&&", "and"):
            return _truth(self.run(node.left), op) and _truth(self.run(node.right), op)
        if op in ("||", "or"):
            return _truth(self.run(node.left), op) or _truth(self.run(node.right), op)
        if op == "??":
            left = self.run(node.left)
            return self.run(node.right) if left is None else left
        a, b = self.run(node.left), self.run(node.right)
        if op == "==":
            return rt_equal(a, b)
        if op == "!=":
            return not rt_equal(a, b)
        if op in _COMPARISON:
            return _compare(op, a, b)
        if op == "in":
            if b is None:
                return False
            if isinstance(b, Vector):
                return any(rt_equal(x, a) for x in b.values)
            raise ConditionError(f'operator "in" not defined on {_gotype(b)}')
        return _arith(op, a, b)

    def call(self, node: Call) -> Any:
        args = [self.run(a) for a in node.args]
        result = self.env["result"]
        name = node.name
        if name == "len":
            return _len(args[0])
        if name == "isNaN":
            return math.isnan(_float_arg(name, args[0]))
        if name == "isInf":
            return math.isinf(_float_arg(name, args[0]))
        if name == "asInt":
            return _as_int(args[0])
        if name == "asFloat":
            return _as_float(args[0])
        if name == "isNil":
            return result is None
        if name == "default":
            return args[1] if result is None else result
        raise AssertionError(name)


# --------------------------------------------------------------------------- API

@dataclass
class Compiled:
    text: str
    tree: Node
    nature: str

    def __call__(self, result: Any) -> bool:
        value = _Eval({"result": result}).run(self.tree)
        if not isinstance(value, bool):
            raise ConditionError(f"expected bool, but got {_gotype(value)}", "type")
        return value


def parse(text: str) -> Node:
    """The syntax tree of ``text``; :class:`Unsupported` outside the subset."""
    return _Parser(text).parse()


def compile_for(text: str, result: Any) -> Compiled:
    """Compile ``text`` for a ``result`` of this value's type (Argo compiles per measurement,
    with ``result``'s dynamic type as its static type)."""
    tree = parse(text)
    env = {"result": nature_of(result)}
    nature = check(tree, env)
    tree = fold(tree)
    return Compiled(text, tree, nature)


def evaluate_condition(text: str, result: Any) -> bool:
    """What Argo's EvalCondition returns for ``text`` and ``result`` (a :class:`Vector`, a
    float, or for Argo's own cases a bool, string or int); raises :class:`ConditionError`
    where Argo returns an error."""
    return compile_for(text, result)(result)


def compile_condition(text: str) -> Callable[[Any], bool]:
    """Parse ``text`` now (syntax and subset errors raise here); type-check and run it for each
    ``result`` (as Argo does, since the static type is the result's)."""
    parse(text)

    def run(result: Any) -> bool:
        return evaluate_condition(text, result)

    return run


def check_condition(text: str, kinds: tuple[Any, ...] = (Vector((0.5,)),)) -> None:
    """Raise :class:`ConditionError` unless ``text`` is in the subset and compiles for results
    like ``kinds`` (render time: a template the preview cannot judge is refused)."""
    for sample in kinds:
        tree = parse(text)
        check(tree, {"result": nature_of(sample)})
        fold(tree)
