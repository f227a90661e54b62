"""What DVC knows about each revision of a change, gathered in one pass over the revisions.

``dvc metrics diff``, ``dvc params diff``, ``dvc diff``, ``dvc plots show`` and ``dvc status``
each walk the revisions they compare with ``repo.brancher`` and build DVC's index of every
revision they visit (the workspace included, whether asked for or not): nine index builds for
one pull request. :func:`snapshots` walks the base and the head once, and at each one asks
DVC's own per-revision functions (``_gather_metrics``, ``_gather_params``, the index's data
view, the plots' definitions and sources, each stage's status) for what those commands read;
the diffs are then DVC's own pure functions over two snapshots (``dvc.repo.metrics.diff._diff``
for metrics and params, ``dvc.repo.diff._diff`` for data). ``tests/func/test_compare_dvc_api.py``
holds the answers equal to the commands' ``--json`` output.

A commit's snapshot also carries **the status of the committed revision**
(:attr:`Snapshot.status`): ``dvc status`` as DVC computes it on the commit's own files (its git
tree), so everything git holds (code, ``params.yaml``, the ``cache: false`` outputs such as
metrics files and the model card) is checked against the hashes and values ``dvc.lock``
records, while outputs that live only in the DVC cache read as ``deleted`` (they are not in
git). :func:`committed_problems` turns that into what DVC can prove about the commit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.errors import ExternalError

WORKSPACE = "workspace"


@dataclass
class Snapshot:
    """One revision as DVC sees it. ``metrics``/``params`` are DVC ``Result`` dicts
    (``{"data": {file: {"data": ...} | {"error": exc}}}`` or ``{"error": exc}``)."""

    rev: str
    metrics: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    data: Any = None                 # the index's data view (dvc_data DataIndex)
    data_keys: set = field(default_factory=set)
    plots: dict[str, Any] = field(default_factory=dict)  # {"definitions", "sources"}
    status: dict[str, Any] | None = None                 # per stage, for a commit
    stages: dict[str, Any] = field(default_factory=dict)  # name -> DVC Stage (status only)
    error: str | None = None         # DVC could not read the revision at all


def _result(fn: Any) -> dict[str, Any]:
    try:
        return {"data": fn()}
    except (KeyboardInterrupt, ExternalError):
        raise
    except Exception as exc:  # DVC returns errors as data; a whole-revision failure too
        return {"error": exc}


def stage_status(stage: Any) -> dict[str, Any]:
    """``dvc status`` of one stage, as ``Stage.status`` computes it, without the read-write
    lock file it takes in the workspace (a commit's git tree cannot hold one)."""
    from dvc.stage import Stage

    return Stage.status.__wrapped__(stage)


def _plots(repo: Any, targets: list[str] | None, rev: str) -> dict[str, Any]:
    """``repo.plots.show`` of the current revision (its definitions and loaded sources)."""
    from dvc.repo.plots import (
        _collect_definitions,
        _get_data_targets,
        _resolve_data_sources,
        onerror_collect,
    )

    res: dict[str, Any] = {}
    definitions = _collect_definitions(repo, targets=targets or [], revision=rev,
                                       onerror=onerror_collect, props=None)
    if definitions:
        res = {"definitions": definitions}
        res["sources"] = repo.plots._collect_data_sources(
            repo, targets=_get_data_targets(definitions), recursive=False, props=None,
            onerror=onerror_collect)
        wrapped = {rev: res}
        _resolve_data_sources(wrapped, rev[:7], cache=True)
    return res


def snapshots(repo: Any, revs: Sequence[str], *, metrics: Sequence[str] | None = None,
              plots: Sequence[str] | None = None, plots_at: Sequence[str] = (),
              status_at: Sequence[str] = ()) -> dict[str, Snapshot]:
    """One :class:`Snapshot` per name in ``revs`` (commit shas, or :data:`WORKSPACE`), from one
    ``repo.brancher`` pass. ``metrics``/``plots`` are the files to read (``None``: what
    ``dvc.yaml`` declares); plots are read at ``plots_at`` only, the committed status at
    ``status_at`` only (commits)."""
    from dvc.repo.metrics.show import _gather_metrics
    from dvc.repo.params.show import _gather_params

    metric_targets = [repo.dvcfs.from_os_path(os.path.abspath(t)) for t in metrics or []]
    plot_targets = [repo.dvcfs.from_os_path(os.path.abspath(t)) for t in plots or []] or None
    shas = {r: (WORKSPACE if r == WORKSPACE else _resolve(repo, r)) for r in revs}
    commits = list(dict.fromkeys(v for v in shas.values() if v != WORKSPACE))
    with_ws = WORKSPACE in shas.values()
    plots_at = {shas.get(r, r) for r in plots_at}
    status_at = {shas.get(r, r) for r in status_at}
    found: dict[str, Snapshot] = {}
    names = repo.brancher(revs=commits, workspace=with_ws, sha_only=True) if commits \
        else iter([WORKSPACE])
    for name in names:
        rev = WORKSPACE if name in ("workspace", "") else name
        snap = Snapshot(rev)
        try:
            view = repo.index.targets_view(None)
            if rev == WORKSPACE:
                from dvc.repo.index import build_data_index

                snap.data = build_data_index(view, repo.root_dir, repo.fs, compute_hash=True)
            else:
                snap.data = view.data["repo"]
            snap.data_keys = set(view.data_keys.get("repo", set()))
            snap.stages = {s.addressing: s for s in repo.index.stages}
        except (KeyboardInterrupt, ExternalError):
            raise
        except Exception as exc:  # a broken dvc.yaml or dvc.lock at that revision
            snap.error = str(exc).strip() or type(exc).__name__
        snap.metrics = _result(lambda: _gather_metrics(repo, targets=metric_targets or None,
                                                       stages=None, outs_only=False,
                                                       on_error="return"))
        snap.params = _result(lambda: _gather_params(repo, targets=None, stages=None,
                                                     deps_only=False, on_error="return"))
        if rev in plots_at:
            try:
                snap.plots = _plots(repo, plot_targets, rev)
            except (KeyboardInterrupt, ExternalError):
                raise
            except Exception as exc:  # DVC's own errors: reported with the revision
                snap.plots = {"error": exc}
        if rev in status_at and snap.error is None:
            snap.status = {}
            for stage in snap.stages.values():
                snap.status.update(stage_status(stage))
        found[rev] = snap
    missing = [r for r, sha in shas.items() if sha not in found]
    if missing:
        raise ExternalError(f"dvc could not read revision {missing[0]!r} (no DVC repository at "
                            "that commit?)")
    return {r: found[sha] for r, sha in shas.items()}


def _resolve(repo: Any, rev: str) -> str:
    try:
        return str(repo.scm.resolve_rev(rev))
    except Exception as exc:  # scmrepo's RevError and friends
        raise ExternalError(f"git cannot resolve revision {rev!r}: {exc}") from exc


# --------------------------------------------------------------------------- what DVC can prove

@dataclass(frozen=True)
class Problem:
    """One thing the committed revision gets wrong: a stage ``dvc repro`` would run again (its
    recorded inputs differ from the committed files) or a committed output whose bytes are not
    the ones ``dvc.lock`` records."""

    file: str     # the file to reproduce and commit (dvc.lock, or the output itself)
    stage: str
    why: str


def _addressed(name: str) -> str:
    return name.rsplit(":", 1)[-1]


def committed_problems(snap: Snapshot, lock: Mapping[str, Any]) -> list[Problem]:
    """What DVC can prove is stale or hand-edited in a commit (its :attr:`Snapshot.status`
    and its ``dvc.lock``):

    - a stage that is not in ``dvc.lock``, whose command changed, or one of whose inputs held
      in git (code, data in git, ``params.yaml`` values) differs from what ``dvc.lock``
      records: ``dvc repro`` would run it again, so ``dvc.lock`` and its outputs are stale;
    - a stage input that is another stage's output, recorded with another hash than that stage
      recorded for it (a partial ``dvc repro``);
    - an output held in git (``cache: false``: metrics, the card) whose bytes differ from the
      hash ``dvc.lock`` records (edited by hand, or written by another run);

    and nothing about what only the DVC cache holds (outputs and inputs that are not in git read
    as ``deleted`` here; the reproduction pulls or rebuilds them), nor ``always_changed``
    stages. Deterministic on any machine: no model is retrained to decide it.
    """
    if snap.status is None:
        return []
    produced: dict[str, tuple[str, Any]] = {}
    for stage_name, entry in lock.items():
        for out in (entry or {}).get("outs") or []:
            if isinstance(out, Mapping) and "path" in out:
                produced[str(out["path"])] = (stage_name, out.get("md5"))
    problems: list[Problem] = []
    for address, stage in snap.stages.items():
        name = _addressed(address)
        if getattr(stage, "always_changed", False) or getattr(stage, "is_import", False):
            continue
        if not hasattr(stage, "cmd") or not stage.cmd:
            continue  # a .dvc file (dvc add): its data lives in the cache
        if name not in lock:
            problems.append(Problem("dvc.lock", name, "the stage is not in dvc.lock"))
            continue
        entries = snap.status.get(address) or []
        cached = {str(o.def_path): bool(o.use_cache) for o in stage.outs}
        for entry in entries:
            if entry == "changed command" or (isinstance(entry, Mapping)
                                              and "changed command" in entry):
                problems.append(Problem("dvc.lock", name, "its command changed"))
            if not isinstance(entry, Mapping):
                continue
            for path, change in (entry.get("changed deps") or {}).items():
                if isinstance(change, Mapping):  # params: {key: modified | new | deleted}
                    keys = ", ".join(f"{k} {v}" for k, v in sorted(change.items()))
                    problems.append(Problem("dvc.lock", name, f"{path}: {keys}"))
                elif change == "deleted" and _is_produced(path, produced):
                    continue  # another stage's output: in the DVC cache, not in git
                else:
                    problems.append(Problem("dvc.lock", name, f"input {path} {change}"))
            for path, change in (entry.get("changed outs") or {}).items():
                if change in ("deleted", "not in cache") and cached.get(path, True):
                    continue
                if change == "deleted":
                    continue  # a cache: false output that git does not hold: nothing to compare
                problems.append(Problem(path, name, "differs from the hash dvc.lock records"
                                        if change == "modified" else f"output {change}"))
        for dep in (lock.get(name) or {}).get("deps") or []:
            path, md5 = str(dep.get("path")), dep.get("md5")
            producer = produced.get(path)
            if producer and producer[0] != name and md5 and producer[1] and md5 != producer[1]:
                problems.append(Problem("dvc.lock", name,
                                        f"input {path} is recorded at another version than "
                                        f"stage {producer[0]} made"))
    unique: dict[tuple[str, str, str], Problem] = {}
    for p in problems:
        unique.setdefault((p.file, p.stage, p.why), p)
    return sorted(unique.values(), key=lambda p: (p.file != "dvc.lock", p.file, p.stage, p.why))


def _is_produced(path: str, produced: Mapping[str, Any]) -> bool:
    return path in produced or any(path.startswith(p.rstrip("/") + "/") for p in produced)


def repo_relative(root: Path, path: str) -> str:
    """A path DVC printed relative to the working directory, as a repository path."""
    return Path(os.path.relpath(Path(root) / path, root)).as_posix()
