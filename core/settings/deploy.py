"""``modelops.deploy``: how a release becomes Argo Rollouts + Argo CD manifests.

Canary steps are written in Argo's own spelling (``- setWeight: 10``, ``- pause: {duration: 5m}``,
``- analysis: {templates: [{templateName: error-rate}]}``, ``- setCanaryScale: {weight: 20}``).
"Exactly one key per step" and the shape of each step come from :data:`STEP_VALIDATORS`, one
dict: a new step kind is one function plus one entry.

Analysis templates are named by their short name (``error-rate``, ``latency-p99``,
``prediction-drift``, ``input-drift``; see :data:`ANALYSIS_TEMPLATES`); the rendered
AnalysisTemplate objects are called ``<model>-<short name>`` so that several models can share a
namespace.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from modelops.errors import ConfigError
from modelops.k8s import (
    argo_pause_seconds,
    go_duration_problem,
    image_problem,
    label_key_problem,
    label_value_problem,
    parse_prom_duration,
    parse_quantity,
    prom_duration_problem,
    quantity_problem,
)

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
# placeholders a repository must replace before a release reaches a real cluster
DEFAULT_IMAGE = "ghcr.io/example/modelops-serve:0.1.0"
DEFAULT_GITOPS_URL = "https://git.example.com/ml/gitops.git"
_LABEL = {"pattern": DNS1123_LABEL,
          "pattern_help": "must be a DNS-1123 label: lowercase letters, digits and '-', "
                          "starting and ending with a letter or digit"}
_URL = {"pattern": r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/\-]*)?",
        "pattern_help": "must be an http(s) URL like 'http://prometheus.monitoring:9090'"}

# --------------------------------------------------------------------------- value types
# Strings with a grammar of their own (modelops.k8s), checked where they are read: the loader
# calls from_params(raw, path, file) and the value stays a plain string for the templates.

def _number_text(raw: Any, path: str, file: str | Path | None) -> str:
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise ConfigError(file, path, raw, "must be a finite number (not .nan or .inf)")
        return repr(raw)
    return str(raw)


class Quantity(str):
    """A Kubernetes quantity (``250m``, ``1``, ``1e3``, ``1.5Gi``), as apimachinery parses it.
    A YAML number (``cpu: 2``, ``cpu: 0.5``) is taken as its text."""

    @classmethod
    def from_params(cls, raw: Any, path: str, file: str | Path | None) -> Quantity:
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise ConfigError(file, path, raw, "must be a Kubernetes quantity like '250m', "
                                               "'1', '1e3' or '512Mi'")
        text = raw if isinstance(raw, str) else _number_text(raw, path, file)
        problem = quantity_problem(text)
        if problem:
            raise ConfigError(file, path, raw, problem)
        return cls(text)

    @property
    def amount(self) -> Fraction:
        return parse_quantity(str(self))


class GoDuration(str):
    """A positive Go duration (``30s``, ``1h30m``, ``1.5h``), as Argo parses ``interval``."""

    @classmethod
    def from_params(cls, raw: Any, path: str, file: str | Path | None) -> GoDuration:
        problem = (go_duration_problem(raw, positive=True) if isinstance(raw, str)
                   else "must be a Go duration like '30s', '5m' or '1h30m' (a string)")
        if problem:
            raise ConfigError(file, path, raw, problem)
        return cls(raw)


class PromDuration(str):
    """A Prometheus duration (``30s``, ``5m``, ``1h30m``, ``1d``): PromQL ranges, ``for:``."""

    positive = True

    @classmethod
    def from_params(cls, raw: Any, path: str, file: str | Path | None) -> PromDuration:
        problem = (prom_duration_problem(raw, positive=cls.positive) if isinstance(raw, str)
                   else "must be a Prometheus duration like '30s', '5m' or '1h' (a string)")
        if problem:
            raise ConfigError(file, path, raw, problem)
        return cls(raw)


# short name -> what the template checks (the queries live in gitops/render.py).
ANALYSIS_TEMPLATES: dict[str, str] = {
    "error-rate": "share of canary requests answered with a non-2xx code, on its own and "
                  "against the stable's share in the same window",
    "latency-p99": "p99 of the canary's request duration in seconds, on its own and against "
                   "the stable's p99 in the same window",
    "prediction-drift": "PSI of the canary's predicted-class distribution vs the training "
                        "baseline",
    "input-drift": "largest PSI of the canary's input features vs their training bins (only "
                   "for a release whose drift baseline describes its features)",
}
# templates that apply only to some releases: left out of the AnalysisTemplates and of the
# steps of a release they do not apply to (gitops.render.applicable_templates)
NEEDS_FEATURE_BINS = ("input-drift",)


# --------------------------------------------------------------------------- canary steps

def _fail(file: str | Path | None, path: str, value: Any, problem: str, hint: str | None = None):
    raise ConfigError(file, path, value, problem, hint=hint)


def _int_in(value: Any, lo: int, hi: int | None, path: str, file: str | Path | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(file, path, value, "must be an integer")
    if value < lo or (hi is not None and value > hi):
        _fail(file, path, value, f"must be between {lo} and {hi}" if hi is not None
              else f"must be at least {lo}")
    return value


def _only_keys(value: Any, allowed: tuple[str, ...], path: str, file: str | Path | None) -> dict:
    if not isinstance(value, dict):
        _fail(file, path, value, "must be a mapping")
    for key in value:
        if key not in allowed:
            _fail(file, f"{path}.{key}", value[key], "unknown key",
                  f"known keys here: {', '.join(allowed)}")
    return value


def _step_set_weight(value: Any, path: str, file: str | Path | None) -> Any:
    return _int_in(value, 0, 100, path, file)


def _step_pause(value: Any, path: str, file: str | Path | None) -> Any:
    """``pause: {}`` (until promoted) or ``pause: {duration: D}``: D is seconds (an integer or
    an integer string) or a Go duration (``1h30m``, ``1.5h``), as Argo Rollouts reads it."""
    if value is None:
        value = {}
    _only_keys(value, ("duration",), path, file)
    if "duration" in value:
        d = value["duration"]
        try:
            seconds = argo_pause_seconds(d)
        except ValueError:
            _fail(file, f"{path}.duration", d,
                  "must be seconds (an integer) or a Go duration like '30s', '5m', '1h30m' "
                  "or '1.5h'")
        if seconds < 0:
            _fail(file, f"{path}.duration", d, "must not be negative")
    return dict(value)


def _step_analysis(value: Any, path: str, file: str | Path | None) -> Any:
    _only_keys(value, ("templates",), path, file)
    templates = value.get("templates")
    if not isinstance(templates, list) or not templates:
        _fail(file, f"{path}.templates", templates,
              "must be a non-empty list like [{templateName: error-rate}]")
    for i, t in enumerate(templates):
        tpath = f"{path}.templates[{i}]"
        _only_keys(t, ("templateName",), tpath, file)
        name = t.get("templateName")
        if name not in ANALYSIS_TEMPLATES:
            _fail(file, f"{tpath}.templateName", name, "no such analysis template",
                  f"known templates: {', '.join(ANALYSIS_TEMPLATES)}")
    return {"templates": [dict(t) for t in templates]}


def _step_set_canary_scale(value: Any, path: str, file: str | Path | None) -> Any:
    _only_keys(value, ("weight", "replicas", "matchTrafficWeight"), path, file)
    if len(value) != 1:
        _fail(file, path, value, "must have exactly one of weight, replicas, matchTrafficWeight")
    if "weight" in value:
        _int_in(value["weight"], 0, 100, f"{path}.weight", file)
    if "replicas" in value:
        _int_in(value["replicas"], 0, None, f"{path}.replicas", file)
    if "matchTrafficWeight" in value and value["matchTrafficWeight"] is not True:
        _fail(file, f"{path}.matchTrafficWeight", value["matchTrafficWeight"], "must be true")
    return dict(value)


# Argo step name -> validator(value, path, file) returning the normalised value.
STEP_VALIDATORS: dict[str, Callable[[Any, str, str | Path | None], Any]] = {
    "setWeight": _step_set_weight,
    "pause": _step_pause,
    "analysis": _step_analysis,
    "setCanaryScale": _step_set_canary_scale,
}


class CanarySteps(tuple):
    """The canary steps, each a one-key mapping in Argo's spelling (validated)."""

    @classmethod
    def from_params(cls, raw: Any, path: str, file: str | Path | None) -> CanarySteps:
        if not isinstance(raw, list) or not raw:
            _fail(file, path, raw, "must be a non-empty list of steps like [{setWeight: 10}]")
        steps = []
        for i, step in enumerate(raw):
            spath = f"{path}[{i}]"
            if not isinstance(step, dict) or len(step) != 1:
                _fail(file, spath, step, "each step must have exactly one key",
                      f"step kinds: {', '.join(STEP_VALIDATORS)}")
            (key, value), = step.items()
            if key not in STEP_VALIDATORS:
                _fail(file, f"{spath}.{key}", value, "unknown step kind",
                      f"step kinds: {', '.join(STEP_VALIDATORS)}")
            steps.append({key: STEP_VALIDATORS[key](value, f"{spath}.{key}", file)})
        weights = [(i, s["setWeight"]) for i, s in enumerate(steps) if "setWeight" in s]
        if not weights:
            _fail(file, path, raw, "no setWeight step: the canary never reaches a final weight",
                  "end the steps with '- setWeight: 100'")
        last_i, last_w = weights[-1]
        if last_w != 100:
            _fail(file, f"{path}[{last_i}].setWeight", last_w,
                  "the last setWeight must be 100",
                  "after the last step argo rollouts promotes to 100% at once, without "
                  "analysis; say it explicitly with '- setWeight: 100'")
        return cls(steps)


# --------------------------------------------------------------------------- sections

@dataclass(frozen=True)
class ResourceAmounts:
    """Amounts of a container's resources."""

    cpu: Quantity = field(default=Quantity("250m"))
    """CPU, as a Kubernetes quantity (`250m`, `1`)."""
    memory: Quantity = field(default=Quantity("256Mi"))
    """Memory, as a Kubernetes quantity (`256Mi`, `1Gi`)."""


@dataclass(frozen=True)
class Resources:
    """A container's requests and limits."""

    requests: ResourceAmounts = field(default_factory=ResourceAmounts)
    """What the scheduler reserves for the container."""
    limits: ResourceAmounts = field(
        default_factory=lambda: ResourceAmounts(cpu=Quantity("1"), memory=Quantity("512Mi")))
    """The most the container may use."""

    def check(self, path: str, file: str | Path | None) -> None:
        """A request above its limit is refused by the API server (the pod never starts)."""
        for name in ("cpu", "memory"):
            request, limit = getattr(self.requests, name), getattr(self.limits, name)
            if Quantity(request).amount > Quantity(limit).amount:
                raise ConfigError(file, f"{path}.requests.{name}", str(request),
                                  f"must not be above limits.{name} ({str(limit)!r})",
                                  hint="Kubernetes refuses a pod whose request exceeds its "
                                       "limit; raise the limit or lower the request")


def _fetch_resources() -> Resources:
    return Resources(requests=ResourceAmounts(cpu=Quantity("100m"), memory=Quantity("64Mi")),
                     limits=ResourceAmounts(cpu=Quantity("500m"), memory=Quantity("256Mi")))


@dataclass(frozen=True)
class PrometheusParams:
    """The Prometheus the canary analysis queries."""

    address: str = field(default="http://prometheus.monitoring.svc:9090", metadata=_URL)
    """The Prometheus base URL the AnalysisTemplates query, from inside the cluster."""
    scrape_interval: PromDuration = PromDuration("15s")
    """How often Prometheus scrapes each pod: the interval of the rendered PodMonitor. The
    analysis' `rate_window` must span at least four scrapes."""
    monitor_labels: dict[str, str] = field(default_factory=dict)
    """Labels the rendered PodMonitor and PrometheusRule carry besides the model's, for the
    Prometheus Operator's `podMonitorSelector` and `ruleSelector` (kube-prometheus-stack selects
    `release: <its release name>` unless told otherwise)."""

    def check(self, path: str, file: str | Path | None) -> None:
        for key, value in self.monitor_labels.items():
            problem = label_key_problem(key)
            if problem:
                raise ConfigError(file, f"{path}.monitor_labels", key, problem)
            problem = label_value_problem(value)
            if problem:
                raise ConfigError(file, f"{path}.monitor_labels.{key}", value, problem)


@dataclass(frozen=True)
class AnalysisParams:
    """Thresholds and timing of the AnalysisTemplates that judge the canary."""

    interval: GoDuration = GoDuration("1m")  # Argo's time.ParseDuration
    """Time between two measurements of an analysis."""
    count: int = field(default=5, metadata={"min": 1})
    """Measurements per analysis run (0 = run until the step ends, as Argo does)."""
    failure_limit: int = field(default=1, metadata={"min": -1})
    """Argo's: -1 disables it (then consecutive_success_limit decides)."""
    inconclusive_limit: int = field(default=2, metadata={"min": 0})
    """Measurements without data tolerated before the rollout pauses."""
    consecutive_success_limit: int = field(default=0, metadata={"min": 0})
    """0 = off; else Successful after this many successes in a row."""
    rate_window: PromDuration = PromDuration("2m")  # a PromQL range: [2m]
    """The range of the rate() windows of the queries."""
    error_rate_max: float = field(default=0.05, metadata={"min": 0.0, "max": 1.0})
    """error-rate: the highest share of non-2xx answers among the canary's requests."""
    error_rate_max_increase: float = field(default=0.02, metadata={"min": 0.0, "max": 1.0})
    """Canary's non-2xx share minus the stable's, same window."""
    latency_p99_max_seconds: float = field(default=0.25, metadata={"gt": 0.0})
    """latency-p99: the highest p99 of the canary's request duration, in seconds."""
    latency_p99_max_ratio: float = field(default=1.5, metadata={"gt": 0.0})
    """Canary p99 / stable p99, the stable's floored at latency_compare_floor_seconds."""
    latency_compare_floor_seconds: float = field(default=0.01, metadata={"gt": 0.0})
    """The stable's p99 is floored at this many seconds before the ratio is taken, so a very
    fast stable does not fail a canary on noise."""
    drift_psi_max: float = field(default=0.2, metadata={"gt": 0.0})
    """prediction-drift: the highest PSI of the canary's predicted-class distribution against the
    training baseline."""
    input_drift_psi_max: float = field(default=0.2, metadata={"gt": 0.0})
    """input-drift: the highest PSI of any input feature of the canary against its training bins
    (`model_feature_psi_max`)."""


@dataclass(frozen=True)
class TrafficParams:
    """How clients reach the model and how ``setWeight`` moves them.

    ``service`` (default): clients use the Service named after the model, which selects the
    pods of both ReplicaSets; Argo scales the canary ReplicaSet to the step's weight, so the
    canary's share of traffic is its share of ready pods (as kube-proxy balances).
    ``nginx``: Argo's NGINX Ingress traffic routing; clients use the Ingress (``host``), and
    Argo sets the canary Ingress's weight to exactly the step's ``setWeight``.
    """

    router: Literal["service", "nginx"] = "service"
    """service: clients use the Service named after the model (traffic follows ready pods);
    nginx: Argo's NGINX Ingress traffic routing (exact weights)."""
    host: str = field(default="", metadata={
        "pattern": r"(([a-z0-9]([-a-z0-9]*[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?",
        "pattern_help": "must be a DNS name like 'digits.example.com' or '' for any host"})
    """The Ingress host for the nginx router ('' = any host)."""
    ingress_class: str = field(default="nginx", metadata=_LABEL)
    """The IngressClass of the nginx router's Ingress."""


@dataclass(frozen=True)
class ShutdownParams:
    """Pod termination: the preStop hook sleeps while the endpoints forget the pod, then the
    server drains (readiness 503, still answering) and lets in-flight requests finish."""

    pre_stop_seconds: int = field(default=5, metadata={"min": 0, "max": 300})
    """The preStop hook sleeps this long so the endpoints forget the pod before it drains."""
    drain_seconds: int = field(default=5, metadata={"min": 0, "max": 300})
    """The server answers with readiness 503 (and still serves) this long after SIGTERM."""
    grace_seconds: int = field(default=30, metadata={"min": 1, "max": 600})
    """The pod's terminationGracePeriodSeconds: the longest in-flight requests may take to
    finish."""


@dataclass(frozen=True)
class EnvironmentParams:
    """One environment: a namespace, a replica count and how Argo CD syncs it."""

    namespace: str = field(default="ml-serving", metadata=_LABEL)
    """The namespace the model is deployed to."""
    replicas: int = field(default=2, metadata={"min": 1, "max": 1000})
    """Pods of the Rollout."""
    sync: Literal["automated", "manual"] = "automated"
    """`automated`: Argo CD applies every commit; `manual`: a person syncs (production)."""
    prune: bool = True
    """Argo CD deletes objects that left the GitOps repository (automated sync)."""
    self_heal: bool = True
    """Argo CD reverts changes made in the cluster by hand (automated sync)."""
    cluster: str = field(default="https://kubernetes.default.svc", metadata=_URL)
    """The API server of the cluster the environment runs in."""


@dataclass(frozen=True)
class ArgoCDParams:
    """The Argo CD Application that follows the GitOps repository."""

    namespace: str = field(default="argocd", metadata=_LABEL)
    """The namespace Argo CD runs in (where the Application object lives)."""
    project: str = field(default="default", metadata=_LABEL)
    """The Argo CD project of the Application."""
    repo_url: str = field(default=DEFAULT_GITOPS_URL,
                          metadata={"pattern": r"[^\s\x00-\x1f\x7f]+",
                                    "pattern_help": "must be a git URL without spaces"})
    """The GitOps repository's URL, as Argo CD clones it."""
    target_revision: str = field(default="main", metadata={
        "pattern": r"[A-Za-z0-9._/\-]+", "pattern_help": "must be a branch, tag or commit"})
    """The branch, tag or commit of the GitOps repository Argo CD follows."""


def _default_environments() -> dict[str, EnvironmentParams]:
    return {"staging": EnvironmentParams(namespace="ml-staging", replicas=1),
            "production": EnvironmentParams(namespace="ml-production", replicas=3,
                                            sync="manual")}


def _default_steps() -> CanarySteps:
    return CanarySteps.from_params(
        [{"setWeight": 20}, {"pause": {"duration": "1m"}},
         {"analysis": {"templates": [{"templateName": n} for n in ANALYSIS_TEMPLATES]}},
         {"setWeight": 50}, {"pause": {"duration": "2m"}},
         {"analysis": {"templates": [{"templateName": n} for n in ANALYSIS_TEMPLATES]}},
         {"setWeight": 100}], "modelops.deploy.canary.steps", None)


@dataclass(frozen=True)
class CanaryParams:
    """The Argo Rollouts canary strategy."""

    steps: CanarySteps = field(default_factory=_default_steps)
    """The canary steps, in Argo's own spelling, one key per step (`- setWeight: 20`, `- pause:
    {duration: 1m}`, `- analysis: {templates: [{templateName: error-rate}]}`, `- setCanaryScale:
    {weight: 20}`); the last `setWeight` must be 100."""


@dataclass(frozen=True)
class DeployParams:
    """How a release becomes Argo Rollouts and Argo CD manifests in the GitOps repository."""

    image: str = DEFAULT_IMAGE
    """The serving runtime's container image (prefer a digest, `name@sha256:...`); `modelops-gitops
    release --image` overrides it."""
    port: int = field(default=8080, metadata={"min": 1, "max": 65535})
    """The port the serving runtime listens on in the pod."""
    # Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...) the
    # fetch-model init container gets as environment variables ("" = none: a public store or
    # the node's/IRSA credentials)
    artifact_credentials_secret: str = field(default="", metadata={
        "pattern": r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?)?",
        "pattern_help": "must be a Secret name (a DNS-1123 subdomain) or '' for none"})
    # the GitOps repository (git URL or path); "" = $GITOPS_REPO, else .gitops-remote/ here
    gitops_repo: str = field(default="", metadata={
        "pattern": r"[^\s\x00-\x1f\x7f]*", "pattern_help": "must be a git URL without spaces"})
    resources: Resources = field(default_factory=Resources)
    """Requests and limits of the serving container."""
    fetch_resources: Resources = field(default_factory=_fetch_resources)
    """Requests and limits of the fetch-model init container (download and sha256 check of the
    artifact)."""
    prometheus: PrometheusParams = field(default_factory=PrometheusParams)
    """The Prometheus the AnalysisTemplates query."""
    analysis: AnalysisParams = field(default_factory=AnalysisParams)
    """Thresholds and timing of the AnalysisTemplates that judge the canary."""
    traffic: TrafficParams = field(default_factory=TrafficParams)
    """How clients reach the model and how setWeight moves them (a Service over both
    ReplicaSets, or NGINX Ingress routing for exact weights)."""
    shutdown: ShutdownParams = field(default_factory=ShutdownParams)
    """Pod termination: the preStop sleep, the drain and the grace period."""
    canary: CanaryParams = field(default_factory=CanaryParams)
    """The Argo Rollouts canary strategy."""
    argocd: ArgoCDParams = field(default_factory=ArgoCDParams)
    """The Argo CD Application that syncs the GitOps repository."""
    environments: dict[str, EnvironmentParams] = field(default_factory=_default_environments)
    """The environments a release goes through (a folder each in the GitOps repository), by name."""

    def check(self, path: str, file: str | Path | None) -> None:
        problem = image_problem(self.image)
        if problem:
            raise ConfigError(file, f"{path}.image", self.image, problem)
        if not self.environments:
            raise ConfigError(file, f"{path}.environments", self.environments,
                              "must name at least one environment")
        seen: dict[tuple[str, str], str] = {}
        for name, env in self.environments.items():
            if not re.fullmatch(DNS1123_LABEL, name) or len(name) > 63:
                raise ConfigError(file, f"{path}.environments.{name}", name,
                                  _LABEL["pattern_help"])
            where = (env.cluster.rstrip("/"), env.namespace)
            if where in seen:
                raise ConfigError(
                    file, f"{path}.environments.{name}.namespace", env.namespace,
                    f"is also the namespace of environment {seen[where]!r} on the same "
                    "cluster: both would render the same Rollout, Services and "
                    "AnalysisTemplates, and each sync would overwrite the other",
                    hint="give each environment its own namespace (or cluster)")
            seen[where] = name
        scrape = parse_prom_duration(self.prometheus.scrape_interval)
        if parse_prom_duration(self.analysis.rate_window) < 4 * scrape:
            raise ConfigError(
                file, f"{path}.analysis.rate_window", str(self.analysis.rate_window),
                f"must span at least four scrapes ({path}.prometheus.scrape_interval is "
                f"{self.prometheus.scrape_interval}): a rate() over fewer samples is empty or "
                "noise, and every measurement would be Inconclusive or flap",
                hint="raise rate_window or lower scrape_interval")

    def placeholders(self, image: str | None = None) -> list[str]:
        """Warnings for the fields still at their placeholder defaults, which nothing in a real
        cluster can use (the serving image, the GitOps repository Argo CD syncs from);
        ``image``: the release's image when it overrides ``image``."""
        out = []
        if (image or self.image) == DEFAULT_IMAGE:
            out.append(f"modelops.deploy.image is the placeholder {DEFAULT_IMAGE!r}: the pods "
                       "will not pull it; set your serving image (or pass --image)")
        if self.argocd.repo_url == DEFAULT_GITOPS_URL:
            out.append(f"modelops.deploy.argocd.repo_url is the placeholder "
                       f"{DEFAULT_GITOPS_URL!r}: Argo CD will not find the manifests; set "
                       "your GitOps repository's URL")
        return out

    def environment(self, env: str, file: str | Path | None = "params.yaml") -> EnvironmentParams:
        """The named environment, or a ConfigError listing the known ones."""
        if env not in self.environments:
            raise ConfigError(file, "modelops.deploy.environments", env, "unknown environment",
                              hint=f"known environments: {', '.join(self.environments)}; "
                                   "add it under modelops.deploy.environments in params.yaml")
        return self.environments[env]
