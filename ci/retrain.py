"""``modelops-ci retrain``: turn a drift alert into a retraining pull request.

Runs in the model repository (the ``retrain.yml`` workflow, on ``repository_dispatch``):

1. reads the event (``GITHUB_EVENT_PATH``); a dispatch for another model is not ours (exit 0);
2. fetches fresh labelled data from ``retrain.fresh_data`` (any URL ``dvc get-url`` reads:
   a local folder, ``s3://``, ``https://``...) into ``data/incoming/`` (``ingest.incoming``);
   no new data means nothing to retrain (exit 0, no pull request);
3. ``dvc repro`` (the ``ingest`` stage appends ``data/incoming/*.csv`` to the raw data set, so
   ``dvc.lock`` records the new data version);
4. commits the new data batch, ``dvc.lock`` and the metrics on a new branch, ``dvc push``es the
   data and model, pushes the branch and opens a pull request. It never pushes to the base
   branch: the normal PR evaluation judges the retrained model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelops.errors import ExternalError, InputError

COMMIT_PATHS = ["dvc.lock", "metrics", "plots", "model-cards"]


@dataclass
class RetrainResult:
    # "opened" | "pushed" | "committed" | "already-open" | "no-new-data" | "not-this-model"
    status: str
    branch: str | None = None
    pull_request: int | None = None
    url: str | None = None


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
    return payload


def fetch_fresh_data(root: Path, source: str, incoming_dir: str) -> list[str]:
    """Copy the CSV files of ``source`` that ``incoming_dir`` lacks (by content) into it.

    Returns the names of the new files. ``source`` is a folder or file path, or any URL that
    ``dvc get-url`` understands."""
    incoming = root / incoming_dir
    incoming.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fresh-") as tmp:
        dest = Path(tmp) / "fresh"
        local = Path(source) if "://" not in source else None
        if local is not None and not local.is_absolute():
            local = root / local
        if local is not None:
            if not local.exists():
                raise InputError(f"fresh data source {source!r} does not exist",
                                 hint="set params.yaml modelops.retrain.fresh_data or --fresh-data")
            if local.is_dir():
                shutil.copytree(local, dest)
            else:
                dest.mkdir()
                shutil.copy2(local, dest / local.name)
        else:
            _run([sys.executable, "-m", "dvc", "get-url", source, str(dest)], root,
                 "dvc get-url")
        files = sorted(dest.rglob("*.csv")) if dest.is_dir() else [dest]
        have = {p.read_bytes() for p in incoming.glob("*.csv")}
        new = []
        for f in files:
            data = f.read_bytes()
            if data in have:
                continue
            name = f.name
            while (incoming / name).exists():
                name = f"{Path(name).stem}-1{Path(name).suffix}"
            (incoming / name).write_bytes(data)
            have.add(data)
            new.append(name)
    return new


def retrain(root: Path, *, model: str, fresh_data: str, incoming: str, base: str,
            branch_prefix: str,
            payload: dict[str, Any], github: dict[str, str] | None, push: bool = True,
            stamp: str | None = None) -> RetrainResult:
    from modelops.git import git

    wanted = payload.get("model")
    if wanted and wanted != model:
        _log(f"the dispatch is for model {wanted!r}, this repository holds {model!r}: "
             "nothing to do")
        return RetrainResult("not-this-model")
    if github:
        found = open_retrain_pull_request(github, f"{branch_prefix}{model}-", base)
        if found:
            number, url, branch = found
            _log(f"retraining pull request #{number} is still open ({url}): review or close it "
                 "first; nothing to do")
            return RetrainResult("already-open", branch=branch, pull_request=number, url=url)
    new = fetch_fresh_data(root, fresh_data, incoming)
    if not new:
        _log(f"no new data in {fresh_data!r}: nothing to retrain")
        return RetrainResult("no-new-data")
    _log(f"{len(new)} new data file(s): {', '.join(new)}")
    stamp = stamp or datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    branch = f"{branch_prefix}{model}-{stamp}"
    start = git(["rev-parse", "--abbrev-ref", "HEAD"], cwd=root).stdout.decode().strip()
    alerts = ", ".join(payload.get("alerts") or []) or "manual run"
    git(["checkout", "-q", "-b", branch], cwd=root)
    try:
        _run([sys.executable, "-m", "dvc", "repro"], root, "dvc repro")
        paths = [p for p in [incoming, *COMMIT_PATHS] if (root / p).exists()]
        git(["add", "--", *paths], cwd=root)
        message = (f"retrain {model} on fresh data ({len(new)} new file(s))\n\n"
                   f"Triggered by: {alerts}\n"
                   f"Production version: {payload.get('version') or 'unknown'}\n"
                   f"New data: {', '.join(new)}\n")
        git(["commit", "-q", "-m", message], cwd=root)
    except BaseException:
        # leave the checkout as it was: no branch, no new data files, outputs restored
        for name in new:
            (root / incoming / name).unlink(missing_ok=True)
        git(["checkout", "-q", "-f", start], cwd=root, check=False)
        git(["branch", "-q", "-D", branch], cwd=root, check=False)
        subprocess.run([sys.executable, "-m", "dvc", "checkout", "-q"], cwd=root, check=False,
                       capture_output=True)
        raise
    if not push:
        return RetrainResult("committed", branch=branch)
    _run([sys.executable, "-m", "dvc", "push"], root, "dvc push")
    git(["push", "origin", f"HEAD:refs/heads/{branch}"], cwd=root, what="git push")
    if not github:
        _log(f"pushed {branch}; no GITHUB_TOKEN, so no pull request was opened")
        return RetrainResult("pushed", branch=branch)
    from modelops.gitops.promote import open_pull_request

    metrics = _metrics_line(root)
    body = (f"Automatic retraining of `{model}` after a drift alert ({alerts}).\n\n"
            f"- production version when the alert fired: `{payload.get('version') or '?'}`\n"
            f"- new data files: {', '.join(f'`{n}`' for n in new)}\n"
            f"- {metrics}\n\n"
            "The pull-request evaluation below compares this model with the base branch. "
            "Merge only if its gates pass; nothing is deployed before a merge.")
    number, url = open_pull_request(github, branch, base,
                                    f"Retrain {model} on fresh data ({stamp})", body)
    _log(f"pull request #{number}: {url}")
    return RetrainResult("opened", branch=branch, pull_request=number, url=url)


def open_retrain_pull_request(github: dict[str, str], prefix: str,
                              base: str) -> tuple[int, str, str] | None:
    """(number, url, branch) of an open pull request from a ``prefix*`` branch, if any.

    Alertmanager repeats a firing alert; until a human merges or closes the retraining pull
    request, repeats must not open another one."""
    from modelops.github import GitHub

    try:
        pulls = GitHub(github["token"], github.get("api_url")).list_pulls(
            github["repository"], base=base)
    except ExternalError as exc:
        raise ExternalError(exc.message, hint="check GITHUB_TOKEN (pull-requests: read)",
                            retryable=exc.retryable) from exc
    for pr in pulls:
        if pr.head.ref.startswith(prefix):
            return pr.number, pr.html_url, pr.head.ref
    return None


def _metrics_line(root: Path) -> str:
    try:
        metrics = json.loads((root / "metrics/metrics.json").read_text())
        return f"test accuracy after retraining: {metrics['accuracy']:.4f}"
    except (OSError, ValueError, KeyError):
        return "metrics: see the evaluation comment"


def _cmd_retrain(args) -> int:
    from modelops.settings import load_settings

    root = Path(args.repo).resolve()
    params = load_settings(root / "params.yaml")
    payload = read_event(args.event or os.environ.get("GITHUB_EVENT_PATH"))
    token = os.environ.get("GITHUB_TOKEN")
    repository = args.github_repo or os.environ.get("GITHUB_REPOSITORY")
    github = None
    if token and repository:
        github = {"token": token, "repository": repository,
                  "api_url": os.environ.get("GITHUB_API_URL") or "https://api.github.com"}
    result = retrain(root, model=params.model.name,
                     fresh_data=args.fresh_data or params.retrain.fresh_data,
                     incoming=params.retrain.incoming,
                     base=args.base, branch_prefix=params.retrain.branch_prefix,
                     payload=payload, github=github, push=not args.no_push)
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
        "retrain", help="fetch fresh data, reproduce, and open a retraining pull request",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--repo", default=".", help="model repository root (default: .)")
    p.add_argument("--event", default=None,
                   help="event payload JSON (default: $GITHUB_EVENT_PATH)")
    p.add_argument("--fresh-data", default=None,
                   help="where fresh labelled CSVs are "
                        "(default: params.yaml modelops.retrain.fresh_data)")
    p.add_argument("--base", default="main", help="base branch of the pull request")
    p.add_argument("--github-repo", default=None, help="OWNER/NAME (default: $GITHUB_REPOSITORY)")
    p.add_argument("--no-push", action="store_true",
                   help="commit on a local branch only (no dvc push, git push or pull request)")
    p.set_defaults(handler=_cmd_retrain)
