"""Kubernetes value grammars shared by the settings and the manifest checks: names, label keys
and values, image references, Go durations (as Argo parses them), Prometheus durations and
resource quantities (as apimachinery parses them). Pure functions; each ``*_problem`` returns
why a value is wrong, or None when it is fine; each ``parse_*`` returns the value or raises
ValueError. The grammars are held to their upstream test tables (``tests/data/grammars/``).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"


_DOMAIN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*" \
          r"[a-zA-Z0-9])?))*(?::[0-9]+)?"


IMAGE_REFERENCE = re.compile(
    rf"(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@sha256:[0-9a-f]{64})?")


_DNS1035_KINDS = {"Service"}


def image_problem(image: Any) -> str | None:
    """Why ``image`` is not a valid image reference, or None when it is."""
    if not isinstance(image, str) or not image:
        return "must be an image reference like 'registry/name:tag' or 'name@sha256:<64 hex>'"
    if len(image) > 512:
        return "is longer than 512 characters"
    if not IMAGE_REFERENCE.fullmatch(image):
        return ("is not a valid image reference: expected 'registry/name:tag' or "
                "'registry/name@sha256:<64 hex>' (lowercase name, tag of letters, digits, "
                "'.', '_', '-')")
    return None


def name_problem(name: Any, kind: str = "") -> str | None:
    if not isinstance(name, str) or not name:
        return "must be a non-empty string"
    if kind in _DNS1035_KINDS:
        if len(name) > 63 or not DNS1035_LABEL.fullmatch(name):
            return ("must be a DNS-1035 label: at most 63 lowercase letters, digits and '-', "
                    "starting with a letter")
        return None
    if len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        return ("must be a DNS-1123 subdomain: at most 253 lowercase letters, digits, '-' "
                "and '.'")
    return None


def label_key_problem(key: Any) -> str | None:
    if not isinstance(key, str) or not key:
        return "label/annotation key must be a non-empty string"
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return "key prefix must be a DNS-1123 subdomain"
    if len(name) > 63 or not QUALIFIED_NAME.fullmatch(name):
        return ("key name must be at most 63 letters, digits, '-', '_', '.', starting and "
                "ending with a letter or digit")
    return None


def label_value_problem(value: Any) -> str | None:
    if not isinstance(value, str):
        return "label value must be a string"
    if len(value) > 63 or not LABEL_VALUE.fullmatch(value):
        return ("label value must be at most 63 letters, digits, '-', '_', '.', starting and "
                "ending with a letter or digit")
    return None



# --------------------------------------------------------------------------- Go durations
# time.ParseDuration, as Argo Rollouts parses an analysis ``interval`` and (after an integer
# number of seconds) a pause ``duration``: a possibly signed sequence of decimal numbers, each
# with an optional fraction and a unit: "300ms", "-1.5h", "2h45m", "1h30m". "0" alone needs no
# unit. The value is int64 nanoseconds; tests/data/grammars/ holds Go's own cases.

_GO_UNITS = {"ns": 1, "us": 1_000, "\u00b5s": 1_000, "\u03bcs": 1_000, "ms": 1_000_000,
             "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_INT64_MAX = (1 << 63) - 1


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration string; ValueError when Go's ``time.ParseDuration`` would
    refuse it (no unit, unknown unit, no digits, overflow of int64 nanoseconds)."""
    if not isinstance(text, str):
        raise ValueError("a duration must be a string")
    rest, negative = text, False
    if rest[:1] in ("-", "+"):
        negative, rest = rest[0] == "-", rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    while rest:
        match = re.match(r"([0-9]*)(?:\.([0-9]*))?", rest)
        whole, frac = match.group(1), match.group(2)
        if not whole and not frac:
            raise ValueError(f"invalid duration {text!r}")
        rest = rest[match.end():]
        unit_end = 0
        while unit_end < len(rest) and rest[unit_end] not in ".0123456789":
            unit_end += 1
        unit, rest = rest[:unit_end], rest[unit_end:]
        if not unit:
            raise ValueError(f"missing unit in duration {text!r}")
        if unit not in _GO_UNITS:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r}")
        scale = _GO_UNITS[unit]
        value = int(whole or "0")
        if value > (1 << 63) // scale:
            raise ValueError(f"invalid duration {text!r} (overflow)")
        value *= scale
        if frac:
            # Go keeps at most the fraction digits that fit an int64, then scales in float64
            digits, denominator = 0, 1.0
            for ch in frac:
                if digits > _INT64_MAX // 10 or digits * 10 + int(ch) > 1 << 63:
                    break
                digits, denominator = digits * 10 + int(ch), denominator * 10
            value += int(float(digits) * (float(scale) / denominator))
            if value > 1 << 63:
                raise ValueError(f"invalid duration {text!r} (overflow)")
        total += value
        if total > 1 << 63:
            raise ValueError(f"invalid duration {text!r} (overflow)")
    if total > _INT64_MAX:
        raise ValueError(f"invalid duration {text!r} (overflow)")
    return -total if negative else total


def go_duration_problem(value: Any, *, positive: bool = False) -> str | None:
    """Why ``value`` is not a Go duration (``positive``: also refuse zero and negatives)."""
    try:
        ns = parse_go_duration(value)
    except ValueError:
        return ("must be a Go duration like '30s', '5m', '1h30m', '1.5h' or '500ms' "
                "(units ns, us, ms, s, m, h)")
    if positive and ns <= 0:
        return "must be a duration above zero"
    if not positive and ns < 0:
        return "must not be negative"
    return None


def argo_pause_seconds(value: Any) -> int:
    """The seconds Argo Rollouts pauses for ``pause.duration`` (``RolloutPause.DurationSeconds``):
    an integer is seconds; a string is an int32 number of seconds, else a Go duration truncated
    to whole seconds. ValueError where Argo would answer -1 (invalid)."""
    if isinstance(value, bool):
        raise ValueError("a pause duration must be seconds or a duration string")
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        raise ValueError("a pause duration must be seconds or a duration string")
    if re.fullmatch(r"[+-]?[0-9]+", value):
        seconds = int(value)
        if not -(1 << 31) <= seconds < 1 << 31:
            raise ValueError(f"{value!r} is out of the int32 range")
        return seconds
    ns = parse_go_duration(value)
    return int(ns / 1_000_000_000)  # Go: int32(d.Seconds()), truncated toward zero


# --------------------------------------------------------------------------- Prometheus
# model.ParseDuration (prometheus/common), the grammar of PromQL range selectors ("[2m]") and
# of a rule's ``for``: units y w d h m s ms, each at most once, largest first, integers only.

_PROM_DURATION = re.compile(r"(?:([0-9]+)y)?(?:([0-9]+)w)?(?:([0-9]+)d)?(?:([0-9]+)h)?"
                            r"(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?")
_PROM_UNITS_MS = (365 * 86_400_000, 7 * 86_400_000, 86_400_000, 3_600_000, 60_000, 1_000, 1)


def parse_prom_duration(text: str) -> int:
    """Milliseconds of a Prometheus duration; ValueError when Prometheus would refuse it."""
    if not isinstance(text, str):
        raise ValueError("a duration must be a string")
    if text == "0":
        return 0
    match = _PROM_DURATION.fullmatch(text) if text else None
    if match is None or not any(match.groups()):
        raise ValueError(f"not a valid duration string: {text!r}")
    total = 0
    for group, unit in zip(match.groups(), _PROM_UNITS_MS):
        if group is not None:
            total += int(group) * unit
    if total * 1_000_000 > _INT64_MAX:
        raise ValueError(f"duration out of range: {text!r}")
    return total


def prom_duration_problem(value: Any, *, positive: bool = False) -> str | None:
    try:
        ms = parse_prom_duration(value)
    except ValueError:
        return ("must be a Prometheus duration like '30s', '5m', '1h30m' or '1d' "
                "(units ms, s, m, h, d, w, y, largest first, no fractions)")
    if positive and ms <= 0:
        return "must be a duration above zero"
    return None


# --------------------------------------------------------------------------- quantities
# resource.ParseQuantity (k8s.io/apimachinery): <signedNumber><suffix> where the number is
# digits with an optional fraction (".5", "5.", "5.5"), the suffix a binary SI unit (Ki ... Ei),
# a decimal SI unit (n u m "" k M G T P E) or a decimal exponent (e3, E-2, e+6). Values finer
# than 1n round up (away from zero) to a multiple of 1n; binary-SI values are capped at
# 2**63-1. tests/data/grammars/ holds apimachinery's own cases.

_QUANTITY = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)", re.S)
_BINARY_SI = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL_SI = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15,
               "E": 18}


def parse_quantity(text: str) -> Fraction:
    """The exact value of a Kubernetes quantity string; ValueError where apimachinery refuses it."""
    if not isinstance(text, str) or not text:
        raise ValueError("a quantity must be a non-empty string")
    match = _QUANTITY.fullmatch(text)
    sign, whole, frac, suffix = match.groups()
    if not re.fullmatch(r"[eEinumkKMGTP]*(?:[+-]?[0-9]*)?", suffix):
        raise ValueError(f"quantities must match the regular expression of a number and a "
                         f"suffix (got {text!r})")
    number = Fraction(int(whole or "0")) + (Fraction(int(frac), 10 ** len(frac)) if frac
                                             else 0)
    binary = False
    if suffix in _BINARY_SI:
        binary = True
        number *= 2 ** _BINARY_SI[suffix]
    elif suffix in _DECIMAL_SI:
        number *= Fraction(10) ** _DECIMAL_SI[suffix]
    elif len(suffix) > 1 and suffix[0] in "eE" and re.fullmatch(r"[+-]?[0-9]+", suffix[1:]):
        exponent = int(suffix[1:])
        if not -(1 << 31) <= exponent < 1 << 31:
            raise ValueError(f"unable to parse quantity's suffix (got {text!r})")
        number *= Fraction(10) ** exponent
    else:
        raise ValueError(f"unable to parse quantity's suffix (got {text!r})")
    nanos = number * 1_000_000_000
    if nanos != int(nanos):  # finer than 1n: rounds up, away from zero
        number = Fraction(math.ceil(nanos), 1_000_000_000)
    if binary and number > _INT64_MAX:
        number = Fraction(_INT64_MAX)
    return -number if sign == "-" else number


def quantity_problem(value: Any, *, negative: bool = False) -> str | None:
    """Why ``value`` is not a Kubernetes quantity (``negative``: allow values below zero)."""
    try:
        amount = parse_quantity(value)
    except ValueError:
        return ("must be a Kubernetes quantity like '250m', '1', '1.5', '1e3', '512Mi' or "
                "'1.5Gi'")
    if not negative and amount < 0:
        return "must not be negative"
    return None
