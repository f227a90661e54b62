"""``modelops.compile``: the compile step (TensorRT on GPU runners, ONNX Runtime elsewhere)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from modelops.errors import ConfigError

Precision = Literal["fp32", "fp16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class BatchProfile:
    """TensorRT optimisation profile of the dynamic batch axis: min <= opt <= max."""

    min: int = field(default=1, metadata={"min": 1})
    """The smallest batch the engine accepts."""
    opt: int = field(default=32, metadata={"min": 1})
    """The batch TensorRT optimises for."""
    max: int = field(default=128, metadata={"min": 1})
    """The largest batch the engine accepts (parity runs in batches of this size)."""

    def check(self, path: str, file: str | Path | None) -> None:
        if self.min > self.max:
            raise ConfigError(file, f"{path}.min", self.min,
                              f"must not exceed {path}.max ({self.max})",
                              hint="set min <= opt <= max")
        if not self.min <= self.opt <= self.max:
            raise ConfigError(file, f"{path}.opt", self.opt,
                              f"must lie between min ({self.min}) and max ({self.max})",
                              hint="set min <= opt <= max")


@dataclass(frozen=True)
class Calibration:
    """INT8 calibration: a seeded sample of the training split, in whole batches."""

    samples: int = field(default=512, metadata={"min": 1})
    """How many samples calibrate (at least one batch)."""
    batch_size: int = field(default=32, metadata={"min": 1})
    """Samples per calibration batch."""
    seed: int = 0
    """Seed of the sample drawn, so the same data calibrates the same way."""

    def check(self, path: str, file: str | Path | None) -> None:
        if self.samples < self.batch_size:
            raise ConfigError(file, f"{path}.samples", self.samples,
                              f"must be at least one batch ({path}.batch_size: "
                              f"{self.batch_size})")


@dataclass(frozen=True)
class Tolerance:
    """Parity of the compiled model against the ONNX Runtime reference on the test split.

    An element fails when ``|compiled - reference| > atol + rtol * |reference|`` (numpy's
    ``allclose`` rule); the gate also needs top-1 agreement and accuracy within the drop.
    """

    atol: float = field(default=1e-4, metadata={"min": 0.0})
    """Absolute tolerance of an output element (`|compiled - reference| <= atol + rtol *
    |reference|`)."""
    rtol: float = field(default=1e-3, metadata={"min": 0.0})
    """Relative tolerance of an output element."""
    min_top1_agreement: float = field(default=1.0, metadata={"min": 0.0, "max": 1.0})
    """The share of test samples whose top-1 class must agree with the reference."""
    max_accuracy_drop: float = field(default=0.0, metadata={"min": 0.0, "max": 1.0})
    """How much lower the compiled model's accuracy on the test data may be than the reference's."""


def _default_tolerances() -> dict[str, Tolerance]:
    return {
        "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_top1_agreement=1.0, max_accuracy_drop=0.0),
        "fp16": Tolerance(atol=2e-2, rtol=1e-2, min_top1_agreement=0.99,
                          max_accuracy_drop=0.01),
        "int8": Tolerance(atol=0.5, rtol=0.1, min_top1_agreement=0.97, max_accuracy_drop=0.02),
    }


@dataclass(frozen=True)
class Timing:
    """Latency of the ONNX artifact at the base and at the head of a pull request, measured in
    the same job on the same runner (``modelops-ci timing``), in interleaved rounds: the spread
    of the rounds is the noise band every figure is shown with."""

    batch_sizes: list[int] = field(default_factory=lambda: [1, 32], metadata={"min_items": 1})
    """The batch sizes timed (each at least 1)."""
    rounds: int = field(default=5, metadata={"min": 2})
    """Rounds, each timing the base and the head one after the other (the order alternates)."""
    runs: int = field(default=50, metadata={"min": 5})
    """Timed calls per revision, batch size and round."""
    warmup: int = field(default=5, metadata={"min": 0})
    """Untimed calls before each measurement."""
    max_slowdown: float | None = field(default=None, metadata={"gt": 1.0})
    """A gate: the pull request fails when the head's median latency is more than this many
    times the base's at a batch size in every round (so noise cannot fire it); ``null``
    judges nothing, the figures stay informational."""

    def check(self, path: str, file: str | Path | None) -> None:
        for i, size in enumerate(self.batch_sizes):
            if size < 1:
                raise ConfigError(file, f"{path}.batch_sizes[{i}]", size, "must be at least 1")


@dataclass(frozen=True)
class CompileParams:
    """The compile step: TensorRT on GPU runners, ONNX Runtime elsewhere, checked against the
    ONNX Runtime reference on the test data, and timed."""

    backend: Literal["auto", "tensorrt", "onnxruntime"] = "auto"
    """`auto` builds with TensorRT when the runner has it and a CUDA device, else with ONNX Runtime;
    `tensorrt` or `onnxruntime` force one (an unusable forced backend is an error)."""
    precision: Precision = "fp16"
    """The precision to build: TensorRT builds all three; ONNX Runtime builds fp32 or int8 (fp16
    falls back to fp32, noted in the report)."""
    input_name: str = "input"
    """The ONNX model's input tensor, whose first axis is the batch."""
    output_name: str = "logits"
    """The ONNX model's output tensor parity is checked on."""
    workspace_mb: int = field(default=1024, metadata={"min": 16})
    """TensorRT's builder workspace, in MiB."""
    batch_profile: BatchProfile = field(default_factory=BatchProfile)
    """TensorRT's optimisation profile for the dynamic batch axis."""
    batch_sizes: list[int] = field(default_factory=lambda: [1, 8, 32, 128],
                                   metadata={"min_items": 1})
    """The batch sizes latency and throughput are measured at (each inside the batch profile)."""
    warmup: int = field(default=10, metadata={"min": 0})
    """Untimed runs before each measurement."""
    runs: int = field(default=100, metadata={"min": 5})
    """Timed runs per batch size."""
    calibration: Calibration = field(default_factory=Calibration)
    """INT8 calibration samples, drawn from `modelops.model.calibration_data`."""
    tolerances: dict[str, Tolerance] = field(default_factory=_default_tolerances)
    """Parity of the compiled model against the ONNX Runtime reference, per precision (`fp32`,
    `fp16`, `int8`, all three required)."""
    section_file: str = ""
    """Where the compile step writes its report section (JSON), and where ``modelops-ci
    report`` picks it up: a DVC stage that compiles may list it as a metrics file ('' =
    ``reports/compile.json``, beside the report)."""
    timing: Timing = field(default_factory=Timing)
    """The base-against-head latency of the ONNX artifact on the pull request's runner."""

    def check(self, path: str, file: str | Path | None) -> None:
        for i, size in enumerate(self.batch_sizes):
            if not self.batch_profile.min <= size <= self.batch_profile.max:
                raise ConfigError(
                    file, f"{path}.batch_sizes[{i}]", size,
                    f"is outside the batch profile [{self.batch_profile.min}, "
                    f"{self.batch_profile.max}]",
                    hint=f"widen {path}.batch_profile or drop this batch size")
        for name in self.tolerances:
            if name not in PRECISIONS:
                raise ConfigError(file, f"{path}.tolerances.{name}", name,
                                  f"is not a precision; use one of {', '.join(PRECISIONS)}")
        for name in PRECISIONS:
            if name not in self.tolerances:
                raise ConfigError(file, f"{path}.tolerances", sorted(self.tolerances),
                                  f"has no entry for {name!r}",
                                  hint="give atol, rtol, min_top1_agreement and "
                                       "max_accuracy_drop for fp32, fp16 and int8")
