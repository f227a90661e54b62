"""``modelops.model`` and ``modelops.steps``: how a model repository describes itself.

Everything the suite would otherwise have to assume about a repository is said here, once:
the model's name, its metrics files (any number, any path, git- or DVC-tracked), the headline
metrics and which direction is better, its plot files, the deployable artifact (optional), the
data the compile step checks parity and latency on (optional), and the model card (optional,
with a built-in default template). ``steps`` turns parts of the pull-request and release path
off; a step that does not apply is reported as ``skipped: <reason>``, never as a failure.

Empty lists and strings mean "ask DVC": ``metrics: []`` takes every metrics file ``dvc.yaml``
declares, ``plots: []`` every plots file, ``artifact.stage: ''`` the stage that outputs
``artifact.path`` in ``dvc.lock``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from modelops.errors import ConfigError

DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_NAME = {"pattern": DNS1123_LABEL,
         "pattern_help": "must be a DNS-1123 label: lowercase letters, digits and '-', "
                         "starting and ending with a letter or digit"}
_TEAM = {"pattern": f"({DNS1123_LABEL})?",
         "pattern_help": "must be a DNS-1123 label (lowercase letters, digits and '-') or ''"}


def _relative(file: str | Path | None, path: str, value: str) -> None:
    """Paths in the settings are relative to the repository root and stay inside it."""
    if not value:
        return
    p = Path(value)
    if p.is_absolute() or ".." in p.parts:
        raise ConfigError(file, path, value,
                          "must be a path relative to the repository root, inside it")


@dataclass(frozen=True)
class ArtifactSettings:
    """The deployable model: an ONNX file produced by a DVC stage. ``path: ''`` = none."""

    path: str = ""
    stage: str = ""

    def check(self, path: str, file: str | Path | None) -> None:
        _relative(file, f"{path}.path", self.path)
        if self.path and not self.path.endswith(".onnx"):
            raise ConfigError(file, f"{path}.path", self.path,
                              "must be an ONNX file (*.onnx); leave it '' when the model has none",
                              hint="the compile step and the release need an ONNX model")


@dataclass(frozen=True)
class CardSettings:
    """The model card: rendered from ``template`` (``''`` = the suite's built-in template)."""

    template: str = ""
    path: str = ""          # '' = model-cards/<model name>.md
    stage: str = ""         # the dvc stage that writes the card ('' = rendered by CI only)

    def check(self, path: str, file: str | Path | None) -> None:
        _relative(file, f"{path}.template", self.template)
        _relative(file, f"{path}.path", self.path)


@dataclass(frozen=True)
class ModelSettings:
    name: str = field(default="", metadata=_NAME)
    description: str = ""
    team: str = field(default="", metadata=_TEAM)
    # metrics files, the first one primary ('' list = every metrics file in dvc.yaml)
    metrics: list[str] = field(default_factory=list)
    # headline metrics (dotted paths, optionally "file:path") and the direction that is better
    headline: dict[str, Literal["higher", "lower"]] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    artifact: ArtifactSettings = field(default_factory=ArtifactSettings)
    # an .npz with arrays x (inputs) and y (labels) for parity and latency ('' = none)
    test_data: str = ""
    # an .npz with x for int8 calibration ('' = test_data)
    calibration_data: str = ""
    # the training-time baseline the serving runtime measures drift against ('' = none)
    drift_baseline: str = ""
    card: CardSettings = field(default_factory=CardSettings)

    def check(self, path: str, file: str | Path | None) -> None:
        if not self.name:
            raise ConfigError(file, f"{path}.name", self.name, "required: the model's name",
                              hint="a DNS-1123 label such as 'fraud-scorer'; it names the "
                                   "manifests, the metrics labels and the card")
        for key in ("metrics", "plots"):
            for i, value in enumerate(getattr(self, key)):
                _relative(file, f"{path}.{key}[{i}]", value)
        for key in ("test_data", "calibration_data", "drift_baseline"):
            _relative(file, f"{path}.{key}", getattr(self, key))

    @property
    def card_path(self) -> str:
        return self.card.path or f"model-cards/{self.name}.md"


@dataclass(frozen=True)
class StepSettings:
    """Which parts of the suite apply to this repository."""

    card: bool = True
    compile: bool = True
    deploy: bool = True
