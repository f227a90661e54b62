"""Quality gates: ``modelops.gates`` in params.yaml, judged against head (and base) metrics.

A gate names a metric (a dotted path into ``metrics/metrics.json``, e.g. ``accuracy`` or
``per_class.3.recall``) and one or more bounds::

    evaluate:
      gates:
        accuracy: {min: 0.97, max_drop: 0.005}   # absolute floor + regression against base
        latency_p95_ms: {max: 20}
        model_size_mb: {max: 5}

Absolute bounds: ``min``, ``max``. Regression bounds against the base revision: ``max_drop``
(head may be at most this much lower than base) and ``max_rise`` (at most this much higher, for
"lower is better" metrics such as latency). Each bound gives one :class:`GateResult` with status
``pass``, ``fail`` or ``no-baseline`` (a regression bound when the base has no such metric).
Evaluating never raises: a metric missing in head, or not a number, is a ``fail`` with a reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from modelops.settings.gates import MetricGate

Status = Literal["pass", "fail", "no-baseline"]







@dataclass(frozen=True)
class GateResult:
    metric: str
    rule: str          # min | max | max_drop | max_rise
    threshold: float
    status: Status
    head: float | None
    base: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lookup(metrics: Mapping[str, Any] | None, name: str) -> Any:
    """Find ``name`` in a metrics mapping: a flat dotted key, or a path into nested mappings."""
    if metrics is None:
        return None
    if name in metrics:
        return metrics[name]
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def evaluate_gates(gates: Mapping[str, MetricGate], head: Mapping[str, Any] | None,
                   base: Mapping[str, Any] | None = None) -> list[GateResult]:
    """Judge every bound of every gate. Never raises for bad or missing metric values."""
    results: list[GateResult] = []
    for metric, gate in gates.items():
        raw_head = lookup(head, metric)
        head_v = _number(raw_head)
        raw_base = lookup(base, metric)
        base_v = _number(raw_base)
        for rule, threshold in gate.rules():
            def result(status: Status, reason: str) -> GateResult:
                return GateResult(metric, rule, threshold, status, head_v, base_v, reason)  # noqa: B023

            if head_v is None:
                what = "missing" if raw_head is None else f"not a finite number ({raw_head!r})"
                results.append(result("fail", f"{metric} is {what} in the head metrics"))
                continue
            if rule == "min":
                ok = head_v >= threshold
                results.append(result("pass" if ok else "fail",
                                      f"{_fmt(head_v)} {'>=' if ok else '<'} {_fmt(threshold)}"))
            elif rule == "max":
                ok = head_v <= threshold
                results.append(result("pass" if ok else "fail",
                                      f"{_fmt(head_v)} {'<=' if ok else '>'} {_fmt(threshold)}"))
            else:
                if base_v is None:
                    results.append(result("no-baseline", f"no {metric} in the base metrics"))
                    continue
                change = head_v - base_v if rule == "max_rise" else base_v - head_v
                word = "rise" if rule == "max_rise" else "drop"
                # tolerate float noise: 0.98 - 0.975 must pass a 0.005 bound
                ok = change <= threshold + 1e-12
                results.append(result("pass" if ok else "fail",
                                      f"{word} {_fmt(change)} {'<=' if ok else '>'} "
                                      f"{_fmt(threshold)}"))
    return results


def verdict(results: list[GateResult] | list[dict[str, Any]]) -> Literal["pass", "fail"]:
    """``fail`` when any bound failed; ``no-baseline`` does not fail a change."""
    for r in results:
        status = r["status"] if isinstance(r, dict) else r.status
        if status == "fail":
            return "fail"
    return "pass"


def format_table(results: list[GateResult]) -> str:
    """A plain-text table for the terminal."""
    rows = [("metric", "rule", "threshold", "base", "head", "status", "reason")]
    for r in results:
        rows.append((r.metric, r.rule, _fmt(r.threshold),
                     "-" if r.base is None else _fmt(r.base),
                     "-" if r.head is None else _fmt(r.head), r.status, r.reason))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)
