"""``report.json`` as a document: its schema, reading, validating and writing it.

Every section has ``status`` pass | fail | skipped, and a ``reason`` when skipped. Steps add
their section with :func:`merge_section`, which validates and writes atomically. Used by every
step that touches the report (report, compile, cost, comment); it imports none of them.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from modelops.errors import InputError, ValidationError
from modelops.fsutil import write_json

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).parent / "schemas" / "report.schema.json"
DEFAULT_REPORT = Path("reports") / "report.json"
SECTION_ORDER = ("evaluate", "compile", "deploy", "card")


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


def validate_report(report: Any, source: str = "report") -> None:
    """Raise ValidationError naming the first field that breaks the schema."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ValidationError(f"{source}: {where}: {err.message}",
                              hint="see ci/schemas/report.schema.json")


def overall_verdict(sections: dict[str, Any]) -> str:
    return "fail" if any(s.get("status") == "fail" for s in sections.values()) else "pass"


def ordered(sections: dict[str, Any]) -> dict[str, Any]:
    keys = [k for k in SECTION_ORDER if k in sections] + sorted(
        k for k in sections if k not in SECTION_ORDER)
    return {k: sections[k] for k in keys}


def load_report(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        report = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{p}: report not found",
                         hint="write it first: modelops-ci report") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON: {exc}",
                         hint="regenerate it: modelops-ci report") from exc
    if isinstance(report, dict) and report.get("schema_version") not in (None, SCHEMA_VERSION):
        raise InputError(f"{p}: schema_version {report.get('schema_version')!r} is not "
                         f"supported (this suite reads {SCHEMA_VERSION})",
                         hint="regenerate it with this version: modelops-ci report")
    validate_report(report, str(p))
    return report


def write_report(path: str | Path, report: dict[str, Any]) -> dict[str, Any]:
    """Order sections, recompute the verdict, validate, write atomically; return the result."""
    report = {**report, "sections": ordered(report["sections"])}
    report["verdict"] = overall_verdict(report["sections"])
    validate_report(report, str(path))
    write_json(path, report)
    return report


def merge_section(report_path: str | Path, name: str, section: dict[str, Any]) -> dict[str, Any]:
    """Add or replace section ``name`` of the report at ``report_path``; return the new report.

    ``section`` needs ``status`` (pass | fail | skipped) and a ``reason`` when skipped; any other
    keys are the section's own. The verdict is recomputed; the file is replaced atomically and
    only when the whole report still validates.
    """
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise InputError(f"report section name {name!r} is not a simple word",
                         hint="use letters, digits, '-' or '_' (e.g. 'compile')")
    report = load_report(report_path)
    report["sections"][name] = copy.deepcopy(section)
    return write_report(report_path, report)
