"""``modelops.retrain``: what turns a production drift alert into a retraining pull request.

The relay (``modelops-gitops alert-relay``) authenticates Alertmanager (a bearer token or basic
auth that the rendered Alertmanager config carries), accepts only the configured models and
environments, and guards against storms (a cooldown per model and a daily cap). The retrain
command picks the fresh data of the alert's model and window from ``fresh_data``, tracks it
with DVC, and remembers batches whose pull request was closed unmerged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from modelops.errors import ConfigError

_DURATION = re.compile(r"^([0-9]+)(m|h|d)$")
_DURATION_META = {"pattern": r"[0-9]+(m|h|d)",
                  "pattern_help": "must be a duration like '90m', '12h' or '7d'"}


def duration_seconds(value: str) -> int:
    """'90m' / '12h' / '7d' in seconds."""
    match = _DURATION.match(value)
    if not match:
        raise ValueError(value)
    return int(match.group(1)) * {"m": 60, "h": 3600, "d": 86400}[match.group(2)]


@dataclass(frozen=True)
class RetrainParams:
    """``modelops.retrain``: what turns a drift alert into a retraining pull request."""

    event_type: str = field(default="model-drift",
                            metadata={"pattern": r"[A-Za-z0-9_.-]{1,100}",
                                      "pattern_help": "must be 1-100 letters, digits, '_.-'"})
    """The `repository_dispatch` event type a drift alert sends."""
    alerts: list[str] = field(default_factory=lambda: ["ModelPredictionDrift",
                                                       "ModelPredictionDriftSevere"],
                              metadata={"min_items": 1})
    """The Alertmanager alerts that start a retraining."""
    models: list[str] = field(default_factory=list)
    """Models the relay accepts ('' list = modelops.model.name only)."""
    environments: list[str] = field(default_factory=lambda: ["production"],
                                    metadata={"min_items": 1})
    """Environments whose alerts may retrain (the `env` label of the alert), and that label."""
    env_label: str = "env"
    """The alert label that names the environment."""
    relay_url: str = "http://modelops-alert-relay.monitoring.svc:9095/alerts"
    """The alert relay's URL that Alertmanager posts to."""
    auth: Literal["bearer", "basic"] = "bearer"
    """How Alertmanager authenticates to the relay, and where Alertmanager reads the secret."""
    credentials_file: str = "/etc/alertmanager/secrets/modelops-relay/token"
    """Where Alertmanager reads the relay's token (a mounted Secret); the rendered config points
    http_config at it."""
    basic_username: str = "alertmanager"
    """The user name for basic auth (auth: basic)."""
    repeat_interval: str = field(default="24h", metadata=_DURATION_META)
    """How often a firing alert may start another retraining."""
    cooldown: str = field(default="6h", metadata=_DURATION_META)
    """Storm guard: no second retraining of a model within `cooldown`, at most `daily_cap` per
    model in any 24 hours (the relay's dispatches and the retraining pull requests)."""
    daily_cap: int = field(default=2, metadata={"min": 1})
    """The most retrainings of one model in any 24 hours."""
    # where fresh labelled data comes from: a folder or URL (`dvc ls-url` / `dvc get-url`
    # read it; `{model}` is replaced by the alert's model) holding one CSV file or folder per
    # day, named by its date (2026-11-28.csv, dt=2026-11-28/...); '' = none configured
    fresh_data: str = ""
    # the days of data before the alert started that a retraining takes
    lookback: str = field(default="7d", metadata=_DURATION_META)
    # the folder of the model repository the fresh batch is added to (DVC-tracked; the
    # pipeline reads it)
    incoming: str = "data/incoming"
    branch_prefix: str = "retrain/"
    """The prefix of the branches retraining pull requests come from."""

    def check(self, path: str, file: object) -> None:
        for key in ("repeat_interval", "cooldown", "lookback"):
            value = getattr(self, key)
            if duration_seconds(value) <= 0:
                raise ConfigError(file, f"{path}.{key}", value, "must be longer than zero")
        if self.auth == "basic" and not self.basic_username:
            raise ConfigError(file, f"{path}.basic_username", self.basic_username,
                              "is required when auth is 'basic'")
        if not self.credentials_file:
            raise ConfigError(file, f"{path}.credentials_file", self.credentials_file,
                              "is required: the relay refuses unauthenticated alerts",
                              hint="the path of the relay's token in Alertmanager's pod "
                                   "(a mounted Secret)")
