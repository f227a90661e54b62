"""``modelops.gates``: quality gates a pull request must pass (judged by modelops.ci.gates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from modelops.errors import ConfigError

RULES = ("min", "max", "max_drop", "max_rise")


_NON_NEGATIVE = {"min": 0.0}


@dataclass(frozen=True)
class MetricGate:
    """Bounds for one metric. At least one must be set."""

    min: float | None = None
    """The head's value must be at least this."""
    max: float | None = None
    """The head's value must be at most this."""
    max_drop: float | None = field(default=None, metadata=_NON_NEGATIVE)
    """How much lower than the base's value the head's may be (for metrics where higher is better);
    no baseline when the base has none."""
    max_rise: float | None = field(default=None, metadata=_NON_NEGATIVE)
    """How much higher than the base's value the head's may be (for metrics where lower is better,
    such as latency)."""

    def check(self, path: str, file: str | Path | None) -> None:
        if all(getattr(self, r) is None for r in RULES):
            raise ConfigError(file, path, {}, "a gate needs at least one bound",
                              hint=f"set one of {', '.join(RULES)}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ConfigError(file, f"{path}.min", self.min,
                              f"is greater than max ({self.max}); no value could pass")

    def rules(self) -> list[tuple[str, float]]:
        return [(r, float(getattr(self, r))) for r in RULES if getattr(self, r) is not None]



