"""``modelops.workflow``: how the pipeline runs on an Argo Workflows cluster."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from modelops.errors import ConfigError

_DNS_LABEL = {"pattern": r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
              "pattern_help": "must be a DNS-1123 label: lowercase letters, digits and '-'"}


_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")


_DURATION = re.compile(r"^[0-9]+(s|m|h)$")


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

    def check(self, path: str, file: object) -> None:
        for name in ("cpu", "memory"):
            value = getattr(self, name)
            if not _QUANTITY.match(value):
                raise ConfigError(file, f"{path}.{name}", value,
                                  "must be a Kubernetes quantity such as '500m', '2' or '4Gi'")


@dataclass(frozen=True)
class RetryParams:
    """How a failed task is retried (Argo's retryStrategy)."""

    limit: int = field(default=2, metadata={"min": 0})
    """Retries of a failed task."""
    backoff: str = "30s"
    """The first wait before a retry."""
    factor: int = field(default=2, metadata={"min": 1})
    """The wait grows by this factor each retry."""
    max_duration: str = "10m"
    """The longest wait between two retries."""

    def check(self, path: str, file: object) -> None:
        for name in ("backoff", "max_duration"):
            value = getattr(self, name)
            if not _DURATION.match(value):
                raise ConfigError(file, f"{path}.{name}", value,
                                  "must be a duration such as '30s', '5m' or '1h'")


@dataclass(frozen=True)
class WorkflowParams:
    """How the pipeline runs on an Argo Workflows cluster: one task per DVC stage."""

    namespace: str = field(default="ml-training", metadata=_DNS_LABEL)
    """The namespace the Argo Workflow runs in."""
    image: str = "ghcr.io/example/modelops-train:latest"
    """The container image of the CPU stages."""
    gpu_image: str = "ghcr.io/example/modelops-train:latest-cuda"
    """The container image of stages that ask for a GPU."""
    service_account: str = field(default="dvc-runner", metadata=_DNS_LABEL)
    """The service account of the workflow's pods."""
    source_repo: str = "https://github.com/example/model-repo.git"
    """The git repository the tasks clone (the model repository)."""
    dvc_remote: str = "s3"
    """The DVC remote the tasks pull from and push to."""
    credentials_secret: str = field(default="dvc-remote-credentials", metadata=_DNS_LABEL)
    """The Secret with the DVC remote's credentials."""
    active_deadline_seconds: int = field(default=7200, metadata={"min": 60})
    """The longest the whole workflow may run."""
    stage_deadline_seconds: int = field(default=3600, metadata={"min": 60})
    """The longest one stage's task may run."""
    retry: RetryParams = field(default_factory=RetryParams)
    """How a failed task is retried."""
    default_resources: StageResources = field(default_factory=StageResources)
    """Resources of a stage not listed in `stages`."""
    stages: dict[str, StageResources] = field(default_factory=dict)
    """Resources per DVC stage, by stage name."""
    kind: Literal["Workflow", "WorkflowTemplate"] = "Workflow"
    """Render a `Workflow` (runs once) or a `WorkflowTemplate` (submitted later)."""

