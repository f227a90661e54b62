"""``modelops-ci cost``: what training and serving cost, per model, environment and team.
Every figure is an estimate: the recorded resources times the price table.

Where the figures come from:

- **training, committed**: every stage run that produced a committed model recorded its
  compute in ``metrics/compute/<stage>.json`` (:mod:`modelops.compute`); a commit of the
  first-parent history that changes one of those files is a run of that stage;
- **training, every run**: CI jobs and Workflow tasks upload the records of *all* their runs
  (failed ones, retries, pull requests that were never merged) to the ledger
  (``modelops.cost.ledger``, ``modelops-ci cost upload``); a run found in both is counted once;
- **serving**: the GitOps repository's history (``<env>/<model>/rollout.yaml`` at every
  first-parent commit that touched it) gives, for each interval, the replicas and each
  replica's resource requests; replicas x requests x time is priced like training;
- **prices** are dated (``modelops.cost.prices``): each run, and each part of a serving
  interval, is priced at the prices in force on its own day.

``modelops-ci cost --report reports/report.json [--base REV]`` adds the ``compute`` section to a
PR report instead: every stage's committed record, which stages this change reran, and the
compute this pull request's own job spent (every run it recorded).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from modelops.ci.cost_markdown import render_compute_section
from modelops.compute import (
    COMPUTE_DIR,
    CostParams,
    compute_section,
    ledger_of,
    price,
    read_ledger,
    upload_runs,
)
from modelops.errors import ExternalError, InputError
from modelops.git import git, git_text
from modelops.retry import retry_call
from modelops.settings import SETTINGS_KEY, load_settings, model_name_of
from modelops.yamlio import load_yaml, load_yaml_all

__all__ = ["compute_section", "history", "reran_since", "render_compute_section"]

ROLLUP_KEYS = ("model", "env", "team")


def _git(root: Path, *args: str, check: bool = True) -> str:
    out = git_text(args, cwd=root)
    if out is None:
        if not check:
            return ""
        raise InputError(f"git {args[0]} failed in {root}",
                         hint="run inside the model repository (a git checkout with history)")
    return out


def _owner_at(root: Path, commit: str) -> tuple[str, str]:
    text = _git(root, "show", f"{commit}:params.yaml", check=False)
    try:
        raw = load_yaml(text) or {}
    except Exception:  # noqa: BLE001 - an old or broken params.yaml: still count the run
        return "unknown", ""
    team = ((raw.get(SETTINGS_KEY) or {}).get("model") or {}).get("team", "") \
        if isinstance(raw, dict) else ""
    return model_name_of(raw) or "unknown", str(team or "")


# --------------------------------------------------------------------------- training

def committed_runs(root: Path, rev: str = "HEAD") -> list[dict[str, Any]]:
    """Every stage run committed on ``rev``'s first-parent history (oldest first), as a record
    with ``commit`` and ``date``; records older than schema 2 get their commit's date."""
    log = _git(root, "log", "--first-parent", "--reverse", "--format=%H %cI", rev, "--",
               str(COMPUTE_DIR)).split("\n")
    out = []
    for line in filter(None, log):
        commit, date = line.split(" ", 1)
        changed = _git(root, "diff-tree", "--no-commit-id", "--name-only", "-r", "--root",
                       "--diff-filter=AM", "-m", "--first-parent", commit, "--",
                       str(COMPUTE_DIR)).split()
        model, team = _owner_at(root, commit)
        for path in sorted(set(changed)):
            try:
                data = json.loads(_git(root, "show", f"{commit}:{path}"))
            except (ValueError, InputError):
                continue
            if not isinstance(data, dict):
                continue
            out.append({**data, "id": data.get("id") or f"{commit}:{path}",
                        "model": data.get("model") if data.get("model") not in (None, "unknown")
                        else model,
                        "team": data.get("team") or team, "env": data.get("env") or "training",
                        "date": data.get("started_at") or date, "commit": commit,
                        "source": "git"})
    return out


def training_items(root: Path, prices: CostParams, *, rev: str = "HEAD",
                   ledger: str = "") -> list[dict[str, Any]]:
    """Committed runs and the ledger's runs, each once, as priced cost items."""
    runs = {r["id"]: r for r in committed_runs(root, rev)}
    if ledger:
        for record in read_ledger(ledger):
            rid = record.get("id")
            if rid and rid not in runs:
                runs[rid] = {**record, "date": record.get("started_at"), "source": "ledger"}
    items = []
    for record in runs.values():
        items.append({
            "kind": "training", "id": record["id"], "source": record.get("source", "git"),
            "model": str(record.get("model") or "unknown"), "team": str(record.get("team") or ""),
            "env": str(record.get("env") or "training"), "stage": record.get("stage"),
            "status": record.get("status", "succeeded"), "date": record.get("date"),
            "run": record.get("run") or {},
            "cpu_seconds": float(record.get("cpu_seconds", 0.0) or 0.0),
            "gpu_seconds": float(record.get("gpu_seconds", 0.0) or 0.0),
            "memory_gb_seconds": float(record.get("memory_gb_seconds", 0.0) or 0.0),
            "cost": price(record, prices, record.get("date"))})
    return items


def history(root: Path, prices: CostParams, rev: str = "HEAD") -> dict[str, Any]:
    """Per model: runs (commits), stage runs, CPU/GPU/memory and cost of the committed runs,
    each priced at its own date."""
    models: dict[str, dict[str, Any]] = defaultdict(lambda: {
        "runs": 0, "stage_runs": defaultdict(int), "cpu_seconds": 0.0, "gpu_seconds": 0.0,
        "memory_gb_seconds": 0.0, "cost": 0.0, "first": None, "last": None, "commits": set()})
    for record in committed_runs(root, rev):
        entry = models[record["model"]]
        entry["commits"].add(record["commit"])
        entry["stage_runs"][str(record.get("stage", "?"))] += 1
        for key in ("cpu_seconds", "gpu_seconds", "memory_gb_seconds"):
            entry[key] += float(record.get(key, 0.0) or 0.0)
        entry["cost"] += price(record, prices, record["date"])
        entry["first"] = entry["first"] or record["date"]
        entry["last"] = record["date"]
    return {name: {"runs": len(e["commits"]), "stage_runs": dict(e["stage_runs"]),
                   "cpu_seconds": round(e["cpu_seconds"], 3),
                   "gpu_seconds": round(e["gpu_seconds"], 3),
                   "memory_gb_seconds": round(e["memory_gb_seconds"], 3),
                   "cost": round(e["cost"], 6), "currency": prices.currency,
                   "first": e["first"], "last": e["last"], "estimate": True}
            for name, e in sorted(models.items())}


def reran_since(root: Path, base: str) -> list[str]:
    """Stages whose compute record differs between ``base`` and the working tree."""
    out = _git(root, "diff", "--name-only", base, "--", str(COMPUTE_DIR))
    out += _git(root, "ls-files", "--others", "--exclude-standard", "--", str(COMPUTE_DIR))
    return sorted({Path(p).stem for p in out.split()})


# --------------------------------------------------------------------------- serving

_QUANTITY = re.compile(
    r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {"": 1, "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
           "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9,
           "T": Decimal(10) ** 12, "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50,
           "Ei": 2 ** 60}


def quantity(value: Any) -> float:
    """A Kubernetes quantity (``250m``, ``256Mi``, ``1e3``, ``2``) as a number."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise InputError(f"not a Kubernetes quantity: {value!r}")
    try:
        return float(Decimal(match.group(1)) * Decimal(_SUFFIX[match.group(2) or ""]))
    except InvalidOperation as exc:
        raise InputError(f"not a Kubernetes quantity: {value!r}") from exc


def rollout_footprint(text: str | None) -> dict[str, float] | None:
    """Replicas and per-replica requests (CPU cores, memory GB, GPUs) of a rendered Rollout
    (or Deployment); None when the file is gone or holds neither."""
    if not text:
        return None

    for doc in load_yaml_all(text):
        if not isinstance(doc, dict) or doc.get("kind") not in ("Rollout", "Deployment"):
            continue
        spec = doc.get("spec") or {}
        pod = ((spec.get("template") or {}).get("spec") or {})
        cpu = mem = gpu = 0.0
        for c in pod.get("containers") or []:
            res = c.get("resources") or {}
            requests, limits = res.get("requests") or {}, res.get("limits") or {}
            cpu += quantity(requests.get("cpu", limits.get("cpu", 0)))
            mem += quantity(requests.get("memory", limits.get("memory", 0))) / 1e9
            gpu += quantity(limits.get("nvidia.com/gpu", requests.get("nvidia.com/gpu", 0)))
        return {"replicas": float(spec.get("replicas", 1)), "cpu": cpu, "memory_gb": mem,
                "gpu": gpu}
    return None


def _segments(start: dt.datetime, end: dt.datetime, prices: CostParams
              ) -> Iterable[tuple[dt.datetime, dt.datetime]]:
    """[start, end) cut at the days a new price period starts."""
    cuts = sorted(dt.datetime.combine(p.start, dt.time(), dt.UTC) for p in prices.prices)
    here = start
    for cut in cuts:
        if here < cut < end:
            yield here, cut
            here = cut
    if here < end:
        yield here, end


def serving_items(gitops: Path, *, model: str, team: str, envs: Sequence[str],
                  prices: CostParams, until: dt.datetime, rev: str = "HEAD"
                  ) -> list[dict[str, Any]]:
    """Cost items for each interval each environment served ``model`` (replicas x requests x
    time), from a clone of the GitOps repository."""
    items = []
    for env in envs:
        folder = f"{env}/{model}"
        log = _git(gitops, "log", "--first-parent", "--reverse", "--format=%H %ct", rev, "--",
                   folder, check=False).split("\n")
        rows = []
        for line in filter(None, log):
            commit, ct = line.split(" ", 1)
            text = _git(gitops, "show", f"{commit}:{folder}/rollout.yaml", check=False)
            rows.append((commit, dt.datetime.fromtimestamp(int(ct), dt.UTC),
                         rollout_footprint(text)))
        for i, (commit, since, shape) in enumerate(rows):
            if shape is None:
                continue
            end = rows[i + 1][1] if i + 1 < len(rows) else until
            for a, b in _segments(since, min(end, until), prices):
                hours = (b - a).total_seconds() / 3600
                period = prices.at(a)
                replica_hours = shape["replicas"] * hours
                cost = replica_hours * (shape["cpu"] * period.cpu_core_hour
                                        + shape["memory_gb"] * period.memory_gb_hour
                                        + shape["gpu"] * period.gpu_hour)
                items.append({
                    "kind": "serving", "id": f"{commit}:{env}:{a.isoformat()}",
                    "source": "gitops", "model": model, "team": team, "env": env,
                    "date": a.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "until": b.strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": commit,
                    "replicas": shape["replicas"], "replica_hours": round(replica_hours, 6),
                    "cpu_seconds": replica_hours * shape["cpu"] * 3600,
                    "gpu_seconds": replica_hours * shape["gpu"] * 3600,
                    "memory_gb_seconds": replica_hours * shape["memory_gb"] * 3600,
                    "cost": cost})
    return items


def clone_gitops(url: str, dest: Path) -> Path:
    """A bare clone of the GitOps repository (bounded, retried when the network fails)."""

    def once() -> Path:
        shutil.rmtree(dest, ignore_errors=True)
        git(["clone", "-q", "--bare", url, str(dest)], what="git clone of the GitOps repository",
            timeout=600)
        return dest

    return retry_call(once, what="git clone")


# --------------------------------------------------------------------------- roll-ups

def rollup(items: Sequence[Mapping[str, Any]], key: str, currency: str) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        name = str(item.get(key) or "(none)")
        entry = out.setdefault(name, {"training": 0.0, "serving": 0.0, "runs": 0, "failed": 0,
                                      "cpu_hours": 0.0, "gpu_hours": 0.0,
                                      "memory_gb_hours": 0.0})
        entry[item["kind"]] += item["cost"]
        if item["kind"] == "training":
            entry["runs"] += 1
            entry["failed"] += item.get("status") == "failed"
        entry["cpu_hours"] += item["cpu_seconds"] / 3600
        entry["gpu_hours"] += item["gpu_seconds"] / 3600
        entry["memory_gb_hours"] += item["memory_gb_seconds"] / 3600
    return {name: {**{k: round(v, 6) if isinstance(v, float) else v for k, v in e.items()},
                   "total": round(e["training"] + e["serving"], 6), "currency": currency,
                   "estimate": True}
            for name, e in sorted(out.items())}


def summary(items: Sequence[Mapping[str, Any]], prices: CostParams) -> dict[str, Any]:
    return {"estimate": True, "currency": prices.currency,
            "by": {key: rollup(items, key, prices.currency) for key in ROLLUP_KEYS},
            "total": round(sum(i["cost"] for i in items), 6),
            "prices": [{"since": p.since, "cpu_core_hour": p.cpu_core_hour,
                        "gpu_hour": p.gpu_hour, "memory_gb_hour": p.memory_gb_hour}
                       for p in prices.prices]}


def format_table(report: dict[str, Any]) -> str:
    """The roll-ups as text (``modelops-ci cost``), or the per-model history."""
    if "by" not in report:  # the per-model history of committed runs
        if not report:
            return "no compute records in this history (metrics/compute/*.json)"
        lines = [f"{'model':<24} {'runs':>5} {'CPU h':>9} {'GPU h':>9} {'cost (est.)':>14}  since"]
        for name, e in report.items():
            lines.append(f"{name:<24} {e['runs']:>5} {e['cpu_seconds'] / 3600:>9.3f} "
                         f"{e['gpu_seconds'] / 3600:>9.3f} {e['cost']:>10.4f} {e['currency']}  "
                         f"{(e['first'] or '')[:10]}")
        return "\n".join(lines)
    cur = report["currency"]
    lines = [f"Estimated cost ({cur}; recorded resources x the dated price table)"]
    for key in ROLLUP_KEYS:
        lines += ["", f"{'by ' + key:<24} {'runs':>5} {'failed':>6} {'training':>11} "
                      f"{'serving':>11} {'total':>11}"]
        for name, e in report["by"][key].items():
            lines.append(f"{name:<24} {e['runs']:>5} {e['failed']:>6} {e['training']:>11.4f} "
                         f"{e['serving']:>11.4f} {e['total']:>11.4f}")
    lines += ["", f"total (estimate): {report['total']:.4f} {cur}"]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the comment

# --------------------------------------------------------------------------- CLI

def _parse_day(value: str | None, flag: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(f"{flag} must be a date or time such as 2026-11-01 "
                         f"(got {value!r})") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _cmd_cost(args) -> int:
    root = Path(args.repo)
    params = load_settings(root / args.params)
    if args.report:
        from modelops.ci.reportfile import merge_section

        reran = reran_since(root, args.base) if args.base else None
        merge_section(args.report, "compute", compute_section(root, params.cost, reran))
        print(f"cost: compute section added to {args.report}")
        return 0
    if args.history:
        summary_ = history(root, params.cost, args.rev)
        print(json.dumps(summary_, indent=2) if args.json else format_table(summary_))
        return 0
    ledger = args.ledger if args.ledger is not None else params.cost.ledger
    items = training_items(root, params.cost, rev=args.rev, ledger=ledger)
    until = _parse_day(args.until, "--until") or dt.datetime.now(dt.UTC)
    gitops_url = args.gitops_repo or params.deploy.gitops_repo
    if args.serving and not gitops_url:
        raise InputError("--serving needs the GitOps repository",
                         hint="pass --gitops-repo URL or set modelops.deploy.gitops_repo")
    if gitops_url and args.serving:
        tmp = Path(tempfile.mkdtemp(prefix="modelops-cost-"))
        try:
            clone = clone_gitops(gitops_url, tmp / "gitops.git")
            items += serving_items(clone, model=params.model.name, team=params.model.team,
                                   envs=list(params.deploy.environments), prices=params.cost,
                                   until=until)
        except ExternalError as exc:
            raise ExternalError(exc.message, hint="check --gitops-repo and its credentials",
                                retryable=exc.retryable) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    since = _parse_day(args.since, "--since")
    if since:
        items = [i for i in items if _parse_day(str(i.get("date") or ""), "date") is None
                 or _parse_day(str(i["date"]), "date") >= since]
    report = summary(items, params.cost)
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0


def _cmd_upload(args) -> int:
    root = Path(args.repo)
    ledger = args.ledger or ledger_of(root)
    if not ledger:
        print("cost: no ledger configured (modelops.cost.ledger): nothing uploaded")
        return 0
    try:
        n = upload_runs(root, ledger)
    except OSError as exc:
        raise ExternalError(f"cannot write to the ledger {ledger!r}: {exc}", retryable=True,
                            hint="check its credentials (the environment's AWS_* for s3://)"
                            ) from exc
    print(f"cost: {n} run record(s) uploaded to {ledger}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "cost", help="estimated cost per model, environment and team (training and serving)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=".", help="model repository (default: .)")
    p.add_argument("--params", default="params.yaml", help="params file (price table)")
    p.add_argument("--rev", default="HEAD", help="history to walk (default: HEAD)")
    p.add_argument("--ledger", default=None,
                   help="ledger of uploaded runs (default: modelops.cost.ledger; '' = none)")
    p.add_argument("--serving", action="store_true",
                   help="add serving cost from the GitOps repository's history")
    p.add_argument("--gitops-repo", default=None,
                   help="the GitOps repository (default: modelops.deploy.gitops_repo)")
    p.add_argument("--since", default=None, help="only costs from this date on")
    p.add_argument("--until", default=None,
                   help="serving intervals still running end here (default: now)")
    p.add_argument("--history", action="store_true",
                   help="per model, the committed runs only (the old summary)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--report", default=None,
                   help="add the compute section to this report.json instead")
    p.add_argument("--base", default=None,
                   help="with --report: base revision, to mark the stages this change reran")
    p.set_defaults(handler=_cmd_cost)
    u = sub.add_parser(
        "cost-upload", help="upload this job's compute records to the cost ledger",
        description="Copy the run records of this checkout (.dvc/tmp/modelops/runs/: every stage "
                    "run, failed ones too) to the ledger (--ledger, else $MODELOPS_COST_LEDGER, "
                    "else modelops.cost.ledger), so "
                    "`modelops-ci cost` counts CI and Workflow runs that never reach git.")
    u.add_argument("--repo", default=".", help="model repository (default: .)")
    u.add_argument("--params", default="params.yaml", help="params file")
    u.add_argument("--ledger", default=None, help="folder or URL (default: modelops.cost.ledger)")
    u.set_defaults(handler=_cmd_upload)
