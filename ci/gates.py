"""Quality gates: ``modelops.gates`` in params.yaml, judged against head (and base) metrics.

A gate names a metric of the model's metrics files (``modelops.model.metrics``; see
:mod:`modelops.ci.metrics`): a dotted path such as ``accuracy`` or ``per_class.3.recall``,
optionally qualified by its file, ``eval/metrics.json:auc``. An unqualified name is looked up
in every metrics file; one found in two files is a config error naming both. Bounds::

    modelops:
      gates:
        accuracy: {min: 0.97, max_drop: 0.005}   # absolute floor + regression against base
        eval/latency.json:p95_ms: {max: 20}

Absolute bounds: ``min``, ``max``. Regression bounds against the base revision: ``max_drop``
(head may be at most this much lower than base) and ``max_rise`` (at most this much higher, for
"lower is better" metrics such as latency). Each bound gives one :class:`GateResult` with status
``pass``, ``fail`` or ``no-baseline`` (a regression bound when the base has no such metric).
Judging never raises for a metric's value: one missing in head, or not a number, is a ``fail``
with a reason. Only an ambiguous or misqualified name (a config error) raises.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from modelops.ci.metrics import (
    MetricRef,
    MetricsAt,
    describe_missing,
    flat_names,
    resolve,
    value_of,
)
from modelops.ci.metrics import lookup as lookup
from modelops.errors import ConfigError
from modelops.settings.gates import RULES, MetricGate
from modelops.settings.loader import closest

Status = Literal["pass", "fail", "no-baseline"]
ANONYMOUS = "metrics"


@dataclass(frozen=True)
class GateResult:
    metric: str
    rule: str          # min | max | max_drop | max_rise
    threshold: float
    status: Status
    head: float | None
    base: float | None
    reason: str
    file: str | None = None  # the metrics file the metric was found in

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def as_metrics(metrics: MetricsAt | Mapping[str, Any] | None, rev: str) -> MetricsAt | None:
    """A plain mapping is one anonymous metrics file (tests, ``gate`` on a single file)."""
    if metrics is None or isinstance(metrics, MetricsAt):
        return metrics
    return MetricsAt(rev, files={ANONYMOUS: dict(metrics)})


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def resolve_gates(gates: Mapping[str, MetricGate], files: Sequence[str], head: MetricsAt,
                  base: MetricsAt | None = None,
                  settings_file: str = "params.yaml") -> dict[str, MetricRef]:
    """Each gate's metric resolved to its file. Raises ConfigError on an ambiguous name."""
    return {name: resolve(name, files, head, base, where=f"modelops.gates.{name}",
                          settings_file=settings_file) for name in gates}


def check_gate_names(gates: Mapping[str, MetricGate], files: Sequence[str], head: MetricsAt,
                     base: MetricsAt | None = None, *,
                     settings_file: str = "params.yaml") -> None:
    """A gate whose metric is in no metrics file, at the head nor at the base, is a typo in the
    config, not a model that lost a metric: a :class:`ConfigError` naming the gate and the
    closest metric name. Files that could not be read at either revision make no claim (their
    metrics are unknown, and the gate fails on the model's side with that reason)."""

    unknown_files = {f for side in (head, base) if side is not None
                     for f in (*side.errors, *side.unreadable) if f not in side.files}
    known: list[str] = []
    for side in (head, base):
        if side is None:
            continue
        for file, data in side.files.items():
            if isinstance(data, Mapping):
                known += [name for name, _ in flat_names(data)]
                known += [f"{file}:{name}" for name, _ in flat_names(data)]
    refs = resolve_gates(gates, files, head, base, settings_file)
    for name, ref in refs.items():
        if ref.file is not None and (value_of(ref, head) is not None
                                     or value_of(ref, base) is not None
                                     or ref.file in unknown_files):
            continue
        if ref.file is None and unknown_files:
            continue  # it may live in a file that could not be read
        near = closest(name, dict.fromkeys(known))
        where = f" in {ref.file}" if ref.file else f" ({', '.join(files) or 'none'})"
        raise ConfigError(settings_file, f"modelops.gates.{name}", name,
                          f"no metrics file has this metric, at the head or the base{where}",
                          hint=(f"did you mean {near!r}? " if near else "")
                          + "a gate names a metric of modelops.model.metrics (a dotted path, "
                            "optionally 'file:path')")


def gate_changes(base: Mapping[str, MetricGate] | None,
                 head: Mapping[str, MetricGate]) -> list[dict[str, Any]]:
    """What a change does to the gates: ``[{metric, rule, base, head}]`` for every bound added
    (base ``None``), removed (head ``None``) or moved."""
    base = base or {}
    out = []
    for metric in list(base) + [m for m in head if m not in base]:
        b, h = base.get(metric), head.get(metric)
        for rule in RULES:
            bv = getattr(b, rule) if b is not None else None
            hv = getattr(h, rule) if h is not None else None
            if bv != hv:
                out.append({"metric": metric, "rule": rule, "base": bv, "head": hv})
    return out


def evaluate_gates(gates: Mapping[str, MetricGate],
                   head: MetricsAt | Mapping[str, Any] | None,
                   base: MetricsAt | Mapping[str, Any] | None = None, *,
                   files: Sequence[str] | None = None,
                   settings_file: str = "params.yaml") -> list[GateResult]:
    """Judge every bound of every gate against the head (and base) metrics files.

    ``files`` orders the metrics files for the lookup of unqualified names (default: the
    head's files, then the base's). Never raises for bad or missing metric values.
    """
    head_at = as_metrics(head, "head") or MetricsAt("head")
    base_at = as_metrics(base, "base")
    if files is None:
        files = list(dict.fromkeys([*head_at.files, *head_at.errors,
                                    *(base_at.files if base_at else {})]))
    refs = resolve_gates(gates, files, head_at, base_at, settings_file)
    results: list[GateResult] = []
    for metric, gate in gates.items():
        ref = refs[metric]
        raw_head = value_of(ref, head_at)
        head_v = _number(raw_head)
        raw_base = value_of(ref, base_at)
        base_v = _number(raw_base)
        file = None if ref.file == ANONYMOUS else ref.file
        for rule, threshold in gate.rules():
            def result(status: Status, reason: str) -> GateResult:
                return GateResult(metric, rule, threshold, status, head_v, base_v,  # noqa: B023
                                  reason, file)  # noqa: B023

            if head_v is None:
                where = "the head metrics" if ref.file in (None, ANONYMOUS) \
                    else f"{ref.file} at the head"
                if raw_head is None:
                    what = (describe_missing(ref, head_at, files) if ref.file not in
                            (None, ANONYMOUS) else f"missing in {where}")
                    if ref.file not in (None, ANONYMOUS):
                        what += " at the head"
                    elif ref.file is None and files and files != [ANONYMOUS]:
                        what = f"missing in the head metrics ({', '.join(files)})"
                else:
                    what = f"not a finite number ({raw_head!r}) in {where}"
                results.append(result("fail", f"{metric} is {what}"))
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
                    where = f" ({base_at.errors[ref.file]})" if base_at and ref.file in \
                        base_at.errors else ""
                    results.append(result("no-baseline",
                                          f"no {metric} in the base metrics{where}"))
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
