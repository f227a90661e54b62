"""``modelops.workflow``: how the pipeline runs on an Argo Workflows cluster.

Images are pinned by digest (``name@sha256:<64 hex>``): a tag can move under a running
Workflow, and a retried task must run the same bits as its first attempt. The pod security
context matches the training image (``docker/train*.Dockerfile`` run as UID/GID 10001). GPU
stages (and the TensorRT compile stage) run on the GPU pool: they get its node selector and
tolerations. A sweep (``sweep.grid`` or ``sweep.points``) renders as one Workflow whose points
run in parallel and end in one comparison report and one pull request for the best point.
"""

from __future__ import annotations

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
    operator: Literal["Exists", "Equal"] = "Exists"
    value: str = ""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] = ""

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
    cpu: str = "1"
    memory: str = "2Gi"
    gpu: int = field(default=0, metadata={"min": 0})
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Toleration] = field(default_factory=list)

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
    tolerations: list[Toleration] = field(default_factory=_gpu_tolerations)


@dataclass(frozen=True)
class RetryParams:
    """Retries for transient failures only: a pod that errored (evicted, node lost, the
    artifact driver failed) or a task that exited with one of ``transient_exit_codes`` (the
    task runner exits 75 when the network or a remote failed). A stage that fails for its own
    reasons is deterministic and is not run again."""

    limit: int = field(default=2, metadata={"min": 0})
    backoff: str = "30s"
    factor: int = field(default=2, metadata={"min": 1})
    max_duration: str = "10m"
    transient_exit_codes: list[int] = field(default_factory=lambda: [75])

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
    seconds_after_failure: int = field(default=604800, metadata={"min": 0})


@dataclass(frozen=True)
class PullRequestParams:
    """The pull request the Workflow's last task opens with the new ``dvc.lock`` and the
    git-tracked outputs (``cache: false`` metrics, compute records, the card, plots)."""

    enabled: bool = True
    base: str = "main"
    branch_prefix: str = "train/"
    # OWNER/NAME on GitHub ('' = taken from source_repo when it is a github.com URL)
    github_repo: str = ""
    github_api_url: str = "https://api.github.com"
    # a Secret with key `token`: a token that may open pull requests (pull-requests: write)
    token_secret: str = field(default="modelops-github-token", metadata=_DNS_LABEL)
    author_name: str = "modelops-workflow"
    author_email: str = "modelops-workflow@users.noreply.github.com"


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
    points: list[dict[str, Any]] = field(default_factory=list)
    max_points: int = field(default=64, metadata={"min": 1, "max": 1000})

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
        import itertools

        if self.points:
            return [dict(p) for p in self.points]
        if not self.grid:
            return []
        keys = list(self.grid)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(self.grid[k] for k in keys))]


@dataclass(frozen=True)
class WorkflowParams:
    """params.yaml ``workflow``: how the pipeline runs on an Argo Workflows cluster."""

    namespace: str = field(default="ml-training", metadata=_DNS_LABEL)
    # the training images, by digest ('' gpu_image = image)
    image: str = ""
    gpu_image: str = ""
    service_account: str = field(default="dvc-runner", metadata=_DNS_LABEL)
    source_repo: str = "https://github.com/example/model-repo.git"
    # a Secret with keys `username` and `password` (a token) for a private source repository
    # ('' = a public one): the git artifact reads it, and the last task's push reads it as
    # mounted files through a credential helper, never from a command line
    git_credentials_secret: str = field(default="", metadata=_OPTIONAL_DNS_LABEL)
    # the DVC remote the tasks share ('' = the default remote of .dvc/config)
    dvc_remote: str = ""
    # a Secret whose keys become the tasks' environment (AWS_ACCESS_KEY_ID ...; '' = none)
    credentials_secret: str = field(default="dvc-remote-credentials",
                                    metadata=_OPTIONAL_DNS_LABEL)
    # the training image's user (docker/train*.Dockerfile); the pods run as it
    run_as_user: int = field(default=10001, metadata={"min": 1})
    run_as_group: int = field(default=10001, metadata={"min": 1})
    fs_group: int = field(default=10001, metadata={"min": 1})
    active_deadline_seconds: int = field(default=7200, metadata={"min": 60})
    stage_deadline_seconds: int = field(default=3600, metadata={"min": 60})
    parallelism: int = field(default=4, metadata={"min": 1})
    retry: RetryParams = field(default_factory=RetryParams)
    ttl: TtlParams = field(default_factory=TtlParams)
    pod_gc: Literal["OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion",
                    "OnWorkflowSuccess"] = "OnPodSuccess"
    # one Workflow per model at a time (spec.synchronization mutex)
    mutex: bool = True
    default_resources: StageResources = field(default_factory=StageResources)
    stages: dict[str, StageResources] = field(default_factory=dict)
    gpu_pool: GpuPool = field(default_factory=GpuPool)
    # the stage that builds TensorRT engines ('' = the stage whose command runs
    # `modelops-ci compile`); it runs on the GPU pool unless modelops.compile.backend is
    # onnxruntime
    compile_stage: str = ""
    compile_resources: StageResources = field(
        default_factory=lambda: StageResources(cpu="2", memory="8Gi", gpu=1))
    pull_request: PullRequestParams = field(default_factory=PullRequestParams)
    sweep: SweepParams = field(default_factory=SweepParams)
    kind: Literal["Workflow", "WorkflowTemplate"] = "Workflow"

    def check(self, path: str, file: object) -> None:
        check_image(file, f"{path}.image", self.image)
        check_image(file, f"{path}.gpu_image", self.gpu_image)
