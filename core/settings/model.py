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
from typing import Any, Literal

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
    """The ONNX file that is compiled and released ('' = the model has none: compile and
    deploy are skipped with that reason)."""
    stage: str = ""
    """The DVC stage that outputs it ('' = the stage whose ``dvc.lock`` outputs hold
    ``path``)."""

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
    """A Jinja2 template for the card, relative to the repository root ('' = the suite's
    built-in template, so a repository without one still gets a card)."""
    path: str = ""
    """Where the card is written ('' = ``model-cards/<model name>.md``)."""
    stage: str = ""
    """The DVC stage that writes the card ('' = none: the pull request's job renders it). With
    a stage, the card shows only what that stage declares as ``deps`` and ``params``."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """Hugging Face model card metadata for the front matter (``license``, ``pipeline_tag``,
    ``tags``, ``datasets``, ``library_name`` ...). With ``pipeline_tag`` and ``datasets`` set,
    a ``model-index`` of the headline metrics is added."""

    def check(self, path: str, file: str | Path | None) -> None:
        _relative(file, f"{path}.template", self.template)
        _relative(file, f"{path}.path", self.path)
        if "model-index" in self.metadata:
            raise ConfigError(file, f"{path}.metadata.model-index", self.metadata["model-index"],
                              "is written by the suite from the headline metrics",
                              hint="remove it; set pipeline_tag and datasets instead")


@dataclass(frozen=True)
class ModelSettings:
    """The model, as the suite needs to know it. Only ``name`` is required."""

    name: str = field(default="", metadata=_NAME)
    """The model's name: it names the manifests, the metrics labels, the card and the sticky
    comment (required)."""
    description: str = ""
    """One line about the model (shown on the card)."""
    team: str = field(default="", metadata=_TEAM)
    """The team that owns it (shown on the card and in the report)."""
    metrics: list[str] = field(default_factory=list)
    """Metrics files (JSON, YAML or TOML, git- or DVC-tracked), read at the base and the head
    of a pull request; the first is the primary one of the comment ([] = every metrics file
    ``dvc.yaml`` declares, in its order)."""
    headline: dict[str, Literal["higher", "lower"]] = field(default_factory=dict)
    """The metrics that summarise the model, each with the direction that is better: they lead
    the comment (with better/worse deltas) and the card. A name is a dotted path into a metrics
    file (``per_class.3.f1``), optionally qualified by the file (``eval/metrics.json:auc``)."""
    plots: list[str] = field(default_factory=list)
    """Plot files (CSV, TSV, JSON or YAML rows, or images) drawn for the pull request, with
    their ``dvc.yaml`` plot definitions ([] = every plot ``dvc.yaml`` declares)."""
    artifact: ArtifactSettings = field(default_factory=ArtifactSettings)
    """The deployable ONNX model (optional)."""
    test_data: str = ""
    """An ``.npz`` with arrays ``x`` (inputs) and ``y`` (labels) the compile step checks parity
    and latency on ('' = none: compile is skipped with that reason)."""
    calibration_data: str = ""
    """An ``.npz`` with ``x`` for INT8 calibration ('' = ``test_data``)."""
    drift_baseline: str = ""
    """The training-time prediction distribution the serving runtime measures drift against,
    released with the model ('' = none)."""
    data: list[str] = field(default_factory=list)
    """The data the card lists as training data, with the DVC hashes ``dvc.lock`` records
    ([] = the pipeline's source data: inputs in ``dvc.lock`` that no stage produces and that
    are not code)."""
    card: CardSettings = field(default_factory=CardSettings)
    """The model card."""

    def check(self, path: str, file: str | Path | None) -> None:
        if not self.name:
            raise ConfigError(file, f"{path}.name", self.name, "required: the model's name",
                              hint="a DNS-1123 label such as 'fraud-scorer'; it names the "
                                   "manifests, the metrics labels and the card")
        for key in ("metrics", "plots", "data"):
            for i, value in enumerate(getattr(self, key)):
                _relative(file, f"{path}.{key}[{i}]", value)
        for key in ("test_data", "calibration_data", "drift_baseline"):
            _relative(file, f"{path}.{key}", getattr(self, key))

    @property
    def card_path(self) -> str:
        return self.card.path or f"model-cards/{self.name}.md"


@dataclass(frozen=True)
class StepSettings:
    """Which parts of the suite apply to this repository. A step that is off, or that has
    nothing to work on (no ONNX artifact), is reported as ``skipped: <reason>``."""

    card: bool = True
    """Render the model card and show its diff on the pull request."""
    compile: bool = True
    """Compile the ONNX artifact (TensorRT or ONNX Runtime) and check parity and latency."""
    deploy: bool = True
    """Release the ONNX artifact through the GitOps repository on merge."""


def step_skipped(settings: ModelSettings, steps: StepSettings, step: str) -> str | None:
    """Why ``step`` (card, compile or deploy) does not apply to this repository, or ``None``."""
    if not getattr(steps, step):
        return f"turned off (modelops.steps.{step}: false)"
    if step in ("compile", "deploy") and not settings.artifact.path:
        return "the model has no ONNX artifact (modelops.model.artifact.path is '')"
    if step == "compile" and not settings.test_data:
        return "no test data to check parity on (modelops.model.test_data is '')"
    return None
