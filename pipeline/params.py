"""Typed sections of params.yaml owned by the example pipeline (see ci.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

_NAME = {"pattern": r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
         "pattern_help": "must be a DNS-1123 label: lowercase letters, digits and '-'"}


@dataclass(frozen=True)
class ModelParams:
    name: str = field(default="digits-cnn", metadata=_NAME)
    description: str = "Small CNN classifying 8x8 handwritten digits"
    team: str = field(default="ml-platform", metadata=_NAME)


@dataclass(frozen=True)
class IngestParams:
    dataset: Literal["sklearn-digits"] = "sklearn-digits"


@dataclass(frozen=True)
class PrepareParams:
    seed: int = 42
    val_fraction: float = field(default=0.15, metadata={"gt": 0.0, "max": 0.5})
    test_fraction: float = field(default=0.15, metadata={"gt": 0.0, "max": 0.5})


@dataclass(frozen=True)
class TrainParams:
    seed: int = 0
    epochs: int = field(default=30, metadata={"min": 1})
    batch_size: int = field(default=64, metadata={"min": 1})
    learning_rate: float = field(default=0.002, metadata={"gt": 0.0})
    weight_decay: float = field(default=0.0001, metadata={"min": 0.0})
    channels: int = field(default=16, metadata={"min": 1})
    dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9})


@dataclass(frozen=True)
class ExportParams:
    opset: int = field(default=17, metadata={"min": 7})
    max_abs_diff: float = field(default=1e-4, metadata={"gt": 0.0})
    min_top1_agreement: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})


@dataclass(frozen=True)
class EvaluateParams:
    latency_batches: list[int] = field(default_factory=lambda: [1, 32])
    latency_runs: int = field(default=200, metadata={"min": 10})
