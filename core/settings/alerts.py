"""``modelops.alerts``: the production drift alerts (a PrometheusRule per model)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modelops.errors import ConfigError

_DURATION = {"pattern": r"[0-9]+(s|m|h)",
             "pattern_help": "must be a duration like '30s', '15m' or '1h'"}


@dataclass(frozen=True)
class AlertParams:
    """``alerts:`` in params.yaml."""

    drift_psi_warning: float = field(default=0.2, metadata={"gt": 0.0})
    drift_for: str = field(default="30m", metadata=_DURATION)
    drift_psi_critical: float = field(default=0.5, metadata={"gt": 0.0})
    severe_for: str = field(default="10m", metadata=_DURATION)
    missing_for: str = field(default="15m", metadata=_DURATION)
    runbook_url: str = ""

    def check(self, path: str, file: str | Path | None) -> None:
        if self.drift_psi_critical <= self.drift_psi_warning:
            raise ConfigError(file, f"{path}.drift_psi_critical", self.drift_psi_critical,
                              f"must be above drift_psi_warning ({self.drift_psi_warning})")

