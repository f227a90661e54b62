"""``modelops.retrain``: what turns a production drift alert into a retraining pull request."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    relay_url: str = "http://modelops-alert-relay.monitoring.svc:9095/alerts"
    """The alert relay's URL that Alertmanager posts to."""
    repeat_interval: str = field(default="24h", metadata={
        "pattern": r"[0-9]+(m|h)", "pattern_help": "must be a duration like '12h' or '90m'"})
    """How often a firing alert may start another retraining."""
    # where fresh labelled data comes from (any URL `dvc get-url` reads; '' = none configured)
    fresh_data: str = ""
    # the folder of the model repository the fresh files are added to (the pipeline reads it)
    incoming: str = "data/incoming"
    branch_prefix: str = "retrain/"
    """The prefix of the branches retraining pull requests come from."""

