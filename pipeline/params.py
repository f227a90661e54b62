"""Typed sections of params.yaml owned by the example pipeline (see ci.config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ci.errors import ConfigError
from ci.gates import MetricGate, default_gates

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
    # Fresh labelled data (CSV files with the raw header) appended to the data set, kept in
    # git (small labelled batches). `python -m ci retrain` adds files here.
    incoming: str = "data/incoming"


@dataclass(frozen=True)
class PrepareParams:
    seed: int = 42
    val_fraction: float = field(default=0.15, metadata={"gt": 0.0, "max": 0.5})
    test_fraction: float = field(default=0.15, metadata={"gt": 0.0, "max": 0.5})

    def check(self, path: str, file: str | Path | None) -> None:
        if self.val_fraction + self.test_fraction > 0.8:
            raise ConfigError(file, f"{path}.val_fraction", self.val_fraction,
                              f"val_fraction + test_fraction must be at most 0.8 (test_fraction "
                              f"is {self.test_fraction}); lower one of them")


@dataclass(frozen=True)
class TrainParams:
    seed: int = 0
    epochs: int = field(default=30, metadata={"min": 1})
    batch_size: int = field(default=64, metadata={"min": 1})
    learning_rate: float = field(default=0.002, metadata={"gt": 0.0})
    weight_decay: float = field(default=0.0001, metadata={"min": 0.0})
    channels: int = field(default=16, metadata={"min": 1})
    dropout: float = field(default=0.1, metadata={"min": 0.0, "max": 0.9})
    threads: int = field(default=1, metadata={"min": 1})


@dataclass(frozen=True)
class ExportParams:
    opset: int = field(default=17, metadata={"min": 7})
    max_abs_diff: float = field(default=1e-4, metadata={"min": 0.0})
    min_top1_agreement: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})


@dataclass(frozen=True)
class EvaluateParams:
    latency_batches: list[int] = field(default_factory=lambda: [1, 32])
    latency_runs: int = field(default=200, metadata={"min": 10})
    gates: dict[str, MetricGate] = field(default_factory=default_gates)  # see ci/gates.py

    def check(self, path: str, file: str | Path | None) -> None:
        for i, batch in enumerate(self.latency_batches):
            if batch < 1:
                raise ConfigError(file, f"{path}.latency_batches[{i}]", batch,
                                  "must be at least 1")
        missing = [b for b in (1, 32) if b not in self.latency_batches]
        if missing:
            raise ConfigError(file, f"{path}.latency_batches", self.latency_batches,
                              f"must include {missing} (metrics.json reports batch 1 and 32); "
                              "add them to the list")
