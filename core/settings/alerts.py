"""``modelops.alerts``: the production drift alerts (a PrometheusRule per model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modelops.errors import ConfigError
from modelops.settings.deploy import PromDuration


class ForDuration(PromDuration):
    """A rule's ``for:``: a Prometheus duration, ``0`` (fire at once) included."""

    positive = False


@dataclass(frozen=True)
class AlertParams:
    """Production drift alerts: a PrometheusRule rendered with the manifests."""

    drift_psi_warning: float = field(default=0.2, metadata={"gt": 0.0})
    """A warning fires when the average PSI of a version's pods stays above this for `drift_for`."""
    drift_for: ForDuration = ForDuration("30m")
    """How long the PSI must stay above the warning threshold."""
    drift_psi_critical: float = field(default=0.5, metadata={"gt": 0.0})
    """A critical alert fires when the PSI stays above this for `severe_for` (above the warning
    threshold)."""
    severe_for: ForDuration = ForDuration("10m")
    """How long the PSI must stay above the critical threshold."""
    missing_for: ForDuration = ForDuration("15m")
    """A warning fires when no `model_prediction_psi` series exists at all for this long."""
    runbook_url: str = ""
    """A runbook linked from the alerts ('' = none)."""

    def check(self, path: str, file: str | Path | None) -> None:
        if self.drift_psi_critical <= self.drift_psi_warning:
            raise ConfigError(file, f"{path}.drift_psi_critical", self.drift_psi_critical,
                              f"must be above drift_psi_warning ({self.drift_psi_warning})")
