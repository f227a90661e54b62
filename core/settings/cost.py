"""``modelops.cost``: the price table for compute estimates."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class CostParams:
    """params.yaml ``cost``: the price table for estimates."""

    currency: str = field(default="USD", metadata={"pattern": r"[A-Z]{3}",
                                                   "pattern_help": "must be an ISO 4217 code"})
    cpu_core_hour: float = field(default=0.048, metadata={"min": 0.0})
    gpu_hour: float = field(default=2.5, metadata={"min": 0.0})

