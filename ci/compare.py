"""Compare the head of a change with its base revision, through DVC's own machinery.

* metrics: ``dvc metrics show`` at both revisions (the files of ``modelops.model.metrics``, or
  every metrics file ``dvc.yaml`` declares), and from it ``dvc metrics diff <base> [<head>]
  --all --json``; a DVC-tracked file the cache lacks at the base is streamed with
  ``dvc.api.read(rev=...)`` (:mod:`modelops.ci.metrics`)
* parameters: ``dvc params diff <base> [<head>] --json`` (changed ones only)
* data: ``dvc diff --json <base> [<head>]`` (tracked outputs added / modified / deleted), with
  sizes read from ``dvc.lock`` of both sides
* stages that reran: ``dvc.lock`` of the base against ``dvc.lock`` of the head
* stale stages: ``dvc status --json`` when the head is the workspace (metrics not reproduced;
  outputs merely not checked out do not count, see :func:`stale_stages`)

The four DVC queries run in this process through DVC's Python API on one ``dvc.repo.Repo``
(:class:`DvcQueries`), with the same arguments and the same post-processing as the commands
above, so they return exactly what ``--json`` prints; four ``dvc`` processes would each pay
DVC's start-up (about 0.8 s apiece).

The head is the workspace by default (what CI just reproduced) or any git revision. In a shallow
CI clone the base commit may be missing: :func:`resolve_revision` fetches it from ``origin`` when
allowed, and otherwise says exactly what to fetch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.ci.metrics import MetricsAt, error_text, normalise, read_at_revision
from modelops.ci.revisions import Snapshot, snapshots
from modelops.errors import ExternalError, InputError
from modelops.git import git, git_text
from modelops.yamlio import load_yaml_as_dvc

WORKSPACE = "workspace"
LOCK_FILE = "dvc.lock"
FETCH_DEPTH = 50


# --------------------------------------------------------------------------- running tools

def _git(repo: Path, *args: str) -> str:
    return git(args, cwd=repo, timeout=600).stdout.decode("utf-8", errors="replace")


def _as_json(data: Any) -> Any:
    """What ``dvc ... --json`` would print for ``data``, read back (tuples become lists...)."""
    return json.loads(json.dumps(data))


class DvcQueries:
    """``dvc metrics diff``, ``params diff``, ``diff`` and ``status`` (``--json``) on one Repo.

    Each answer is computed from :func:`modelops.ci.revisions.snapshots` (one pass over the
    revisions) with DVC's own diff functions and the same post-processing as the commands in
    ``dvc/commands/``, so it is what the command's ``--json`` output parses to. Any DVC failure
    becomes an :class:`ExternalError` naming the command, as a failed ``dvc`` process did.
    """

    def __init__(self, repo: Any) -> None:
        self.repo = repo

    def _call(self, what: str, fn: Any) -> Any:
        try:
            return _as_json(fn())
        except (KeyboardInterrupt, ExternalError):
            raise
        except Exception as exc:  # a failed dvc command, whatever DVC raised
            text = str(exc).strip() or type(exc).__name__
            raise ExternalError(f"dvc {what} failed: {text[-800:]}") from exc

    def _relative(self, diff_result: Mapping[str, Any], what: str) -> dict[str, Any]:
        start = os.path.relpath(os.getcwd(), self.repo.root_dir)
        return {os.path.relpath(path, start): result
                for path, result in (diff_result.get("diff") or {}).items()}

    def snapshots(self, revs: list[str], **kwargs: Any) -> dict[str, Snapshot]:
        try:
            return snapshots(self.repo, revs, **kwargs)
        except (KeyboardInterrupt, ExternalError):
            raise
        except Exception as exc:
            raise ExternalError(f"dvc could not read the revisions: {error_text(exc)}") from exc

    def metrics_show(self, revs: list[str], targets: list[str] | None = None) -> dict[str, Any]:
        """``dvc metrics show`` at ``revs`` (``workspace`` for the workspace), as DVC returns it:
        ``{rev: {"data": {file: {"data": ...} | {"error": exc}}} | {"error": exc}}``."""
        snaps = self.snapshots(revs, metrics=targets)
        return {rev: snaps[rev].metrics for rev in revs}

    def metrics_diff(self, a_rev: str, b_rev: str | None,
                     shown: dict[str, Any] | None = None) -> dict[str, Any]:
        """``dvc metrics diff <a_rev> [<b_rev>] --all --json`` (of ``shown``, a
        :meth:`metrics_show` result for both revisions, when given)."""
        from dvc.repo.metrics.diff import _diff

        new = b_rev or WORKSPACE
        if shown is None:
            shown = self.metrics_show([a_rev, new])
        return self._call("metrics diff", lambda: self._relative(
            _diff(shown, a_rev, new, with_unchanged=True), "metrics diff"))

    def params_diff(self, a_rev: str, b_rev: str | None,
                    snaps: dict[str, Snapshot] | None = None) -> dict[str, Any]:
        """``dvc params diff <a_rev> [<b_rev>] --json``."""
        from dvc.repo.metrics.diff import _diff

        new = b_rev or WORKSPACE
        snaps = snaps or self.snapshots([a_rev, new])
        shown = {a_rev: snaps[a_rev].params, new: snaps[new].params}
        return self._call("params diff", lambda: self._relative(
            _diff(shown, a_rev, new, with_unchanged=False), "params diff"))

    def diff(self, a_rev: str, b_rev: str | None,
             snaps: dict[str, Snapshot] | None = None) -> dict[str, Any]:
        """``dvc diff --json <a_rev> [<b_rev>]`` (no hashes; no "not in cache" between commits)."""
        from dvc.repo.diff import _diff

        new = b_rev or WORKSPACE
        snaps = snaps or self.snapshots([a_rev, new])

        def run() -> dict[str, Any]:
            old_snap, new_snap = snaps[a_rev], snaps[new]
            if self.repo.scm.no_commits:
                return {}
            if _commit_of_snapshot(old_snap) == _commit_of_snapshot(new_snap):
                diff = _diff(None, None, set(), with_missing=b_rev is None)
            else:
                diff = _diff(old_snap.data, new_snap.data,
                             old_snap.data_keys | new_snap.data_keys,
                             with_missing=b_rev is None)
            if b_rev:
                diff.pop("not in cache", None)
            for key, entries in diff.items():
                entries = sorted(entries, key=lambda e: (
                    e["path"]["old"] if isinstance(e["path"], dict) else e["path"]))
                for entry in entries:
                    entry.pop("hash", None)
                diff[key] = entries
            return diff
        return self._call("diff", run)

    def status(self) -> dict[str, Any]:
        """``dvc status --json`` of the workspace."""
        def run() -> Any:
            from dvc.repo import lock_repo

            with lock_repo(self.repo):
                return self.repo.status(targets=[], jobs=None, cloud=False, remote=None,
                                        all_branches=False, all_tags=False, all_commits=False,
                                        with_deps=False, recursive=False, check_updates=True)
        return self._call("status", run)


def _commit_of_snapshot(snap: Snapshot) -> str:
    return snap.rev


@contextlib.contextmanager
def dvc_queries(repo: Path) -> Iterator[DvcQueries]:
    """Open the DVC repository at ``repo`` (the working directory meanwhile, as for ``dvc``)."""
    try:
        from dvc.repo import Repo
    except ImportError as exc:
        raise ExternalError(f"cannot import dvc: {exc}",
                            hint="install the pinned dependencies: "
                                 "pip install -r requirements.lock") from exc
    with contextlib.chdir(repo):
        try:
            dvc_repo = Repo(os.curdir)
        except Exception as exc:  # e.g. a broken .dvc/config
            raise ExternalError(f"dvc cannot open the repository: {exc}") from exc
        with dvc_repo:
            yield DvcQueries(dvc_repo)


def _commit_of(repo: Path, rev: str) -> str | None:
    out = git_text(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=repo)
    return out.strip() if out and out.strip() else None


def _has_origin(repo: Path) -> bool:
    return "origin" in (git_text(["remote"], cwd=repo) or "").split()


def resolve_revision(repo: Path, rev: str, *, fetch: bool = True,
                     depth: int = FETCH_DEPTH) -> str:
    """Return the commit sha of ``rev``; fetch it from ``origin`` first if a shallow clone lacks it.

    ``origin/main`` is fetched as ``refs/heads/main`` into ``refs/remotes/origin/main``.
    """
    sha = _commit_of(repo, rev)
    if sha:
        return sha
    shallow = (repo / ".git" / "shallow").exists()
    branch = rev.removeprefix("origin/")
    if fetch and _has_origin(repo):
        target = (f"+refs/heads/{branch}:refs/remotes/origin/{branch}"
                  if rev.startswith("origin/") else rev)
        print(f"compare: {rev!r} is not in this clone; fetching it from origin "
              f"(depth {depth})", file=sys.stderr, flush=True)
        fetched = git_text(["fetch", "--no-tags", f"--depth={depth}", "origin", target],
                           cwd=repo, timeout=300)
        sha = _commit_of(repo, rev) or (_commit_of(repo, "FETCH_HEAD")
                                        if fetched is not None else None)
        if sha:
            return sha
    kind = "this shallow clone" if shallow else "this repository"
    raise InputError(
        f"base revision {rev!r} is not in {kind}",
        hint=f"fetch it first: git fetch --depth={depth} origin {branch} "
             "(or check out with fetch-depth: 0), or pass another --base")


def merge_base_of(repo: Path, a: str, b: str) -> str:
    """The best common ancestor of commits ``a`` and ``b`` (what a pull request's "files
    changed" is computed against); an error saying what to fetch when the history lacks it."""
    out = git_text(["merge-base", a, b], cwd=repo)
    if not out or not out.strip():
        raise InputError(f"commits {a[:12]} and {b[:12]} have no common ancestor in this clone",
                         hint="fetch more history (actions/checkout fetch-depth: 0, or git "
                              "fetch --unshallow origin)")
    return out.split()[0]


def read_at(repo: Path, rev: str | None, path: str) -> str | None:
    """Text of ``path`` at git revision ``rev`` (``None`` = workspace); ``None`` if absent."""
    if rev is None or rev == WORKSPACE:
        p = repo / path
        return p.read_text(encoding="utf-8") if p.is_file() else None
    # "./" makes the path relative to ``repo``, so a project in a monorepo subfolder works
    return git_text(["show", f"{rev}:./{path}"], cwd=repo)


def read_json_at(repo: Path, rev: str | None, path: str) -> dict[str, Any] | None:
    text = read_at(repo, rev, path)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        where = "the workspace" if rev in (None, WORKSPACE) else f"revision {rev}"
        raise InputError(f"{path} at {where} is not valid JSON: {exc}",
                         hint="rerun the pipeline (dvc repro) and commit its outputs") from exc
    return data if isinstance(data, dict) else None


def read_lock_at(repo: Path, rev: str | None) -> dict[str, Any]:
    text = read_at(repo, rev, LOCK_FILE)
    if text is None:
        return {}
    data = load_yaml_as_dvc(text, f"{LOCK_FILE}@{rev or WORKSPACE}")
    stages = data.get("stages") if isinstance(data, dict) else None
    return stages if isinstance(stages, dict) else {}


# --------------------------------------------------------------------------- results

@dataclass
class Comparison:
    base_rev: str
    base_sha: str
    head_rev: str
    head_sha: str | None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metrics_files: list[str] = field(default_factory=list)
    base_metrics: MetricsAt | None = None
    head_metrics: MetricsAt | None = None
    base_tip_sha: str | None = None  # the base branch's tip, when compared at the merge base

    @property
    def metrics_file(self) -> str | None:
        """The primary metrics file (the first one)."""
        return self.metrics_files[0] if self.metrics_files else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": {"rev": self.base_rev, "sha": self.base_sha},
            "head": {"rev": self.head_rev, "sha": self.head_sha},
            "metrics": self.metrics, "params": self.params, "data": self.data,
            "stages": self.stages, "stale": self.stale, "notes": self.notes,
            "metrics_files": self.metrics_files,
        }


def _num(x: Any) -> float | int | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return x


def _delta(old: Any, new: Any) -> float | None:
    o, n = _num(old), _num(new)
    if o is None or n is None:
        return None
    return round(float(n) - float(o), 12)


def metric_rows(diff: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Flatten ``dvc metrics diff --json`` into rows ``{file, name, base, head, delta}``, by
    file and name (DVC's diff holds a file's names in set order, which changes from process to
    process with the string hash seed)."""
    rows = []
    for file, entries in sorted(diff.items()):
        if not isinstance(entries, Mapping):
            continue
        for name, change in sorted(entries.items()):
            if not isinstance(change, Mapping):
                continue
            old, new = change.get("old"), change.get("new")
            rows.append({"file": file, "name": name, "base": old, "head": new,
                         "delta": _delta(old, new)})
    return rows


def param_rows(diff: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for file, entries in sorted(diff.items()):
        if not isinstance(entries, Mapping):
            continue
        for name, change in sorted(entries.items()):
            if isinstance(change, Mapping):
                rows.append({"file": file, "name": name, "base": change.get("old"),
                             "head": change.get("new")})
    return rows


def _outs(stages: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for stage in stages.values():
        for o in (stage or {}).get("outs") or []:
            if isinstance(o, Mapping) and "path" in o:
                out[str(o["path"])] = dict(o)
    return out


def _size_of(outs: Mapping[str, Mapping[str, Any]], path: str) -> int | None:
    path = path.rstrip("/")
    if path in outs:
        return _num(outs[path].get("size"))  # type: ignore[return-value]
    return None


def data_rows(diff: Mapping[str, Any], base_lock: Mapping[str, Any],
              head_lock: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``dvc diff --json`` entries with the sizes recorded in both dvc.lock files. "not in
    cache" (a workspace output DVC has not cached yet) is no change between revisions and is
    left out."""
    base_outs, head_outs = _outs(base_lock), _outs(head_lock)
    rows = []
    for change in ("added", "deleted", "modified", "renamed"):
        for entry in diff.get(change) or []:
            if change == "renamed" and isinstance(entry.get("path"), Mapping):
                old_p, new_p = entry["path"].get("old"), entry["path"].get("new")
                rows.append({"path": new_p, "change": "renamed", "from": old_p,
                             "base_size": _size_of(base_outs, old_p),
                             "head_size": _size_of(head_outs, new_p)})
                continue
            path = str(entry.get("path"))
            rows.append({"path": path, "change": change.replace(" ", "-"),
                         "base_size": _size_of(base_outs, path),
                         "head_size": _size_of(head_outs, path)})
    return rows


def _hashes(entries: Any) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for e in entries or []:
        if isinstance(e, Mapping) and "path" in e:
            out[str(e["path"])] = e.get("md5") or e.get("etag") or e.get("checksum")
    return out


def flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """``{"train": {"epochs": 3}}`` -> ``[("train.epochs", 3)]`` (dvc.lock whole-section params)."""
    out: list[tuple[str, Any]] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.extend(flatten(value, name + "."))
        else:
            out.append((name, value))
    return out


def _flat_params(params: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for file, values in (params or {}).items():
        for key, value in flatten(values or {}):
            out[f"{file}:{key}"] = value
    return out


def stage_rows(base_lock: Mapping[str, Any], head_lock: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Stages whose recorded deps, params, outs or command differ between the two dvc.lock."""
    rows = []
    for name in list(head_lock) + [n for n in base_lock if n not in head_lock]:
        head, base = head_lock.get(name), base_lock.get(name)
        if base is None:
            rows.append({"stage": name, "change": "added", "why": []})
            continue
        if head is None:
            rows.append({"stage": name, "change": "removed", "why": []})
            continue
        why: list[str] = []
        if head.get("cmd") != base.get("cmd"):
            why.append("command changed")
        bd, hd = _hashes(base.get("deps")), _hashes(head.get("deps"))
        why += [f"dep {p}" for p in sorted(set(bd) | set(hd)) if bd.get(p) != hd.get(p)]
        bp, hp = _flat_params(base.get("params")), _flat_params(head.get("params"))
        why += [f"param {k.split(':', 1)[1]}" for k in sorted(set(bp) | set(hp))
                if bp.get(k) != hp.get(k)]
        bo, ho = _hashes(base.get("outs")), _hashes(head.get("outs"))
        changed_outs = [p for p in sorted(set(bo) | set(ho)) if bo.get(p) != ho.get(p)]
        if why or changed_outs:
            if not why:
                why = [f"out {p}" for p in changed_outs]
            rows.append({"stage": name, "change": "rerun", "why": why})
    return rows


# what ``dvc repro --allow-missing`` lets pass (dvc/stage/__init__.py, changed_deps/changed_outs)
_MISSING_OK = {"changed deps": ("deleted",), "changed outs": ("deleted", "not in cache")}


def _only_missing(change: Any, ok: tuple[str, ...]) -> bool:
    """True when every leaf of a ``dvc status`` entry is one of ``ok``."""
    if isinstance(change, Mapping):
        return all(_only_missing(v, ok) for v in change.values())
    return change in ok


def stale_stages(status: Any) -> list[str]:
    """Stages of ``dvc status --json`` that are out of date, as ``dvc repro --allow-missing``
    judges it: a dependency missing from the workspace, or an output missing from the workspace
    or the cache, is not staleness (their hashes are in dvc.lock; CI's ``dvc repro --pull
    --allow-missing`` leaves unchanged stages' outputs unfetched); a modified or new one, a
    changed command or parameter, an ``always_changed`` stage are."""
    def fine(entry: Any) -> bool:
        return isinstance(entry, Mapping) and bool(entry) and all(
            kind in _MISSING_OK and _only_missing(change, _MISSING_OK[kind])
            for kind, change in entry.items())

    if not isinstance(status, Mapping):
        return []
    return sorted(name for name, changes in status.items()
                  if not (isinstance(changes, list) and changes and all(map(fine, changes))))


def _in_git(repo: Path, rev: str, path: str) -> bool:
    return git_text(["cat-file", "-e", f"{rev}:./{path}"], cwd=repo) is not None


def _is_unreadable(exc: Any) -> bool:
    """A file that exists but that DVC cannot parse (not valid JSON, YAML, TOML)."""
    try:
        from dvc.utils.serialize import ParseError
    except ImportError:  # pragma: no cover - dvc is a dependency of the ci extra
        return False
    return isinstance(exc, ParseError)


def _clean(text: str) -> str:
    """DVC names a file relative to its working directory inside a git tree
    (``'../../../metrics/metrics.json'``): name it as the repository does."""
    return re.sub(r"'(?:\.\./)+", "'", text)


def read_metrics(dvc: DvcQueries, repo: Path, a_rev: str, b_rev: str | None,
                 files: list[str] | None = None, *,
                 snaps: dict[str, Snapshot] | None = None,
                 ) -> tuple[dict[str, Any], MetricsAt, MetricsAt, list[str]]:
    """The metrics files at ``a_rev`` and ``b_rev`` (``None``: the workspace) and their
    ``dvc metrics diff --all --json``, from one pass of DVC over both revisions.

    ``files`` are the files to read (``None`` or empty: every metrics file ``dvc.yaml``
    declares). A file DVC could not read at a git revision that git does not hold either (a
    DVC-tracked file the cache lacks) is read with ``dvc.api.read(rev=...)``, which streams it
    from the remote. Returns ``(diff, at_a, at_b, files)``; a file that exists but cannot be
    parsed is in ``MetricsAt.unreadable`` as well as ``errors``.
    """
    wanted = [normalise(f) for f in files] if files else None
    new = b_rev or WORKSPACE
    if snaps is None:
        snaps = dvc.snapshots([a_rev, new], metrics=wanted)
    shown = {rev: copy.copy(snaps[rev].metrics) for rev in dict.fromkeys([a_rev, new])}
    reproduced: list[str] = []
    from_workspace: list[str] = []
    for rev in dict.fromkeys([a_rev, new]):
        result = shown[rev] = {k: (dict(v) if k == "data" else v)
                               for k, v in (shown[rev] or {"data": {}}).items()}
        if rev == WORKSPACE or "error" in result:
            continue
        for file, entry in list((result.get("data") or {}).items()):
            if "error" in entry and not _is_unreadable(entry["error"]) and \
                    not _in_git(repo, rev, normalise(file)):
                try:
                    result["data"][file] = {"data": read_at_revision(repo, normalise(file),
                                                                     rev)}
                except Exception as exc:  # not in the cache, not on a remote, not at rev
                    result["data"][file] = {"error": exc}
                    if rev == b_rev:
                        from_workspace.append(normalise(file))
                    if rev == b_rev and (repo / normalise(file)).is_file():
                        # the head commit's file is nowhere this runner can reach (no
                        # remote, e.g. a fork's run): the reproduction's stands in, said so
                        with contextlib.suppress(Exception):
                            from modelops.ci.metrics import parse_metrics_text

                            text = (repo / normalise(file)).read_text(encoding="utf-8")
                            result["data"][file] = {"data": parse_metrics_text(text, file)}
                            reproduced.append(normalise(file))
    order = wanted or list(dict.fromkeys(
        normalise(f) for rev in (new, a_rev) for f in (shown.get(rev, {}).get("data") or {})))

    def at(rev: str) -> MetricsAt:
        out = MetricsAt(rev)
        result = shown.get(rev) or {}
        if "error" in result:
            out.errors = dict.fromkeys(order, _clean(error_text(result["error"])))
            return out
        for file, entry in (result.get("data") or {}).items():
            file = normalise(file)
            if "error" in entry:
                out.errors[file] = _clean(error_text(entry["error"]))
                if _is_unreadable(entry["error"]):
                    out.unreadable[file] = out.errors[file]
            else:
                out.files[file] = entry.get("data") if isinstance(entry.get("data"), dict) \
                    else {}
        for file in order:
            if file not in out.files and file not in out.errors:
                out.errors[file] = "not found"
        if rev == b_rev:
            out.reproduced = list(reproduced)
            out.needs_workspace = list(from_workspace)
        return out

    diff = dvc.metrics_diff(a_rev, b_rev, shown)
    return diff, at(a_rev), at(new), order


@dataclass
class Changes:
    """What :func:`compare` found besides the metrics: DVC's own answers for both revisions."""

    plots: dict[str, Any] = field(default_factory=dict)   # rev -> [Plot]
    problems: list[Any] = field(default_factory=list)      # revisions.Problem, head commit
    base_lock: dict[str, Any] = field(default_factory=dict)
    head_lock: dict[str, Any] = field(default_factory=dict)


def compare(repo: str | Path = ".", base: str = "HEAD", head: str | None = None, *,
            fetch: bool = True, metrics_files: list[str] | None = None,
            dvc: DvcQueries | None = None, plots: list[str] | None = None,
            with_plots: bool = False, changes: Changes | None = None,
            merge_base: bool = False) -> Comparison:
    """Compare ``head`` (``None``: the workspace) with ``base``. Prints progress to stderr.

    ``metrics_files`` are the model's metrics files (``None``/empty: every metrics file
    ``dvc.yaml`` declares); ``dvc`` an open :func:`dvc_queries` to reuse. Everything is read
    from the two revisions themselves: between two commits, nothing of the workspace counts
    (a fresh CI clone lacks every output the reproduction did not need). With a head commit,
    ``changes.problems`` is what DVC can prove is stale or hand-edited in it
    (:func:`modelops.ci.revisions.committed_problems`); with the workspace, ``stale`` lists the
    stages ``dvc status`` finds out of date. ``with_plots`` reads ``plots`` (``None``: every
    plot ``dvc.yaml`` declares) at both revisions into ``changes.plots``. ``merge_base``
    compares the head with the merge base of ``base`` and the head (``base_tip_sha`` keeps
    the tip).
    """
    from modelops.ci import plots as plotlib
    from modelops.ci.revisions import committed_problems

    repo = Path(repo)
    if not (repo / ".dvc").is_dir():
        raise InputError(f"{repo.resolve().name!r} is not a DVC repository (no .dvc/ folder)",
                         hint="run the command from the root of the model repository")
    base_sha = resolve_revision(repo, base, fetch=fetch)
    head_sha = resolve_revision(repo, head, fetch=fetch) if head else _commit_of(repo, "HEAD")
    head_rev = head or WORKSPACE
    tip = base_sha
    if merge_base and head_sha:
        base_sha = merge_base_of(repo, base_sha, head_sha)
    result = Comparison(base, base_sha, head_rev, head_sha)
    result.base_tip_sha = tip
    changes = changes if changes is not None else Changes()

    a_rev, b_rev = base_sha, (head_sha if head else None)
    new = b_rev or WORKSPACE
    files = [normalise(f) for f in metrics_files] if metrics_files else None
    print(f"compare: reading {base} and {head_rev} with DVC", file=sys.stderr, flush=True)
    with contextlib.ExitStack() as stack:
        if dvc is None:
            dvc = stack.enter_context(dvc_queries(repo))
        snaps = dvc.snapshots([a_rev, new], metrics=files, plots=plots,
                              plots_at=[a_rev, new] if with_plots else [],
                              status_at=[new])
        diff, base_at, head_at, files = read_metrics(dvc, repo, a_rev, b_rev, files,
                                                     snaps=snaps)
        result.metrics = metric_rows(diff)
        result.metrics_files = files
        result.base_metrics, result.head_metrics = base_at, head_at
        result.params = param_rows(dvc.params_diff(a_rev, b_rev, snaps))
        base_lock = read_lock_at(repo, base_sha)
        head_lock = read_lock_at(repo, head_sha if head else None)
        changes.base_lock, changes.head_lock = base_lock, head_lock
        result.data = data_rows(dvc.diff(a_rev, b_rev, snaps), base_lock, head_lock)
        result.stages = stage_rows(base_lock, head_lock)
        if with_plots:
            targets = list(plots) if plots else None
            for rev, key in ((a_rev, a_rev), (new, head_sha if head else WORKSPACE)):
                shown = snaps[rev].plots
                if "error" in shown:
                    result.notes.append(f"plots could not be read at {rev[:12]}: "
                                        f"{error_text(shown['error'])}")
                    changes.plots[key] = []
                else:
                    changes.plots[key] = plotlib.plots_from_show(shown, targets)
        head_snap = snaps[new]
        if head_snap.error:
            raise InputError(f"dvc cannot read the pipeline at {head_rev}: "
                             f"{_clean(head_snap.error)}",
                             hint="fix dvc.yaml / dvc.lock (dvc repro writes dvc.lock)")
        if head:
            changes.problems = committed_problems(head_snap, head_lock)
        else:
            result.stale = stale_stages(head_snap.status or {})
            if result.stale:
                result.notes.append("the pipeline is not up to date in the workspace (stale: "
                                    + ", ".join(result.stale) + "); run dvc repro")
    if not base_lock:
        result.notes.append(f"the base revision {base!r} has no {LOCK_FILE}")
    if not files:
        raise InputError("no metrics files: modelops.model.metrics is empty and dvc.yaml "
                         "declares none",
                         hint="list the files in modelops.model.metrics in params.yaml, or "
                              "declare them under a stage's metrics: in dvc.yaml")
    readable = [f for f in files if f in head_at.files or f in head_at.unreadable]
    if not readable:
        why = "; ".join(f"{f}: {head_at.errors.get(f, 'not found')}" for f in files)
        raise InputError(f"no metrics file could be read at {head_rev} ({why})",
                         hint="run the pipeline first: dvc repro (or dvc pull the metrics)")
    for f in files:
        if f not in head_at.files and f not in head_at.unreadable:
            result.notes.append(f"{f} could not be read at {head_rev} "
                                f"({head_at.errors.get(f, 'not found')}); run dvc repro")
    for f in head_at.reproduced:
        result.notes.append(f"{f} of the head commit is in no DVC cache or remote this run can "
                            "reach: the metrics are this runner's reproduction of it")
    for f in files:
        if f in base_at.unreadable:
            result.notes.append(f"the base revision {base!r} has an unreadable {f} "
                                f"({base_at.unreadable[f]}): regression gates on it have no "
                                "baseline")
        elif f not in base_at.files:
            result.notes.append(f"the base revision {base!r} has no readable {f} "
                                f"({base_at.errors.get(f, 'not found')}): regression gates on "
                                "it have no baseline")
    return result
