"""The compiler backend protocol and the one registry of backends.

A backend turns ``model.onnx`` into an artifact (an optimised ONNX model, a TensorRT engine) and
loads that artifact back as a :class:`Runner`. A new backend is one module plus one entry in
:data:`BACKENDS`; the entry's key is also what ``params.yaml`` ``compile.backend`` accepts.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from modelops.settings.compile import CompileParams

Log = Callable[[str], None]


class Runner(Protocol):
    """A loaded model: host arrays in, host arrays out (copies included in timings)."""

    description: str

    def infer(self, x: np.ndarray) -> np.ndarray: ...


@dataclass
class BuildResult:
    """What :meth:`Backend.build` produced inside its work directory."""

    artifact: Path                     # the file a runner loads (engine or optimised model)
    precision: str                     # the precision actually built
    build_seconds: float
    metadata: dict[str, Any] = field(default_factory=dict)  # sidecar / provider details
    extra_files: list[Path] = field(default_factory=list)   # sidecar, caches, ...


class Backend(Protocol):
    name: str

    def unavailable_reason(self) -> str | None:
        """``None`` when this runner can build with the backend, else why not (for the report),
        e.g. ``"tensorrt not installed"`` or ``"no CUDA device"``."""

    def build(self, model: Path, workdir: Path, cache_dir: Path, params: CompileParams,
              precision: str, calibration: list[np.ndarray] | None, log: Log) -> BuildResult:
        """Build into ``workdir`` (a fresh directory). ``cache_dir`` persists between runs
        (timing and calibration caches) and is never part of the artifact."""

    def load(self, artifact: Path, params: CompileParams) -> Runner: ...


# backend name -> "module:attribute" (imported lazily: tensorrt is an optional dependency)
BACKENDS: dict[str, str] = {
    "tensorrt": "modelops.ci.compile.tensorrt:TensorRTBackend",
    "onnxruntime": "modelops.ci.compile.onnxruntime:OnnxRuntimeBackend",
}

# Order in which ``backend: auto`` tries them: the first available one wins.
AUTO_ORDER: tuple[str, ...] = ("tensorrt", "onnxruntime")


def get_backend(name: str) -> Backend:
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)()


def choose_backend(requested: str,
                   reasons: dict[str, str | None] | None = None) -> tuple[str, dict[str, str]]:
    """Resolve ``auto|tensorrt|onnxruntime`` to a backend name.

    Returns the chosen name and, for each backend that could not be used, why not (for the
    report). ``reasons`` (name -> unavailable reason) may be given to avoid probing; tests use it.
    An explicitly requested backend that is unavailable is an error raised by the caller.
    """
    if reasons is None:
        reasons = {name: get_backend(name).unavailable_reason() for name in AUTO_ORDER}
    skipped = {name: why for name, why in reasons.items() if why}
    if requested != "auto":
        return requested, skipped
    for name in AUTO_ORDER:
        if not reasons.get(name):
            return name, skipped
    raise RuntimeError("onnxruntime must always be available")  # pragma: no cover
