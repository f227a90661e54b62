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
    cpu: str = "1"
    memory: str = "2Gi"
    gpu: int = field(default=0, metadata={"min": 0})
    node_selector: dict[str, str] = field(default_factory=dict)

    def check(self, path: str, file: object) -> None:
        for name in ("cpu", "memory"):
            value = getattr(self, name)
            if not _QUANTITY.match(value):
                raise ConfigError(file, f"{path}.{name}", value,
                                  "must be a Kubernetes quantity such as '500m', '2' or '4Gi'")


@dataclass(frozen=True)
class RetryParams:
    limit: int = field(default=2, metadata={"min": 0})
    backoff: str = "30s"
    factor: int = field(default=2, metadata={"min": 1})
    max_duration: str = "10m"

    def check(self, path: str, file: object) -> None:
        for name in ("backoff", "max_duration"):
            value = getattr(self, name)
            if not _DURATION.match(value):
                raise ConfigError(file, f"{path}.{name}", value,
                                  "must be a duration such as '30s', '5m' or '1h'")


@dataclass(frozen=True)
class WorkflowParams:
    """params.yaml ``workflow``: how the pipeline runs on an Argo Workflows cluster."""

    namespace: str = field(default="ml-training", metadata=_DNS_LABEL)
    image: str = "ghcr.io/example/modelops-train:latest"
    gpu_image: str = "ghcr.io/example/modelops-train:latest-cuda"
    service_account: str = field(default="dvc-runner", metadata=_DNS_LABEL)
    source_repo: str = "https://github.com/example/model-repo.git"
    dvc_remote: str = "s3"
    credentials_secret: str = field(default="dvc-remote-credentials", metadata=_DNS_LABEL)
    active_deadline_seconds: int = field(default=7200, metadata={"min": 60})
    stage_deadline_seconds: int = field(default=3600, metadata={"min": 60})
    retry: RetryParams = field(default_factory=RetryParams)
    default_resources: StageResources = field(default_factory=StageResources)
    stages: dict[str, StageResources] = field(default_factory=dict)
    kind: Literal["Workflow", "WorkflowTemplate"] = "Workflow"

