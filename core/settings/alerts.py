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
    """``alerts:`` in params.yaml."""

    drift_psi_warning: float = field(default=0.2, metadata={"gt": 0.0})
    drift_for: ForDuration = ForDuration("30m")
    drift_psi_critical: float = field(default=0.5, metadata={"gt": 0.0})
    severe_for: ForDuration = ForDuration("10m")
    missing_for: ForDuration = ForDuration("15m")
    runbook_url: str = ""

    def check(self, path: str, file: str | Path | None) -> None:
        if self.drift_psi_critical <= self.drift_psi_warning:
            raise ConfigError(file, f"{path}.drift_psi_critical", self.drift_psi_critical,
                              f"must be above drift_psi_warning ({self.drift_psi_warning})")
