"""``gitops promote`` and ``gitops rollback``: move releases between environments through Git.

Promote: the release in ``<from>/<model>/release.json`` (the exact artifact: same sha256) is
rendered for ``<to>`` and published there, either as a direct commit or, the default for
production, as a branch plus a pull request in the GitOps repository (``modelops.github.GitHub``)
for
a release manager to merge.

Rollback: a *new* commit that restores ``<env>/<model>/`` to the exact bytes it had in the
previous published state (or the named one), so Git and the cluster agree after an aborted
canary. Every state counts (a new image under the same model version too); repeated rollbacks
keep going back along the states as they were published (:func:`gitops.history.release_line`),
``--undo`` returns to the state a rollback replaced, and ``--to`` names a version (its latest
state that differs from the current one), a commit or a state (tree id). The history it picks
from is the one ``gitops history`` shows.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelops.errors import ExternalError, InputError
from modelops.gitops.gitrepo import DEFAULT_BRANCH, Clone, git, redact
from modelops.gitops.history import (
    RELEASE_FILE,
    Deployment,
    add_repo_args,
    deployments,
    model_name,
    open_history_clone,
    release_line,
)
from modelops.gitops.publish import (
    RETRY_FOR_S,
    TEMP_PREFIX,
    Log,
    PublishResult,
    Render,
    _stderr,
    add_publish_args,
    branch_of,
    configured_repo,
    folder_name,
    format_message,
    params_renderer,
    publish,
    release_trailers,
    resolve_repo,
    with_retries,
)
from modelops.gitops.workdirs import locked_tempdir

PR_DEFAULT_ENVS = ("production",)


@dataclass
class PromoteResult:
    publish: PublishResult | None
    version: str
    sha256: str
    branch: str | None = None
    pull_request_url: str | None = None
    pull_request_number: int | None = None


def _load_release(data: bytes, source: str) -> Any:
    from modelops.gitops.release import Release

    return Release.from_json(data, source)


# --------------------------------------------------------------------------- promote

def promote(url: str, *, model: str, source: str, target: str, render: Render,
            mode: str = "commit", branch: str = DEFAULT_BRANCH,
            github: Mapping[str, str] | None = None, log: Log = _stderr,
            max_attempts: int | None = None, retry_for: float = RETRY_FOR_S,
            overwrite_manual_changes: bool = False) -> PromoteResult:
    """Promote the release published in ``source`` to ``target`` (``mode``: commit or pr)."""
    if source == target:
        raise InputError(f"--from and --to are both {source!r}",
                         hint="promote from one environment to another, e.g. staging -> "
                              "production")
    src, dst = folder_name(source, model), folder_name(target, model)
    with locked_tempdir(TEMP_PREFIX) as tmp:
        log(f"gitops: cloning {branch!r} of {redact(url)}")

        def fresh() -> Clone:
            shutil.rmtree(tmp / "repo", ignore_errors=True)
            return Clone.create(url, tmp / "repo", branch)

        clone = with_retries("cloning", fresh, log=log)
        head = clone.remote_head()
        data = clone.read_objects([f"{head}:{src}/{RELEASE_FILE}"])[0] if head else None
        if data is None:
            raise InputError(f"nothing is published in {src!r} of {redact(url)}",
                             hint=f"publish it first: modelops-gitops publish --env {source}")
        release = _load_release(data, f"{src}/{RELEASE_FILE}")
        files = dict(render(release, target))
        rendered = _load_release(files.get(RELEASE_FILE, b""), f"{dst}/{RELEASE_FILE}")
        if (rendered.sha256, rendered.version) != (release.sha256, release.version):
            raise ExternalError(f"rendering for {target!r} changed the release "
                                f"({release.sha256[:12]} -> {rendered.sha256[:12]})",
                                hint="this is a bug in the renderer; nothing was published")
        trailers = [*release_trailers(release, target), ("Gitops-Action", "promote"),
                    ("Promoted-From", f"{source}@{head}")]
        message = format_message(
            f"promote {model} {release.version} from {source} to {target}", trailers,
            body=f"The release running in {source} (sha256 {release.sha256}) goes to {target}.")
        result = PromoteResult(None, release.version, release.sha256)
        if mode == "commit":
            result.publish = publish(url, {dst: files}, message=message, branch=branch,
                                     clone=clone, log=log, max_attempts=max_attempts,
                                     retry_for=retry_for,
                                     overwrite_manual_changes=overwrite_manual_changes)
            return result
        if mode != "pr":
            raise InputError(f"promotion mode {mode!r} is unknown", hint="use 'commit' or 'pr'")
        return _promote_by_pr(url, clone, head, dst, files, message, release, source, target,
                              branch, github or {}, log, result, overwrite_manual_changes)


def _promote_by_pr(url: str, clone: Clone, head: str | None, dst: str,
                   files: Mapping[str, bytes], message: str, release: Any, source: str,
                   target: str, branch: str, github: Mapping[str, str], log: Log,
                   result: PromoteResult,
                   overwrite_manual_changes: bool = False) -> PromoteResult:
    repo_name = github.get("repository")
    if not repo_name or "/" not in repo_name:
        raise InputError(f"a pull request needs the GitOps repository's GitHub name "
                         f"(got {repo_name!r})",
                         hint="pass --github-repo OWNER/NAME (and GITHUB_TOKEN), or --direct "
                              "for a direct commit")
    if not github.get("token"):
        raise InputError("a pull request needs a GitHub token (got nothing)",
                         hint="set GITHUB_TOKEN (contents and pull-requests write), or use "
                              "--direct")
    pr_branch = f"gitops/promote-{release.model}-{release.version}-to-{target}"
    ref = f"refs/heads/{pr_branch}"
    exists = git(["ls-remote", "--heads", "origin", ref], cwd=clone.path,
                 what="listing the GitOps repository's branches").stdout.strip()
    if exists:
        log(f"gitops: branch {pr_branch!r} already exists; reusing it")
    else:
        pushed = publish(url, {dst: files}, message=message, branch=branch, ref=ref,
                         clone=clone, log=log, max_attempts=1,
                         overwrite_manual_changes=overwrite_manual_changes)
        result.publish = pushed
        if pushed.noop:
            log(f"gitops: {dst} already runs {release.version}; no pull request needed")
            return result
    result.branch = pr_branch
    title = f"Promote {release.model} {release.version} from {source} to {target}"
    body = (f"Promotes the exact release that runs in `{source}` to `{target}`.\n\n"
            f"| field | value |\n|---|---|\n| model | `{release.model}` |\n"
            f"| version | `{release.version}` |\n| sha256 | `{release.sha256}` |\n"
            f"| source commit | `{release.source_commit}` |\n"
            f"| {source} head | `{head}` |\n\nMerge to deploy; close to cancel.")
    number, html = open_pull_request(github, pr_branch, branch, title, body)
    result.pull_request_url, result.pull_request_number = html, number
    log(f"gitops: pull request #{number}: {html}")
    return result


def open_pull_request(github: Mapping[str, str], head: str, base: str, title: str,
                      body: str) -> tuple[int, str]:
    """Open (or find the already open) pull request ``head`` -> ``base``; (number, html url).

    Through the suite's GitHub client (:class:`modelops.github.GitHub`): server errors and dropped
    connections are retried with backoff, and a POST whose answer was lost is found, not
    duplicated; auth and permission errors stop at once."""
    from modelops.github import GitHub

    try:
        client = GitHub(github["token"], github.get("api_url"))
        return client.open_pull_request(github["repository"], head, base, title, body)
    except ExternalError as exc:
        hint = ("run the command again; the branch is pushed and is reused" if exc.retryable
                else "check GITHUB_TOKEN: it needs pull-requests write on the GitOps "
                     "repository; the branch was pushed, nothing was force-pushed")
        raise ExternalError(exc.message, hint=hint, retryable=exc.retryable) from exc


# --------------------------------------------------------------------------- rollback

def choose_rollback(deps: list[Deployment], folder: str, to: str | None = None,
                    undo: bool = False) -> Deployment | None:
    """The interval a rollback restores, or None when the current state already is the one
    ``to`` names. ``to``: a version (its latest state that differs from the current one), a
    commit or a state (tree id), 7 hex digits or more; ``undo``: the state the latest
    rollback replaced; neither: the state before the current one on the release line."""
    current = deps[-1]
    if undo:
        if not current.action.startswith("rollback") or len(deps) < 2:
            raise InputError(f"{folder!r} is not at a rollback ({current.version!r} came by "
                             f"{current.action!r}), so there is nothing to undo",
                             hint="roll back with `modelops-gitops rollback`, or name a state "
                                  "with --to")
        return deps[-2]
    if to is not None:
        hexish = re.fullmatch(r"[0-9a-f]{7,64}", to) is not None

        def names(d: Deployment) -> bool:
            return d.version == to or hexish and (d.commit.startswith(to)
                                                  or d.state.startswith(to))

        named = [d for d in deps if names(d)]
        if not named:
            ran = ", ".join(dict.fromkeys(d.version for d in deps)) or "none"
            raise InputError(f"version {to!r} never ran in {folder!r}",
                             hint=f"versions that ran there: {ran} (or name a commit or a "
                                  "state from `modelops-gitops history`)")
        others = [d for d in named if d.state != current.state]
        return others[-1] if others else None
    line, position = release_line(deps)
    earlier = [deps[i] for i in reversed(line[:position]) if deps[i].state != current.state]
    if not earlier:
        raise InputError(f"{folder!r} has no earlier state than the one now running "
                         f"({current.version!r})",
                         hint="roll forward instead: publish or promote a release, or undo a "
                              "rollback with --undo")
    return earlier[0]


def rollback(url: str, *, env: str, model: str, to_version: str | None = None,
             undo: bool = False, branch: str = DEFAULT_BRANCH, log: Log = _stderr,
             max_attempts: int | None = None, retry_for: float = RETRY_FOR_S,
             overwrite_manual_changes: bool = False) -> PublishResult:
    """A new commit restoring ``env/model`` to the bytes of an earlier state (see
    :func:`choose_rollback`)."""
    folder = folder_name(env, model)
    with locked_tempdir(TEMP_PREFIX) as tmp:
        log(f"gitops: reading the history of {folder} in {redact(url)}")
        clone = open_history_clone(url, tmp / "repo", branch)
        head = clone.remote_head()
        deps = deployments(clone, head, env, model)
        if not deps or deps[-1].until is not None:
            raise InputError(f"nothing runs in {folder!r} of {redact(url)}, so there is nothing to "
                             f"roll back", hint=f"see: modelops-gitops history --env {env}")
        current = deps[-1]
        chosen = choose_rollback(deps, folder, to_version, undo)
        if chosen is None:
            log(f"gitops: {folder} already runs {to_version} (state {current.state[:12]}); "
                "nothing committed")
            return PublishResult(url, f"refs/heads/{branch}", None, head, [], [folder])
        files = clone.read_folder(chosen.last_commit, folder)
        info = _release_fields(files.get(RELEASE_FILE))
        trailers = [("Model", model), ("Environment", env)]
        trailers += [(k, info[f]) for k, f in (
            ("Model-Version", "version"), ("Model-Sha256", "sha256"), ("Dvc-Md5", "dvc_md5"),
            ("Dvc-Lock-Sha256", "dvc_lock_sha256"), ("Source-Repo", "source_repo"),
            ("Source-Commit", "source_commit"), ("Image", "image")) if info.get(f)]
        trailers += [("Gitops-Action", "rollback"), ("Rolled-Back-From", current.version),
                     ("Restores-Commit", chosen.commit), ("Restores-State", chosen.state)]
        how = "undo the rollback" if undo else "rollback"
        message = format_message(
            f"{how} {model} in {env} from {current.version} to {chosen.version}", trailers,
            body=f"Restores {folder}/ to its exact bytes at {chosen.last_commit[:12]} "
                 f"(release {chosen.version}, sha256 {chosen.sha256}, state "
                 f"{chosen.state[:12]}).")
        log(f"gitops: rolling {folder} back from {current.version} (state "
            f"{current.state[:12]}) to {chosen.version} (state {chosen.state[:12]})")
        return publish(url, {folder: files}, message=message, branch=branch, clone=clone,
                       log=log, max_attempts=max_attempts, retry_for=retry_for,
                       overwrite_manual_changes=overwrite_manual_changes)


def _release_fields(data: bytes | None) -> dict[str, str]:
    try:
        raw = json.loads(data or b"")
    except ValueError:
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: str(v) for k, v in raw.items() if isinstance(v, str) and "\n" not in v}


# --------------------------------------------------------------------------- CLI

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "promote", help="promote the exact release of one environment to another",
        description="Render the release published in --from (same artifact, same sha256) for "
                    "--to and publish it: as a direct commit, or (the default for production) "
                    "as a branch and a pull request in the GitOps repository on GitHub.",
        epilog="Pull requests use GITHUB_TOKEN and GITHUB_API_URL (default "
               "https://api.github.com). Exit 0 also when --to already runs the release.")
    p.add_argument("--from", dest="source", required=True, help="environment to promote from")
    p.add_argument("--to", dest="target", required=True, help="environment to promote to")
    p.add_argument("--model", help="model name (default: model.name in params.yaml)")
    p.add_argument("--params", default="params.yaml",
                   help="params file with the deploy section (default: %(default)s)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--direct", dest="mode", action="store_const", const="commit",
                     help="commit straight to the branch (default except for production)")
    how.add_argument("--pull-request", dest="mode", action="store_const", const="pr",
                     help="push a branch and open a pull request (default for production)")
    p.add_argument("--github-repo", metavar="OWNER/NAME",
                   default=os.environ.get("GITOPS_GITHUB_REPOSITORY"),
                   help="the GitOps repository on GitHub, for pull requests "
                        "(default $GITOPS_GITHUB_REPOSITORY)")
    add_repo_args(p)
    add_publish_args(p)
    p.set_defaults(handler=_cmd_promote, mode=None)

    r = sub.add_parser(
        "rollback", help="a new commit restoring the previous (or a named) release",
        description="Restore <env>/<model>/ in the GitOps repository to the exact bytes it had "
                    "while the previous release (or --to VERSION) ran, as a new commit. "
                    "See `modelops-gitops history` for the versions.")
    r.add_argument("--env", required=True, help="environment, e.g. production")
    which = r.add_mutually_exclusive_group()
    which.add_argument("--to", dest="to_version", metavar="VERSION|COMMIT|STATE",
                       help="the state to restore: a version (its latest state unlike the "
                            "current one), a commit or a state id from `history` (default: "
                            "the state before the current one; repeated rollbacks keep going "
                            "back)")
    which.add_argument("--undo", action="store_true",
                       help="return to the state the latest rollback replaced")
    r.add_argument("--model", help="model name (default: model.name in params.yaml)")
    r.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    add_repo_args(r)
    add_publish_args(r)
    r.set_defaults(handler=_cmd_rollback)


def _cmd_promote(args: argparse.Namespace) -> int:
    model = model_name(args)
    mode = args.mode or ("pr" if args.target in PR_DEFAULT_ENVS else "commit")
    url = resolve_repo(args.gitops_repo, configured_repo(args.params))
    github = {"repository": args.github_repo or "", "token": os.environ.get("GITHUB_TOKEN", ""),
              "api_url": os.environ.get("GITHUB_API_URL", "")}
    if mode == "pr":  # fail before any git work when the pull request cannot be opened
        if not github["repository"]:
            raise InputError("promoting to production opens a pull request, but no GitHub "
                             "repository is set (got nothing)",
                             hint="pass --github-repo OWNER/NAME, or --direct to commit")
        if not github["token"]:
            raise InputError("promoting with a pull request needs GITHUB_TOKEN (got nothing)",
                             hint="set GITHUB_TOKEN, or pass --direct to commit")
    branch = branch_of(args)
    result = promote(url, model=model, source=args.source, target=args.target,
                     render=params_renderer(args.params, branch=branch), mode=mode,
                     branch=branch, github=github, max_attempts=args.max_attempts,
                     retry_for=args.retry_for,
                     overwrite_manual_changes=args.overwrite_manual_changes)
    if result.pull_request_url:
        print(f"pull request #{result.pull_request_number}: {result.pull_request_url}")
    elif result.publish and result.publish.commit:
        print(f"promoted {model} {result.version} to {args.target}: "
              f"{result.publish.commit} in {redact(url)}")
    else:
        print(f"{args.target}/{model} already runs {result.version}; nothing to do")
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    model = model_name(args)
    url = resolve_repo(args.gitops_repo, configured_repo(args.params))
    result = rollback(url, env=args.env, model=model, to_version=args.to_version,
                      undo=args.undo, branch=branch_of(args), max_attempts=args.max_attempts,
                      retry_for=args.retry_for,
                      overwrite_manual_changes=args.overwrite_manual_changes)
    if result.commit:
        print(f"rolled back {args.env}/{model}: {result.commit} in {redact(url)}")
    else:
        print(f"{args.env}/{model}: nothing to roll back", file=sys.stderr)
    return 0
