"""``gitops history``: which state of a folder ran in an environment, from when to when, read
from Git.

The GitOps repository is the record. A release is the whole desired state of
``<env>/<model>/``: the first-parent log of the branch (so a merged pull request counts from its
merge) is read oldest first, and every commit that changes the folder, whatever it changes (the
model, the serving image, the canary steps, the resources, a hand edit), starts a new interval.
Each interval names the folder's tree (``state``) and what its ``release.json`` says (version,
sha256). The action (publish, promote, rollback) comes from the commit's ``Gitops-Action``
trailer; a rollback also says which interval it restored (``Restores-Commit``).

Times are commit times, kept in order: a commit stamped earlier than the one before it (a
publisher with a clock ahead, then one with a right clock) is shown at its predecessor's time,
so no interval ends before it starts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from modelops.errors import InputError
from modelops.gitops.gitrepo import DEFAULT_BRANCH, Clone, redact
from modelops.settings import model_name_of
from modelops.yamlio import load_yaml_file

RELEASE_FILE = "release.json"


@dataclass(frozen=True)
class Deployment:
    """One interval during which one state of ``env/model`` was the desired state."""

    env: str
    model: str
    version: str
    sha256: str
    since: str  # ISO 8601, UTC
    until: str | None  # None: still running
    commit: str  # the commit that started the interval
    action: str
    subject: str
    last_commit: str = ""  # the last commit of the interval (the state's bytes are there)
    state: str = ""  # the folder's git tree id during the interval
    restores: str = ""  # for a rollback: the commit of the interval it restored

    @property
    def running(self) -> bool:
        return self.until is None


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _release_key(data: bytes | None) -> tuple[str, str]:
    try:
        raw = json.loads(data or b"")
        return str(raw["version"]), str(raw["sha256"])
    except (ValueError, KeyError, TypeError):
        return ("unknown", "unknown")


_TRAILER = "%(trailers:key={},valueonly,separator=%x2C)"
_ACTION = _TRAILER.format("Gitops-Action")
_RESTORES = _TRAILER.format("Restores-Commit")


def folder_log(clone: Clone, head: str | None, folder: str) -> list[dict[str, str]]:
    """Commits of the branch's first-parent line that touched ``folder``, oldest first.

    The action is the commit's ``Gitops-Action`` trailer; for a merge commit without one (a
    merged pull request) it is the merged tip's, marked ``(merged)``; ``manual`` otherwise."""
    if head is None:
        return []
    fmt = f"%H%x1f%ct%x1f%s%x1f%P%x1f{_ACTION}%x1f{_RESTORES}%x1e"
    out = clone.run(["log", "--first-parent", "--reverse", f"--format={fmt}", head, "--",
                     folder]).stdout.decode("utf-8", "replace")
    rows = []
    for rec in out.split("\x1e"):
        rec = rec.strip("\n")
        if not rec:
            continue
        commit, ct, subject, parents, action, restores = (rec.split("\x1f") + [""] * 6)[:6]
        action = action.strip()
        merged = parents.split()[1:]
        if not action and merged:
            tip = clone.run(["log", "-1", f"--format={_ACTION}", merged[-1]]
                            ).stdout.decode("utf-8", "replace").strip()
            action = f"{tip} (merged)" if tip else ""
        rows.append({"commit": commit, "time": ct, "subject": subject,
                     "action": action or "manual", "restores": restores.strip()})
    return rows


def deployments(clone: Clone, head: str | None, env: str, model: str) -> list[Deployment]:
    """The intervals of ``env/model``, oldest first; the last one has ``until=None`` while the
    folder exists at ``head``."""
    folder = f"{env}/{model}"
    rows = folder_log(clone, head, folder)
    trees = clone.object_ids([f"{r['commit']}:{folder}" for r in rows])
    blobs = clone.read_objects([f"{r['commit']}:{folder}/{RELEASE_FILE}" for r in rows])
    out: list[Deployment] = []
    current: str | None = None
    floor = 0  # times never go back (clock skew between publishers)
    for row, tree, data in zip(rows, trees, blobs, strict=True):
        when = max(int(row["time"] or 0), floor)
        floor = when
        if tree == current:
            if tree is not None and out:
                out[-1] = replace(out[-1], last_commit=row["commit"])
            continue
        if out and out[-1].until is None:
            out[-1] = replace(out[-1], until=_iso(when))
        current = tree
        if tree is not None:
            version, sha = _release_key(data)
            out.append(Deployment(env, model, version, sha, _iso(when), None, row["commit"],
                                  row["action"], row["subject"], row["commit"], tree,
                                  row["restores"]))
    return out


def release_line(deps: list[Deployment]) -> tuple[list[int], int]:
    """(line, position): the states in the order they were published, as indices into
    ``deps``, and where the current state stands on it. A rollback (or an undo) moves along the
    line to the state it restored instead of adding to it, so repeated rollbacks keep going
    back; publishing after a rollback drops the states that were rolled back from the line (as
    a browser's history does), so the next rollback returns to what ran before that publish."""
    line: list[int] = []
    at: dict[str, int] = {}  # commit of an interval -> its place on the line
    position = -1
    for i, dep in enumerate(deps):
        if dep.action.startswith("rollback") and dep.restores in at:
            position = at[dep.restores]
        else:
            line = [*line[:position + 1], i]
            at = {commit: place for commit, place in at.items() if place <= position}
            position = len(line) - 1
        at[dep.commit] = at[dep.last_commit] = position
    return line, position


def open_history_clone(url: str, dest: Path, branch: str = DEFAULT_BRANCH) -> Clone:
    """A clone with the whole history of the branch (blobs fetched on demand when remote)."""

    from modelops.gitops.publish import with_retries

    def fresh() -> Clone:
        shutil.rmtree(dest, ignore_errors=True)
        return Clone.create(url, dest, branch, depth=None)

    return with_retries("cloning", fresh)


def history(url: str, env: str, model: str, branch: str = DEFAULT_BRANCH) -> list[Deployment]:
    from modelops.gitops.publish import TEMP_PREFIX
    from modelops.gitops.workdirs import locked_tempdir

    with locked_tempdir(TEMP_PREFIX) as tmp:
        clone = open_history_clone(url, tmp / "repo", branch)
        return deployments(clone, clone.remote_head(), env, model)


def format_table(deps: list[Deployment]) -> str:
    header = ("VERSION", "SHA256", "STATE", "FROM", "TO", "ACTION", "COMMIT")
    rows = [header] + [(d.version, d.sha256[:12], d.state[:12], d.since,
                        d.until or "now (running)", d.action, d.commit[:12])
                       for d in reversed(deps)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


# --------------------------------------------------------------------------- CLI

def add_repo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gitops-repo", metavar="URL",
                   help="the GitOps repository (a git URL, or the path of an existing "
                        "repository); default modelops.deploy.gitops_repo in params.yaml, else "
                        "$GITOPS_REPO, else .gitops-remote/ in the current folder (a bare "
                        "repository created on first use)")
    p.add_argument("--branch", default=None,
                   help="the GitOps repository's branch Argo CD follows (default: "
                        "modelops.deploy.argocd.target_revision, else main)")


def model_name(args: argparse.Namespace) -> str:
    """``--model``, else ``model.name`` of params.yaml."""
    if getattr(args, "model", None):
        return args.model
    params_path = Path(getattr(args, "params", None) or "params.yaml")
    if not params_path.exists():
        raise InputError(f"{params_path}: file not found, so the model is unknown",
                         hint="pass --model NAME or run from the model repository")

    raw = load_yaml_file(params_path) or {}
    name = model_name_of(raw)
    if not name:
        raise InputError(f"{params_path}: modelops.model.name: missing, so the model is unknown",
                         hint="pass --model NAME")
    return name


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "history", help="which state ran in an environment, from when to when",
        description="List the states of <env>/<model>/ in the GitOps repository, newest "
                    "first: each commit that changed the folder (model, image, canary steps, "
                    "resources, a hand edit) starts one, with its release (version, sha256), "
                    "its tree id, from when to when and by which action (first-parent log).")
    p.add_argument("--env", required=True, help="environment, e.g. production")
    p.add_argument("--model", help="model name (default: model.name in params.yaml)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_repo_args(p)
    p.set_defaults(handler=_cmd_history)


def _cmd_history(args: argparse.Namespace) -> int:
    from modelops.gitops.publish import branch_of, configured_repo, folder_name, resolve_repo

    model = model_name(args)
    folder_name(args.env, model)
    url = resolve_repo(args.gitops_repo, configured_repo(args.params))
    deps = history(url, args.env, model, branch_of(args))
    if args.json:
        print(json.dumps([asdict(d) for d in deps], indent=2))
        return 0
    if not deps:
        print(f"nothing was ever published to {args.env}/{model} in {redact(url)}", file=sys.stderr)
        return 0
    print(f"{args.env}/{model} in {redact(url)}")
    print(format_table(deps))
    return 0
