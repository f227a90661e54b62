"""Evaluate rendered AnalysisTemplates against a Prometheus HTTP API, the way Argo Rollouts would.

For each metric of a template (Prometheus provider only): every ``interval``, run the query at
"now", turn the response into ``result`` (a vector -> list of floats, a scalar -> float), and
judge it with ``successCondition`` / ``failureCondition`` (:mod:`gitops.conditions`):

- both conditions: success true -> Successful; failure true -> Failed; neither -> Inconclusive;
- only a success condition: false -> Failed;  only a failure condition: false -> Successful;
- a query or condition error (e.g. ``result[0]`` on an empty vector) -> Error.

A metric stops early and takes that phase when failed > ``failureLimit`` (default 0),
inconclusive > ``inconclusiveLimit`` (default 0) or consecutive errors >
``consecutiveErrorLimit`` (default 4); after ``count`` measurements (default 1) it is
Successful (errors do not count towards ``count``). The run's phase is the worst metric
phase: Failed > Error > Inconclusive > Successful. Argo Rollouts aborts the rollout on Failed
or Error and pauses it on Inconclusive.

``modelops-gitops analyze --templates FILE`` runs every template in the file (or those named),
all metrics in parallel, printing each measurement as it is taken.
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
from modelops.gitops.conditions import ConditionError, compile_condition

SUCCESSFUL, FAILED, ERROR, INCONCLUSIVE = "Successful", "Failed", "Error", "Inconclusive"
_SEVERITY = {SUCCESSFUL: 0, INCONCLUSIVE: 1, ERROR: 2, FAILED: 3}
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4


def parse_duration(text: str | int, where: str) -> float:
    """Argo durations ('500ms', '30s', '5m', '1h', '1m30s') or plain seconds, in seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if isinstance(text, str):
        parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
        if parts and "".join(a + b for a, b in parts) == text:
            unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
            return sum(float(a) * unit[b] for a, b in parts)
    raise InputError(f"{where}: not a duration (got {text!r})",
                     hint="use a duration like '30s', '5m' or '1h'")


def _int_or_str(value: Any, default: int, where: str, args: dict[str, str]) -> int:
    if value is None:
        return default
    if isinstance(value, str):
        value = substitute(value, args, where)
        if value.isdigit():
            return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InputError(f"{where}: must be a non-negative integer (got {value!r})")


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
    """Prometheus ``data`` -> Argo's ``result``: vector -> [float], scalar -> float."""
    kind = data.get("resultType")
    if kind == "vector":
        return [float(sample["value"][1]) for sample in data.get("result") or []]
    if kind == "scalar":
        return float(data["result"][1])
    raise ExternalError(f"prometheus metric type not supported: {kind!r} (use an instant "
                        "vector or scalar query)")


# --------------------------------------------------------------------------- templates

@dataclass
class Metric:
    template: str
    name: str
    query: str
    address: str
    interval: float
    count: int
    failure_limit: int
    inconclusive_limit: int
    consecutive_error_limit: int
    initial_delay: float
    success: str
    failure: str
    timeout: float = 30.0


@dataclass
class Measurement:
    phase: str
    value: str
    message: str = ""


@dataclass
class MetricResult:
    metric: Metric
    phase: str = "Running"
    measurements: list[Measurement] = field(default_factory=list)
    message: str = ""

    def counts(self) -> dict[str, int]:
        out = {SUCCESSFUL: 0, FAILED: 0, INCONCLUSIVE: 0, ERROR: 0}
        for m in self.measurements:
            out[m.phase] += 1
        return out


@dataclass
class RunResult:
    template: str
    metrics: list[MetricResult]

    @property
    def phase(self) -> str:
        return worst(m.phase for m in self.metrics)


def worst(phases) -> str:
    return max(phases, key=lambda p: _SEVERITY.get(p, 0), default=SUCCESSFUL)


def load_templates(path: str | Path, args: dict[str, str] | None = None,
                   prometheus: str | None = None,
                   only: list[str] | None = None) -> dict[str, list[Metric]]:
    """AnalysisTemplates in ``path`` (multi-document YAML) -> template name -> metrics.

    ``only`` keeps the named templates (an unknown name is an error listing the known ones).
    """
    from modelops.yamlio import load_yaml_all

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
        count = _int_or_str(m.get("count"), 1, f"{where}.count", args)
        metrics.append(Metric(
            template=tname, name=str(m.get("name") or f"metric-{j}"),
            query=substitute(str(prov["query"]), args, f"{where}.provider.prometheus.query",
                             declared),
            address=address,
            interval=parse_duration(interval, f"{where}.interval") if interval else 0.0,
            count=count,
            failure_limit=_int_or_str(m.get("failureLimit"), 0, f"{where}.failureLimit", args),
            inconclusive_limit=_int_or_str(m.get("inconclusiveLimit"), 0,
                                           f"{where}.inconclusiveLimit", args),
            consecutive_error_limit=_int_or_str(m.get("consecutiveErrorLimit"),
                                                DEFAULT_CONSECUTIVE_ERROR_LIMIT,
                                                f"{where}.consecutiveErrorLimit", args),
            initial_delay=parse_duration(m["initialDelay"], f"{where}.initialDelay")
            if m.get("initialDelay") else 0.0,
            success=substitute(str(m.get("successCondition") or ""), args, where),
            failure=substitute(str(m.get("failureCondition") or ""), args, where),
            timeout=float(prov.get("timeout") or 30)))
        for cond in (metrics[-1].success, metrics[-1].failure):
            if cond:
                try:
                    compile_condition(cond)
                except ConditionError as exc:
                    raise InputError(f"{where}: condition cannot be evaluated: {exc}") from exc
    return metrics


# --------------------------------------------------------------------------- evaluation

def judge(metric: Metric, result: Any) -> Measurement:
    """One measurement's phase from its ``result`` (Argo's EvaluateResult)."""
    shown = _show(result)
    try:
        ok = compile_condition(metric.success)(result) if metric.success else False
        bad = compile_condition(metric.failure)(result) if metric.failure else False
    except ConditionError as exc:
        return Measurement(ERROR, shown, str(exc))
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
        return "NaN" if isinstance(x, float) and math.isnan(x) else f"{x:.6g}"
    if isinstance(result, list):
        return "[" + ",".join(one(x) for x in result) + "]"
    return one(result)


def measure(metric: Metric, client: Prometheus | None = None) -> Measurement:
    client = client or Prometheus(metric.address, metric.timeout)
    try:
        result = client.query(metric.query)
    except ExternalError as exc:
        return Measurement(ERROR, "", exc.message)
    return judge(metric, result)


def run_metric(metric: Metric, *, on_measurement: Callable[[MetricResult], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> MetricResult:
    """Take up to ``count`` measurements, ``interval`` apart; stop at the first limit crossed."""
    res = MetricResult(metric)
    if metric.initial_delay:
        sleep(metric.initial_delay)
    consecutive_errors = 0
    client = Prometheus(metric.address, metric.timeout)
    taken = 0  # like Argo, errors do not count towards ``count``
    while taken < metric.count:
        if res.measurements:
            sleep(metric.interval)
        m = measure(metric, client)
        res.measurements.append(m)
        if m.phase == ERROR:
            consecutive_errors += 1
        else:
            consecutive_errors = 0
            taken += 1
        if on_measurement:
            on_measurement(res)
        c = res.counts()
        if c[FAILED] > metric.failure_limit:
            res.phase = FAILED
            res.message = (f"{c[FAILED]} failed measurement(s) > failureLimit "
                           f"{metric.failure_limit}")
            return res
        if c[INCONCLUSIVE] > metric.inconclusive_limit:
            res.phase = INCONCLUSIVE
            res.message = (f"{c[INCONCLUSIVE]} inconclusive measurement(s) > "
                           f"inconclusiveLimit {metric.inconclusive_limit}")
            return res
        if consecutive_errors > metric.consecutive_error_limit:
            res.phase = ERROR
            res.message = (f"{consecutive_errors} consecutive errors > consecutiveErrorLimit "
                           f"{metric.consecutive_error_limit}: {m.message}")
            return res
    res.phase = SUCCESSFUL
    return res


def run_templates(templates: dict[str, list[Metric]],
                  on_measurement: Callable[[MetricResult], None] | None = None
                  ) -> list[RunResult]:
    """Run every metric of every template in parallel (as concurrent AnalysisRuns would)."""
    results: dict[tuple[str, str], MetricResult] = {}
    lock = threading.Lock()

    def work(metric: Metric) -> None:
        r = run_metric(metric, on_measurement=on_measurement)
        with lock:
            results[(metric.template, metric.name)] = r

    threads = [threading.Thread(target=work, args=(m,), name=f"{m.template}/{m.name}")
               for ms in templates.values() for m in ms]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [RunResult(name, [results[(name, m.name)] for m in ms])
            for name, ms in templates.items()]


# --------------------------------------------------------------------------- CLI

def _print_measurement(res: MetricResult) -> None:
    m = res.measurements[-1]
    n = len(res.measurements)
    extra = f"  ({m.message})" if m.message else ""
    print(f"  {res.metric.template}/{res.metric.name} [{n}/{res.metric.count}] "
          f"{m.phase:<12} result={m.value}{extra}", flush=True)


def _cmd_analyze(args: argparse.Namespace) -> int:
    given = {}
    for item in args.arg or []:
        if "=" not in item:
            raise InputError(f"--arg: must be NAME=VALUE (got {item!r})")
        k, v = item.split("=", 1)
        given[k] = v
    templates = load_templates(args.templates, given, args.prometheus, args.template)
    total = sum(len(v) for v in templates.values())
    print(f"analyze: {len(templates)} template(s), {total} metric(s)", flush=True)
    runs = run_templates(templates, on_measurement=_print_measurement)
    for run in runs:
        print(f"{run.template}: {run.phase}")
        for m in run.metrics:
            print(f"  {m.metric.name}: {m.phase}" + (f" ({m.message})" if m.message else ""))
    phase = worst(r.phase for r in runs)
    if args.json:
        from modelops.fsutil import write_json

        write_json(args.json, {"phase": phase, "templates": [
            {"name": r.template, "phase": r.phase, "metrics": [
                {"name": m.metric.name, "phase": m.phase, "message": m.message,
                 "query": m.metric.query,
                 "measurements": [vars(x) for x in m.measurements]} for m in r.metrics]}
            for r in runs]})
    if phase != SUCCESSFUL:
        verdict = "pause" if phase == INCONCLUSIVE else "abort"
        raise GateFailed(f"analysis {phase.lower()}: argo rollouts would {verdict} the rollout")
    print("analysis successful: argo rollouts would continue the rollout")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "analyze", help="evaluate rendered AnalysisTemplates against a Prometheus",
        description="Run the Prometheus metrics of AnalysisTemplates (count, interval, "
                    "successCondition, failureCondition, failureLimit, inconclusiveLimit, "
                    "consecutiveErrorLimit) the way Argo Rollouts does, and say whether the "
                    "rollout would continue (exit 0), abort or pause (exit 1).")
    p.add_argument("--templates", required=True, metavar="FILE",
                   help="analysis-templates.yaml written by `gitops render`")
    p.add_argument("--template", action="append", metavar="NAME",
                   help="only this template (repeatable; default: all in the file)")
    p.add_argument("--prometheus", metavar="URL",
                   help="query this Prometheus instead of the address in the templates")
    p.add_argument("--arg", action="append", metavar="NAME=VALUE",
                   help="value for a template argument (repeatable)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(handler=_cmd_analyze)


if __name__ == "__main__":  # pragma: no cover
    from modelops.cli import run_main

    def _parser() -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog="python -m modelops.gitops.analysis")
        register(parser.add_subparsers())
        return parser

    sys.exit(run_main(_parser, prog="gitops analyze"))
