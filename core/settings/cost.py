"""``modelops.cost``: the price table for compute estimates."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CostParams:
    """The price table for compute estimates (``modelops-ci cost``)."""

    currency: str = field(default="USD", metadata={"pattern": r"[A-Z]{3}",
                                                   "pattern_help": "must be an ISO 4217 code"})
    """The currency of the prices (ISO 4217)."""
    cpu_core_hour: float = field(default=0.048, metadata={"min": 0.0})
    """The price of one CPU core for an hour."""
    gpu_hour: float = field(default=2.5, metadata={"min": 0.0})
    """The price of one GPU for an hour."""

