"""``modelops-ci retrain``: turn a drift alert into a retraining pull request.

Runs in the model repository (the ``retrain.yml`` workflow, on ``repository_dispatch``):

1. reads the event (``GITHUB_EVENT_PATH``); a dispatch for another model, or from an
   environment that may not retrain (``retrain.environments``), is not ours (exit 0);
2. the storm guard, from the repository's own pull requests: while a retraining pull request
   is open nothing happens (``already-open``); within ``retrain.cooldown`` of the last one
   (``cooldown``) or after ``retrain.daily_cap`` in 24 hours (``daily-cap``) neither;
3. picks the fresh data of the alert's model and window: ``retrain.fresh_data`` (``{model}``
   replaced; any folder or URL ``dvc ls-url`` lists) holds one CSV file or folder per day, named
   by its date; the days from ``retrain.lookback`` before the alert started until now are
   taken, less those an earlier batch already brought in. No new data: nothing to retrain;
4. writes them as one batch file in ``retrain.incoming`` and tracks it with DVC (``dvc add``:
   the data goes to the DVC remote, git holds the ``.dvc`` file with the batch's source,
   window and partitions); a batch whose pull request was closed unmerged is not proposed again
   (``rejected-before``);
5. ``dvc repro`` (the pipeline reads the incoming folder, so ``dvc.lock`` records the new data
   version), commits on ``<branch_prefix><model>-<batch>``, ``dvc push``es, pushes the branch
   and opens a pull request. It never pushes to the base branch: the normal PR evaluation
   judges the retrained model.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.ci.drift_report import pull_request_section
from modelops.errors import ExternalError, InputError
from modelops.git import git
from modelops.settings import load_settings
from modelops.settings.retrain import RetrainParams, duration_seconds
from modelops.yamlio import load_yaml

_DATE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})")
DAY = dt.timedelta(days=1)


@dataclass
class RetrainResult:
    # opened | pushed | committed | already-open | cooldown | daily-cap | rejected-before |
    # no-new-data | not-this-model | not-this-env
    status: str
    branch: str | None = None
    pull_request: int | None = None
    url: str | None = None
    batch: str | None = None
    files: list[str] = field(default_factory=list)


def _log(message: str) -> None:
    print(f"retrain: {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], cwd: Path, what: str) -> str:
    _log(f"$ {' '.join(cmd)}")
    proc = subprocess.run(cmd, cwd=cwd, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise ExternalError(f"{what} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}",
                            hint="run the same command locally to see the whole output")
    return proc.stdout


def read_event(path: str | None) -> dict[str, Any]:
    """The dispatch's ``client_payload`` (empty for manual runs)."""
    if not path:
        return {}
    try:
        event = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read the event payload: {exc}") from exc
    payload = event.get("client_payload") or {}
    if not isinstance(payload, dict):
        raise InputError(f"{path}: client_payload must be an object (got {payload!r:.60})")
    for key in ("model", "env", "version", "starts_at"):
        if key in payload and not isinstance(payload[key], str):
            raise InputError(f"{path}: client_payload.{key} must be a string "
                             f"(got {payload[key]!r:.60})")
    return payload


# --------------------------------------------------------------------------- fresh data

def _parse_time(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def data_window(payload: dict[str, Any], retrain: RetrainParams, now: dt.datetime
                ) -> tuple[dt.date, dt.date]:
    """The days of data to retrain on: ``lookback`` before the alert started, until now."""
    started = _parse_time(str(payload.get("starts_at") or "")) or now
    start = (started - dt.timedelta(seconds=duration_seconds(retrain.lookback))).date()
    return start, max(now.date(), started.date())


def partition_date(name: str) -> dt.date | None:
    match = _DATE.search(name)
    if not match:
        return None
    try:
        return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return None


def _source(template: str, model: str, root: Path) -> str:
    source = template.replace("{model}", model)
    if "://" not in source and not Path(source).is_absolute():
        source = str(root / source)
    return source


def list_partitions(source: str, start: dt.date, end: dt.date) -> list[tuple[str, dt.date]]:
    """(name, date) of the entries of ``source`` dated within [start, end], oldest first."""
    from dvc.repo.ls_url import ls_url

    try:
        entries = ls_url(source)
    except Exception as exc:  # noqa: BLE001 - whatever the filesystem raised
        raise InputError(f"fresh data source {source!r} cannot be listed: {exc}",
                         hint="set params.yaml modelops.retrain.fresh_data or --fresh-data; "
                              "its credentials come from the environment") from exc
    out = []
    for entry in entries:
        name = entry["path"].rstrip("/").rsplit("/", 1)[-1]
        day = partition_date(name)
        if day is not None and start <= day <= end and (entry["isdir"] or name.endswith(".csv")):
            out.append((name, day))
    return sorted(out, key=lambda nd: (nd[1], nd[0]))


def ingested_partitions(incoming: Path) -> set[str]:
    """``source-name:md5`` of every partition an earlier batch brought in (from the batches'
    ``.dvc`` files)."""

    seen: set[str] = set()
    for dvcfile in sorted(incoming.glob("*.dvc")):
        try:
            meta = (load_yaml(dvcfile.read_text()) or {}).get("meta") or {}
        except Exception:  # noqa: BLE001, S112 - a foreign .dvc file
            continue
        for part in (meta.get("modelops") or {}).get("partitions") or []:
            if isinstance(part, dict):
                seen.add(f"{part.get('name')}:{part.get('md5')}")
    return seen


@dataclass
class Batch:
    id: str
    path: Path
    partitions: list[dict[str, str]]
    rows: int


def fetch_batch(root: Path, retrain: RetrainParams, model: str, source_template: str,
                window: tuple[dt.date, dt.date]) -> Batch | None:
    """Download the window's new partitions and write them as one batch CSV (not yet added)."""
    from dvc.repo.get_url import get_url

    incoming = root / retrain.incoming
    incoming.mkdir(parents=True, exist_ok=True)
    source = _source(source_template, model, root)
    names = list_partitions(source, *window)
    seen = ingested_partitions(incoming)
    header: str | None = None
    lines: list[str] = []
    parts: list[dict[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="fresh-") as tmp:
        for name, day in names:
            dest = Path(tmp) / name
            try:
                get_url(f"{source.rstrip('/')}/{name}", str(dest))
            except Exception as exc:  # noqa: BLE001
                raise ExternalError(f"cannot download {name!r} from {source!r}: {exc}",
                                    retryable=True) from exc
            files = sorted(dest.rglob("*.csv")) if dest.is_dir() else [dest]
            data = b"".join(f.read_bytes() for f in files)
            md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if f"{name}:{md5}" in seen:
                continue
            for f in files:
                text = f.read_text(encoding="utf-8").splitlines()
                if not text:
                    continue
                if header is None:
                    header = text[0]
                elif text[0] != header:
                    raise InputError(f"{name}/{f.name}: its header differs from the first "
                                     f"file's ({text[0][:60]!r} vs {header[:60]!r})",
                                     hint="every fresh file must have the same columns")
                lines += [row for row in text[1:] if row.strip()]
            parts.append({"name": name, "date": day.isoformat(), "md5": md5})
    if not parts or header is None:
        return None
    identity = "\n".join(f"{p['name']}:{p['md5']}" for p in parts)
    batch_id = hashlib.sha256(identity.encode()).hexdigest()[:12]
    path = incoming / f"{model}-{parts[0]['date']}_{parts[-1]['date']}-{batch_id}.csv"
    path.write_text("\n".join([header, *lines]) + "\n", encoding="utf-8")
    return Batch(batch_id, path, parts, len(lines))


def track_batch(root: Path, batch: Batch, source: str, window: tuple[dt.date, dt.date]
                ) -> list[str]:
    """``dvc add`` the batch and record where it came from in its ``.dvc`` file's ``meta``.
    Returns the files git must commit (the .dvc file, the .gitignore)."""
    from dvc.repo import Repo
    from dvc.utils.serialize import modify_yaml

    rel = batch.path.relative_to(root)
    with Repo(str(root)) as repo:
        repo.add(str(rel))
    dvcfile = root / f"{rel}.dvc"
    with modify_yaml(str(dvcfile)) as data:
        data["meta"] = {"modelops": {"batch": batch.id, "source": source,
                                     "window": [window[0].isoformat(), window[1].isoformat()],
                                     "rows": batch.rows, "partitions": batch.partitions}}
    return [str(rel) + ".dvc", str(rel.parent / ".gitignore")]


# --------------------------------------------------------------------------- storm guard

def retrain_pulls(github: dict[str, str], prefix: str, base: str) -> list[Any]:
    """Every pull request (open and closed) from a ``prefix*`` branch into ``base``."""
    from modelops.github import GitHub

    try:
        pulls = GitHub(github["token"], github.get("api_url")).list_pulls(
            github["repository"], state="all", base=base)
    except ExternalError as exc:
        raise ExternalError(exc.message, hint="check GITHUB_TOKEN (pull-requests: read)",
                            retryable=exc.retryable) from exc
    return [pr for pr in pulls if pr.head.ref.startswith(prefix)]


def _when(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return _parse_time(str(value)) if value else None


def storm_guard(pulls: list[Any], retrain: RetrainParams, now: dt.datetime
                ) -> tuple[str, Any] | None:
    """``(status, pull)`` when the storm guard says no, else None."""
    for pr in pulls:
        if pr.state == "open":
            return "already-open", pr
    created = sorted(((_when(pr.created_at), pr) for pr in pulls if _when(pr.created_at)),
                     key=lambda cp: cp[0])
    if created and (now - created[-1][0]).total_seconds() < duration_seconds(retrain.cooldown):
        return "cooldown", created[-1][1]
    last_day = [pr for when, pr in created if (now - when).total_seconds() < 86400]
    if len(last_day) >= retrain.daily_cap:
        return "daily-cap", last_day[-1]
    return None


def rejected(pulls: list[Any], branch: str) -> Any | None:
    """The pull request of this very batch that was closed without a merge, if any."""
    for pr in pulls:
        if pr.head.ref == branch and pr.state == "closed" and not pr.merged_at:
            return pr
    return None


# --------------------------------------------------------------------------- retrain

def retrain(root: Path, *, settings: Any, fresh_data: str, base: str,
            payload: dict[str, Any], github: dict[str, str] | None, push: bool = True,
            now: dt.datetime | None = None) -> RetrainResult:
    model = settings.model.name
    rt: RetrainParams = settings.retrain
    now = now or dt.datetime.now(dt.UTC)
    wanted = payload.get("model")
    if wanted and wanted != model:
        _log(f"the dispatch is for model {wanted!r}, this repository holds {model!r}: "
             "nothing to do")
        return RetrainResult("not-this-model")
    env = payload.get("env")
    if env and env not in rt.environments:
        _log(f"the alert came from {env!r}; only {', '.join(rt.environments)} may retrain")
        return RetrainResult("not-this-env")
    prefix = f"{rt.branch_prefix}{model}-"
    pulls = retrain_pulls(github, prefix, base) if github else []
    guard = storm_guard(pulls, rt, now)
    if guard:
        status, pr = guard
        _log(f"{status}: retraining pull request #{pr.number} ({pr.html_url}); nothing to do")
        return RetrainResult(status, branch=pr.head.ref, pull_request=pr.number, url=pr.html_url)
    if not fresh_data:
        raise InputError("no fresh data source: params.yaml modelops.retrain.fresh_data is ''",
                         hint="set it (or pass --fresh-data) to the folder or URL of the "
                              "labelled data")
    window = data_window(payload, rt, now)
    source = _source(fresh_data, model, root)
    batch = fetch_batch(root, rt, model, fresh_data, window)
    if batch is None:
        _log(f"no new data in {source!r} for {window[0]}..{window[1]}: nothing to retrain")
        return RetrainResult("no-new-data")
    branch = f"{prefix}{batch.id}"
    before = rejected(pulls, branch)
    if before is not None:
        batch.path.unlink(missing_ok=True)
        _log(f"this batch ({batch.id}) was proposed in #{before.number} and closed without a "
             "merge: not proposing it again")
        return RetrainResult("rejected-before", branch=branch, pull_request=before.number,
                             url=before.html_url, batch=batch.id)
    _log(f"batch {batch.id}: {batch.rows} row(s) from {len(batch.partitions)} partition(s) "
         f"({window[0]}..{window[1]})")
    start = git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=root).stdout.decode().strip()
    alerts = ", ".join(payload.get("alerts") or []) or "manual run"
    added: list[str] = []
    ignore = batch.path.parent / ".gitignore"
    had_ignore = ignore.exists()
    git(["checkout", "-q", "-b", branch], cwd=root)
    try:
        added = track_batch(root, batch, source, window)
        # before the repro: against the baseline of the model this one would replace
        drift = pull_request_section(root, settings, batch.path)
        _run([sys.executable, "-m", "dvc", "repro"], root, "dvc repro")
        git(["add", "-u"], cwd=root)
        git(["add", "--", *added], cwd=root)
        message = (f"retrain {model} on fresh data (batch {batch.id})\n\n"
                   f"Triggered by: {alerts}\n"
                   f"Production version: {payload.get('version') or 'unknown'}\n"
                   f"Data: {len(batch.partitions)} partition(s), {batch.rows} row(s), "
                   f"{window[0]}..{window[1]}, from {source}\n")
        git(["commit", "-q", "-m", message], cwd=root)
    except BaseException:
        # leave the checkout as it was: no branch, no batch, outputs restored
        Path(f"{batch.path}.dvc").unlink(missing_ok=True)
        batch.path.unlink(missing_ok=True)
        if not had_ignore:
            ignore.unlink(missing_ok=True)
        git(["checkout", "-q", "-f", start], cwd=root, check=False)
        git(["branch", "-q", "-D", branch], cwd=root, check=False)
        subprocess.run([sys.executable, "-m", "dvc", "checkout", "-q"], cwd=root, check=False,
                       capture_output=True)
        raise
    files = [p["name"] for p in batch.partitions]
    if not push:
        return RetrainResult("committed", branch=branch, batch=batch.id, files=files)
    _run([sys.executable, "-m", "dvc", "push"], root, "dvc push")
    git(["push", "origin", f"HEAD:refs/heads/{branch}"], cwd=root, what="git push")
    if not github:
        _log(f"pushed {branch}; no GITHUB_TOKEN, so no pull request was opened")
        return RetrainResult("pushed", branch=branch, batch=batch.id, files=files)
    from modelops.github import GitHub

    body = (f"Automatic retraining of `{model}` after a drift alert ({alerts}).\n\n"
            f"- production version when the alert fired: `{payload.get('version') or '?'}`\n"
            f"- fresh data: {batch.rows} row(s) from {len(batch.partitions)} partition(s) "
            f"({', '.join(f'`{n}`' for n in files)}), days {window[0]}..{window[1]}, "
            f"tracked by DVC as `{batch.path.relative_to(root)}`\n"
            f"- {metrics_line(root, settings)}\n\n"
            f"{drift}\n\n"
            "The pull-request evaluation below compares this model with the base branch. "
            "Merge only if its gates pass; nothing is deployed before a merge. Closing this "
            "pull request without a merge rejects the batch: it will not be proposed again.")
    number, url = GitHub(github["token"], github.get("api_url")).open_pull_request(
        github["repository"], branch, base, f"Retrain {model} on fresh data ({batch.id})", body)
    _log(f"pull request #{number}: {url}")
    return RetrainResult("opened", branch=branch, pull_request=number, url=url, batch=batch.id,
                         files=files)


def metrics_line(root: Path, settings: Any) -> str:
    """The model's headline metrics after retraining (``modelops.model.headline``)."""
    from modelops.gitops.sweep import headline_of, read_metrics

    model = settings.model
    try:
        values = headline_of(read_metrics(root, model.metrics), model.headline, model.metrics)
    except ExternalError:
        values = {}
    shown = [f"`{k}` {v:.4f}" for k, v in values.items() if v is not None]
    if not shown:
        return "metrics: see the evaluation comment"
    return "after retraining: " + ", ".join(shown)


def _cmd_retrain(args) -> int:
    root = Path(args.repo).resolve()
    settings = load_settings(root / "params.yaml")
    payload = read_event(args.event or os.environ.get("GITHUB_EVENT_PATH"))
    token = os.environ.get("GITHUB_TOKEN")
    repository = args.github_repo or os.environ.get("GITHUB_REPOSITORY")
    github = None
    if token and repository:
        github = {"token": token, "repository": repository,
                  "api_url": os.environ.get("GITHUB_API_URL") or "https://api.github.com"}
    now = _parse_time(args.now) if args.now else None
    if args.now and now is None:
        raise InputError(f"--now must be an ISO 8601 time (got {args.now!r})")
    result = retrain(root, settings=settings,
                     fresh_data=args.fresh_data or settings.retrain.fresh_data,
                     base=args.base, payload=payload, github=github, push=not args.no_push,
                     now=now)
    out = os.environ.get("GITHUB_OUTPUT")
    if out:
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(f"status={result.status}\n")
            fh.write(f"branch={result.branch or ''}\n")
            fh.write(f"pull-request={result.pull_request or ''}\n")
            fh.write(f"url={result.url or ''}\n")
    print(json.dumps(result.__dict__))
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "retrain", help="fetch the alert's fresh data, reproduce, open a retraining PR",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=".", help="model repository root (default: .)")
    p.add_argument("--event", default=None,
                   help="event payload JSON (default: $GITHUB_EVENT_PATH)")
    p.add_argument("--fresh-data", default=None,
                   help="folder or URL of the dated fresh data "
                        "(default: params.yaml modelops.retrain.fresh_data)")
    p.add_argument("--base", default="main", help="base branch of the pull request")
    p.add_argument("--github-repo", default=None, help="OWNER/NAME (default: $GITHUB_REPOSITORY)")
    p.add_argument("--now", default=None, help=argparse.SUPPRESS)  # tests pin the clock
    p.add_argument("--no-push", action="store_true",
                   help="commit on a local branch only (no dvc push, git push or pull request)")
    p.set_defaults(handler=_cmd_retrain)
