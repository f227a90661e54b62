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
import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema_rs

from modelops.errors import ValidationError
from modelops.gitops.crd import where as field_path
from modelops.k8s import (
    DNS1123_LABEL,
    image_problem,
    label_key_problem,
    label_value_problem,
    name_problem,
    parse_quantity,
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
def _core_validator(api_version: str, kind: str) -> jsonschema_rs.Validator | None:
    """A compiled strict validator for a core kind, from kubernetes-validate's bundled schemas
    (the same files ``kubernetes-validate --strict`` uses), on jsonschema-rs."""
    from kubernetes_validate import utils

    wanted = utils.major_minor(K8S_VERSION)
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= wanted][-1]
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{api}.json", K8S_VERSION)
    except FileNotFoundError:
        return None
    defs = utils.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = jsonschema_rs.Registry([(defs["$id"], defs)])
    return jsonschema_rs.validator_for(schema, registry=registry)


def _check_core(doc: dict, where: str, out: list[Problem]) -> None:
    validator = _core_validator(str(doc.get("apiVersion")), str(doc.get("kind")))
    if validator is None:
        out.append(Problem(where, "kind", f"no kubernetes {K8S_VERSION} schema for "
                                          f"{doc.get('apiVersion')!r} {doc.get('kind')!r}"))
        return
    if validator.is_valid(doc):
        return
    for err in sorted(validator.iter_errors(doc), key=lambda e: [str(p) for p in
                                                                 e.instance_path]):
        out.append(Problem(where, field_path(err.instance_path), str(err.message)[:200]))


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
    if kind in CRD_FILES:
        if api not in crd_api_versions(kind):
            out.append(Problem(where, "apiVersion",
                               f"{kind} is served as {', '.join(crd_api_versions(kind))} "
                               f"(got {api!r})"))
        else:
            for message in validate_strict(doc):
                path, _, text = message.partition(": ")
                out.append(Problem(where, path, text))
    else:
        _check_core(doc, where, out)
    out.extend(semantic_problems(doc, where))
    return out


# --------------------------------------------------------------------------- semantics
# What a schema cannot say but the API server, kubectl, Argo or Prometheus refuses.

ANNOTATIONS_LIMIT = 256 * 1024  # apimachinery TotalAnnotationSizeLimitB, in bytes
CONFIGMAP_LIMIT = 1024 * 1024  # apimachinery's MaxSecretSize, which ConfigMaps share: data bytes
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
APP_NAME_MAX = 63  # a label value: Argo CD's label tracking puts the name in one
_NON_FINITE = re.compile(r"(?<![\w.])(?:nan|NaN|NAN|inf|Inf|INF|Infinity)(?![\w(])")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def last_applied_size(doc: dict[str, Any]) -> int:
    """Bytes of the copy of ``doc`` that ``kubectl apply`` (and Argo CD's client-side apply)
    stores in the ``last-applied-configuration`` annotation: the object as JSON, compact, keys
    sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped as Go's encoder does, plus a
    newline."""
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    annotations = meta.get("annotations") if isinstance(meta.get("annotations"), dict) else {}
    if LAST_APPLIED in annotations:
        annotations = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
        doc = {**doc, "metadata": {**meta, "annotations": annotations}}
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True, ensure_ascii=False,
                      allow_nan=False, default=str)
    escaped = 5 * sum(text.count(c) for c in "<>&") + 3 * (text.count("\u2028")
                                                           + text.count("\u2029"))
    return len(text.encode("utf-8")) + escaped + 1


def _annotation_bytes(annotations: Any) -> int:
    if not isinstance(annotations, dict):
        return 0
    return sum(len(str(k).encode("utf-8")) + len(v.encode("utf-8"))
               for k, v in annotations.items() if isinstance(v, str))


def _resources_problems(pod: Any, path: str, where: str) -> list[Problem]:
    out: list[Problem] = []
    if not isinstance(pod, dict):
        return out
    for group in ("initContainers", "containers"):
        for i, c in enumerate(pod.get(group) or []):
            res = c.get("resources") if isinstance(c, dict) else None
            if not isinstance(res, dict):
                continue
            requests, limits = res.get("requests") or {}, res.get("limits") or {}
            if not isinstance(requests, dict) or not isinstance(limits, dict):
                continue
            for name in sorted(set(requests) & set(limits)):
                try:
                    request = parse_quantity(str(requests[name]))
                    limit = parse_quantity(str(limits[name]))
                except ValueError:
                    continue  # the schema's pattern reports it
                if request > limit:
                    out.append(Problem(
                        where, f"{path}.{group}[{i}].resources.requests.{name}",
                        f"{requests[name]!r} is above its limit {limits[name]!r}: the API "
                        "server refuses such a pod"))
    return out


def _rule_problems(doc: dict[str, Any], where: str) -> list[Problem]:
    """Prometheus' own rule-file rules (rulefmt) that the PrometheusRule CRD does not encode."""
    out: list[Problem] = []
    groups = (doc.get("spec") or {}).get("groups") if isinstance(doc.get("spec"), dict) else None
    for i, group in enumerate(groups if isinstance(groups, list) else []):
        rules = group.get("rules") if isinstance(group, dict) else None
        for j, rule in enumerate(rules if isinstance(rules, list) else []):
            if not isinstance(rule, dict):
                continue
            path = f"spec.groups[{i}].rules[{j}]"
            if ("alert" in rule) == ("record" in rule):
                out.append(Problem(where, path, "needs exactly one of 'alert' and 'record'"))
            elif "record" in rule:
                if not _METRIC_NAME.fullmatch(str(rule["record"])):
                    out.append(Problem(where, f"{path}.record",
                                       f"not a metric name (got {rule['record']!r:.80})"))
                for key in ("annotations", "for", "keep_firing_for"):
                    if key in rule:
                        out.append(Problem(where, f"{path}.{key}",
                                           "only alerting rules have this field"))
    return out


def semantic_problems(doc: dict[str, Any], where: str) -> list[Problem]:
    """Problems of one manifest that its schema cannot express (see the section comment)."""
    out: list[Problem] = []
    kind = doc.get("kind")
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    own = _annotation_bytes(meta.get("annotations"))
    sync = (meta.get("annotations") or {}).get(SYNC_OPTIONS) if isinstance(
        meta.get("annotations"), dict) else None
    server_side = isinstance(sync, str) and "ServerSideApply=true" in sync.split(",")
    if kind != "Kustomization" and not server_side:  # server-side apply keeps no copy
        total = own + len(LAST_APPLIED) + last_applied_size(doc)
        if total > ANNOTATIONS_LIMIT:
            out.append(Problem(
                where, "metadata.annotations",
                f"{total} bytes with the copy of the object that kubectl apply keeps in "
                f"{LAST_APPLIED!r}, above Kubernetes' {ANNOTATIONS_LIMIT} (256 KiB): the "
                "apply would be refused; shorten the long values (artifact URI, drift "
                "baseline, image)"))
    found = _pod_spec(doc)
    if found:
        path, template = found
        template_meta = template.get("metadata") if isinstance(template.get("metadata"),
                                                               dict) else {}
        pod_annotations = _annotation_bytes(template_meta.get("annotations"))
        if pod_annotations > ANNOTATIONS_LIMIT:
            out.append(Problem(where, f"{path}.metadata.annotations",
                               f"{pod_annotations} bytes, above Kubernetes' "
                               f"{ANNOTATIONS_LIMIT} (256 KiB) for a pod"))
        out.extend(_resources_problems(template.get("spec"), f"{path}.spec", where))
    name = meta.get("name")
    if kind == "Application" and isinstance(name, str) and len(name) > APP_NAME_MAX:
        out.append(Problem(
            where, "metadata.name",
            f"{len(name)} characters, above {APP_NAME_MAX}: Argo CD's label tracking writes "
            "the Application name into the app.kubernetes.io/instance label of every "
            "resource it syncs, and label values are at most 63 characters; shorten the "
            "model or environment name"))
    if kind in ("AnalysisTemplate", "ClusterAnalysisTemplate"):
        metrics = (doc.get("spec") or {}).get("metrics") if isinstance(doc.get("spec"),
                                                                       dict) else None
        for i, metric in enumerate(metrics if isinstance(metrics, list) else []):
            for key in ("successCondition", "failureCondition"):
                text = metric.get(key) if isinstance(metric, dict) else None
                if isinstance(text, str) and _NON_FINITE.search(text):
                    out.append(Problem(
                        where, f"spec.metrics[{i}].{key}",
                        f"compares with a non-finite number ({text!r:.80}): Argo Rollouts "
                        "cannot evaluate it, so every measurement errors and the canary "
                        "aborts"))
    if kind == "PrometheusRule":
        out.extend(_rule_problems(doc, where))
    if kind == "ConfigMap":
        size = sum(len(str(k).encode("utf-8")) + len(str(v).encode("utf-8"))
                   for key in ("data", "binaryData")
                   for k, v in (doc.get(key) or {}).items())
        if size > CONFIGMAP_LIMIT:
            out.append(Problem(where, "data", f"{size} bytes, above the 1 MiB a ConfigMap can "
                                              "hold: the API server would refuse it"))
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
    services, configmaps = index("Service"), index("ConfigMap")
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict) or doc.get("kind") != "Rollout":
            continue
        where = _doc_id(doc, i, sources[i])
        ns = (doc.get("metadata") or {}).get("namespace")
        pod = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
        for j, volume in enumerate(pod.get("volumes") or []):
            ref = volume.get("configMap") if isinstance(volume, dict) else None
            if (isinstance(ref, dict) and not ref.get("optional")
                    and (ns, ref.get("name")) not in configmaps):
                out.append(Problem(where, f"spec.template.spec.volumes[{j}].configMap.name",
                                   f"names ConfigMap {ref.get('name')!r}, which is not in the "
                                   "manifests: the pods would never start"))
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
