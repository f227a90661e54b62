"""``modelops-gitops analyze``: a preview of the decision Argo Rollouts' analysis controller
would take on rendered AnalysisTemplates, measured against a real Prometheus now.

An emulation of Argo Rollouts (``analysis/analysis.go``, ``utils/analysis``,
``pkg/apis/rollouts/v1alpha1.Metric``) for the Prometheus provider, held to its rules:

- The templates a canary step names become *one* AnalysisRun (their metrics together). Before
  anything is measured the run is validated as Argo validates one (:func:`validate_metric`:
  ``count`` >= ``failureLimit`` + ``consecutiveSuccessLimit`` and >= ``inconclusiveLimit``,
  ``failureLimit`` -1 disables it but not together with ``consecutiveSuccessLimit`` 0, an
  ``interval`` for ``count`` > 1, ...); an invalid run is an Error (the rollout aborts).
- Each measurement: the query's value becomes ``result`` (a vector: ``[]float64``; a scalar:
  ``float64``) and ``successCondition``/``failureCondition`` judge it with expr's semantics as
  Argo wraps them (:mod:`gitops.conditions`): success true -> Successful; failure true ->
  Failed; neither -> Inconclusive; only a success condition: false -> Failed; only a failure
  condition: false -> Successful; a query or condition error -> Error.
- A metric's next measurement is due ``interval`` after the last one finished, or Argo's fixed
  10 s after an Error; errors do not count towards ``count``. A metric is Failed when failed >
  ``failureLimit`` (default 0, -1 = never), Inconclusive when inconclusive >
  ``inconclusiveLimit`` (default 0), Error when consecutive errors > ``consecutiveErrorLimit``
  (default 4); Successful when consecutive successes reach ``consecutiveSuccessLimit`` (if set)
  or when ``count`` is reached (with a consecutiveSuccessLimit set and not reached:
  Inconclusive, or Failed when failureLimit is -1). ``count`` unset or 0 with an ``interval``
  runs indefinitely.
- As soon as one metric is Failed, Error or Inconclusive the run terminates: no metric is
  measured again, the rest count as Successful, and the run takes the worst phase (Failed >
  Error > Inconclusive > Successful). Argo aborts the rollout on Failed or Error and pauses it
  on Inconclusive.

It previews, it does not replace: Argo's own controller decides in the cluster.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.errors import ExternalError, GateFailed, InputError
from modelops.fsutil import write_json
from modelops.gitops.conditions import ConditionError, Unsupported, Vector, check_condition
from modelops.gitops.conditions import compile_for as compile_condition_for
from modelops.yamlio import load_yaml_all

SUCCESSFUL, FAILED, ERROR, INCONCLUSIVE = "Successful", "Failed", "Error", "Inconclusive"
RUNNING, PENDING = "Running", "Pending"
# Argo's analysisStatusOrder, best to worst
_ORDER = [SUCCESSFUL, RUNNING, PENDING, INCONCLUSIVE, ERROR, FAILED]
_COMPLETED = {SUCCESSFUL, FAILED, ERROR, INCONCLUSIVE}
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4
ERROR_RETRY_INTERVAL = 10.0  # analysis.DefaultErrorRetryInterval


def parse_duration(text: str | int, where: str) -> float:
    """Argo durations (Go's time.ParseDuration units: '500ms', '30s', '5m', '1h', '1m30s')."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if isinstance(text, str):
        parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
        if parts and "".join(a + b for a, b in parts) == text:
            unit = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 0.001, "s": 1, "m": 60,
                    "h": 3600}
            return sum(float(a) * unit[b] for a, b in parts)
    raise InputError(f"{where}: not a duration (got {text!r})",
                     hint="use a duration like '30s', '5m' or '1h'")


def _int_or_str(value: Any, default: int | None, where: str, args: dict[str, str],
                allow_negative: bool = False) -> int | None:
    if value is None:
        return default
    if isinstance(value, str):
        value = substitute(value, args, where)
        if re.fullmatch(r"-?[0-9]+", value):
            value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and (
            value >= 0 or allow_negative):
        return value
    raise InputError(f"{where}: must be an integer (got {value!r})")


def substitute(text: str, args: dict[str, str], where: str,
               declared: list[str] | None = None) -> str:
    """Replace ``{{args.NAME}}`` like Argo does; a missing argument is an error naming it."""
    def one(m: re.Match) -> str:
        name = m.group(1)
        if name not in args:
            known = declared if declared is not None else list(args)
            raise InputError(f"{where}: argument {name!r} has no value",
                             hint=f"pass --arg {name}=VALUE (template args: "
                                  f"{', '.join(known) or 'none'})")
        return args[name]
    return re.sub(r"\{\{\s*args\.([A-Za-z0-9_.\-]+)\s*\}\}", one, text)


# --------------------------------------------------------------------------- Prometheus

class Prometheus:
    """Instant queries against ``/api/v1/query``. Failures raise ExternalError (retryable)."""

    def __init__(self, address: str, timeout: float = 30.0):
        self.address = address.rstrip("/")
        self.timeout = timeout

    def query(self, promql: str, at: float | None = None) -> Any:
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.address}/api/v1/query?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:  # noqa: S310
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise ExternalError(f"prometheus at {self.address} answered {exc.code} for "
                                f"{promql!r}: {detail}", retryable=exc.code >= 500) from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ExternalError(f"cannot reach prometheus at {self.address}: {reason}",
                                hint="check modelops.deploy.prometheus.address",
                                retryable=True) from exc
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise ExternalError(f"prometheus at {self.address} sent non-JSON: "
                                f"{body[:100]!r}") from exc
        if data.get("status") != "success":
            raise ExternalError(f"prometheus query {promql!r} failed: "
                                f"{data.get('errorType')}: {data.get('error')}")
        return to_result(data.get("data") or {})


def to_result(data: dict) -> Any:
    """Prometheus ``data`` -> Argo's ``result``: a vector or matrix -> ``[]float64`` (every
    sample's value, in order), a scalar -> ``float64``."""
    kind = data.get("resultType")
    if kind == "vector":
        return Vector(tuple(float(s["value"][1]) for s in data.get("result") or []))
    if kind == "matrix":
        return Vector(tuple(float(v[1]) for series in data.get("result") or []
                            for v in series.get("values") or []))
    if kind == "scalar":
        return float(data["result"][1])
    raise ExternalError("Prometheus metric type not supported (use an instant vector or "
                        f"scalar query; got {kind!r})")


# --------------------------------------------------------------------------- templates

@dataclass
class Metric:
    template: str
    name: str
    query: str
    address: str
    interval: float | None  # seconds; None: not set
    count: int | None  # None: not set
    failure_limit: int | None = None
    inconclusive_limit: int | None = None
    consecutive_error_limit: int | None = None
    consecutive_success_limit: int | None = None
    initial_delay: float = 0.0
    success: str = ""
    failure: str = ""
    timeout: float = 30.0

    @property
    def effective_count(self) -> int | None:
        """Argo's Metric.EffectiveCount: None means the metric runs indefinitely."""
        if not self.count:
            return None if self.interval else 1
        return self.count


@dataclass
class Measurement:
    phase: str
    value: str
    message: str = ""
    at: float = 0.0


@dataclass
class MetricResult:
    metric: Metric
    phase: str = PENDING
    measurements: list[Measurement] = field(default_factory=list)
    message: str = ""
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0
    consecutive_success: int = 0
    next_at: float = 0.0

    def record(self, m: Measurement) -> None:
        """Argo's runMeasurements bookkeeping for one completed measurement."""
        self.measurements.append(m)
        if m.phase == ERROR:
            self.error += 1
            self.consecutive_error += 1
            self.consecutive_success = 0
            return
        self.count += 1
        self.consecutive_error = 0
        if m.phase == SUCCESSFUL:
            self.successful += 1
            self.consecutive_success += 1
        else:
            self.consecutive_success = 0
            if m.phase == FAILED:
                self.failed += 1
            else:
                self.inconclusive += 1

    def counts(self) -> dict[str, int]:
        return {SUCCESSFUL: self.successful, FAILED: self.failed,
                INCONCLUSIVE: self.inconclusive, ERROR: self.error}


@dataclass
class RunResult:
    name: str
    metrics: list[MetricResult]
    phase: str = RUNNING
    message: str = ""

    @property
    def template(self) -> str:  # one run per analysis step; named after its templates
        return self.name


def worst(phases) -> str:
    """The worst of completed phases, in Argo's order (Failed > Error > Inconclusive >
    Pending > Running > Successful)."""
    out = None
    for p in phases:
        if out is None or _ORDER.index(p) > _ORDER.index(out):
            out = p
    return out or SUCCESSFUL


def limits_of(metric: Metric) -> tuple[int, int, int, int]:
    return ((0 if metric.failure_limit is None else metric.failure_limit),
            (0 if metric.inconclusive_limit is None else metric.inconclusive_limit),
            (DEFAULT_CONSECUTIVE_ERROR_LIMIT if metric.consecutive_error_limit is None
             else metric.consecutive_error_limit),
            (0 if metric.consecutive_success_limit is None
             else metric.consecutive_success_limit))


def validate_metric(metric: Metric) -> str | None:
    """Argo's utils/analysis.ValidateMetric for what this preview reads: the problem, or None."""
    count = metric.count or 0
    failure, inconclusive, _, success = limits_of(metric)
    if success < 0:
        return "consecutiveSuccessLimit must be >= 0"
    if failure < -1:
        return "failureLimit must be >= 0, or -1 to be disabled"
    if success == 0 and failure == -1:
        return "failureLimit and consecutiveSuccessLimit cannot both be disabled"
    if inconclusive < 0:
        return "inconclusiveLimit must be >= 0"
    if metric.consecutive_error_limit is not None and metric.consecutive_error_limit < 0:
        return "consecutiveErrorLimit must be >= 0"
    if count > 0:
        if failure >= 0 and count < failure + success:
            return (f"count ({count}) must be >= failureLimit + consecutiveSuccessLimit "
                    f"({failure} + {success}) if both >= 0")
        if failure < 0 and count < success:
            return "count must be >= consecutiveSuccessLimit"
        if count < inconclusive:
            return "count must be >= inconclusiveLimit"
    if count > 1 and not metric.interval:
        return "interval must be specified when count > 1"
    return None


def validate_run(metrics: list[Metric], inline: bool = True) -> list[str]:
    """Problems Argo finds in a run of these metrics (ValidateMetrics; for an analysis step,
    ``inline``, also a metric that would run indefinitely)."""
    out, seen = [], set()
    if not metrics:
        return ["no metrics specified"]
    for i, m in enumerate(metrics):
        if m.name in seen:
            out.append(f"metrics[{i}]: duplicate name '{m.name}'")
        seen.add(m.name)
        problem = validate_metric(m)
        if problem:
            out.append(f"metrics[{i}] ({m.template}/{m.name}): {problem}")
        elif inline and m.effective_count is None:
            out.append(f"AnalysisTemplate {m.template} has metric {m.name} which runs "
                       f"indefinitely. Invalid value for count: {m.count}")
    return out


def load_templates(path: str | Path, args: dict[str, str] | None = None,
                   prometheus: str | None = None,
                   only: list[str] | None = None) -> dict[str, list[Metric]]:
    """AnalysisTemplates in ``path`` (multi-document YAML) -> template name -> metrics.

    ``only`` keeps the named templates (an unknown name is an error listing the known ones).
    Conditions outside what the preview can evaluate are refused here.
    """

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError(f"{p}: file not found", hint="render it with `modelops-gitops "
                                                       "render`") from exc
    specs: dict[str, dict] = {}
    for i, doc in enumerate(load_yaml_all(text, str(p))):
        if not isinstance(doc, dict) or doc.get("kind") not in ("AnalysisTemplate",
                                                                 "ClusterAnalysisTemplate"):
            continue
        name = (doc.get("metadata") or {}).get("name") or f"document {i}"
        specs[name] = doc.get("spec") or {}
    if not specs:
        raise InputError(f"{p}: no AnalysisTemplate in this file",
                         hint="pass the analysis-templates.yaml that `gitops render` wrote")
    for name in only or []:
        if name not in specs:
            raise InputError(f"--template: no template {name!r} in {p}",
                             hint=f"templates there: {', '.join(specs)}")
    return {name: _metrics(p, name, spec, dict(args or {}), prometheus)
            for name, spec in specs.items() if not only or name in only}


def _metrics(file: Path, tname: str, spec: dict, given: dict[str, str],
             prometheus: str | None) -> list[Metric]:
    args: dict[str, str] = {}
    declared = [str(a["name"]) for a in spec.get("args") or []
                if isinstance(a, dict) and "name" in a]
    for a in spec.get("args") or []:
        if isinstance(a, dict) and "name" in a:
            if a["name"] in given:
                args[a["name"]] = str(given[a["name"]])
            elif "value" in a:
                args[a["name"]] = str(a["value"])
    metrics = []
    for j, m in enumerate(spec.get("metrics") or []):
        where = f"{file}: {tname}.spec.metrics[{j}]"
        prov = (m.get("provider") or {}).get("prometheus")
        if not isinstance(prov, dict) or not prov.get("query"):
            raise InputError(f"{where}.provider: only the prometheus provider with a query is "
                             f"supported (got {list(m.get('provider') or {})!r})")
        address = prometheus or prov.get("address") or ""
        if not re.match(r"https?://", address):
            raise InputError(f"{where}.provider.prometheus.address: not an http(s) URL "
                             f"(got {address!r})", hint="pass --prometheus URL")
        interval = m.get("interval")
        metric = Metric(
            template=tname, name=str(m.get("name") or f"metric-{j}"),
            query=substitute(str(prov["query"]), args, f"{where}.provider.prometheus.query",
                             declared),
            address=address,
            interval=parse_duration(interval, f"{where}.interval") if interval else None,
            count=_int_or_str(m.get("count"), None, f"{where}.count", args),
            failure_limit=_int_or_str(m.get("failureLimit"), None, f"{where}.failureLimit",
                                      args, allow_negative=True),
            inconclusive_limit=_int_or_str(m.get("inconclusiveLimit"), None,
                                           f"{where}.inconclusiveLimit", args, True),
            consecutive_error_limit=_int_or_str(m.get("consecutiveErrorLimit"), None,
                                                f"{where}.consecutiveErrorLimit", args, True),
            consecutive_success_limit=_int_or_str(m.get("consecutiveSuccessLimit"), None,
                                                  f"{where}.consecutiveSuccessLimit", args,
                                                  True),
            initial_delay=parse_duration(m["initialDelay"], f"{where}.initialDelay")
            if m.get("initialDelay") else 0.0,
            success=substitute(str(m.get("successCondition") or ""), args, where),
            failure=substitute(str(m.get("failureCondition") or ""), args, where),
            timeout=parse_duration(prov["timeout"], f"{where}.provider.prometheus.timeout")
            if prov.get("timeout") else 30.0)
        for key, cond in (("successCondition", metric.success),
                          ("failureCondition", metric.failure)):
            if cond:
                try:
                    check_condition(cond)
                except Unsupported as exc:
                    raise InputError(f"{where}.{key}: {exc}",
                                     hint="the preview cannot judge this condition; keep to "
                                          "the subset in gitops/conditions.py") from exc
                except ConditionError:
                    pass  # Argo would compile it and mark each measurement Error: so do we
        metrics.append(metric)
    return metrics


# --------------------------------------------------------------------------- evaluation

def judge(metric: Metric, result: Any) -> Measurement:
    """One measurement's phase from its ``result`` (Argo's evaluate.EvaluateResult)."""
    shown = _show(result)
    ok = bad = False
    try:
        if metric.success:
            ok = compile_condition_for(metric.success, result)(result)
        if metric.failure:
            bad = compile_condition_for(metric.failure, result)(result)
    except ConditionError as exc:
        which = "successCondition" if metric.success and not ok and not bad else \
            "failureCondition"
        empty = isinstance(result, Vector) and len(result) == 0
        why = ("metric result is nil or empty: no data returned from the metric provider"
               if empty else str(exc))
        return Measurement(ERROR, shown, f"could not evaluate {which}: {why}")
    if not metric.success and not metric.failure:
        return Measurement(SUCCESSFUL, shown)
    if metric.success and not metric.failure:
        bad = not ok
    elif metric.failure and not metric.success:
        ok = not bad
    if bad:
        return Measurement(FAILED, shown)
    if not ok:
        return Measurement(INCONCLUSIVE, shown)
    return Measurement(SUCCESSFUL, shown)


def _show(result: Any) -> str:
    def one(x: float) -> str:
        if math.isnan(x):
            return "NaN"
        if math.isinf(x):
            return "+Inf" if x > 0 else "-Inf"
        return f"{x:.6g}"
    if isinstance(result, Vector):
        return "[" + ",".join(one(x) for x in result.values) + "]"
    if isinstance(result, float):
        return one(result)
    return str(result)


def measure(metric: Metric, client: Prometheus | None = None) -> Measurement:
    client = client or Prometheus(metric.address, metric.timeout)
    try:
        result = client.query(metric.query)
    except ExternalError as exc:
        return Measurement(ERROR, "", exc.message)
    return judge(metric, result)


def assess_metric(res: MetricResult, terminating: bool) -> tuple[str, str]:
    """Argo's assessMetricStatus: the metric's phase and why."""
    if res.phase in _COMPLETED:
        return res.phase, res.message
    m = res.metric
    if not res.measurements:
        return (SUCCESSFUL, "run terminated") if terminating else (PENDING, "")
    failure, inconclusive, errors, success = limits_of(m)
    phase, message = "", ""
    if failure >= 0 and res.failed > failure:
        phase, message = FAILED, f"failed ({res.failed}) > failureLimit ({failure})"
    if res.inconclusive > inconclusive:
        phase, message = INCONCLUSIVE, (f"inconclusive ({res.inconclusive}) > "
                                        f"inconclusiveLimit ({inconclusive})")
    if res.consecutive_error > errors:
        phase, message = ERROR, (f"consecutiveErrors ({res.consecutive_error}) > "
                                 f"consecutiveErrorLimit ({errors})")
    if phase:
        return phase, message
    if success > 0 and res.consecutive_success >= success:
        return SUCCESSFUL, f"consecutiveSuccessLimit ({success}) reached"
    count = m.effective_count
    if count is not None and res.count >= count:
        if success > 0 and failure >= 0:
            return INCONCLUSIVE, (f"consecutiveSuccessLimit ({success}) not reached and "
                                  f"failureLimit ({failure}) not violated")
        if success > 0:
            return FAILED, f"consecutiveSuccessLimit ({success}) not reached"
        return SUCCESSFUL, f"count ({count}) reached"
    if terminating:
        return SUCCESSFUL, "run terminated"
    return RUNNING, ""


class Clock:
    """Wall time; tests pass a fake one."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


def run_analysis(metrics: list[Metric], name: str = "analysis", *,
                 measure_fn: Callable[[Metric], Measurement] | None = None,
                 clock: Clock | None = None, inline: bool = True,
                 on_measurement: Callable[[MetricResult], None] | None = None,
                 duration: float | None = None) -> RunResult:
    """One AnalysisRun of ``metrics``, reconciled as Argo's controller reconciles it.

    Metrics due at the same moment are measured together (in parallel); after each round the
    metrics are assessed with the run's "terminating" state from before the round, and the run
    ends once every metric is complete, or, once any is Failed/Error/Inconclusive, at the next
    reconcile (no metric is measured again; the incomplete ones count as Successful).
    ``duration`` bounds the preview of metrics that run indefinitely (the run is then still
    Running).
    """
    clock = clock or Clock()
    problems = validate_run(metrics, inline=inline)
    results = [MetricResult(m) for m in metrics]
    run = RunResult(name, results)
    if problems:
        run.phase = ERROR
        run.message = "Analysis spec invalid: " + "; ".join(problems)
        return run
    if measure_fn is None:
        clients = {}

        def measure_fn(metric: Metric) -> Measurement:
            key = (metric.address, metric.timeout)
            if key not in clients:
                clients[key] = Prometheus(*key)
            return measure(metric, clients[key])

    start = clock.now()
    for r in results:
        r.next_at = start + r.metric.initial_delay
    lock = threading.Lock()
    while True:
        terminating = any(r.phase in (FAILED, ERROR, INCONCLUSIVE) for r in results)
        open_ = [r for r in results if r.phase not in _COMPLETED]
        if terminating or not open_:
            for r in open_:
                r.phase, r.message = assess_metric(r, True)
            break
        due_at = min(r.next_at for r in open_)
        if duration is not None and due_at - start > duration:
            break
        clock.sleep(due_at - clock.now())
        now = clock.now()
        due = [r for r in open_ if r.next_at <= now + 1e-9]

        def one(r: MetricResult) -> None:
            m = measure_fn(r.metric)
            m.at = clock.now() - start
            with lock:
                r.record(m)
                if on_measurement:
                    on_measurement(r)

        if len(due) == 1:
            one(due[0])
        else:
            threads = [threading.Thread(target=one, args=(r,)) for r in due]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finished = clock.now()
        for r in open_:
            r.phase, r.message = assess_metric(r, False)
            if r in due:
                last = r.measurements[-1]
                wait = ERROR_RETRY_INTERVAL if last.phase == ERROR else (
                    r.metric.interval or ERROR_RETRY_INTERVAL)
                r.next_at = finished + wait
    phases = [r.phase for r in results]
    if any(p not in _COMPLETED for p in phases):
        run.phase = RUNNING
        return run
    run.phase = worst(phases)
    bad = [r for r in results if r.phase == run.phase and r.message and
           run.phase != SUCCESSFUL]
    if bad:
        r = bad[0]
        run.message = f'Metric "{r.metric.name}" assessed {r.phase} due to {r.message}'
        last = r.measurements[-1] if r.measurements else None
        if last is not None and last.message:
            run.message += f': "Error Message: {last.message}"'
    return run


def run_templates(templates: dict[str, list[Metric]],
                  on_measurement: Callable[[MetricResult], None] | None = None,
                  **kwargs: Any) -> list[RunResult]:
    """The templates of one analysis step as the one AnalysisRun Argo makes of them."""
    metrics = [m for ms in templates.values() for m in ms]
    return [run_analysis(metrics, " + ".join(templates), on_measurement=on_measurement,
                         **kwargs)]


def verdict(phase: str) -> str:
    return {SUCCESSFUL: "continue", INCONCLUSIVE: "pause", RUNNING: "keep measuring"}.get(
        phase, "abort")


# --------------------------------------------------------------------------- CLI

def _print_measurement(res: MetricResult) -> None:
    m = res.measurements[-1]
    n = len(res.measurements)
    count = res.metric.effective_count
    extra = f"  ({m.message})" if m.message else ""
    print(f"  t+{m.at:5.1f}s {res.metric.template}/{res.metric.name} "
          f"[{n}/{count if count is not None else 'inf'}] {m.phase:<12} result={m.value}"
          f"{extra}", flush=True)


def _cmd_analyze(args: argparse.Namespace) -> int:
    given = {}
    for item in args.arg or []:
        if "=" not in item:
            raise InputError(f"--arg: must be NAME=VALUE (got {item!r})")
        k, v = item.split("=", 1)
        given[k] = v
    templates = load_templates(args.templates, given, args.prometheus, args.template)
    metrics = [m for ms in templates.values() for m in ms]
    problems = validate_run(metrics, inline=not args.background)
    if problems:
        raise InputError("argo rollouts would reject this AnalysisRun (phase Error: analysis "
                         "spec invalid) and abort the rollout: " + "; ".join(problems),
                         hint="fix the template's count and limits (or the deploy.analysis "
                              "section of params.yaml) and render again")
    print(f"analyze: a preview of Argo Rollouts' decision; {len(templates)} template(s), "
          f"{len(metrics)} metric(s) in one AnalysisRun", flush=True)
    (run,) = run_templates(templates, on_measurement=_print_measurement,
                           inline=not args.background, duration=args.duration)
    print(f"analysis run: {run.phase}" + (f" ({run.message})" if run.message else ""))
    for m in run.metrics:
        print(f"  {m.metric.template}/{m.metric.name}: {m.phase}"
              + (f" ({m.message})" if m.message else ""))
    if args.json:
        write_json(args.json, {"phase": run.phase, "message": run.message,
                               "verdict": verdict(run.phase), "metrics": [
            {"template": m.metric.template, "name": m.metric.name, "phase": m.phase,
             "message": m.message, "query": m.metric.query,
             "measurements": [vars(x) for x in m.measurements]} for m in run.metrics]})
    if run.phase == RUNNING:
        raise GateFailed(f"no decision within --duration {args.duration:g}s: argo rollouts "
                         "would keep measuring")
    if run.phase != SUCCESSFUL:
        raise GateFailed(f"analysis {run.phase.lower()}: argo rollouts would "
                         f"{verdict(run.phase)} the rollout")
    print("analysis successful: argo rollouts would continue the rollout")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="preview Argo Rollouts' decision on rendered AnalysisTemplates",
        description="A preview of Argo Rollouts' decision: run the Prometheus metrics of "
                    "rendered AnalysisTemplates now, as one AnalysisRun, with the analysis "
                    "controller's rules (validation of count and limits, interval, Argo's "
                    "10 s retry after an error, failureLimit, inconclusiveLimit, "
                    "consecutiveErrorLimit, consecutiveSuccessLimit, a run that stops at the "
                    "first Failed/Error/Inconclusive metric) and expr's semantics for the "
                    "conditions, and say whether the rollout would continue (exit 0), abort "
                    "or pause (exit 1). Argo's controller decides in the cluster; this tells "
                    "you beforehand what it will decide on the same data.")
    p.add_argument("--templates", required=True, metavar="FILE",
                   help="analysis-templates.yaml written by `gitops render`")
    p.add_argument("--template", action="append", metavar="NAME",
                   help="only this template (repeatable; default: all in the file, as the "
                        "rendered analysis steps name them all)")
    p.add_argument("--prometheus", metavar="URL",
                   help="query this Prometheus instead of the address in the templates")
    p.add_argument("--arg", action="append", metavar="NAME=VALUE",
                   help="value for a template argument (repeatable)")
    p.add_argument("--background", action="store_true",
                   help="judge as a background analysis (metrics may run indefinitely) "
                        "rather than a canary step")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="stop a run that has not decided after this long (metrics that run "
                        "indefinitely); default: until it decides")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(handler=_cmd_analyze)


if __name__ == "__main__":  # pragma: no cover
    from modelops.cli import run_main

    def _parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="python -m modelops.gitops.analysis")
        register(parser.add_subparsers())
        return parser

    sys.exit(run_main(_parser, prog="gitops analyze"))
