"""Kubernetes value grammars shared by the settings and the manifest checks: names, label keys
and values, image references. Pure functions; each ``*_problem`` returns why a value is wrong,
or None when it is fine.
"""

from __future__ import annotations

import re
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

