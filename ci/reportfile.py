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
from modelops.fsutil import read_json, write_json

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).parent / "schemas" / "report.schema.json"
DEFAULT_REPORT = Path("reports") / "report.json"
SECTION_ORDER = ("evaluate", "reproduction", "compile", "timing", "deploy", "card")


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
    report = read_json(p, "report", hint="write it (again): modelops-ci report")
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


def incomplete_report(root: str | Path, reason: str, *, params_file: str = "params.yaml",
                      base: str | None = None, context: dict[str, Any] | None = None,
                      model: str | None = None) -> dict[str, Any]:
    """The report of an evaluation that did not finish: ``evaluate`` failed with ``reason``
    (``incomplete``), so the comment says so instead of saying nothing. The model's name comes
    from ``params_file`` read raw (it may be the broken part), else the base revision's, else
    the repository's name."""
    from modelops.git import git_text
    from modelops.settings import model_name_of  # not at the top: the comment job needs neither
    from modelops.yamlio import load_yaml

    root = Path(root)

    def sha(rev: str | None) -> str | None:
        if not rev:
            return None
        out = git_text(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root)
        return out.strip() if out and out.strip() else None

    def name_in(text: str | None) -> str | None:
        if not text:
            return None
        try:
            return model_name_of(load_yaml(text, params_file))
        except Exception:  # noqa: BLE001 - a params file that cannot be read names nothing
            return None

    path = root / params_file
    name = model or name_in(path.read_text(encoding="utf-8") if path.is_file() else None)
    if not name and base:
        name = name_in(git_text(["show", f"{base}:./{params_file}"], cwd=root))
    if not name:
        repo = (context or {}).get("repository") or ""
        name = repo.rsplit("/", 1)[-1] or "model"
    first = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
    report = {
        "schema_version": SCHEMA_VERSION, "model": {"name": name},
        "revisions": {"base": {"rev": base or "", "sha": sha(base)},
                      "head": {"rev": "HEAD", "sha": sha("HEAD")}},
        "context": context or {},
        "verdict": "fail",
        "sections": {"evaluate": {"status": "fail", "incomplete": True,
                                  "reason": reason.strip() or "unknown error",
                                  "summary": f"the evaluation did not finish: {first}"}},
    }
    validate_report(report)
    return report
