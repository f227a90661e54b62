"""The subset of Argo Rollouts' condition language (expr-lang) that the rendered
AnalysisTemplates use, evaluated the way Argo Rollouts does.

``successCondition``/``failureCondition`` see one variable, ``result``: a list of floats for a
Prometheus vector, a float for a scalar. Supported: number and boolean literals, ``result``,
indexing ``x[i]`` (negative from the end), ``len(x)``, ``isNaN(x)``, ``isInf(x)`` (``isInf(x,
sign)``), ``default(x, y)``, ``asInt(s)``, ``asFloat(s)``; unary ``!``/``not``/``-``; ``* / %
+ -``; ``< <= > >= == !=``; ``&&``/``and``, ``||``/``or`` (short-circuit); parentheses.

Semantics follow Go: comparisons with NaN are false; indexing past the end, comparing a list
with a number, or a non-boolean result is an *error* (Argo marks the measurement ``Error``).
Anything outside the subset is rejected when parsed, naming the position, so a template that
needs more fails loudly here instead of being misjudged.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ConditionError(Exception):
    """The condition cannot be parsed or evaluated (Argo: measurement phase Error)."""


_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|\d+(?:[eE][-+]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>&&|\|\||<=|>=|==|!=|[-+*/%<>!()\[\],])
""", re.VERBOSE)


@dataclass(frozen=True)
class Tok:
    kind: str
    text: str
    pos: int


def _tokens(text: str) -> list[Tok]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ConditionError(f"unexpected character {text[pos]!r} at position {pos} in "
                                 f"{text!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append(Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(Tok("end", "", len(text)))
    return out


Node = Callable[[dict[str, Any]], Any]

_BINARY = {  # operator -> (precedence, function)
    "||": (1, None), "or": (1, None), "&&": (2, None), "and": (2, None),
    "==": (3, "eq"), "!=": (3, "ne"), "<": (4, "lt"), "<=": (4, "le"), ">": (4, "gt"),
    ">=": (4, "ge"), "+": (5, "add"), "-": (5, "sub"), "*": (6, "mul"), "/": (6, "div"),
    "%": (6, "mod"),
}


def _num(x: Any, op: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ConditionError(f"invalid operation: {op} on {_type(x)}")
    return x


def _type(x: Any) -> str:
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "float64"
    if isinstance(x, list):
        return "[]float64"
    if x is None:
        return "nil"
    return type(x).__name__


def _arith(name: str, a: Any, b: Any) -> Any:
    op = {"add": "+", "sub": "-", "mul": "*", "div": "/", "mod": "%"}[name]
    a, b = _num(a, op), _num(b, op)
    if name == "add":
        return a + b
    if name == "sub":
        return a - b
    if name == "mul":
        return a * b
    if name == "div":
        if b == 0:
            return math.copysign(math.inf, a) if a else math.nan
        return a / b
    if b == 0:
        raise ConditionError("integer divide by zero")
    return math.fmod(a, b)


def _compare(name: str, a: Any, b: Any) -> bool:
    if name in ("eq", "ne"):
        same = False if isinstance(a, bool) != isinstance(b, bool) else a == b
        return same if name == "eq" else not same
    sym = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[name]
    a, b = _num(a, sym), _num(b, sym)
    return {"lt": a < b, "le": a <= b, "gt": a > b, "ge": a >= b}[name]


def _f_len(x: Any) -> int:
    if not isinstance(x, (list, str)):
        raise ConditionError(f"invalid argument for len (type {_type(x)})")
    return len(x)


def _f_isnan(x: Any) -> bool:
    return math.isnan(_num(x, "isNaN"))


def _f_isinf(x: Any, sign: Any = 0) -> bool:
    x = _num(x, "isInf")
    return math.isinf(x) and (sign == 0 or (sign > 0) == (x > 0))


def _f_default(x: Any, fallback: Any) -> Any:
    return fallback if x is None else x


def _f_as_int(x: Any) -> int:
    try:
        return int(str(x), 10)
    except ValueError:
        raise ConditionError(f"asInt: cannot parse {x!r}") from None


def _f_as_float(x: Any) -> float:
    try:
        return float(str(x))
    except ValueError:
        raise ConditionError(f"asFloat: cannot parse {x!r}") from None


FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {  # name -> (fn, min, max args)
    "len": (_f_len, 1, 1), "isNaN": (_f_isnan, 1, 1), "isInf": (_f_isinf, 1, 2),
    "default": (_f_default, 2, 2), "asInt": (_f_as_int, 1, 1), "asFloat": (_f_as_float, 1, 1),
}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> Tok:
        return self.toks[self.i]

    def take(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise self.error(tok, f"expected {text!r}")

    def error(self, tok: Tok, problem: str) -> ConditionError:
        shown = repr(tok.text) if tok.text else "the end"
        return ConditionError(f"{problem} at position {tok.pos} ({shown}) in {self.text!r}")

    def parse(self) -> Node:
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "end":
            raise self.error(tok, "unexpected token")
        return node

    def expr(self, min_prec: int) -> Node:
        """Precedence climbing: binary operators bind tighter than ``min_prec``, left first."""
        left = self.unary()
        while True:
            tok = self.peek()
            op = tok.text if tok.kind in ("op", "name") else ""
            if op not in _BINARY or _BINARY[op][0] <= min_prec:
                return left
            prec, fn = _BINARY[op]
            self.take()
            right = self.expr(prec)
            left = self._binary(op, fn, left, right)

    @staticmethod
    def _binary(op: str, fn: str | None, left: Node, right: Node) -> Node:
        if op in ("||", "or"):
            return lambda env: _truth(left(env), op) or _truth(right(env), op)
        if op in ("&&", "and"):
            return lambda env: _truth(left(env), op) and _truth(right(env), op)
        if fn in ("add", "sub", "mul", "div", "mod"):
            return lambda env: _arith(fn, left(env), right(env))
        return lambda env: _compare(fn, left(env), right(env))

    def unary(self) -> Node:
        tok = self.peek()
        if tok.text in ("!", "not"):
            self.take()
            inner = self.unary()
            return lambda env: not _truth(inner(env), "!")
        if tok.text == "-":
            self.take()
            inner = self.unary()
            return lambda env: -_num(inner(env), "-")
        if tok.text == "+":
            self.take()
            return self.unary()
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while self.peek().text == "[":
            self.take()
            index = self.expr(0)
            self.expect("]")
            node = _index(node, index)
        return node

    def primary(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            value = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            return lambda env: value
        if tok.kind == "str":
            value = bytes(tok.text[1:-1], "utf-8").decode("unicode_escape")
            return lambda env: value
        if tok.text == "(":
            node = self.expr(0)
            self.expect(")")
            return node
        if tok.kind == "name":
            if tok.text in ("true", "false"):
                value = tok.text == "true"
                return lambda env: value
            if tok.text == "nil":
                return lambda env: None
            if self.peek().text == "(":
                return self.call(tok)
            if tok.text == "result":
                return lambda env: env["result"]
            raise self.error(tok, "unknown name (only 'result' and the functions "
                                  f"{', '.join(FUNCTIONS)} are supported)")
        raise self.error(tok, "unexpected token")

    def call(self, name: Tok) -> Node:
        if name.text not in FUNCTIONS:
            raise self.error(name, f"unsupported function (supported: {', '.join(FUNCTIONS)})")
        fn, lo, hi = FUNCTIONS[name.text]
        self.expect("(")
        args: list[Node] = []
        if self.peek().text != ")":
            args.append(self.expr(0))
            while self.peek().text == ",":
                self.take()
                args.append(self.expr(0))
        self.expect(")")
        if not lo <= len(args) <= hi:
            raise self.error(name, f"{name.text} takes {lo if lo == hi else f'{lo}-{hi}'} "
                                   f"argument(s), got {len(args)}")
        return lambda env: fn(*(a(env) for a in args))


def _truth(x: Any, op: str) -> bool:
    if not isinstance(x, bool):
        raise ConditionError(f"invalid operation: {op} on {_type(x)} (want bool)")
    return x


def _index(node: Node, index: Node) -> Node:
    def run(env: dict[str, Any]) -> Any:
        seq, i = node(env), index(env)
        if not isinstance(seq, list):
            raise ConditionError(f"cannot index {_type(seq)}")
        if isinstance(i, bool) or not isinstance(i, int):
            raise ConditionError(f"index must be an integer (got {_type(i)})")
        j = i + len(seq) if i < 0 else i
        if not 0 <= j < len(seq):
            raise ConditionError(f"index out of range: {i} (len {len(seq)})")
        return seq[j]
    return run


def compile_condition(text: str) -> Callable[[Any], bool]:
    """Parse ``text`` once; the returned function evaluates it for one ``result``."""
    node = _Parser(text).parse()

    def evaluate(result: Any) -> bool:
        value = node({"result": result})
        if not isinstance(value, bool):
            raise ConditionError(f"condition {text!r} gave {_type(value)}, not a bool")
        return value

    return evaluate


def evaluate_condition(text: str, result: Any) -> bool:
    return compile_condition(text)(result)
