"""What the rendered Workflow's pods run: ``modelops-gitops workflow task|open-pr|collect|compare``,
and a sweep here: ``modelops-gitops workflow sweep``.

Every pod starts in ``/work`` with a fresh clone of the source commit in ``src/`` and the
results of its upstream tasks in ``in/<n>/`` (Argo input artifacts). A result is a folder::

    result.json    {"stage", "status", "lock": "<the stage's dvc.lock entry, as DVC wrote it>",
                    "files": [git-tracked outputs], ...}
    files/...      the stage's ``cache: false`` outputs (metrics, compute records, plots, the
                   card) and the .gitignore files DVC changed
    runs/...       the compute records of the stage's runs (failed ones too)

``task`` merges its upstream results into ``dvc.lock`` (with DVC's own YAML writer, so the file
is what ``dvc repro`` would write), runs ``dvc repro --pull --single-item <stage>`` (upstream
outputs come from the shared remote at their *new* hashes), pushes the stage's outputs and its
run-cache entry, and writes its own result to ``out/``. ``open-pr`` applies every result to a
fresh clone, commits ``dvc.lock`` and the git-tracked outputs on a new branch, pushes it with
the credentials mounted from a Secret (read by a git credential helper from files, never on a
command line) and opens a pull request through the suite's GitHub client. ``collect`` does the
same for one point of a sweep but pushes to ``refs/modelops/sweeps/<workflow>/<point>``;
``compare`` ranks the points and opens the pull request for the best one.

Exit codes: 0 done; 1 the stage failed (deterministic: not retried); 2 bad input; 75 a
transient failure (the DVC remote, the network, git push): the Workflow's retry expression
retries only those.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from modelops.compute import runs_dir, upload_runs
from modelops.errors import ExternalError, InputError, SuiteError
from modelops.fsutil import atomic_write_text, write_json
from modelops.git import git, git_text
from modelops.retry import RetryPolicy, retry_call
from modelops.settings import load_settings
from modelops.yamlio import load_yaml

EXIT_STAGE_FAILED = 1
EXIT_TRANSIENT = 75  # EX_TEMPFAIL
RESULT = "result.json"


class TaskFailed(SuiteError):
    """The stage's own command failed: a result, not a crash."""

    exit_code = EXIT_STAGE_FAILED


class Transient(ExternalError):
    """The remote, the network or git failed: Argo may retry the task."""

    exit_code = EXIT_TRANSIENT
    retryable = True


def _log(message: str) -> None:
    print(f"workflow-task: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- dvc.lock entries

def _yaml() -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()  # round trip: scalars keep the text DVC wrote
    yaml.default_flow_style = False
    return yaml


def lock_entry_text(src: Path, stage: str) -> str | None:
    """The stage's entry of ``src/dvc.lock`` as YAML text (``{stage: {...}}``)."""
    path = src / "dvc.lock"
    if not path.exists():
        return None
    data = _yaml().load(path.read_text(encoding="utf-8")) or {}
    entry = (data.get("stages") or {}).get(stage)
    if entry is None:
        return None
    buf = io.StringIO()
    _yaml().dump({stage: entry}, buf)
    return buf.getvalue()


def merge_lock_entries(src: Path, entries: Sequence[str]) -> None:
    """Put each ``{stage: entry}`` text into ``src/dvc.lock`` the way DVC's Lockfile does."""
    if not entries:
        return
    from dvc.utils.serialize import modify_yaml

    with modify_yaml(str(src / "dvc.lock")) as data:
        if not data:
            data.update({"schema": "2.0"})
        data["stages"] = data.get("stages", {})
        for text in entries:
            data["stages"].update(_yaml().load(text))


# --------------------------------------------------------------------------- results

def read_result(folder: Path) -> dict[str, Any]:
    path = folder / RESULT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a stage result ({exc})",
                         hint="the upstream task did not finish; see its log") from exc
    if not isinstance(data, dict) or not isinstance(data.get("stage"), str):
        raise InputError(f"{path}: not a stage result (no 'stage')")
    return data


def _copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)


def _inside(root: Path, rel: str) -> Path:
    target = (root / rel).resolve()
    if root.resolve() not in target.parents and target != root.resolve():
        raise InputError(f"a stage result names a path outside the repository: {rel!r}")
    return target


def apply_results(src: Path, inputs: Path, order: Sequence[str] | None = None
                  ) -> list[dict[str, Any]]:
    """Apply every result in ``inputs/*/`` to the clone ``src``: its files, then its lock entry.
    ``order`` (stage names) decides the order of stages new to dvc.lock."""
    results = []
    for folder in sorted(p for p in inputs.iterdir() if p.is_dir()) if inputs.is_dir() else []:
        if not (folder / RESULT).exists():
            continue  # an optional slot nobody filled
        result = read_result(folder)
        results.append((result, folder))
    rank = {name: i for i, name in enumerate(order or [])}
    results.sort(key=lambda rf: (rank.get(rf[0]["stage"], len(rank)), rf[0]["stage"]))
    for result, folder in results:
        for rel in result.get("files") or []:
            source = folder / "files" / rel
            if source.exists():
                target = _inside(src, rel)
                if target.is_dir() and source.is_dir():
                    shutil.rmtree(target)
                _copy(source, target)
    merge_lock_entries(src, [r["lock"] for r, _ in results if r.get("lock")])
    return [r for r, _ in results]


def _git_tracked_outputs(repo: Any, stage_name: str) -> list[str]:
    """Paths (relative to the repository root) of the stage's ``cache: false`` outputs."""
    out = []
    for stage in repo.index.stages:
        if getattr(stage, "name", None) != stage_name and stage.addressing != stage_name:
            continue
        for output in stage.outs:
            if not output.use_cache:
                out.append(os.path.relpath(output.fs_path, repo.root_dir).replace(os.sep, "/"))
    return sorted(out)


def _changed_gitignores(src: Path) -> list[str]:
    text = git_text(["status", "--porcelain", "--untracked-files=all"], cwd=src) or ""
    names = [line[3:].strip().strip('"') for line in text.splitlines()]
    return sorted(n for n in names if n == ".gitignore" or n.endswith("/.gitignore"))


def write_result(src: Path, out: Path, stage: str, status: str, files: Sequence[str],
                 extra: dict[str, Any] | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    kept = []
    for rel in files:
        path = src / rel
        if path.exists():
            _copy(path, out / "files" / rel)
            kept.append(rel)
    runs = runs_dir(src)
    if runs.is_dir():
        for record in sorted(runs.glob("*.json")):
            _copy(record, out / "runs" / record.name)
    write_json(out / RESULT, {"stage": stage, "status": status, "files": kept,
                              "lock": lock_entry_text(src, stage) if status == "succeeded"
                              else None, **(extra or {})})


# --------------------------------------------------------------------------- task

@contextlib.contextmanager
def _in(path: Path) -> Iterator[None]:
    with contextlib.chdir(path):
        yield


def _transient(exc: BaseException) -> bool:
    from dvc.exceptions import DownloadError, UploadError

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (DownloadError, UploadError, ConnectionError, TimeoutError)):
            return True
        name = type(seen).__name__
        if any(word in name for word in ("Connection", "Timeout", "Endpoint", "Network")):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def run_task(stage: str, *, src: Path, inputs: Path, out: Path, remote: str = "",
             overrides: Sequence[str] = ()) -> int:
    """Run one stage in this pod's clone; write its result; the exit code (see module doc)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    from dvc.stage.exceptions import StageCmdFailedError

    from modelops.gitops.sweep import apply_overrides

    src, inputs, out = src.resolve(), inputs.resolve(), out.resolve()
    with _in(src):
        apply_overrides(src, overrides)
        applied = apply_results(src, inputs)
        _log(f"stage {stage}: {len(applied)} upstream result(s): "
             + (", ".join(r["stage"] for r in applied) or "none"))
        if remote:
            with Repo(str(src)) as repo, repo.config.edit("local") as conf:
                conf["core"]["remote"] = remote
        status, code = "succeeded", 0
        with Repo(str(src)) as repo:
            files = _git_tracked_outputs(repo, stage)
            try:
                # `repro --single-item` treats a missing dependency as unchanged (it has no
                # graph to see that the upstream output moved), so the upstream outputs are
                # pulled first, at the hashes of the merged dvc.lock entries.
                upstream = [r["stage"] for r in applied if r.get("status") == "succeeded"]
                if upstream:
                    repo.pull(targets=upstream)
            except DvcException as exc:
                write_result(src, out, stage, "failed", [])
                raise Transient(f"stage {stage}: cannot pull the outputs of "
                                f"{', '.join(upstream)} from the DVC remote: {exc}",
                                hint="check the remote and its credentials; the task is "
                                     "retried") from exc
            try:
                repo.reproduce(stage, single_item=True, pull=True)
            except DvcException as exc:
                cause = exc.__cause__
                if isinstance(cause, StageCmdFailedError) or not _transient(exc):
                    status, code = "failed", EXIT_STAGE_FAILED
                    _log(f"stage {stage} failed: {cause or exc}")
                else:
                    status, code = "failed", EXIT_TRANSIENT
                    _log(f"stage {stage}: the remote or the network failed: {exc}")
            if code == 0:
                try:
                    repo.push(targets=[stage], run_cache=True)
                except DvcException as exc:
                    status, code = "failed", EXIT_TRANSIENT
                    _log(f"stage {stage}: dvc push failed: {exc}")
        write_result(src, out, stage, status, [*files, *_changed_gitignores(src)])
        try:
            upload_runs(src)
        except OSError as exc:  # the ledger is bookkeeping: never fail a stage for it
            _log(f"compute records not uploaded: {exc}")
    if code == 0:
        _log(f"stage {stage}: done")
    return code


# --------------------------------------------------------------------------- git + GitHub

def credential_env(credentials: Path | None) -> dict[str, str]:
    """Environment for git commands that authenticate with the mounted Secret: a credential
    helper reads ``username`` and ``password`` from files, so no token is ever an argument."""
    if credentials is None:
        return {}
    folder = credentials.resolve()
    for key in ("username", "password"):
        if not (folder / key).is_file():
            raise InputError(f"{folder / key}: missing; the git credentials Secret needs keys "
                             "'username' and 'password'")
    helper = ("!f() { test \"$1\" = get || exit 0; "
              f"printf 'username=%s\\n' \"$(cat '{folder}/username')\"; "
              f"printf 'password=%s\\n' \"$(cat '{folder}/password')\"; }}; f")
    return {"GIT_CONFIG_COUNT": "2",
            "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": "",
            "GIT_CONFIG_KEY_1": "credential.helper", "GIT_CONFIG_VALUE_1": helper}


def _push(src: Path, refspec: str, credentials: Path | None) -> None:
    env = credential_env(credentials)
    try:
        retry_call(lambda: git(["push", "-q", "origin", refspec], cwd=src, env=env,
                               what="git push", timeout=300),
                   policy=RetryPolicy(attempts=3), what="git push", log=_log)
    except ExternalError as exc:
        if exc.retryable:
            raise Transient(exc.message, hint=exc.hint) from exc
        raise


def _github(args: Any) -> dict[str, str] | None:
    if not getattr(args, "github_repo", None):
        return None
    token = os.environ.get("GITHUB_TOKEN", "")
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"{args.token_file}: cannot read the GitHub token ({exc})",
                             hint="mount the Secret named by modelops.workflow.pull_request."
                                  "token_secret (key 'token')") from exc
    if not token:
        raise InputError("no GitHub token: the pull request cannot be opened",
                         hint="mount the token Secret, or set GITHUB_TOKEN")
    return {"token": token, "repository": args.github_repo,
            "api_url": args.github_api_url or "https://api.github.com"}


def _settings(src: Path) -> Any:
    return load_settings(src / "params.yaml")


def _order(src: Path) -> list[str]:
    from modelops.gitops.dvcgraph import pipeline_graph, topological_order

    return topological_order(pipeline_graph(src))


def _changed_stages(src: Path, results: Sequence[dict[str, Any]]) -> list[str]:
    """Stages whose dvc.lock entry differs from the committed one."""

    committed = load_yaml(git_text(["show", "HEAD:dvc.lock"], cwd=src) or "{}") or {}
    now = load_yaml((src / "dvc.lock").read_text(encoding="utf-8")) or {}
    before, after = committed.get("stages") or {}, now.get("stages") or {}
    return [r["stage"] for r in results if before.get(r["stage"]) != after.get(r["stage"])]


def _stage_paths(src: Path, results: Sequence[dict[str, Any]]) -> list[str]:
    paths = {"dvc.lock"}
    for r in results:
        paths.update(r.get("files") or [])
    return sorted(p for p in paths if (src / p).exists())


def _commit(src: Path, paths: Sequence[str], message: str, *, also_params: bool = False) -> bool:
    git(["add", "--", *paths, *(["params.yaml"] if also_params else [])], cwd=src)
    if not (git_text(["diff", "--cached", "--name-only"], cwd=src) or "").strip():
        return False
    git(["commit", "-q", "-m", message], cwd=src)
    return True


def _fail_on_failed(results: Sequence[dict[str, Any]]) -> None:
    failed = [r["stage"] for r in results if r.get("status") != "succeeded"]
    if failed:
        raise TaskFailed(f"stage(s) {', '.join(failed)} failed: nothing to propose")


def open_pr(args: Any) -> int:
    """Apply every stage's result; commit, push a branch, open the pull request."""
    _absolute(args)
    from modelops.gitops.sweep import headline_of, read_metrics

    src, out = Path(args.src).resolve(), Path(args.out).resolve()
    inputs = Path(args.inputs).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with _in(src):
        settings = _settings(src)
        results = apply_results(src, inputs, _order(src))
        _fail_on_failed(results)
        changed = _changed_stages(src, results)
        model = settings.model.name
        branch = f"{args.branch_prefix}{model}-{args.workflow}"
        summary: dict[str, Any] = {"status": "unchanged", "changed_stages": changed}
        head = git_text(["rev-parse", "HEAD"], cwd=src).strip()
        git(["checkout", "-q", "-b", branch], cwd=src)
        message = (f"train {model}: {len(changed)} stage(s) reran on Argo Workflows\n\n"
                   f"Workflow: {args.workflow}\nSource commit: {head}\n"
                   f"Stages: {', '.join(changed) or 'none'}\n")
        if not _commit(src, _stage_paths(src, results), message):
            _log("every stage was up to date: nothing to propose")
            write_json(out / "summary.json", summary)
            return 0
        _push(src, f"HEAD:refs/heads/{branch}", _credentials(args))
        summary.update(status="pushed", branch=branch)
        github = _github(args)
        if github:
            from modelops.github import GitHub

            values = headline_of(read_metrics(src, settings.model.metrics),
                                 settings.model.headline, settings.model.metrics)
            body = (f"Trained by the Argo Workflow `{args.workflow}` from `{head}`.\n\n"
                    f"- stages that reran: {', '.join(f'`{s}`' for s in changed) or 'none'}\n"
                    + "".join(f"- `{k}`: {v:.4g}\n" if v is not None else f"- `{k}`: —\n"
                              for k, v in values.items())
                    + "\nThe pull-request evaluation judges this model; nothing is deployed "
                      "before a merge.")
            number, url = GitHub(github["token"], github["api_url"]).open_pull_request(
                github["repository"], branch, args.base, f"Train {model} ({args.workflow})",
                body)
            summary.update(status="opened", pull_request=number, url=url)
            _log(f"pull request #{number}: {url}")
        write_json(out / "summary.json", summary)
    return 0


def _absolute(args: Any) -> Any:
    """Path arguments are relative to where the task starts (the pod's working directory)."""
    for key in ("src", "inputs", "out", "token_file", "git_credentials"):
        value = getattr(args, key, None)
        if value:
            setattr(args, key, str(Path(value).resolve()))
    return args


def _credentials(args: Any) -> Path | None:
    return Path(args.git_credentials) if getattr(args, "git_credentials", None) else None


def collect(args: Any) -> int:
    """A sweep point's results as one commit on ``refs/modelops/sweeps/<workflow>/<point>``."""
    _absolute(args)
    from modelops.gitops.sweep import SWEEP_REFS, apply_overrides, point_result

    src, out = Path(args.src).resolve(), Path(args.out).resolve()
    inputs = Path(args.inputs).resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = _overrides(args.overrides)
    with _in(src):
        apply_overrides(src, overrides)
        settings = _settings(src)
        results = apply_results(src, inputs, _order(src))
        _fail_on_failed(results)
        ref = f"{SWEEP_REFS}/{args.workflow}/{args.point}"
        _commit(src, _stage_paths(src, results),
                f"sweep {args.workflow} point {args.point}: {', '.join(overrides)}",
                also_params=True)
        sha = git_text(["rev-parse", "HEAD"], cwd=src).strip()
        _push(src, f"+HEAD:{ref}", _credentials(args))
        point = {"id": args.point, "overrides": overrides,
                 "params": _params_of(overrides)}
        result = point_result(src, point, settings, commit=sha, ref=ref)
        atomic_write_text(out / RESULT, json.dumps(result, sort_keys=True) + "\n")
        _log(f"point {args.point}: {sha[:12]} -> {ref}")
    return 0


def _overrides(text: str) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError as exc:
        raise InputError(f"--overrides must be a JSON list of strings (got {text!r:.80})") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"--overrides must be a JSON list of strings (got {text!r:.80})")
    return value


def _params_of(overrides: Sequence[str]) -> dict[str, str]:
    return dict(o.split("=", 1) for o in overrides if "=" in o)


def compare(args: Any) -> int:
    """Rank the sweep's points, write the report, open the pull request for the best."""
    _absolute(args)
    from modelops.gitops.sweep import (
        SWEEP_REFS,
        comparison_report,
        push_branch,
        report_markdown,
        write_report,
    )

    src, out = Path(args.src).resolve(), Path(args.out).resolve()
    try:
        results = json.loads(args.results)
    except ValueError as exc:
        raise InputError(f"--results is not JSON: {exc}") from exc
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise InputError("--results must be a JSON list of the points' results")
    with _in(src):
        settings = _settings(src)
        head = git_text(["rev-parse", "HEAD"], cwd=src).strip()
        report = comparison_report(results, settings.model.headline, model=settings.model.name,
                                   source=head)
        write_report(report, out)
        env = credential_env(_credentials(args))
        if report["best"] is None:
            raise TaskFailed("no point of the sweep succeeded: nothing to propose")
        best = next(p for p in results if p.get("point") == report["best"])
        git(["fetch", "-q", "origin", best["ref"]], cwd=src, env=env, what="git fetch",
            timeout=300)
        git(["update-ref", f"{SWEEP_REFS}/{args.workflow}/{best['point']}", "FETCH_HEAD"],
            cwd=src)
        branch = f"{args.branch_prefix}{settings.model.name}-{args.workflow}"
        git(["update-ref", f"refs/heads/{branch}", best["commit"]], cwd=src)
        try:
            push_branch(src, best["commit"], branch, env=env)
        except ExternalError as exc:
            if exc.retryable:
                raise Transient(exc.message, hint=exc.hint) from exc
            raise
        outcome = {"status": "pushed", "branch": branch, "point": best["point"]}
        github = _github(args)
        if github:
            from modelops.github import GitHub

            title = (f"Sweep winner for {settings.model.name}: {best['point']} ("
                     + ", ".join(best.get("overrides") or []) + ")")
            number, url = GitHub(github["token"], github["api_url"]).open_pull_request(
                github["repository"], branch, args.base, title[:250], report_markdown(report))
            outcome.update(status="opened", pull_request=number, url=url)
            _log(f"pull request #{number}: {url}")
        for point in results:
            if point.get("ref"):
                git(["push", "-q", "origin", "--delete", point["ref"]], cwd=src, env=env,
                    check=False, timeout=120)
        write_json(out / "summary.json", outcome)
    return 0


def sweep_here(args: Any) -> int:
    """``modelops-gitops workflow sweep``: the sweep on this machine, in parallel processes."""
    from modelops.gitops.sweep import (
        comparison_report,
        propose,
        run_local,
        sweep_points,
        write_report,
    )

    root = Path(args.repo).resolve()
    settings = _settings(root)
    points = sweep_points(settings.workflow)
    if not points:
        raise InputError("params.yaml: modelops.workflow.sweep: no sweep is configured",
                         hint="set sweep.grid or sweep.points")
    _log(f"{len(points)} point(s), {args.jobs} at a time")
    results = run_local(root, points, jobs=args.jobs)
    head = git_text(["rev-parse", "HEAD"], cwd=root).strip()
    report = comparison_report(results, settings.model.headline, model=settings.model.name,
                               source=head)
    json_path, md_path = write_report(report, Path(args.report_dir))
    print(md_path.read_text(encoding="utf-8"))
    _log(f"report: {md_path} and {json_path}")
    if report["best"] is None:
        raise TaskFailed("no point of the sweep succeeded")
    token = os.environ.get("GITHUB_TOKEN")
    repository = args.github_repo or os.environ.get("GITHUB_REPOSITORY")
    github = ({"token": token, "repository": repository,
               "api_url": os.environ.get("GITHUB_API_URL") or "https://api.github.com"}
              if token and repository and not args.no_push else None)
    stamp = results[0]["ref"].split("/")[-2] if results[0].get("ref") else "local"
    branch = f"{settings.workflow.pull_request.branch_prefix}{settings.model.name}-sweep-{stamp}"
    outcome = propose(root, report, branch=branch, base=args.base, github=github,
                      push=not args.no_push)
    print(json.dumps(outcome))
    return 0


# --------------------------------------------------------------------------- CLI

def _transient_on_retryable(handler: Any) -> Any:
    """A retryable failure (GitHub 5xx, a dropped connection) exits 75, so Argo retries it."""
    def run(args: Any) -> int:
        try:
            return handler(args)
        except ExternalError as exc:
            if exc.retryable and not isinstance(exc, Transient):
                raise Transient(exc.message, hint=exc.hint) from exc
            raise
    return run


def _cmd_task(args: Any) -> int:
    return run_task(args.stage, src=Path(args.src), inputs=Path(args.inputs), out=Path(args.out),
                    remote=args.remote, overrides=_overrides(args.overrides))


def register(wsub: Any) -> None:
    paths = argparse.ArgumentParser(add_help=False)
    paths.add_argument("--src", default="src", help="the clone of the source commit")
    paths.add_argument("--inputs", default="in", help="folder of upstream results")
    paths.add_argument("--out", default="out", help="folder this task's result goes to")
    t = wsub.add_parser("task", parents=[paths], help="(in a Workflow pod) run one dvc stage",
                        description="Merge the upstream results into dvc.lock, run `dvc repro "
                                    "--pull --single-item STAGE`, push its outputs, write its "
                                    "result. Exit 75 means a transient failure.")
    t.add_argument("--stage", required=True)
    t.add_argument("--remote", default="", help="DVC remote (default: the repository's)")
    t.add_argument("--overrides", default="[]", help="JSON list of `dvc exp run -S` overrides")
    t.set_defaults(handler=_transient_on_retryable(_cmd_task))
    pr = argparse.ArgumentParser(add_help=False)
    pr.add_argument("--workflow", required=True, help="the Workflow's name")
    pr.add_argument("--base", default="main", help="base branch of the pull request")
    pr.add_argument("--branch-prefix", default="train/")
    pr.add_argument("--github-repo", default="", help="OWNER/NAME ('' = push only)")
    pr.add_argument("--github-api-url", default="https://api.github.com")
    pr.add_argument("--token-file", default="", help="file holding the GitHub token")
    pr.add_argument("--git-credentials", default="",
                    help="folder with files `username` and `password` for git push")
    o = wsub.add_parser("open-pr", parents=[paths, pr],
                        help="(in a Workflow pod) commit the results and open a pull request")
    o.set_defaults(handler=_transient_on_retryable(open_pr))
    c = wsub.add_parser("collect", parents=[paths, pr],
                        help="(in a Workflow pod) commit one sweep point's results")
    c.add_argument("--point", required=True)
    c.add_argument("--overrides", default="[]")
    c.set_defaults(handler=_transient_on_retryable(collect))
    k = wsub.add_parser("compare", parents=[paths, pr],
                        help="(in a Workflow pod) rank a sweep and propose the best point")
    k.add_argument("--results", required=True, help="JSON list of the points' results")
    k.set_defaults(handler=_transient_on_retryable(compare))
    s = wsub.add_parser("sweep", help="run modelops.workflow.sweep here, in parallel processes",
                        description="Run every point of the sweep in its own fresh clone (in "
                                    "parallel, sharing the DVC cache), write the comparison "
                                    "report, and push the best point as a branch with a pull "
                                    "request (GITHUB_TOKEN, GITHUB_REPOSITORY).")
    s.add_argument("--repo", default=".", help="model repository root (default: .)")
    s.add_argument("--jobs", type=int, default=max(1, (os.cpu_count() or 2) // 2),
                   help="points at a time (default: half the CPUs)")
    s.add_argument("--report-dir", default="reports", help="where the report goes")
    s.add_argument("--base", default="main", help="base branch of the pull request")
    s.add_argument("--github-repo", default=None, help="OWNER/NAME (default: $GITHUB_REPOSITORY)")
    s.add_argument("--no-push", action="store_true",
                   help="make the best point a local branch only")
    s.set_defaults(handler=sweep_here)
