"""``modelops.alerts``: the production alerts (a PrometheusRule per model): prediction drift,
and, for a release whose drift baseline describes its features, input drift and data quality
(:mod:`modelops.gitops.input_alerts`)."""

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
    feature_psi_warning: float = field(default=0.2, metadata={"gt": 0.0})
    """ModelFeatureDrift fires when a feature's PSI, averaged over a version's pods, stays above
    this for `feature_drift_for`; the serving runtime's `model_features_drifted` and the
    dashboard use the same threshold."""
    feature_drift_for: ForDuration = ForDuration("15m")
    """How long a feature's PSI (or the share of drifted features) must stay above its
    threshold."""
    widespread_share: float = field(default=0.25, metadata={"gt": 0.0, "max": 1.0})
    """ModelInputDriftWidespread (critical) fires when at least this share of the features has
    drifted for `feature_drift_for`."""
    out_of_range_max_share: float = field(default=0.05, metadata={"gt": 0.0, "max": 1.0})
    """ModelFeatureOutOfRange fires when more than this share of a feature's values is outside
    the training range over `quality_window`, for `quality_for`."""
    missing_max_share: float = field(default=0.01, metadata={"gt": 0.0, "max": 1.0})
    """ModelInputMissingValues and ModelInputNonFinite fire above this share of a feature's values
    missing, or NaN or infinite."""
    rejected_max_share: float = field(default=0.05, metadata={"gt": 0.0, "max": 1.0})
    """ModelInputRejected fires when more than this share of the requests is refused for its
    input (malformed, schema, NaN)."""
    quality_window: PromDuration = PromDuration("5m")
    """The rate() window of the data-quality alerts."""
    quality_for: ForDuration = ForDuration("10m")
    """How long a data-quality share must stay above its threshold."""
    runbook_url: str = ""
    """A runbook linked from the alerts ('' = none)."""

    def check(self, path: str, file: str | Path | None) -> None:
        if self.drift_psi_critical <= self.drift_psi_warning:
            raise ConfigError(file, f"{path}.drift_psi_critical", self.drift_psi_critical,
                              f"must be above drift_psi_warning ({self.drift_psi_warning})")
