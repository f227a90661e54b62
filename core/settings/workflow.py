"""``modelops.workflow``: how the pipeline runs on an Argo Workflows cluster.

Images are pinned by digest (``name@sha256:<64 hex>``): a tag can move under a running
Workflow, and a retried task must run the same bits as its first attempt. The pod security
context matches the training image (``docker/train*.Dockerfile`` run as UID/GID 10001). GPU
stages (and the TensorRT compile stage) run on the GPU pool: they get its node selector and
tolerations. A sweep (``sweep.grid`` or ``sweep.points``) renders as one Workflow whose points
run in parallel and end in one comparison report and one pull request for the best point.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from modelops.errors import ConfigError

_DNS_LABEL = {"pattern": r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
              "pattern_help": "must be a DNS-1123 label: lowercase letters, digits and '-'"}
_OPTIONAL_DNS_LABEL = {"pattern": r"([a-z0-9]([-a-z0-9]*[a-z0-9])?)?",
                       "pattern_help": "must be a DNS-1123 label (lowercase letters, digits and "
                                       "'-') or ''"}

_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
_DURATION = re.compile(r"^[0-9]+(s|m|h)$")
IMAGE_BY_DIGEST = re.compile(r"^[a-z0-9]+([._/:-][a-z0-9]+)*(:[\w][\w.-]{0,127})?"
                             r"@sha256:[0-9a-f]{64}$")
_SWEEP_KEY = re.compile(r"^[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*|\[[0-9]+\])*$")


def check_image(file: object, path: str, value: str) -> None:
    """An image reference must carry its digest; '' is allowed (checked when rendering)."""
    if value and not IMAGE_BY_DIGEST.match(value):
        raise ConfigError(file, path, value,
                          "must be pinned by digest (name@sha256:<64 hex digits>), not a tag",
                          hint="a tag can move between retries of one task; get the digest "
                               "with `docker buildx imagetools inspect IMAGE:TAG` or "
                               "`crane digest IMAGE:TAG` and write IMAGE@sha256:...")


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration (``key``/``operator``/``value``/``effect``)."""

    key: str = ""
    """The taint key the toleration matches."""
    operator: Literal["Exists", "Equal"] = "Exists"
    """Equal (key and value match) or Exists (the key is enough)."""
    value: str = ""
    """The taint value (empty with Exists)."""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""
    """The taint effect matched (NoSchedule, PreferNoSchedule, NoExecute; empty = all)."""

    def check(self, path: str, file: object) -> None:
        if self.operator == "Exists" and self.value:
            raise ConfigError(file, f"{path}.value", self.value,
                              "must be empty when operator is 'Exists'")

    def as_k8s(self) -> dict[str, str]:
        out = {"key": self.key, "operator": self.operator, "value": self.value,
               "effect": self.effect}
        return {k: v for k, v in out.items() if v}


@dataclass(frozen=True)
class StageResources:
    """Resources of one stage's task."""

    cpu: str = "1"
    """CPU of the task, as a Kubernetes quantity."""
    memory: str = "2Gi"
    """Memory of the task, as a Kubernetes quantity."""
    gpu: int = field(default=0, metadata={"min": 0})
    """NVIDIA GPUs of the task (`nvidia.com/gpu`); a GPU stage runs the GPU image."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Node labels the task's pod must run on."""
    tolerations: list[Toleration] = field(default_factory=list)
    """Taints of the nodes the task's pod tolerates."""

    def check(self, path: str, file: object) -> None:
        for name in ("cpu", "memory"):
            value = getattr(self, name)
            if not _QUANTITY.match(value):
                raise ConfigError(file, f"{path}.{name}", value,
                                  "must be a Kubernetes quantity such as '500m', '2' or '4Gi'")


def _gpu_tolerations() -> list[Toleration]:
    return [Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")]


@dataclass(frozen=True)
class GpuPool:
    """Where GPU stages run: the node selector and tolerations of the GPU node pool."""

    node_selector: dict[str, str] = field(
        default_factory=lambda: {"nvidia.com/gpu.present": "true"})
    """Node labels of the GPU node pool."""
    tolerations: list[Toleration] = field(default_factory=_gpu_tolerations)
    """Taints of the GPU node pool that GPU tasks tolerate."""


@dataclass(frozen=True)
class RetryParams:
    """Retries for transient failures only: a pod that errored (evicted, node lost, the
    artifact driver failed) or a task that exited with one of ``transient_exit_codes`` (the
    task runner exits 75 when the network or a remote failed). A stage that fails for its own
    reasons is deterministic and is not run again."""

    limit: int = field(default=2, metadata={"min": 0})
    """Retries of a failed task."""
    backoff: str = "30s"
    """The first wait before a retry."""
    factor: int = field(default=2, metadata={"min": 1})
    """The wait grows by this factor each retry."""
    max_duration: str = "10m"
    """The longest wait between two retries."""
    transient_exit_codes: list[int] = field(default_factory=lambda: [75])
    """Exit codes that mean a transient failure (the task runner exits 75 when the network or a
    remote failed); only these and pod errors are retried."""

    def check(self, path: str, file: object) -> None:
        for name in ("backoff", "max_duration"):
            value = getattr(self, name)
            if not _DURATION.match(value):
                raise ConfigError(file, f"{path}.{name}", value,
                                  "must be a duration such as '30s', '5m' or '1h'")
        for i, code in enumerate(self.transient_exit_codes):
            if not 1 <= code <= 255:
                raise ConfigError(file, f"{path}.transient_exit_codes[{i}]", code,
                                  "must be an exit code from 1 to 255")

    @property
    def expression(self) -> str:
        codes = ", ".join(str(c) for c in self.transient_exit_codes)
        failed = (f' || (lastRetry.status == "Failed" && asInt(lastRetry.exitCode) in [{codes}])'
                  if codes else "")
        return f'lastRetry.status == "Error"{failed}'


@dataclass(frozen=True)
class TtlParams:
    """How long finished Workflows stay (``spec.ttlStrategy``), in seconds."""

    seconds_after_success: int = field(default=86400, metadata={"min": 0})
    """Seconds a succeeded Workflow stays."""
    seconds_after_failure: int = field(default=604800, metadata={"min": 0})
    """Seconds a failed Workflow stays (longer, to debug it)."""


@dataclass(frozen=True)
class PullRequestParams:
    """The pull request the Workflow's last task opens with the new ``dvc.lock`` and the
    git-tracked outputs (``cache: false`` metrics, compute records, the card, plots)."""

    enabled: bool = True
    """Open the pull request (false: push the branch only)."""
    base: str = "main"
    """The branch the pull request targets."""
    branch_prefix: str = "train/"
    """The prefix of the branch the Workflow pushes (<prefix><model>-<workflow>)."""
    # OWNER/NAME on GitHub ('' = taken from source_repo when it is a github.com URL)
    github_repo: str = ""
    github_api_url: str = "https://api.github.com"
    """The GitHub API the pull request is opened through."""
    # a Secret with key `token`: a token that may open pull requests (pull-requests: write)
    token_secret: str = field(default="modelops-github-token", metadata=_DNS_LABEL)
    author_name: str = "modelops-workflow"
    """The author of the commit the Workflow makes."""
    author_email: str = "modelops-workflow@users.noreply.github.com"
    """The author's e-mail of the commit the Workflow makes."""


def _check_value(file: object, path: str, value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(file, path, value, "must be a finite number (not .nan or .inf)")
    if not isinstance(value, (str, int, float, bool)):
        raise ConfigError(file, path, value, "must be a string, a number or true/false")


@dataclass(frozen=True)
class SweepParams:
    """A parameter sweep: ``grid`` (every combination of the listed values) or ``points``
    (an explicit list of parameter sets). Keys are dotted paths of the pipeline's own
    ``params.yaml`` sections (``train.learning_rate``), as ``dvc exp run -S`` takes them."""

    grid: dict[str, list[Any]] = field(default_factory=dict)
    """Every combination of the listed values, by parameter (dotted path)."""
    points: list[dict[str, Any]] = field(default_factory=list)
    """An explicit list of parameter sets."""
    max_points: int = field(default=64, metadata={"min": 1, "max": 1000})
    """The most points a sweep may have (a guard against a grid that explodes)."""

    def check(self, path: str, file: object) -> None:
        if self.grid and self.points:
            raise ConfigError(file, f"{path}.points", self.points,
                              "give either grid or points, not both")
        keys = [(f"{path}.grid.{k}", k) for k in self.grid]
        for i, point in enumerate(self.points):
            if not point:
                raise ConfigError(file, f"{path}.points[{i}]", point, "must set a parameter")
            keys += [(f"{path}.points[{i}].{k}", k) for k in point]
        for where, key in keys:
            if not _SWEEP_KEY.match(key) or key.split(".")[0] == "modelops":
                raise ConfigError(file, where, key,
                                  "must be a dotted path of a pipeline parameter "
                                  "(not of the modelops section)")
        for key, values in self.grid.items():
            if not values:
                raise ConfigError(file, f"{path}.grid.{key}", values, "must list a value")
            for j, v in enumerate(values):
                _check_value(file, f"{path}.grid.{key}[{j}]", v)
        for i, point in enumerate(self.points):
            for key, v in point.items():
                _check_value(file, f"{path}.points[{i}].{key}", v)
        n = len(self.expand())
        if n > self.max_points:
            raise ConfigError(file, path, f"{n} points",
                              f"is more than max_points ({self.max_points})")

    def expand(self) -> list[dict[str, Any]]:
        """The sweep's points, in order: the grid's product (keys in their order) or the list."""

        if self.points:
            return [dict(p) for p in self.points]
        if not self.grid:
            return []
        keys = list(self.grid)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(self.grid[k] for k in keys))]


@dataclass(frozen=True)
class WorkflowParams:
    """How the pipeline runs on an Argo Workflows cluster: one task per DVC stage."""

    namespace: str = field(default="ml-training", metadata=_DNS_LABEL)
    """The namespace the Argo Workflow runs in."""
    image: str = ""
    """The training images, by digest ('' gpu_image = image)."""
    gpu_image: str = ""
    """The container image of stages that ask for a GPU."""
    service_account: str = field(default="dvc-runner", metadata=_DNS_LABEL)
    """The service account of the workflow's pods."""
    source_repo: str = "https://github.com/example/model-repo.git"
    """The git repository the tasks clone (the model repository)."""
    git_credentials_secret: str = field(default="", metadata=_OPTIONAL_DNS_LABEL)
    """A Secret with keys `username` and `password` (a token) for a private source repository
    ('' = a public one): the git artifact reads it, and the last task's push reads it as mounted
    files through a credential helper, never from a command line."""
    dvc_remote: str = ""
    """The DVC remote the tasks share ('' = the default remote of .dvc/config)."""
    credentials_secret: str = field(default="dvc-remote-credentials",
                                    metadata=_OPTIONAL_DNS_LABEL)
    """A Secret whose keys become the tasks' environment (AWS_ACCESS_KEY_ID ...; '' = none)."""
    run_as_user: int = field(default=10001, metadata={"min": 1})
    """The training image's user (docker/train*.Dockerfile); the pods run as it."""
    run_as_group: int = field(default=10001, metadata={"min": 1})
    """The training image's group; the pods run as it."""
    fs_group: int = field(default=10001, metadata={"min": 1})
    """The pods' fsGroup, so mounted volumes are writable by the image's user."""
    active_deadline_seconds: int = field(default=7200, metadata={"min": 60})
    """The longest the whole workflow may run."""
    stage_deadline_seconds: int = field(default=3600, metadata={"min": 60})
    """The longest one stage's task may run."""
    parallelism: int = field(default=4, metadata={"min": 1})
    """The most tasks of one Workflow running at once."""
    retry: RetryParams = field(default_factory=RetryParams)
    """How a failed task is retried."""
    ttl: TtlParams = field(default_factory=TtlParams)
    """How long finished Workflows stay (spec.ttlStrategy)."""
    pod_gc: Literal["OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion",
                    "OnWorkflowSuccess"] = "OnPodSuccess"
    """When Argo deletes the pods of finished tasks (spec.podGC.strategy)."""
    mutex: bool = True
    """One Workflow per model at a time (spec.synchronization mutex)."""
    default_resources: StageResources = field(default_factory=StageResources)
    """Resources of a stage not listed in `stages`."""
    stages: dict[str, StageResources] = field(default_factory=dict)
    """Resources per DVC stage, by stage name."""
    gpu_pool: GpuPool = field(default_factory=GpuPool)
    """Where GPU stages run: the node selector and tolerations of the GPU node pool."""
    compile_stage: str = ""
    """The stage that builds TensorRT engines ('' = the stage whose command runs `modelops-ci
    compile`); it runs on the GPU pool unless modelops.compile.backend is onnxruntime."""
    compile_resources: StageResources = field(
        default_factory=lambda: StageResources(cpu="2", memory="8Gi", gpu=1))
    """Resources of the compile stage when it builds TensorRT engines on the GPU pool."""
    pull_request: PullRequestParams = field(default_factory=PullRequestParams)
    """Where the last task proposes the result: base branch, branch prefix, repository."""
    sweep: SweepParams = field(default_factory=SweepParams)
    """A parameter sweep: a grid or a list of points, each a full pipeline run, compared by the
    headline metric."""
    kind: Literal["Workflow", "WorkflowTemplate"] = "Workflow"
    """Render a `Workflow` (runs once) or a `WorkflowTemplate` (submitted later)."""

    def check(self, path: str, file: object) -> None:
        check_image(file, f"{path}.image", self.image)
        check_image(file, f"{path}.gpu_image", self.gpu_image)
