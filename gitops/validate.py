"""Validation of rendered manifests before anything is written or published.

Checks, per document: custom resources against their upstream CRD schema in strict mode
(:mod:`gitops.crd`); core kinds (Service, Secret, ...) with ``kubernetes-validate --strict``;
Kubernetes naming rules (DNS-1123 names and namespaces, label keys and values, annotation keys,
image references). Across the set: every analysis template named by a Rollout exists and gets
the arguments it needs; the Services a Rollout names exist. ``kubectl kustomize`` builds a
rendered folder when kubectl is installed (:func:`kustomize_build`).

:func:`validate_manifests` returns a list of :class:`Problem`; :func:`check_manifests` raises one
:class:`~modelops.errors.ValidationError` listing them.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.errors import ValidationError
from modelops.k8s import (
    DNS1123_LABEL,
    image_problem,
    label_key_problem,
    label_value_problem,
    name_problem,
)

K8S_VERSION = "1.32.0"  # the Kubernetes API the core kinds are checked against


@dataclass(frozen=True)
class Problem:
    where: str      # "<file or kind/name>"
    path: str       # field path inside the document, e.g. "spec.strategy.canary.steps[2]"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.path}: {self.message}"










# --------------------------------------------------------------------------- per document

def _doc_id(doc: Any, index: int, source: str | None) -> str:
    if isinstance(doc, dict):
        kind = doc.get("kind", "?")
        name = (doc.get("metadata") or {}).get("name", "?") if isinstance(
            doc.get("metadata"), dict) else "?"
        ident = f"{kind}/{name}"
    else:
        ident = f"document {index}"
    return f"{source} ({ident})" if source else ident


def _check_labels(labels: Any, path: str, where: str, out: list[Problem],
                  values: bool = True) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        out.append(Problem(where, path, f"must be a mapping (got {labels!r:.60})"))
        return
    total = 0
    for key, value in labels.items():
        problem = label_key_problem(key)
        if problem:
            out.append(Problem(where, f"{path}.{key}", f"{problem} (got {key!r:.80})"))
        if values:
            problem = label_value_problem(value)
            if problem:
                out.append(Problem(where, f"{path}.{key}", f"{problem} (got {value!r:.80})"))
        else:
            if not isinstance(value, str):
                out.append(Problem(where, f"{path}.{key}", f"must be a string (got {value!r:.80})"))
            else:
                total += len(key) + len(value)
    if total > 256 * 1024:
        out.append(Problem(where, path, "annotations exceed 256 KiB in total"))


def _check_metadata(meta: Any, path: str, kind: str, where: str, out: list[Problem],
                    named: bool = True) -> None:
    if not isinstance(meta, dict):
        out.append(Problem(where, path, "must be a mapping with a name"))
        return
    if named:
        problem = name_problem(meta.get("name"), kind)
        if problem:
            out.append(Problem(where, f"{path}.name", f"{problem} (got {meta.get('name')!r:.80})"))
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or len(ns) > 63
                           or not DNS1123_LABEL.fullmatch(ns)):
        out.append(Problem(where, f"{path}.namespace",
                           f"must be a DNS-1123 label of at most 63 characters (got {ns!r:.80})"))
    _check_labels(meta.get("labels"), f"{path}.labels", where, out)
    _check_labels(meta.get("annotations"), f"{path}.annotations", where, out, values=False)


def _pod_spec(doc: dict) -> tuple[str, Any] | None:
    spec = doc.get("spec")
    if isinstance(spec, dict) and isinstance(spec.get("template"), dict):
        return "spec.template", spec["template"]
    return None


def _check_pod_template(doc: dict, where: str, out: list[Problem]) -> None:
    found = _pod_spec(doc)
    if not found:
        return
    path, template = found
    _check_metadata(template.get("metadata") or {}, f"{path}.metadata", "", where, out,
                    named=False)
    pod = template.get("spec")
    if not isinstance(pod, dict):
        return
    for group in ("initContainers", "containers"):
        for i, c in enumerate(pod.get(group) or []):
            if not isinstance(c, dict):
                continue
            cpath = f"{path}.spec.{group}[{i}]"
            problem = name_problem(c.get("name"), "Service")  # container names: DNS-1123 label
            if problem:
                out.append(Problem(where, f"{cpath}.name",
                                   f"{problem} (got {c.get('name')!r:.80})"))
            if "image" in c or group == "containers":
                problem = image_problem(c.get("image"))
                if problem:
                    out.append(Problem(where, f"{cpath}.image",
                                       f"{problem} (got {c.get('image')!r:.80})"))


@functools.cache
def _core_validator(api_version: str, kind: str):
    """A cached strict validator for a core kind, from kubernetes-validate's bundled schemas
    (the same files ``kubernetes-validate --strict`` uses; loading them per call is slow)."""
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    wanted = utils.major_minor(K8S_VERSION)
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= wanted][-1]
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{api}.json", K8S_VERSION)
    except FileNotFoundError:
        return None
    defs = utils.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@functools.cache
def _core_fast_valid(api_version: str, kind: str):
    """A compiled yes/no check for a core kind (None: use jsonschema alone)."""
    from modelops.gitops.fastschema import compile_check

    validator = _core_validator(api_version, kind)
    return None if validator is None else compile_check(validator)


def _check_core(doc: dict, where: str, out: list[Problem]) -> None:
    validator = _core_validator(str(doc.get("apiVersion")), str(doc.get("kind")))
    if validator is None:
        out.append(Problem(where, "kind", f"no kubernetes {K8S_VERSION} schema for "
                                          f"{doc.get('apiVersion')!r} {doc.get('kind')!r}"))
        return
    fast = _core_fast_valid(str(doc.get("apiVersion")), str(doc.get("kind")))
    if fast is not None and fast(doc):
        return  # valid; jsonschema below only to explain what is wrong
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        path = ""
        for part in err.absolute_path:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        out.append(Problem(where, path or "(top level)", str(err.message)[:200]))


def validate_document(doc: Any, index: int = 0, source: str | None = None) -> list[Problem]:
    """Problems of one manifest on its own (no cross references)."""
    from modelops.gitops.crd import CRD_FILES, crd_api_versions, validate_strict

    where = _doc_id(doc, index, source)
    out: list[Problem] = []
    if not isinstance(doc, dict):
        return [Problem(where, "(top level)", f"must be a mapping (got {doc!r:.60})")]
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api, str):
        return [Problem(where, "(top level)", "needs apiVersion and kind")]
    _check_metadata(doc.get("metadata"), "metadata", kind, where, out)
    _check_pod_template(doc, where, out)
    spec = doc.get("spec") if isinstance(doc.get("spec"), dict) else {}
    selector = spec.get("selector")
    if kind == "Service":
        _check_labels(selector, "spec.selector", where, out)
    elif isinstance(selector, dict):
        _check_labels(selector.get("matchLabels"), "spec.selector.matchLabels", where, out)
    if kind in CRD_FILES and api.startswith("argoproj.io/"):
        if api not in crd_api_versions(kind):
            out.append(Problem(where, "apiVersion",
                               f"{kind} is served as {', '.join(crd_api_versions(kind))} "
                               f"(got {api!r})"))
        else:
            for message in validate_strict(doc):
                path, _, text = message.partition(": ")
                out.append(Problem(where, path, text))
    elif kind == "PrometheusRule" and api.startswith("monitoring.coreos.com/"):
        from modelops.gitops.alerts import rule_problems

        out.extend(Problem(where, path, text) for path, text in rule_problems(doc))
    else:
        _check_core(doc, where, out)
    return out


# --------------------------------------------------------------------------- cross references

def _required_args(template: dict) -> set[str]:
    args = (template.get("spec") or {}).get("args") or []
    return {a.get("name") for a in args
            if isinstance(a, dict) and "value" not in a and "valueFrom" not in a}


def cross_reference_problems(docs: list[dict], sources: list[str | None]) -> list[Problem]:
    """Analysis templates named by Rollouts exist and get their args; Services exist."""
    out: list[Problem] = []

    def index(kind: str) -> dict[tuple[str | None, str], dict]:
        return {((d.get("metadata") or {}).get("namespace"), (d.get("metadata") or {}).get("name")):
                d for d in docs if isinstance(d, dict) and d.get("kind") == kind}

    templates, cluster_templates = index("AnalysisTemplate"), index("ClusterAnalysisTemplate")
    services = index("Service")
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or doc.get("kind") != "Rollout":
            continue
        where = _doc_id(doc, i, sources[i])
        ns = (doc.get("metadata") or {}).get("namespace")
        canary = ((doc.get("spec") or {}).get("strategy") or {}).get("canary") or {}
        for key in ("stableService", "canaryService"):
            name = canary.get(key)
            if name and (ns, name) not in services:
                out.append(Problem(where, f"spec.strategy.canary.{key}",
                                   f"names Service {name!r}, which is not in the manifests"))
        analyses = [(f"spec.strategy.canary.steps[{j}].analysis", s["analysis"])
                    for j, s in enumerate(canary.get("steps") or [])
                    if isinstance(s, dict) and isinstance(s.get("analysis"), dict)]
        if isinstance(canary.get("analysis"), dict):
            analyses.append(("spec.strategy.canary.analysis", canary["analysis"]))
        for path, analysis in analyses:
            given = {a.get("name") for a in analysis.get("args") or [] if isinstance(a, dict)}
            for k, ref in enumerate(analysis.get("templates") or []):
                name = ref.get("templateName")
                cluster = bool(ref.get("clusterScope"))
                found = (cluster_templates.get((None, name)) if cluster
                         else templates.get((ns, name)))
                if found is None:
                    what = "ClusterAnalysisTemplate" if cluster else "AnalysisTemplate"
                    out.append(Problem(where, f"{path}.templates[{k}].templateName",
                                       f"names {what} {name!r}, which is not in the manifests"))
                    continue
                missing = sorted(_required_args(found) - given)
                if missing:
                    out.append(Problem(where, f"{path}.args",
                                       f"template {name!r} needs args {missing} that the step "
                                       "does not give"))
    return out


def validate_manifests(docs: Iterable[Any], sources: Iterable[str | None] | None = None,
                       *, cross_refs: bool = True) -> list[Problem]:
    """All problems of a set of manifests (per document, then across the set)."""
    docs = list(docs)
    srcs = list(sources) if sources is not None else [None] * len(docs)
    out: list[Problem] = []
    for i, doc in enumerate(docs):
        out.extend(validate_document(doc, i, srcs[i]))
    if cross_refs:
        out.extend(cross_reference_problems([d for d in docs], srcs))
    return out


def check_manifests(docs: Iterable[Any], sources: Iterable[str | None] | None = None,
                    *, cross_refs: bool = True,
                    hint: str = "fix the deploy section of params.yaml or the release inputs; "
                                "nothing was written") -> None:
    """Raise one ValidationError listing every problem (at most 20 shown)."""
    problems = validate_manifests(docs, sources, cross_refs=cross_refs)
    if problems:
        shown = "\n  ".join(str(p) for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValidationError(f"{len(problems)} problem(s) in the manifests:\n  {shown}{more}",
                              hint=hint)


# --------------------------------------------------------------------------- kustomize

def kustomize_build(folder: str | Path, kubectl: str | None = None) -> str | None:
    """Run ``kubectl kustomize`` on ``folder``; None when kubectl is not installed."""
    kubectl = kubectl or shutil.which("kubectl")
    if kubectl is None:
        return None
    proc = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise ValidationError(f"{folder}: kubectl kustomize failed: {proc.stderr.strip()[:500]}",
                              hint="check kustomization.yaml lists only files in the folder")
    return proc.stdout
