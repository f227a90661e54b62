"""Render one model/environment folder of the GitOps repository.

:func:`render_env` returns ``{file name: bytes}`` for ``<env>/<model>/`` (the folder the Argo CD
Application points at). What is rendered is the registry :data:`KINDS`: each manifest kind
satisfies the small :class:`ManifestKind` protocol, so adding a kind (say ``prometheus-rules``)
is one module or template plus one dict entry; ``kustomization.yaml`` lists every kind marked
``in_kustomization``.

Templates are Jinja2 with ``StrictUndefined``. Every value enters through the ``j`` filter,
which writes JSON (valid YAML), so no value can add keys or documents. The text is parsed back
with a safe loader, validated (:mod:`gitops.validate`) and dumped through :mod:`modelops.yamlio`:
the same release and params give the same bytes. The written bytes are read back (as YAML 1.1,
the way kubectl reads them) and must give exactly the rendered values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from modelops.contracts import PREDICTION_PSI, REQUEST_DURATION, REQUESTS_TOTAL
from modelops.errors import InputError
from modelops.gitops.alerts import PrometheusRulesKind
from modelops.gitops.release import Release
from modelops.gitops.template_cache import render_parsed
from modelops.settings.deploy import ANALYSIS_TEMPLATES, DeployParams

ROLE_LABEL = "modelops.io/role"
MANAGED_BY = "modelops-gitops"

def render_template(name: str, context: dict[str, Any]) -> list[Any]:
    """Render template ``name`` and parse it back into documents (safe loader). Each distinct
    shape of text is parsed once, values filled in (exactly equal: gitops.template_cache)."""
    return render_parsed(name, context)


# --------------------------------------------------------------------------- kinds

class ManifestKind(Protocol):
    """One file of the rendered folder."""

    filename: str
    in_kustomization: bool  # listed under resources: of kustomization.yaml
    validated: bool  # checked as Kubernetes objects by gitops.validate

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        """The parsed documents of this file."""
        ...


@dataclass(frozen=True)
class TemplateKind:
    filename: str
    template: str
    in_kustomization: bool = True
    validated: bool = True

    def render(self, context: dict[str, Any]) -> list[dict[str, Any]]:
        return render_template(self.template, context)


def wanted(kind: ManifestKind, release: Release) -> bool:
    """Whether ``kind`` has a file for ``release`` (a kind may define ``wanted(release)``)."""
    check = getattr(kind, "wanted", None)
    return check is None or bool(check(release))


# kind name -> manifest kind. Order = order in kustomization.yaml. One entry per kind.
KINDS: dict[str, ManifestKind] = {
    "rollout": TemplateKind("rollout.yaml", "rollout.yaml.j2"),
    "services": TemplateKind("services.yaml", "services.yaml.j2"),
    "analysis-templates": TemplateKind("analysis-templates.yaml", "analysis-templates.yaml.j2"),
    "application": TemplateKind("application.yaml", "application.yaml.j2",
                                in_kustomization=False),
    "kustomization": TemplateKind("kustomization.yaml", "kustomization.yaml.j2",
                                  in_kustomization=False, validated=False),
    "prometheus-rules": PrometheusRulesKind(),
}
RELEASE_FILE = "release.json"
MODEL_DIR = "/models"  # emptyDir the fetch-model init container fills
BASELINE_DIR = "/etc/model"  # the drift baseline's mount (a downward API volume)
BASELINE_KEY = "drift_baseline.json"
# The pod template carries its release's drift baseline in this annotation, and a downward API
# volume makes it the file DRIFT_BASELINE names: every ReplicaSet's pods read their own model's
# baseline (a ConfigMap shared by name would give a stable pod restarted mid-canary, or after
# an abort, the canary's baseline, and false drift alerts).
BASELINE_ANNOTATION = "modelops.io/drift-baseline"
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
    return repr(float(x))


def analysis_templates(model: str, deploy: DeployParams) -> list[dict[str, Any]]:
    """Name, description and metrics (query and conditions) of each AnalysisTemplate.

    The canary is selected by ``role="canary"`` and the ``model``/``version`` args, the stable
    by ``role="stable"`` and ``model``. Each template judges the canary on its own (absolute
    bounds) and, where a comparison means something, against the stable in the same window:

    - error-rate: the share of non-2xx answers (a 413 or 400 storm fails too, not only 5xx),
      and that share minus the stable's;
    - latency-p99: the canary's p99, and its ratio to the stable's p99 (floored, so two fast
      versions do not fail on sub-millisecond noise);
    - prediction-drift: the canary's PSI against the training baseline.

    Conditions: success ``len(result) > 0 && result[0] < T``, failure ``len(result) > 0 &&
    result[0] >= T``. An empty result (no such series yet) or NaN (no traffic in the window)
    matches neither: the measurement is *Inconclusive*, and ``inconclusiveLimit`` of those
    pause the Rollout for a human instead of promoting or aborting blind.
    """
    a = deploy.analysis
    canary = 'model="{{args.model}}",version="{{args.version}}",role="canary"'
    stable = 'model="{{args.model}}",role="stable"'
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
    }
    return [{"short": short, "name": f"{model}-{short}", "description": description,
             "metrics": metrics[short]}
            for short, description in ANALYSIS_TEMPLATES.items()]


def check_analysis(templates: list[dict[str, Any]], deploy: DeployParams,
                   file: str | Path | None = "params.yaml") -> None:
    """Refuse, before anything is rendered, an analysis the preview (``gitops analyze``) could
    not judge or that Argo would reject: each step's run is validated as Argo's controller
    validates an AnalysisRun, and every condition must be in the preview's subset."""
    from modelops.errors import ConfigError
    from modelops.gitops.analysis import Metric, validate_run
    from modelops.gitops.conditions import ConditionError, check_condition

    a = deploy.analysis
    path = "modelops.deploy.analysis"
    metrics = []
    for t in templates:
        for m in t["metrics"]:
            for key in ("success", "failure"):
                try:
                    check_condition(m[key])
                except ConditionError as exc:
                    raise ConfigError(file, path, m[key], f"{t['name']}/{m['name']}: the "
                                      f"condition cannot be previewed: {exc}") from exc
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


def canary_steps(model: str, version: str, steps: Any) -> list[dict[str, Any]]:
    """params.yaml steps -> Rollout steps: analysis templates get their full name and args."""
    out = []
    for step in steps:
        (key, value), = step.items()
        if key == "analysis":
            value = {
                "templates": [{"templateName": f"{model}-{t['templateName']}"}
                              for t in value["templates"]],
                "args": [{"name": "model", "value": model},
                         {"name": "version", "value": version}],
            }
        out.append({key: value})
    return out


# --------------------------------------------------------------------------- context

def build_context(release: Release, params: Any, env: str) -> dict[str, Any]:
    """Everything the templates see. ``params`` is the loaded params.yaml."""
    deploy: DeployParams = params.deploy
    env_params = deploy.environment(env, getattr(params, "file", "params.yaml"))
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
        annotations["modelops.io/drift-baseline-sha256"] = hashlib.sha256(
            baseline.encode("utf-8")).hexdigest()
    pod_annotations = {
        **annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(deploy.port),
        "prometheus.io/path": "/metrics",
        **({BASELINE_ANNOTATION: baseline} if baseline is not None else {}),
    }
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
    templates = analysis_templates(model, deploy)
    names = {
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
        "analysis": deploy.analysis, "prometheus": deploy.prometheus, "argocd": deploy.argocd,
        "names": names, "labels": labels, "selector": selector,
        "pod_labels": {**labels}, "annotations": annotations,
        "pod_annotations": pod_annotations, "container_env": container_env,
        "resources": resources, "role_label": ROLE_LABEL,
        "fetch_env": fetch_env, "fetch_resources": fetch_resources,
        "credentials_secret": deploy.artifact_credentials_secret,
        "security": CONTAINER_SECURITY, "model_dir": MODEL_DIR, "baseline_dir": BASELINE_DIR,
        "baseline_key": BASELINE_KEY, "has_baseline": baseline is not None,
        "baseline_annotation": BASELINE_ANNOTATION,
        "service_labels": {role: {**labels, ROLE_LABEL: role} for role in ("stable", "canary")},
        "steps": canary_steps(model, release.version, deploy.canary.steps),
        "analysis_templates": templates,
        "traffic": deploy.traffic, "shutdown": deploy.shutdown,
        "termination_grace_seconds": deploy.shutdown.pre_stop_seconds
        + deploy.shutdown.drain_seconds + deploy.shutdown.grace_seconds + 5,
        "kustomize_resources": [k.filename for k in KINDS.values()
                                if k.in_kustomization and wanted(k, release)],
        "alerts": getattr(params, "alerts", None),
    }


def render_docs(release: Release, params: Any, env: str) -> dict[str, list[dict[str, Any]]]:
    """file name -> parsed documents, for every kind in :data:`KINDS` (not validated)."""
    context = build_context(release, params, env)
    out: dict[str, list[dict[str, Any]]] = {}
    for kind in KINDS.values():
        if wanted(kind, release):
            out[kind.filename] = kind.render(context)
    return out


def dump_manifests(docs: list[Any], source: str) -> bytes:
    """YAML bytes of ``docs`` (via modelops.yamlio), checked to read back as exactly ``docs``."""
    from modelops.errors import ValidationError
    from modelops.yamlio import dump_yaml_all, dump_yaml_all_fast, load_yaml_all_fast

    # reads back exactly: by construction (tested), each spliced value checked on its own
    text = dump_yaml_all_fast(docs, splice=True)
    if text is not None:
        return text.encode("utf-8")
    text = dump_yaml_all(docs, yaml11_safe=True)
    if load_yaml_all_fast(text, source) != docs:  # read back as YAML 1.1, like kubectl
        raise ValidationError(f"{source}: a value does not survive writing as YAML",
                              hint="remove control characters from the release fields")
    return text.encode("utf-8")


def render_env(release: Release, params: Any, env: str, *, validate: bool = True
               ) -> dict[str, bytes]:
    """The complete ``<env>/<model>/`` folder: relative file name -> bytes.

    Checks the release fields first, then (``validate=True``) every manifest; raises
    ValidationError or ConfigError (unknown environment) before anything is returned.
    """
    from modelops.gitops.validate import check_manifests

    release.check()
    check_analysis(analysis_templates(release.model, params.deploy), params.deploy,
                   getattr(params, "file", "params.yaml"))
    rendered = render_docs(release, params, env)
    if validate:
        docs, sources = [], []
        for filename, file_docs in rendered.items():
            kind = next(k for k in KINDS.values() if k.filename == filename)
            if kind.validated:
                docs.extend(file_docs)
                sources.extend([filename] * len(file_docs))
        check_manifests(docs, sources)
    files = {name: dump_manifests(docs, name) for name, docs in rendered.items()}
    files[RELEASE_FILE] = release.to_json()
    return dict(sorted(files.items()))


def write_env(files: dict[str, bytes], out_dir: str | Path, env: str, model: str) -> Path:
    """Write a rendered folder to ``out_dir/<env>/<model>/`` atomically (all files or none).

    The files go to a sibling temporary folder; the old folder is moved aside to
    ``.<model>.old`` and the new one renamed into place, so files of an earlier render that are
    no longer rendered disappear. Killed between those two renames, the next call first puts
    the old folder back.
    """
    import os
    import shutil
    import tempfile

    from modelops.fsutil import atomic_write_bytes

    target = Path(out_dir) / env / model
    target.parent.mkdir(parents=True, exist_ok=True)
    aside = target.parent / f".{model}.old"
    if aside.exists() and not target.exists():
        os.replace(aside, target)  # an earlier write was killed between its two renames
    tmp = Path(tempfile.mkdtemp(prefix=f".{model}.", dir=target.parent))
    try:
        for name, data in files.items():
            if "/" in name or name.startswith("."):
                raise InputError(f"refusing to write file name {name!r}")
            atomic_write_bytes(tmp / name, data)
        moved = False
        if target.exists():
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(target, aside)
            moved = True
        os.replace(tmp, target)
        if moved:
            shutil.rmtree(aside, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
