"""The suite's settings: the ``modelops:`` section of a model repository's ``params.yaml``.

The suite owns exactly one top-level section of ``params.yaml``, ``modelops``; every other
section belongs to the model's own pipeline and is never read or validated here. Inside it,
each key is a dataclass registered in :data:`SECTIONS` (one dict, which also drives validation
and the reference docs: a new section is one module plus one entry)::

    modelops:
      model: {name: fraud-scorer, metrics: [eval/metrics.json], headline: {auc: higher}}
      gates: {auc: {min: 0.9, max_drop: 0.01}}
      steps: {compile: false}

Unknown keys, wrong types, out-of-range and non-finite numbers are :class:`ConfigError`\\ s that
name the file, the field path (``modelops.deploy.canary.steps[2]``) and the value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError
from modelops.settings.alerts import AlertParams
from modelops.settings.compile import CompileParams
from modelops.settings.cost import CostParams
from modelops.settings.deploy import DeployParams
from modelops.settings.gates import MetricGate
from modelops.settings.loader import closest, convert
from modelops.settings.model import ModelSettings, StepSettings
from modelops.settings.retrain import RetrainParams
from modelops.settings.workflow import WorkflowParams
from modelops.yamlio import load_yaml_file

SETTINGS_KEY = "modelops"
DEFAULT_PARAMS = Path("params.yaml")

# key under `modelops:` -> its dataclass (or type). One line per section.
SECTIONS: dict[str, Any] = {
    "model": ModelSettings,
    "steps": StepSettings,
    "gates": dict[str, MetricGate],
    "compile": CompileParams,
    "deploy": DeployParams,
    "alerts": AlertParams,
    "workflow": WorkflowParams,
    "retrain": RetrainParams,
    "cost": CostParams,
}


@dataclass(frozen=True)
class Settings:
    """The ``modelops:`` section, typed; ``raw`` is the whole params file as parsed."""

    raw: dict[str, Any]
    sections: dict[str, Any] = field(default_factory=dict)
    file: str = "params.yaml"

    def __getattr__(self, name: str) -> Any:
        sections = object.__getattribute__(self, "sections")
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    @property
    def own(self) -> dict[str, Any]:
        """The raw ``modelops:`` mapping."""
        return self.raw.get(SETTINGS_KEY) or {}


def parse_settings(raw: Any, file: str | Path = DEFAULT_PARAMS) -> Settings:
    """Validate the ``modelops:`` section of a parsed params file; other sections are ignored."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(file, "", raw, "the top level must be a mapping of sections")
    own = raw.get(SETTINGS_KEY)
    if own is None:
        near = closest(SETTINGS_KEY, [k for k in raw if isinstance(k, str)], cutoff=0.75)
        hint = (f"did you mean {SETTINGS_KEY!r} instead of {near!r}? " if near else "")
        raise ConfigError(file, SETTINGS_KEY, None,
                          "the suite's section is missing",
                          hint=hint + f"add a '{SETTINGS_KEY}:' section with at least "
                                      f"'model: {{name: <your-model>}}' (see docs/reference/"
                                      "settings.md)")
    if not isinstance(own, dict):
        raise ConfigError(file, SETTINGS_KEY, own, "must be a mapping")
    unknown = [k for k in own if k not in SECTIONS]
    if unknown:
        key = unknown[0]
        near = closest(str(key), SECTIONS)
        raise ConfigError(file, f"{SETTINGS_KEY}.{key}", own[key], "unknown key",
                          hint=(f"did you mean {near!r}? " if near else "")
                          + f"known keys here: {', '.join(SECTIONS)}")
    sections = {name: convert(tp, own.get(name, _default(tp)), f"{SETTINGS_KEY}.{name}", file)
                for name, tp in SECTIONS.items()}
    return Settings(raw=raw, sections=sections, file=str(file))


def _default(tp: Any) -> Any:
    return {} if getattr(tp, "__origin__", None) is dict else None


def load_settings(path: str | Path = DEFAULT_PARAMS) -> Settings:
    """Read ``path`` and validate its ``modelops:`` section. Raises ConfigError on a bad field."""
    return parse_settings(load_yaml_file(path), path)


def model_name_of(raw: Any) -> str | None:
    """``modelops.model.name`` of a parsed params file, without validating the rest (for
    reading old revisions). Params files written before suite 0.2 kept ``model.name`` at the
    top level; that is read too, so history from before the change still names its model."""
    if not isinstance(raw, dict):
        return None
    for section in ((raw.get(SETTINGS_KEY) or {}), raw):
        model = section.get("model") if isinstance(section, dict) else None
        name = model.get("name") if isinstance(model, dict) else None
        if isinstance(name, str) and name:
            return name
    return None
