"""Typed sections of params.yaml owned by the example pipeline (see modelops.settings)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from modelops.errors import ConfigError
from modelops.settings import Settings, parse_settings
from modelops.settings.loader import closest, convert
from modelops.yamlio import load_yaml_file


@dataclass(frozen=True)
class IngestParams:
    dataset: Literal["sklearn-digits"] = "sklearn-digits"
    # Fresh labelled data (CSV files with the raw header) appended to the data set, kept in
    # git (small labelled batches). `modelops-ci retrain` adds files here.
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
    drift_bins: int = field(default=10, metadata={"min": 2, "max": 50})  # per pixel, quantiles


# this pipeline's sections -> their dataclasses
SECTIONS: dict[str, type] = {
    "ingest": IngestParams,
    "prepare": PrepareParams,
    "train": TrainParams,
    "export": ExportParams,
    "evaluate": EvaluateParams,
}


@dataclass(frozen=True)
class Params:
    """The pipeline's sections, typed, and the suite's settings (``suite``) beside them."""

    sections: dict[str, Any]
    suite: Settings
    file: str = "params.yaml"

    def __getattr__(self, name: str) -> Any:
        sections = object.__getattribute__(self, "sections")
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    @property
    def model(self) -> Any:
        return self.suite.model


def parse_params(raw: Any, file: str | Path = "params.yaml") -> Params:
    suite = parse_settings(raw, file)
    known = {*SECTIONS, "modelops"}
    for key in raw:
        if key not in known:
            near = closest(str(key), known)
            raise ConfigError(file, str(key), raw[key], "unknown section",
                              hint=(f"did you mean {near!r}? " if near else "")
                              + f"known sections: {', '.join(sorted(known))}")
    sections = {name: convert(tp, raw.get(name), name, file) for name, tp in SECTIONS.items()}
    return Params(sections=sections, suite=suite, file=str(file))


def load_params(path: str | Path = "params.yaml") -> Params:
    return parse_params(load_yaml_file(path), path)
