"""Parameter sweeps: the points, their metrics, the comparison report and the winner.

A sweep (``modelops.workflow.sweep``: a ``grid`` of values or a list of ``points``) runs the
pipeline once per point, each point with its parameters set the way ``dvc exp run -S`` sets
them (DVC's own ``apply_overrides``, Hydra override syntax). It runs on Argo Workflows as one
Workflow with a parallel task per point (:mod:`modelops.gitops.workflow`), or here in parallel
processes (:func:`run_local`, ``modelops-gitops workflow sweep``): each point in its own fresh
clone, sharing the repository's DVC cache. Either way every point ends as a commit (its
``params.yaml``, ``dvc.lock`` and git-tracked outputs), the points are ranked by the model's
headline metrics (``modelops.model.headline``: the first one decides, the next ones break
ties), one comparison report is written, and one pull request is opened for the best point.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelops.errors import ExternalError, InputError
from modelops.fsutil import atomic_write_text, write_json
from modelops.git import git
from modelops.retry import retry_call
from modelops.settings import load_settings
from modelops.settings.workflow import WorkflowParams

SWEEP_REFS = "refs/modelops/sweeps"


# --------------------------------------------------------------------------- points

def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def override_strings(point: Mapping[str, Any]) -> list[str]:
    """``{"train.lr": 0.1}`` as DVC's ``-S`` overrides (``["train.lr=0.1"]``)."""
    return [f"{key}={_hydra_value(value)}" for key, value in point.items()]


def apply_overrides(root: Path, overrides: Sequence[str], params_file: str = "params.yaml"
                    ) -> None:
    """Set the overrides in ``params_file`` with DVC's own function (``dvc exp run -S``)."""
    if not overrides:
        return
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides as dvc_apply

    try:
        dvc_apply(root / params_file, list(overrides))
    except InvalidArgumentError as exc:
        raise InputError(f"{params_file}: cannot set {', '.join(overrides)}: {exc}",
                         hint="sweep keys must name existing parameters "
                              "(modelops.workflow.sweep)") from exc


def sweep_points(wf: WorkflowParams) -> list[dict[str, Any]]:
    """The sweep's points as ``{"id": "p0", "params": {...}, "overrides": [...]}``."""
    return [{"id": f"p{i}", "params": point, "overrides": override_strings(point)}
            for i, point in enumerate(wf.sweep.expand())]


# --------------------------------------------------------------------------- metrics

def flatten(values: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(values, Mapping):
        for key, value in values.items():
            out.update(flatten(value, f"{prefix}{key}."))
    elif isinstance(values, list):
        for i, value in enumerate(values):
            out.update(flatten(value, f"{prefix}{i}."))
    elif prefix:
        out[prefix[:-1]] = values
    return out


def read_metrics(root: Path, files: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """file -> flattened metrics of the workspace at ``root``, read through DVC (git- or
    DVC-tracked, JSON/YAML/TOML), for ``files`` (or every metrics file of dvc.yaml)."""

    from dvc.repo import Repo

    try:
        with contextlib.chdir(root), Repo(str(root)) as repo:  # dvc names paths from the cwd
            shown = repo.metrics.show(targets=list(files) or None)
    except Exception as exc:  # noqa: BLE001 - whatever dvc raised, one clear error
        raise ExternalError(f"dvc metrics show failed in {root}: {exc}") from exc
    # the workspace is "workspace" in a git checkout and "" where dvc sees no scm revision
    rev = shown.get("workspace") or shown.get("") or next(iter(shown.values()), {})
    data = (rev or {}).get("data") or {}
    out = {}
    for path, entry in data.items():
        # dvc names the files from the working directory (never changed here: threads)
        rel = os.path.relpath(os.path.join(os.getcwd(), path), root)
        out[rel.replace(os.sep, "/")] = flatten((entry or {}).get("data") or {})
    return out


def headline_value(metrics: Mapping[str, Mapping[str, Any]], key: str,
                   order: Sequence[str] = ()) -> float | None:
    """A headline metric (``name`` or ``file:name``) from :func:`read_metrics`' result."""
    if ":" in key:
        file, name = key.split(":", 1)
        value = (metrics.get(file) or {}).get(name)
    else:
        files = [f for f in order if f in metrics] + [f for f in metrics if f not in order]
        value = next((metrics[f][key] for f in files if key in metrics[f]), None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def headline_of(metrics: Mapping[str, Mapping[str, Any]], headline: Mapping[str, str],
                order: Sequence[str] = ()) -> dict[str, float | None]:
    return {key: headline_value(metrics, key, order) for key in headline}


def rank(results: Sequence[Mapping[str, Any]], headline: Mapping[str, str]
         ) -> list[Mapping[str, Any]]:
    """Successful results that have the first headline metric, best first: by it in its
    direction, ties by the next ones (a missing value ranks last), then by the point's order."""
    if not headline:
        raise InputError("params.yaml: modelops.model.headline: empty, so a sweep cannot "
                         "choose its best point", hint="name the metric to maximise or "
                                                      "minimise, e.g. {accuracy: higher}")

    def key(item: tuple[int, Mapping[str, Any]]) -> tuple:
        index, result = item
        parts = []
        for name, direction in headline.items():
            value = (result.get("metrics") or {}).get(name)
            if value is None:
                parts.append((1, 0.0))
            else:
                parts.append((0, -value if direction == "higher" else value))
        return (*parts, index)

    first = next(iter(headline))
    ok = [(i, r) for i, r in enumerate(results) if r.get("status") == "succeeded"
          and (r.get("metrics") or {}).get(first) is not None]
    return [r for _, r in sorted(ok, key=key)]


# --------------------------------------------------------------------------- the report

def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value).replace("|", "\\|").replace("\n", " ")


def comparison_report(results: Sequence[Mapping[str, Any]], headline: Mapping[str, str],
                      *, model: str, source: str = "") -> dict[str, Any]:
    """The comparison of a sweep: every point's parameters and headline metrics, the best."""
    ranked = rank(results, headline)
    best = ranked[0] if ranked else None
    return {"model": model, "source": source, "headline": dict(headline),
            "best": best.get("point") if best else None,
            "points": [dict(r) for r in results],
            "ranking": [r.get("point") for r in ranked]}


def report_markdown(report: Mapping[str, Any]) -> str:
    headline = report["headline"]
    points = report["points"]
    params = sorted({k for p in points for k in (p.get("params") or {})})
    lines = [f"## Sweep of `{report['model']}`: {len(points)} point(s)", ""]
    if report.get("best"):
        lines.append(f"Best: **{report['best']}** by "
                     + ", then ".join(f"`{k}` ({d})" for k, d in headline.items()) + ".")
    else:
        lines.append("No point succeeded.")
    lines += ["", "| point | " + " | ".join(f"`{p}`" for p in params) + " | "
              + " | ".join(f"{k} ({'↑' if d == 'higher' else '↓'})" for k, d in headline.items())
              + " | status |",
              "|---|" + "---:|" * (len(params) + len(headline)) + "---|"]
    for p in points:
        mark = " ⭐" if p.get("point") == report.get("best") else ""
        cells = [_cell((p.get("params") or {}).get(k)) for k in params]
        cells += [_cell((p.get("metrics") or {}).get(k)) for k in headline]
        lines.append(f"| {p.get('point')}{mark} | " + " | ".join(cells)
                     + f" | {p.get('status')} |")
    if report.get("source"):
        lines += ["", f"Source commit: `{report['source']}`."]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "sweep-report.json", dict(report))
    atomic_write_text(out_dir / "sweep-report.md", report_markdown(report))
    return out_dir / "sweep-report.json", out_dir / "sweep-report.md"


# --------------------------------------------------------------------------- running here

def _log(message: str) -> None:
    print(f"sweep: {message}", file=sys.stderr, flush=True)


def point_result(clone: Path, point: Mapping[str, Any], settings: Any, *, commit: str,
                 ref: str, status: str = "succeeded") -> dict[str, Any]:
    values: dict[str, float | None] = {}
    if status == "succeeded" and settings is not None:
        model = settings.model
        values = headline_of(read_metrics(clone, model.metrics), model.headline, model.metrics)
    return {"point": point["id"], "params": point.get("params") or {},
            "overrides": list(point.get("overrides") or []), "status": status,
            "metrics": values, "commit": commit, "ref": ref}


def commit_all(clone: Path, message: str) -> str:
    """Commit what the pipeline changed in a fresh clone; the commit's sha."""
    git(["add", "-A"], cwd=clone)
    git(["commit", "-q", "--allow-empty", "-m", message], cwd=clone)
    return git(["rev-parse", "HEAD"], cwd=clone).stdout.decode().strip()


def _run_point(root: Path, point: Mapping[str, Any], run_id: str, tmp: Path,
               dvc_args: Sequence[str]) -> dict[str, Any]:
    """One point, in a process of its own (DVC and Hydra may change the working directory)."""

    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "MODELOPS_RUN_KIND":
           os.environ.get("MODELOPS_RUN_KIND", "local"), "MODELOPS_RUN_ID": run_id}
    clone = tmp / str(point["id"])
    git(["clone", "-q", "--no-hardlinks", str(root), str(clone)], what="git clone")
    os.chdir(clone)
    apply_overrides(clone, point.get("overrides") or [])
    sets = " ".join(point.get("overrides") or []) or "no change"
    _log(f"{point['id']}: dvc repro with {sets}")
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "--pull", *dvc_args],
                          cwd=clone, env=env, capture_output=True, text=True)
    if proc.returncode == 0:
        proc = subprocess.run([sys.executable, "-m", "dvc", "push"], cwd=clone, env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        _log(f"{point['id']}: failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}"
             f"{proc.stderr[-2000:]}")
        return point_result(clone, point, None, commit="", ref="", status="failed")
    ref = f"{SWEEP_REFS}/{run_id}/{point['id']}"
    sha = commit_all(clone, f"sweep {run_id} point {point['id']}: {sets}")
    git(["fetch", "-q", str(clone), f"+HEAD:{ref}"], cwd=root, what="git fetch")
    _log(f"{point['id']}: done ({sha[:12]})")
    return point_result(clone, point, load_settings(clone / "params.yaml"), commit=sha, ref=ref)


def run_local(root: Path, points: Sequence[Mapping[str, Any]], *, jobs: int = 2,
              run_id: str | None = None, dvc_args: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Run every point in parallel processes, each in a fresh clone of ``root``'s HEAD with a
    cache of its own (DVC's cache is not safe for concurrent writers): inputs come from the
    default remote (``dvc repro --pull``), outputs go back to it (``dvc push``), so the winner's
    pull request can be reproduced anywhere. Each point's commit is fetched into ``root`` as
    ``refs/modelops/sweeps/<run_id>/<point>``. Returns the points' results in order."""

    root = root.resolve()
    run_id = run_id or datetime.now(UTC).strftime("local-%Y%m%d-%H%M%S")
    tmp = Path(tempfile.mkdtemp(prefix="modelops-sweep-"))
    try:
        with ProcessPoolExecutor(max_workers=max(1, jobs),
                                 mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_run_point, root, dict(p), run_id, tmp, tuple(dvc_args))
                       for p in points]
            return [f.result() for f in futures]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def propose(root: Path, report: Mapping[str, Any], *, branch: str, base: str,
            github: Mapping[str, str] | None, push: bool = True,
            log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Make the best point a branch; push it and open its pull request (with the report)."""
    best = next((p for p in report["points"] if p.get("point") == report.get("best")), None)
    if best is None:
        raise ExternalError("no point of the sweep succeeded, so there is nothing to propose",
                            hint="see each point's log above")
    git(["update-ref", f"refs/heads/{branch}", best["commit"]], cwd=root)
    out: dict[str, Any] = {"status": "branch", "branch": branch, "point": best["point"]}
    if not push:
        return out
    push_branch(root, best["commit"], branch)
    out["status"] = "pushed"
    if github:
        from modelops.github import GitHub

        title = f"Sweep winner for {report['model']}: {best['point']} (" + ", ".join(
            best.get("overrides") or []) + ")"
        number, url = GitHub(github["token"], github.get("api_url")).open_pull_request(
            github["repository"], branch, base, title[:250], report_markdown(report))
        out.update(status="opened", pull_request=number, url=url)
        log(f"pull request #{number}: {url}")
    return out


def push_branch(root: Path, commit: str, branch: str, env: Mapping[str, str] | None = None
                ) -> None:
    retry_call(lambda: git(["push", "-q", "origin", f"{commit}:refs/heads/{branch}"], cwd=root,
                           env=env, what="git push", timeout=300),
               what="git push", log=_log)
