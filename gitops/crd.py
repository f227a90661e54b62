"""Strict validation of custom resources against their upstream CRD schemas.

The CRDs in ``gitops/schemas/`` are unmodified upstream copies (see ``gitops/schemas/ORIGIN.md``).
Upstream schemas never set ``additionalProperties: false``, so a misspelled field would pass.
:func:`strict_schema` turns a CRD's ``openAPIV3Schema`` into a JSON Schema that rejects unknown
fields (like ``kubeconform -strict``), and jsonschema-rs validates against it (a compiled
validator per kind; every error with its full instance path):

- ``additionalProperties: false`` wherever ``properties`` are given and neither
  ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields`` is set;
- ``x-kubernetes-int-or-string: true`` becomes "an integer or a string";
- ``nullable: true`` also accepts null.

CEL rules (``x-kubernetes-validations``) are not evaluated. A new kind is one entry in
:data:`CRD_FILES`. Converted schemas are cached as JSON (keyed by the CRD file's sha256), and
CRDs are read with libyaml: a 600 KB CRD takes ~2 s with the pure-Python loader.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jsonschema_rs

from modelops.errors import InputError
from modelops.yamlio import load_yaml_large

SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
_CONVERTER_VERSION = "1"

# kind -> CRD file under gitops/schemas/. One line per kind.
CRD_FILES: dict[str, str] = {
    "Rollout": "argo-rollouts/rollout-crd.yaml",
    "AnalysisTemplate": "argo-rollouts/analysis-template-crd.yaml",
    "ClusterAnalysisTemplate": "argo-rollouts/cluster-analysis-template-crd.yaml",
    "Application": "argo-cd/application-crd.yaml",
    "ApplicationSet": "argo-cd/applicationset-crd.yaml",
    "Workflow": "argo-workflows/argoproj.io_workflows.yaml",
    "WorkflowTemplate": "argo-workflows/argoproj.io_workflowtemplates.yaml",
    "PrometheusRule": "prometheus-operator/monitoring.coreos.com_prometheusrules.yaml",
    "PodMonitor": "prometheus-operator/monitoring.coreos.com_podmonitors.yaml",
}


def known_kinds() -> list[str]:
    return list(CRD_FILES)


def strict_schema(node: Any) -> Any:
    """Return a strict copy of an OpenAPI v3 (structural) schema; see the module docstring."""
    if isinstance(node, list):
        return [strict_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties", "definitions"):
            out[key] = {k: strict_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not", "allOf", "anyOf", "oneOf"):
            out[key] = strict_schema(value)
        elif key.startswith("x-kubernetes-") or key in ("nullable", "format", "description",
                                                         "example", "externalDocs"):
            continue  # not JSON Schema (or only informative); handled below
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.pop("anyOf", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"] if isinstance(out["type"], str) else [
            *out["type"], "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelops-suite" / "crd"


def _crd_path(kind: str) -> Path:
    if kind not in CRD_FILES:
        raise InputError(f"no crd schema for kind {kind!r}",
                         hint=f"known kinds: {', '.join(CRD_FILES)}; add one to "
                              "modelops.gitops.crd.CRD_FILES")
    return SCHEMA_DIR / CRD_FILES[kind]


def load_crd_schema(kind: str) -> dict[str, Any]:
    """The strict JSON Schema of ``kind`` (from the storage version of its CRD)."""
    return _load(kind)["schema"]


def crd_api_versions(kind: str) -> list[str]:
    """``group/version`` strings the CRD serves (e.g. ``argoproj.io/v1alpha1``)."""
    return _load(kind)["apiVersions"]


@functools.cache
def _load(kind: str) -> dict[str, Any]:
    path = _crd_path(kind)
    data = path.read_bytes()
    digest = hashlib.sha256(data + _CONVERTER_VERSION.encode()).hexdigest()
    cache = _cache_dir() / f"{kind}-{digest[:24]}.json"
    try:
        return json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass

    crd = load_yaml_large(data.decode("utf-8"), str(path.name))
    try:
        versions = crd["spec"]["versions"]
        schema = next(v for v in versions if v.get("storage", True))["schema"]["openAPIV3Schema"]
        api_versions = [f"{crd['spec']['group']}/{v['name']}" for v in versions
                        if v.get("served", True)]
    except (KeyError, TypeError, StopIteration) as exc:
        raise InputError(f"{path.name}: no spec.versions[].schema.openAPIV3Schema") from exc
    strict = {"apiVersions": api_versions, "schema": strict_schema(schema)}
    try:
        from modelops.fsutil import atomic_write_text

        atomic_write_text(cache, json.dumps(strict))
    except OSError:
        pass  # a read-only home is fine: we just convert again next time
    return strict


@functools.cache
def _validator(kind: str) -> jsonschema_rs.Draft202012Validator:
    # Draft 2020-12: its meta-schema treats "format: regex" as an annotation, so Go's RE2
    # patterns (`(?i)...`) are accepted; patterns run on the RE2-like `regex` engine, as the
    # API server runs them on Go's regexp.
    return jsonschema_rs.Draft202012Validator(load_crd_schema(kind),
                                              pattern_options=jsonschema_rs.RegexOptions())


def where(path: Any) -> str:
    """A JSON instance path as a field path: ``spec.template.spec.containers[0].image``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def validate_strict(doc: dict[str, Any]) -> list[str]:
    """Problems of one custom resource against its strict CRD schema ("path: message")."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind not in CRD_FILES:
        return [f"kind: no crd schema for {kind!r} (known: {', '.join(CRD_FILES)})"]
    validator = _validator(kind)
    if validator.is_valid(doc):
        return []
    errors = sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in e.instance_path])
    return [f"{where(err.instance_path)}: {_short(err.message)}" for err in errors]


def _short(message: str) -> str:
    return message if len(message) <= 200 else message[:197] + "..."
