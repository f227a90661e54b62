"""``gitops history``: which release ran in an environment, from when to when, read from Git.

The GitOps repository is the record. For ``<env>/<model>/`` the first-parent log of the branch
(so a merged pull request counts from its merge) is read oldest first; at each commit the
folder's ``release.json`` says which release was desired. A new interval starts whenever the
release (version + sha256) changes; re-rendering the same release does not start one. The
action (publish, promote, rollback) comes from the commit's ``Gitops-Action`` trailer.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelops.errors import InputError
from modelops.gitops.gitrepo import DEFAULT_BRANCH, Clone, redact
from modelops.settings import model_name_of

RELEASE_FILE = "release.json"


@dataclass(frozen=True)
class Deployment:
    """One interval during which one release was the desired state of ``env/model``."""

    env: str
    model: str
    version: str
    sha256: str
    since: str  # ISO 8601, UTC
    until: str | None  # None: still running
    commit: str  # the commit that started the interval
    action: str
    subject: str
    last_commit: str = ""  # the last commit that touched the folder during the interval

    @property
    def running(self) -> bool:
        return self.until is None


def _iso(epoch: str) -> str:
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _release_key(data: bytes | None) -> tuple[str, str] | None:
    if data is None:
        return None
    try:
        raw = json.loads(data)
        return str(raw["version"]), str(raw["sha256"])
    except (ValueError, KeyError, TypeError):
        return ("unknown", "unknown")


_ACTION = "%(trailers:key=Gitops-Action,valueonly,separator=%x2C)"


def folder_log(clone: Clone, head: str | None, folder: str) -> list[dict[str, str]]:
    """Commits of the branch's first-parent line that touched ``folder``, oldest first.

    The action is the commit's ``Gitops-Action`` trailer; for a merge commit without one (a
    merged pull request) it is the merged tip's, marked ``(merged)``; ``manual`` otherwise."""
    if head is None:
        return []
    fmt = f"%H%x1f%ct%x1f%s%x1f%P%x1f{_ACTION}%x1e"
    out = clone.run(["log", "--first-parent", "--reverse", f"--format={fmt}", head, "--",
                     folder]).stdout.decode("utf-8", "replace")
    rows = []
    for rec in out.split("\x1e"):
        rec = rec.strip("\n")
        if not rec:
            continue
        commit, ct, subject, parents, action = (rec.split("\x1f") + [""] * 5)[:5]
        action = action.strip()
        merged = parents.split()[1:]
        if not action and merged:
            tip = clone.run(["log", "-1", f"--format={_ACTION}", merged[-1]]
                            ).stdout.decode("utf-8", "replace").strip()
            action = f"{tip} (merged)" if tip else ""
        rows.append({"commit": commit, "time": ct, "subject": subject,
                     "action": action or "manual"})
    return rows


def deployments(clone: Clone, head: str | None, env: str, model: str) -> list[Deployment]:
    """The intervals of ``env/model``, oldest first; the last one has ``until=None`` while the
    folder exists at ``head``."""
    folder = f"{env}/{model}"
    rows = folder_log(clone, head, folder)
    blobs = clone.read_objects([f"{r['commit']}:{folder}/{RELEASE_FILE}" for r in rows])
    out: list[Deployment] = []
    current: tuple[str, str] | None = None
    for row, data in zip(rows, blobs, strict=True):
        key = _release_key(data)
        if key == current:
            if key is not None and out:
                out[-1] = Deployment(**{**asdict(out[-1]), "last_commit": row["commit"]})
            continue
        if out and out[-1].until is None:
            out[-1] = _close(out[-1], _iso(row["time"]))
        current = key
        if key is not None:
            out.append(Deployment(env, model, key[0], key[1], _iso(row["time"]), None,
                                  row["commit"], row["action"], row["subject"], row["commit"]))
    return out


def _close(dep: Deployment, until: str) -> Deployment:
    return Deployment(**{**asdict(dep), "until": until})


def open_history_clone(url: str, dest: Path, branch: str = DEFAULT_BRANCH) -> Clone:
    """A clone with the whole history of the branch (blobs fetched on demand when remote)."""
    from modelops.gitops.publish import with_retries

    def fresh() -> Clone:
        shutil.rmtree(dest, ignore_errors=True)
        return Clone.create(url, dest, branch, depth=None)

    return with_retries("cloning", fresh)


def history(url: str, env: str, model: str, branch: str = DEFAULT_BRANCH) -> list[Deployment]:
    tmp = Path(tempfile.mkdtemp(prefix="gitops-history-"))
    try:
        clone = open_history_clone(url, tmp / "repo", branch)
        return deployments(clone, clone.remote_head(), env, model)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def format_table(deps: list[Deployment]) -> str:
    header = ("VERSION", "SHA256", "FROM", "TO", "ACTION", "COMMIT")
    rows = [header] + [(d.version, d.sha256[:12], d.since, d.until or "now (running)",
                        d.action, d.commit[:12]) for d in reversed(deps)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# --------------------------------------------------------------------------- CLI

def add_repo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gitops-repo", metavar="URL",
                   help="the GitOps repository (any git URL or path); default "
                        "modelops.deploy.gitops_repo in params.yaml, else $GITOPS_REPO, else "
                        ".gitops-remote/ in the current folder (a bare repository created on "
                        "first use)")
    p.add_argument("--branch", default=DEFAULT_BRANCH,
                   help="the GitOps repository's branch Argo CD follows (default: %(default)s)")


def model_name(args: argparse.Namespace) -> str:
    """``--model``, else ``model.name`` of params.yaml."""
    if getattr(args, "model", None):
        return args.model
    params_path = Path(getattr(args, "params", None) or "params.yaml")
    if not params_path.exists():
        raise InputError(f"{params_path}: file not found, so the model is unknown",
                         hint="pass --model NAME or run from the model repository")
    from modelops.yamlio import load_yaml_file

    raw = load_yaml_file(params_path) or {}
    name = model_name_of(raw)
    if not name:
        raise InputError(f"{params_path}: modelops.model.name: missing, so the model is unknown",
                         hint="pass --model NAME")
    return name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "history", help="which release ran in an environment, from when to when",
        description="List which release (version, sha256) of a model was the desired state of "
                    "an environment, from when to when, newest first, read from the GitOps "
                    "repository's history (first-parent log of <env>/<model>/).")
    p.add_argument("--env", required=True, help="environment, e.g. production")
    p.add_argument("--model", help="model name (default: model.name in params.yaml)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_repo_args(p)
    p.set_defaults(handler=_cmd_history)


def _cmd_history(args: argparse.Namespace) -> int:
    from modelops.gitops.publish import configured_repo, folder_name, resolve_repo

    model = model_name(args)
    folder_name(args.env, model)
    url = resolve_repo(args.gitops_repo, configured_repo(args.params))
    deps = history(url, args.env, model, args.branch)
    if args.json:
        print(json.dumps([asdict(d) for d in deps], indent=2))
        return 0
    if not deps:
        print(f"nothing was ever published to {args.env}/{model} in {redact(url)}", file=sys.stderr)
        return 0
    print(f"{args.env}/{model} in {redact(url)}")
    print(format_table(deps))
    return 0
