"""``modelops.cost``: the dated price table for compute estimates, and where runs are recorded.

Prices change; a run is priced at the prices in force on the day it ran (the last entry of
``prices`` whose ``since`` is on or before that day; runs before the first entry take the first
one). Every figure computed from them is an estimate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from modelops.errors import ConfigError


@dataclass(frozen=True)
class PricePeriod:
    """Prices in force from ``since`` (YYYY-MM-DD, UTC) until the next entry."""

    since: str = "2024-01-01"
    """The first day (YYYY-MM-DD, UTC) these prices apply."""
    cpu_core_hour: float = field(default=0.048, metadata={"min": 0.0})
    """The price of one CPU core for an hour."""
    gpu_hour: float = field(default=2.5, metadata={"min": 0.0})
    """The price of one GPU for an hour."""
    memory_gb_hour: float = field(default=0.0053, metadata={"min": 0.0})
    """The price of one GB of memory (peak RSS) for an hour."""

    def check(self, path: str, file: object) -> None:
        try:
            dt.date.fromisoformat(self.since)
        except ValueError:
            raise ConfigError(file, f"{path}.since", self.since,
                              "must be a date such as '2026-01-31'") from None

    @property
    def start(self) -> dt.date:
        return dt.date.fromisoformat(self.since)


@dataclass(frozen=True)
class CostParams:
    """params.yaml ``cost``: the dated price table for estimates."""

    currency: str = field(default="USD", metadata={"pattern": r"[A-Z]{3}",
                                                   "pattern_help": "must be an ISO 4217 code"})
    """The currency of the prices (ISO 4217)."""
    prices: list[PricePeriod] = field(default_factory=lambda: [PricePeriod()],
                                      metadata={"min_items": 1})
    """The price table: one entry per period, each in force from its since date."""
    ledger: str = ""
    """Where CI jobs and Workflow tasks upload their compute records (a folder, or any URL
    fsspec writes: s3://bucket/prefix); '' = none, only committed records count."""

    def check(self, path: str, file: object) -> None:
        starts = [p.start for p in self.prices]
        for i in range(1, len(starts)):
            if starts[i] <= starts[i - 1]:
                raise ConfigError(file, f"{path}.prices[{i}].since", self.prices[i].since,
                                  "must be later than the entry before it "
                                  f"({self.prices[i - 1].since})")

    def at(self, when: dt.date | dt.datetime | str | None) -> PricePeriod:
        """The prices in force on ``when`` (a date, a datetime or an ISO string)."""
        if when is None:
            return self.prices[-1]
        if isinstance(when, str):
            try:
                when = dt.datetime.fromisoformat(when.replace("Z", "+00:00"))
            except ValueError:
                return self.prices[-1]
        day = when.date() if isinstance(when, dt.datetime) else when
        chosen = self.prices[0]
        for period in self.prices:
            if period.start <= day:
                chosen = period
        return chosen
