"""Render one model/environment folder of the GitOps repository.

:func:`render_env` returns ``{file name: bytes}`` for ``<env>/<model>/`` (the folder the Argo CD
Application points at). What is rendered is the registry :data:`KINDS`: each manifest kind
satisfies the small :class:`ManifestKind` protocol, so adding a kind (say ``prometheus-rules``)
is one module or template plus one dict entry; ``kustomization.yaml`` lists every kind marked
``in_kustomization``.

Templates are Jinja2 with ``StrictUndefined``. Every value enters through the ``j`` filter,
which writes JSON (valid YAML), so no value can add keys or documents. The text is parsed back
with libyaml's safe loader and dumped through :mod:`modelops.yamlio` (one stock emitter): the
same release and params give the same bytes. Then :func:`check_rendered` runs on the bytes, the
one set of checks a folder passes before it is written or published (``publish --rendered-dir``
runs it too): the bytes read back (YAML 1.1, as kubectl reads them) as exactly the rendered
values, every manifest passes :mod:`gitops.validate`, and the folder holds exactly the files
of the registry, consistent with its ``release.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from modelops.contracts import PREDICTION_PSI, REQUEST_DURATION, REQUESTS_TOTAL
from modelops.errors import ConfigError, InputError, ValidationError
from modelops.fsutil import atomic_write_bytes
from modelops.gitops.alerts import PrometheusRulesKind
from modelops.gitops.dashboard import DashboardKind
from modelops.gitops.input_alerts import analysis_metric
from modelops.gitops.release import Release
from modelops.gitops.templating import jinja_env
from modelops.settings.deploy import ANALYSIS_TEMPLATES, NEEDS_FEATURE_BINS, DeployParams
from modelops.yamlio import dump_yaml_all, is_canonical, load_yaml_all_fast

ROLE_LABEL = "modelops.io/role"
MANAGED_BY = "modelops-gitops"


def render_template(name: str, context: dict[str, Any]) -> list[Any]:
    """Render template ``name`` and parse it back into documents (libyaml's safe loader)."""
    return load_yaml_all_fast(jinja_env().get_template(name).render(**context),
                              f"template {name}")


# --------------------------------------------------------------------------- kinds

class ManifestKind(Protocol):
    """One file of the rendered folder."""

    filename: str
    in_kustomization: bool  # listed under resources: of kustomization.yaml
    validated: bool  # checked as Kubernetes objects by gitops.validate
    kinds: tuple[str, ...]  # the object kinds the file holds (check_rendered refuses others)

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        """The parsed documents of this file."""
        ...


@dataclass(frozen=True)
class TemplateKind:
    filename: str
    template: str
    kinds: tuple[str, ...]
    in_kustomization: bool = True
    validated: bool = True

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        return render_template(self.template, context)


def wanted(kind: ManifestKind, release: Release) -> bool:
    """Whether ``kind`` has a file for ``release`` (a kind may define ``wanted(release)``)."""
    check = getattr(kind, "wanted", None)
    return check is None or bool(check(release))


class BaselineKind:
    """``drift-baseline.yaml``: the release's drift baseline as a ConfigMap of its own, named
    after its content (``<model>-baseline-<sha256[:10]>``, as kustomize's configMapGenerator
    names), immutable, that the pod template mounts as the file ``DRIFT_BASELINE`` names.

    Each release's pod template names its own ConfigMap, so the stable and the canary pods
    each read their own release's baseline, a stable pod restarted mid-canary or after an abort
    included. Argo CD is told not to prune it (``Prune=false``): the stable pods still mount the
    previous release's ConfigMap while the folder already holds the next one, and a rollback
    finds it again; and to apply it server-side (``ServerSideApply=true``), so no
    ``last-applied-configuration`` copy of the data counts against the 256 KiB of annotations.
    A ConfigMap holds up to 1 MiB (an annotation carrier had less than 128 KiB, the Rollout's
    last-applied copy included): a baseline per pixel of a 28x28 image fits.
    """

    filename = "drift-baseline.yaml"
    in_kustomization = True
    validated = True
    kinds = ("ConfigMap",)

    @staticmethod
    def wanted(release: Release) -> bool:
        return release.drift_baseline is not None

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        release: Release = context["release"]
        text = release.baseline_json()
        return [{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": context["names"]["baseline"],
                         "namespace": context["env"].namespace, "labels": context["labels"],
                         "annotations": {
                             "modelops.io/drift-baseline-sha256": _sha256(text),
                             # kept for the stable pods and rollbacks; applied server-side,
                             # so no last-applied copy counts against the 256 KiB of
                             # annotations and the 1 MiB of a ConfigMap is usable
                             "argocd.argoproj.io/sync-options":
                                 "Prune=false,ServerSideApply=true"}},
            "immutable": True,
            "data": {BASELINE_KEY: text},
        }]


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def baseline_name(model: str, release: Release) -> str | None:
    """The name of the release's baseline ConfigMap (None without a baseline)."""
    text = release.baseline_json()
    return None if text is None else f"{model}-baseline-{_sha256(text)[:10]}"


class PodMonitorKind:
    """``pod-monitor.yaml``: the Prometheus Operator's PodMonitor that has the model's pods
    scraped (``/metrics`` on the ``http`` port, every ``deploy.prometheus.scrape_interval``);
    it selects the Rollout's pods, stable and canary alike, and the operator gives each
    target its ``namespace`` label, which every rendered query of the environment selects.
    The pods keep their ``prometheus.io/*`` annotations for a Prometheus that discovers pods
    by annotation instead (the kubernetes-pods job sets ``namespace`` too)."""

    filename = "pod-monitor.yaml"
    in_kustomization = True
    validated = True
    kinds = ("PodMonitor",)

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        prometheus = context["prometheus"]
        return [{
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
            "metadata": {"name": context["names"]["rollout"],
                         "namespace": context["env"].namespace,
                         "labels": {**context["labels"], **prometheus.monitor_labels}},
            "spec": {
                "selector": {"matchLabels": context["selector"]},
                "podMetricsEndpoints": [{"port": "http", "path": "/metrics",
                                         "interval": str(prometheus.scrape_interval)}],
            },
        }]


# kind name -> manifest kind. Order = order in kustomization.yaml. One entry per kind.
KINDS: dict[str, ManifestKind] = {
    "drift-baseline": BaselineKind(),
    "rollout": TemplateKind("rollout.yaml", "rollout.yaml.j2", ("Rollout",)),
    "services": TemplateKind("services.yaml", "services.yaml.j2", ("Service", "Ingress")),
    "analysis-templates": TemplateKind("analysis-templates.yaml", "analysis-templates.yaml.j2",
                                       ("AnalysisTemplate",)),
    "application": TemplateKind("application.yaml", "application.yaml.j2", ("Application",),
                                in_kustomization=False),
    "kustomization": TemplateKind("kustomization.yaml", "kustomization.yaml.j2",
                                  ("Kustomization",), in_kustomization=False, validated=False),
    "pod-monitor": PodMonitorKind(),
    "prometheus-rules": PrometheusRulesKind(),
    "dashboard": DashboardKind(),
}
RELEASE_FILE = "release.json"
# On every Kubernetes object of a folder (the baseline's ConfigMap aside: releases with the same
# baseline share it): the release it belongs to, so any object traces back to its model
# version, artifact and commit.
IDENTITY_ANNOTATIONS = ("modelops.io/version", "modelops.io/sha256", "modelops.io/source-commit")
MODEL_DIR = "/models"  # emptyDir the fetch-model init container fills
BASELINE_DIR = "/etc/model"  # the drift baseline's mount (its release's ConfigMap)
BASELINE_KEY = "drift_baseline.json"
# Both containers: the restricted Pod Security Standard (the image runs as uid 10001).
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


# --------------------------------------------------------------------------- analysis

def _threshold(x: float) -> str:
    if not math.isfinite(x):  # `result[0] < nan` cannot be evaluated: every canary would abort
        raise ValidationError(f"analysis threshold {x!r} is not a finite number",
                              hint="set modelops.deploy.analysis thresholds to finite numbers")
    return repr(float(x))


def applicable_templates(feature_bins: bool) -> list[str]:
    """The analysis templates (short names) that apply to a release: ``input-drift`` only
    when its drift baseline describes its features with bins."""
    return [t for t in ANALYSIS_TEMPLATES if feature_bins or t not in NEEDS_FEATURE_BINS]


def analysis_templates(model: str, deploy: DeployParams, feature_bins: bool = True,
                       namespace: str | None = None) -> list[dict[str, Any]]:
    """Name, description and metrics (query and conditions) of each AnalysisTemplate.

    The canary is selected by ``role="canary"`` and the ``model``/``version`` args, the stable
    by ``role="stable"`` and ``model``; both in the environment's ``namespace`` (when given:
    the same version may run as staging's stable while production judges it as its canary,
    and one Prometheus sees both). Each template judges the canary on its own (absolute
    bounds) and, where a comparison means something, against the stable in the same window:

    - error-rate: the share of non-2xx answers (a 413 or 400 storm fails too, not only 5xx),
      and that share minus the stable's;
    - latency-p99: the canary's p99, and its ratio to the stable's p99 (floored, so two fast
      versions do not fail on sub-millisecond noise);
    - prediction-drift: the canary's PSI against the training baseline;
    - input-drift: the largest PSI of the canary's input features against their training bins
      (:func:`gitops.input_alerts.analysis_metric`), for a release with ``feature_bins``.

    Conditions: success ``len(result) > 0 && result[0] < T``, failure ``len(result) > 0 &&
    result[0] >= T``. An empty result (no such series yet) or NaN (no traffic in the window)
    matches neither: the measurement is *Inconclusive*, and ``inconclusiveLimit`` of those
    pause the Rollout for a human instead of promoting or aborting blind.
    """
    a = deploy.analysis
    ns = f'namespace="{namespace}",' if namespace else ""
    canary = ns + 'model="{{args.model}}",version="{{args.version}}",role="canary"'
    stable = ns + 'model="{{args.model}}",role="stable"'
    w = a.rate_window

    def share(sel: str) -> str:
        return (f'(sum(rate({REQUESTS_TOTAL}{{{sel},code!~"2.."}}[{w}])) or vector(0))'
                f" / sum(rate({REQUESTS_TOTAL}{{{sel}}}[{w}]))")

    def p99(sel: str) -> str:
        return (f"histogram_quantile(0.99, sum by (le) "
                f"(rate({REQUEST_DURATION}_bucket{{{sel}}}[{w}])))")

    def bounded(name: str, query: str, limit: float, *, inclusive_ok: bool = False) -> dict:
        t = _threshold(limit)
        ok, bad = ("<=", ">") if inclusive_ok else ("<", ">=")
        return {"name": name, "query": query,
                "success": f"len(result) > 0 && result[0] {ok} {t}",
                "failure": f"len(result) > 0 && result[0] {bad} {t}"}

    metrics = {
        "error-rate": [
            bounded("error-rate", share(canary), a.error_rate_max),
            bounded("error-rate-vs-stable", f"({share(canary)}) - ({share(stable)})",
                    a.error_rate_max_increase, inclusive_ok=True),
        ],
        "latency-p99": [
            bounded("latency-p99", p99(canary), a.latency_p99_max_seconds),
            bounded("latency-p99-vs-stable",
                    f"{p99(canary)} / clamp_min({p99(stable)}, "
                    f"{_threshold(a.latency_compare_floor_seconds)})",
                    a.latency_p99_max_ratio, inclusive_ok=True),
        ],
        "prediction-drift": [bounded("prediction-drift", f"max({PREDICTION_PSI}{{{canary}}})",
                                     a.drift_psi_max)],
        "input-drift": [analysis_metric(a.input_drift_psi_max, canary)],
    }
    _threshold(a.input_drift_psi_max)
    return [{"short": short, "name": f"{model}-{short}",
             "description": ANALYSIS_TEMPLATES[short], "metrics": metrics[short]}
            for short in applicable_templates(feature_bins)]


@functools.lru_cache(maxsize=1024)
def _condition_problem(text: str) -> str | None:
    """Why the preview cannot judge the condition ``text`` (None: it can). A pure function of
    the text, and the same dozen conditions come back for every folder rendered."""
    from modelops.gitops.conditions import ConditionError, check_condition

    try:
        check_condition(text)
    except ConditionError as exc:
        return str(exc)
    return None


def check_analysis(templates: list[dict[str, Any]], deploy: DeployParams,
                   file: str | Path | None = "params.yaml") -> None:
    """Refuse, before anything is rendered, an analysis the preview (``gitops analyze``) could
    not judge or that Argo would reject: each step's run is validated as Argo's controller
    validates an AnalysisRun, and every condition must be in the preview's subset."""
    from modelops.gitops.analysis import Metric, validate_run

    a = deploy.analysis
    path = "modelops.deploy.analysis"
    metrics = []
    for t in templates:
        for m in t["metrics"]:
            for key in ("success", "failure"):
                problem = _condition_problem(m[key])
                if problem:
                    raise ConfigError(file, path, m[key], f"{t['name']}/{m['name']}: the "
                                      f"condition cannot be previewed: {problem}")
            metrics.append(Metric(
                template=t["name"], name=m["name"], query=m["query"], address="",
                interval=1.0 if a.interval else None, count=a.count,  # (its form is checked)
                failure_limit=a.failure_limit, inconclusive_limit=a.inconclusive_limit,
                consecutive_success_limit=a.consecutive_success_limit or None))
    problems = validate_run(metrics, inline=True)
    if problems:
        shown = {"count": a.count, "failure_limit": a.failure_limit,
                 "inconclusive_limit": a.inconclusive_limit,
                 "consecutive_success_limit": a.consecutive_success_limit}
        raise ConfigError(file, path, shown, "argo rollouts would reject this analysis: "
                          + problems[0].split(": ", 1)[-1],
                          hint="count must be at least failure_limit + "
                               "consecutive_success_limit and at least inconclusive_limit; "
                               "failure_limit -1 needs consecutive_success_limit > 0")


def canary_steps(model: str, version: str, steps: Any,
                 applicable: list[str] | None = None) -> list[dict[str, Any]]:
    """params.yaml steps -> Rollout steps: analysis templates get their full name and args;
    templates that do not apply to the release (``applicable``) are left out, and a step left
    without any."""
    out = []
    for step in steps:
        (key, value), = step.items()
        if key == "analysis":
            names = [t["templateName"] for t in value["templates"]
                     if applicable is None or t["templateName"] in applicable]
            if not names:
                continue
            value = {
                "templates": [{"templateName": f"{model}-{name}"} for name in names],
                "args": [{"name": "model", "value": model},
                         {"name": "version", "value": version}],
            }
        out.append({key: value})
    return out


# --------------------------------------------------------------------------- context

def build_context(release: Release, params: Any, env: str,
                  branch: str | None = None) -> dict[str, Any]:
    """Everything the templates see. ``params`` is the loaded params.yaml; ``branch`` is the
    GitOps branch the folder is published to, which the Application follows (default:
    ``modelops.deploy.argocd.target_revision``)."""
    deploy: DeployParams = params.deploy
    env_params = deploy.environment(env, getattr(params, "file", "params.yaml"))
    argocd = (deploy.argocd if branch is None
              else dataclasses.replace(deploy.argocd, target_revision=branch))
    model = release.model
    team = params.model.team
    selector = {"app.kubernetes.io/name": model}
    labels = {
        "app.kubernetes.io/name": model,
        "app.kubernetes.io/version": release.version,
        "app.kubernetes.io/part-of": "modelops",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "modelops.io/model": model,
        "modelops.io/team": team,
        "modelops.io/env": env,
    }
    annotations = {
        "modelops.io/version": release.version,
        "modelops.io/sha256": release.sha256,
        "modelops.io/dvc-md5": release.dvc_md5,
        "modelops.io/artifact-uri": release.artifact_uri,
        "modelops.io/source-repo": release.source_repo,
        "modelops.io/source-commit": release.source_commit,
        "modelops.io/dvc-lock-sha256": release.dvc_lock_sha256,
    }
    baseline = release.baseline_json()
    if baseline is not None:  # which baseline the pods read, short enough to eyeball
        annotations["modelops.io/drift-baseline-sha256"] = _sha256(baseline)
    pod_annotations = {
        **annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(deploy.port),
        "prometheus.io/path": "/metrics",
    }
    alerts = getattr(params, "alerts", None)
    model_path = f"{MODEL_DIR}/{Path(params.model.artifact.path).name}"
    container_env = [
        {"name": "MODEL_NAME", "value": model},
        {"name": "MODEL_VERSION", "value": release.version},
        {"name": "MODEL_SHA256", "value": release.sha256},
        {"name": "MODEL_PATH", "value": model_path},
        *([{"name": "DRIFT_BASELINE", "value": f"{BASELINE_DIR}/{BASELINE_KEY}"}]
          if baseline is not None else []),
        {"name": "MODEL_ROLE_FILE", "value": "/etc/podinfo/labels"},
        {"name": "PORT", "value": str(deploy.port)},
        {"name": "SERVE_DRAIN_SECONDS", "value": str(deploy.shutdown.drain_seconds)},
        {"name": "SERVE_GRACE_SECONDS", "value": str(deploy.shutdown.grace_seconds)},
        *([{"name": "FEATURE_PSI_THRESHOLD", "value": repr(float(alerts.feature_psi_warning))}]
          if alerts is not None and release.has_feature_bins() else []),
    ]
    fetch_env = [
        {"name": "MODEL_URI", "value": release.artifact_uri},
        {"name": "MODEL_SHA256", "value": release.sha256},
        {"name": "MODEL_PATH", "value": model_path},
    ]

    def amounts(r: Any) -> dict[str, Any]:
        return {"requests": {"cpu": r.requests.cpu, "memory": r.requests.memory},
                "limits": {"cpu": r.limits.cpu, "memory": r.limits.memory}}

    resources, fetch_resources = amounts(deploy.resources), amounts(deploy.fetch_resources)
    applicable = applicable_templates(release.has_feature_bins())
    templates = analysis_templates(model, deploy, release.has_feature_bins(),
                                   env_params.namespace)
    names = {
        "baseline": baseline_name(model, release),
        "dashboard": f"{model}-dashboard",
        "rollout": model,
        "service": model,  # what clients use: selects both ReplicaSets' pods
        "ingress": model,
        "stable_service": f"{model}-stable",
        "canary_service": f"{model}-canary",
        "application": f"{model}-{env}",
        "path": f"{env}/{model}",
    }
    return {
        "release": release, "deploy": deploy, "env": env_params, "env_name": env,
        "analysis": deploy.analysis, "prometheus": deploy.prometheus, "argocd": argocd,
        "names": names, "labels": labels, "selector": selector,
        "pod_labels": {**labels}, "annotations": annotations,
        "pod_annotations": pod_annotations, "container_env": container_env,
        "resources": resources, "role_label": ROLE_LABEL,
        "fetch_env": fetch_env, "fetch_resources": fetch_resources,
        "credentials_secret": deploy.artifact_credentials_secret,
        "security": CONTAINER_SECURITY, "model_dir": MODEL_DIR, "baseline_dir": BASELINE_DIR,
        "baseline_key": BASELINE_KEY, "has_baseline": baseline is not None,
        "service_labels": {role: {**labels, ROLE_LABEL: role} for role in ("stable", "canary")},
        "steps": canary_steps(model, release.version, deploy.canary.steps, applicable),
        "analysis_templates": templates,
        "traffic": deploy.traffic, "shutdown": deploy.shutdown,
        "termination_grace_seconds": deploy.shutdown.pre_stop_seconds
        + deploy.shutdown.drain_seconds + deploy.shutdown.grace_seconds + 5,
        "kustomize_resources": [k.filename for k in KINDS.values()
                                if k.in_kustomization and wanted(k, release)],
        "alerts": alerts,
    }


def render_docs(release: Release, params: Any, env: str,
                branch: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """file name -> parsed documents, for every kind in :data:`KINDS` (not validated)."""
    context = build_context(release, params, env, branch)
    identity = {k: context["annotations"][k] for k in IDENTITY_ANNOTATIONS}
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS.values():
        if wanted(kind, release):
            docs = kind.render(context)
            if kind.validated and not isinstance(kind, BaselineKind):
                for doc in docs:  # every object says which release it belongs to
                    meta = doc.setdefault("metadata", {})
                    meta["annotations"] = {**(meta.get("annotations") or {}), **identity}
            out[kind.filename] = docs
    return out


def dump_manifests(docs: list[Any], source: str) -> bytes:
    """YAML bytes of ``docs`` (modelops.yamlio's one emitter and settings)."""
    try:
        return dump_yaml_all(docs).encode("utf-8")
    except InputError as exc:
        raise ValidationError(f"{source}: {exc.message}",
                              hint="remove control characters from the release fields") from exc


def render_env(release: Release, params: Any, env: str, *, validate: bool = True,
               branch: str | None = None) -> dict[str, bytes]:
    """The complete ``<env>/<model>/`` folder: relative file name -> bytes.

    Checks the release fields first, then (``validate=True``) the folder as
    :func:`check_rendered` does; raises ValidationError or ConfigError (unknown environment)
    before anything is returned. ``branch``: see :func:`build_context`.
    """
    release.check()
    namespace = params.deploy.environment(env, getattr(params, "file", "params.yaml")).namespace
    check_analysis(analysis_templates(release.model, params.deploy, release.has_feature_bins(),
                                      namespace),
                   params.deploy, getattr(params, "file", "params.yaml"))
    rendered = render_docs(release, params, env, branch)
    files = {name: dump_manifests(docs, name) for name, docs in rendered.items()}
    files[RELEASE_FILE] = release.to_json()
    files = dict(sorted(files.items()))
    if validate:
        argocd = params.deploy.argocd
        check_rendered(f"{env}/{release.model}", files,
                       branch=branch or argocd.target_revision, parsed=rendered,
                       release=release)
    return files


# --------------------------------------------------------------------------- folder checks

def _kind_of(filename: str) -> ManifestKind | None:
    return next((k for k in KINDS.values() if k.filename == filename), None)


def check_rendered(folder: str, files: Mapping[str, bytes], *, branch: str | None = None,
                   parsed: Mapping[str, list[Any]] | None = None,
                   release: Release | None = None) -> dict[str, list[Any]]:
    """Check one rendered ``<env>/<model>`` folder; return its parsed documents per file.

    The checks ``render`` applies before writing and ``publish --rendered-dir`` before
    pushing: exactly the registry's files plus ``release.json`` (no other name, no folder);
    ``release.json`` a valid release of this model in its canonical bytes; every YAML file in
    the exact form the renderer writes (so it reads the same in YAML 1.1 and 1.2: no hand
    edits, anchors, tags or duplicate keys); every manifest valid (:mod:`gitops.validate`:
    strict CRDs, core kinds, names, semantics, cross references); the kustomization listing
    the manifests; the objects in the Application's destination namespace; the Application
    following ``branch`` and pointing at this folder; the manifests carrying the release.

    ``parsed`` and ``release``: the documents the YAML bytes were dumped from by
    :func:`dump_manifests` and the (checked) release whose ``to_json()`` is release.json (the
    renderer passes them), checked instead of parsing the bytes again.
    """
    from modelops.gitops.validate import check_manifests

    env, _, model = folder.partition("/")
    problems: list[str] = []
    release_data = files.get(RELEASE_FILE)
    if release is not None:
        pass  # the renderer's own release: checked, and release.json is its to_json()
    elif release_data is None:
        problems.append(f"{RELEASE_FILE}: missing")
    else:
        try:
            release = Release.from_json(release_data, f"{folder}/{RELEASE_FILE}")
        except InputError as exc:
            problems.append(exc.message.removeprefix(f"{folder}/"))
        else:
            if release.model != model:
                problems.append(f"{RELEASE_FILE}: model: {release.model!r} is not the folder's "
                                f"model {model!r}")
            elif release.to_json() != release_data:
                problems.append(f"{RELEASE_FILE}: not in the form modelops-gitops writes "
                                "(sorted keys, 2-space indent, final newline)")
    expected = {k.filename for k in KINDS.values() if release is None or wanted(k, release)}
    for name in sorted(set(files) - expected - {RELEASE_FILE}):
        problems.append(f"{name}: not a file modelops-gitops renders (expected: "
                        f"{', '.join(sorted(expected | {RELEASE_FILE}))})")
    for name in sorted(expected - set(files)):
        problems.append(f"{name}: missing")
    docs_by_file: dict[str, list[Any]] = {}
    for name in sorted(expected & set(files)):
        try:
            text = files[name].decode("utf-8")
        except UnicodeDecodeError:
            problems.append(f"{name}: not UTF-8 text")
            continue
        try:
            # the renderer's own bytes are modelops.yamlio's output of exactly these documents,
            # which reads back as them in YAML 1.1 and 1.2 (a tested property of the emitter):
            # nothing to parse again; anything else must be in that canonical form
            docs = parsed[name] if parsed is not None and name in parsed else is_canonical(
                text, name)
        except InputError as exc:
            problems.append(exc.message)
            continue
        if not all(isinstance(d, dict) for d in docs):
            problems.append(f"{name}: every document must be a mapping")
            continue
        docs_by_file[name] = docs
    if problems:
        raise ValidationError(f"{folder}: " + "; ".join(problems[:10]),
                              hint="render the folder with `modelops-gitops render` (every file "
                                   "and nothing else); nothing was written")
    problems += _folder_problems(folder, docs_by_file, release, branch)
    if problems:
        raise ValidationError(f"{folder}: " + "; ".join(problems[:10]),
                              hint="render the folder again with the settings it is published "
                                   "with; nothing was written")
    docs, sources = [], []
    for name, file_docs in docs_by_file.items():
        kind = _kind_of(name)
        if kind is not None and kind.validated:
            docs.extend(file_docs)
            sources.extend([f"{folder}/{name}"] * len(file_docs))
    check_manifests(docs, sources)
    return docs_by_file


def _folder_problems(folder: str, docs_by_file: Mapping[str, list[Any]],
                     release: Release | None, branch: str | None) -> list[str]:
    """What ties the files of one folder together (see :func:`check_rendered`)."""
    out: list[str] = []
    kust = docs_by_file.get("kustomization.yaml") or [{}]
    listed = kust[0].get("resources") if isinstance(kust[0], dict) else None
    want = [k.filename for k in KINDS.values() if k.in_kustomization and k.filename in
            docs_by_file]
    if listed != want:
        out.append(f"kustomization.yaml: resources: must list exactly {want} (got {listed!r})")
    apps = docs_by_file.get("application.yaml") or []
    app = apps[0] if len(apps) == 1 and isinstance(apps[0], dict) else None
    if app is None:
        out.append("application.yaml: must hold exactly one Argo CD Application")
        return out
    source = (app.get("spec") or {}).get("source") or {}
    dest = (app.get("spec") or {}).get("destination") or {}
    if source.get("path") != folder:
        out.append(f"application.yaml: spec.source.path: must be {folder!r}, the folder it is "
                   f"published in (got {source.get('path')!r})")
    if branch is not None and source.get("targetRevision") not in (branch,
                                                                   f"refs/heads/{branch}"):
        out.append(f"application.yaml: spec.source.targetRevision: {source.get('targetRevision')!r}"
                   f" but the folder is published to branch {branch!r}, so Argo CD would "
                   "follow another branch; render it with the branch it is published to")
    namespace = dest.get("namespace")
    model = folder.partition("/")[2]
    for name, file_docs in docs_by_file.items():
        kind = _kind_of(name)
        for doc in file_docs:
            what = doc.get("kind")
            object_name = str((doc.get("metadata") or {}).get("name") or "")
            if kind is not None and what not in kind.kinds:
                out.append(f"{name}: holds a {what!r}, but the renderer writes only "
                           f"{', '.join(kind.kinds)} there")
            elif what != "Kustomization" and object_name != model and not \
                    object_name.startswith(f"{model}-"):
                out.append(f"{name}: {what}/{object_name}: not a name the renderer gives "
                           f"(every object is called {model!r} or '{model}-...')")
        if name in ("application.yaml", "kustomization.yaml"):
            continue
        for doc in file_docs:
            ns = (doc.get("metadata") or {}).get("namespace")
            if ns != namespace:
                out.append(f"{name}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}:"
                           f" metadata.namespace: {ns!r} is not the Application's destination "
                           f"namespace {namespace!r}")
    if release is not None:
        for doc in docs_by_file.get("rollout.yaml") or []:
            pod = ((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}
            ann = pod.get("annotations") or {}
            for key, value in (("modelops.io/sha256", release.sha256),
                               ("modelops.io/version", release.version)):
                if ann.get(key) != value:
                    out.append(f"rollout.yaml: spec.template.metadata.annotations.{key}: "
                               f"{ann.get(key)!r} is not the release's {value!r}")
    return out


def application_identity(docs_by_file: Mapping[str, list[Any]]) -> dict[str, Any] | None:
    """(name, namespace, destination server, destination namespace) of a folder's
    Application, for the checks across folders (:func:`gitops.publish.check_across`)."""
    apps = docs_by_file.get("application.yaml") or []
    if len(apps) != 1 or not isinstance(apps[0], dict):
        return None
    app = apps[0]
    meta = app.get("metadata") or {}
    dest = (app.get("spec") or {}).get("destination") or {}
    return {"name": meta.get("name"), "namespace": meta.get("namespace"),
            "server": str(dest.get("server") or "").rstrip("/"),
            "destination": dest.get("namespace")}


# --------------------------------------------------------------------------- writing

def write_env(files: dict[str, bytes], out_dir: str | Path, env: str, model: str) -> Path:
    """Write a rendered folder to ``out_dir/<env>/<model>/`` atomically (all files or none).

    The files go to a sibling temporary folder; the old folder is moved aside to
    ``.<model>.old`` and the new one renamed into place, so files of an earlier render that are
    no longer rendered disappear. Killed between those two renames, the next call first puts
    the old folder back; killed anywhere else, the next call removes what was left (the
    temporary folder through its lock, see :mod:`gitops.workdirs`; a half-removed
    ``.<model>.old``).
    """
    from modelops.gitops.workdirs import locked_tempdir

    target = Path(out_dir) / env / model
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.parent / f".{model}.old"
    if aside.exists():
        if target.exists():
            shutil.rmtree(aside, ignore_errors=True)  # killed while removing it
        else:
            os.replace(aside, target)  # an earlier write was killed between its two renames
    for name in files:
        if "/" in name or name.startswith(".") or not name:
            raise InputError(f"refusing to write file name {name!r}")
    with locked_tempdir(f".{model}.tmp-", target.parent) as tmp:
        for name, data in files.items():
            atomic_write_bytes(tmp / name, data)
        umask = os.umask(0o022)
        os.umask(umask)
        for name in files:  # files and a folder like any other, not temporary ones' 0600/0700
            (tmp / name).chmod(0o666 & ~umask)
        tmp.chmod(0o777 & ~umask)
        moved = False
        if target.exists():
            os.replace(target, aside)
            moved = True
        os.replace(tmp, target)
        if moved:
            shutil.rmtree(aside, ignore_errors=True)
    return target


def release_of(files: Mapping[str, bytes]) -> dict[str, Any]:
    """The fields of a folder's release.json (empty when it has none or it is not JSON)."""
    try:
        raw = json.loads(files.get(RELEASE_FILE, b"{}"))
    except ValueError:
        return {}
    return raw if isinstance(raw, dict) else {}
