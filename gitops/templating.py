"""The manifest templates' Jinja2 environment and its ``j`` filter.

Every value enters a template through ``j``, which writes JSON (valid YAML), so no value can add
keys or documents.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"

# Characters JSON leaves raw that YAML would reject or read as line breaks: escape them.
_YAML_UNSAFE = re.compile("[^\t\n\r\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                          "\U00010000-\U0010ffff]")


def to_json(value: Any) -> str:
    """The ``j`` filter: ``value`` as JSON, safe to paste anywhere a YAML value goes."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=False, allow_nan=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


@functools.cache
def jinja_env() -> jinja2.Environment:
    """The one Jinja2 environment of the manifest templates (StrictUndefined, the ``j`` filter)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # noqa: S701 - YAML output; every value goes through the JSON filter
        keep_trailing_newline=True,
    )
    env.filters["j"] = to_json
    return env
