"""Publish rendered manifests into the GitOps repository: one commit, pushed without force.

The GitOps repository holds ``<env>/<model>/<files>``. Publishing writes the *complete* desired
state of each given folder (files no longer rendered are removed), as one commit whose message
ends with provenance trailers, and pushes it.

- Nothing changed: no commit, no push; the result says so.
- The push is rejected because someone else pushed first: fetch, re-apply the same desired
  state on the new head and push again, up to ``max_attempts`` times with a growing, jittered
  pause. If the other push changed one of *our* folders to something else, that is a real
  conflict: stop (non-retryable), never force-push.
- Killed at any moment: ``git push`` moves the remote ref atomically, so the remote branch is
  either unchanged or at the complete new commit.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.errors import ExternalError, InputError
from modelops.gitops.gitrepo import (
    DEFAULT_BRANCH,
    Clone,
    PushRejected,
    ensure_bare_remote,
    is_local,
    local_path,
    redact,
)
from modelops.retry import RetryPolicy, is_retryable, retry_call

DEFAULT_REMOTE_DIR = ".gitops-remote"
ENV_REPO = "GITOPS_REPO"

_SEGMENT = re.compile(r"[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?")
_TRAILER_KEY = re.compile(r"[A-Za-z][A-Za-z0-9-]*")

Files = Mapping[str, bytes]
Log = Callable[[str], None]
Render = Callable[[Any, str], Mapping[str, bytes]]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class PublishResult:
    """What a publish did. ``commit`` is None when nothing changed."""

    url: str
    ref: str
    commit: str | None
    parent: str | None
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    attempts: int = 1

    @property
    def noop(self) -> bool:
        return self.commit is None


# --------------------------------------------------------------------------- messages

def folder_name(env: str, model: str) -> str:
    """``<env>/<model>``: the folder of one model in one environment."""
    for what, value in (("environment", env), ("model", model)):
        if not isinstance(value, str) or not _SEGMENT.fullmatch(value):
            raise InputError(f"{what} name {value!r} cannot be a GitOps folder",
                             hint="use lowercase letters, digits, '-', '.' or '_'")
    return f"{env}/{model}"


def format_message(subject: str, trailers: Iterable[tuple[str, str]],
                   body: str | None = None) -> str:
    """A commit message: subject, optional body, then ``Key: value`` trailers (last paragraph,
    so ``git interpret-trailers`` and ``%(trailers)`` read them)."""
    lines = [subject.strip().splitlines()[0] if subject.strip() else "publish"]
    if body:
        lines += ["", body.strip()]
    block = []
    for key, value in trailers:
        value = str(value)
        if not _TRAILER_KEY.fullmatch(key) or "\n" in value or "\r" in value:
            raise InputError(f"commit trailer {key!r}: {value!r} is not a single line",
                             hint="trailer keys are words with '-', values one line")
        block.append(f"{key}: {value}")
    if block:
        lines += ["", *block]
    return "\n".join(lines) + "\n"


def release_trailers(release: object, env: str) -> list[tuple[str, str]]:
    """Provenance trailers of a release (any object with the Release attributes)."""
    pairs = [("Model", "model"), ("Model-Version", "version"), ("Model-Sha256", "sha256"),
             ("Dvc-Md5", "dvc_md5"), ("Dvc-Lock-Sha256", "dvc_lock_sha256"),
             ("Source-Repo", "source_repo"), ("Source-Commit", "source_commit"),
             ("Image", "image")]
    out = [(key, str(getattr(release, attr))) for key, attr in pairs
           if getattr(release, attr, None) not in (None, "")]
    out.insert(1, ("Environment", env))
    return out


# --------------------------------------------------------------------------- remote

def default_remote(base: str | Path | None = None) -> Path:
    """The bare repository used when none is configured: ``.gitops-remote/`` in the checkout."""
    return Path(base or Path.cwd()) / DEFAULT_REMOTE_DIR


REPO_PRECEDENCE = ("--gitops-repo, else modelops.deploy.gitops_repo in params.yaml, "
                   "else $GITOPS_REPO, "
                   "else .gitops-remote/ here (a bare repository created on first use)")


def configured_repo(params_path: str | Path | None) -> str | None:
    """``modelops.deploy.gitops_repo`` of params.yaml (validated), or None when unset or no
    such file."""
    if not params_path or not Path(params_path).is_file():
        return None
    from modelops.settings import load_settings

    return load_settings(params_path).deploy.gitops_repo or None


def resolve_repo(flag: str | None = None, configured: str | None = None,
                 base: str | Path | None = None) -> str:
    """The GitOps repository URL: ``--gitops-repo``, else the params.yaml value
    (``modelops.deploy.gitops_repo``), else ``$GITOPS_REPO``, else ``.gitops-remote/`` (a bare
    repository
    created on first use). The committed configuration wins over the environment; the flag
    over both."""
    url = flag or configured or os.environ.get(ENV_REPO)
    if not url:
        return str(ensure_bare_remote(default_remote(base)))
    if is_local(url):
        path = local_path(url)
        if not path.is_absolute():
            path = Path(base or Path.cwd()) / path
        if not path.exists() or (path.is_dir() and not any(path.iterdir())):
            ensure_bare_remote(path)
        return str(path)
    return url


# --------------------------------------------------------------------------- publish

def _desired_ids(clone: Clone, changes: Mapping[str, Files | None]
                 ) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for folder, files in changes.items():
        out[folder] = {f"{folder}/{name}": clone.blob_id(data)
                       for name, data in (files or {}).items()}
    return out


def _current_ids(clone: Clone, head: str | None, folders: Sequence[str]
                 ) -> dict[str, dict[str, str]]:
    entries = clone.ls_tree(head, folders)
    out: dict[str, dict[str, str]] = {f: {} for f in folders}
    for path, entry in entries.items():
        for f in folders:
            if path.startswith(f + "/"):
                out[f][path] = entry.oid if entry.mode == "100644" else f"{entry.mode}:{entry.oid}"
                break
    return out


def check_files(changes: Mapping[str, Files | None]) -> dict[str, Files | None]:
    """Normalise and check the folder -> files mapping before any git work."""
    if not changes:
        raise InputError("nothing to publish: no model/env folder was given")
    out: dict[str, Files | None] = {}
    for folder, files in changes.items():
        norm = folder.strip("/")
        parts = norm.split("/")
        if len(parts) != 2 or not all(_SEGMENT.fullmatch(p) for p in parts):
            raise InputError(f"GitOps folder {folder!r} is not '<env>/<model>'",
                             hint="use lowercase names such as 'staging/digits-cnn'")
        for name, data in (files or {}).items():
            if (not name or name.startswith("/") or "\\" in name
                    or any(p in ("", ".", "..", ".git") for p in name.split("/"))):
                raise InputError(f"{norm}: file name {name!r} is not a plain relative path")
            if not isinstance(data, bytes):
                raise InputError(f"{norm}/{name}: content must be bytes, got "
                                 f"{type(data).__name__}")
        out[norm] = files
    return out


def publish(url: str, changes: Mapping[str, Files | None], *,
            message: str | Callable[[list[str]], str],
            branch: str = DEFAULT_BRANCH, ref: str | None = None, max_attempts: int = 8,
            backoff_s: float = 0.1, log: Log = _stderr,
            workdir: str | Path | None = None, clone: Clone | None = None) -> PublishResult:
    """Make each folder of ``changes`` hold exactly its files in ``url``'s ``branch``, as one
    commit pushed to ``ref`` (the branch by default; another ref for a pull-request branch,
    which then starts from the branch head).

    ``changes`` maps ``"<env>/<model>"`` to ``{relative name: bytes}`` (None deletes the
    folder). ``message`` is the commit message, or a function of the folders that really
    change (so the message names only those). Raises :class:`ExternalError` (``retryable``
    set) when git fails, a non-retryable one on a real conflict, and never force-pushes.
    ``clone`` reuses an open clone (whose remote-tracking head is the base the caller chose).
    """
    changes = check_files(changes)
    if max_attempts < 1:
        raise InputError(f"max attempts must be at least 1 (got {max_attempts!r})")
    target_ref = ref or f"refs/heads/{branch}"
    folders = sorted(changes)
    tmp = Path(tempfile.mkdtemp(prefix="gitops-publish-", dir=workdir))
    try:
        if clone is None:
            log(f"gitops: cloning {branch!r} of {redact(url)}")

            def fresh_clone() -> Clone:
                shutil.rmtree(tmp / "repo", ignore_errors=True)
                return Clone.create(url, tmp / "repo", branch)

            clone = with_retries("cloning", fresh_clone, backoff_s=backoff_s, log=log)
        desired = _desired_ids(clone, changes)
        base = clone.remote_head()
        attempt = 0
        while True:
            attempt += 1
            current = _current_ids(clone, base, folders)
            todo = [f for f in folders if current[f] != desired[f]]
            same = [f for f in folders if f not in todo]
            if not todo:
                log(f"gitops: no change: {', '.join(folders)} already as rendered "
                    f"(at {(base or '')[:12]}); nothing committed")
                return PublishResult(url, target_ref, None, base, [], same, attempt)
            text = message(todo) if callable(message) else message
            commit = clone.commit_tree(base, {f: changes[f] for f in todo}, text)
            log(f"gitops: pushing {commit[:12]} ({len(todo)} folder(s) changed) to "
                f"{target_ref} (attempt {attempt}/{max_attempts})")
            try:
                with_retries("pushing", lambda c=commit: clone.push(c, target_ref),
                             backoff_s=backoff_s, log=log)
            except PushRejected:
                if attempt >= max_attempts:
                    raise ExternalError(
                        f"gave up after {attempt} attempts: the GitOps repository kept moving "
                        f"while publishing {', '.join(todo)}",
                        hint="run the command again; nothing was force-pushed",
                        retryable=True) from None
                pause = RetryPolicy(backoff=backoff_s).delay(attempt - 1)
                log(f"gitops: the branch moved (someone else pushed first); fetching and "
                    f"re-applying in {pause:.2f}s")
                time.sleep(pause)
                new_base = with_retries("fetching", clone.fetch, backoff_s=backoff_s, log=log)
                _check_conflict(clone, base, new_base, todo, desired)
                base = new_base
                continue
            log(f"gitops: published {commit[:12]} to {target_ref}: {', '.join(todo)}")
            return PublishResult(url, target_ref, commit, base, todo, same, attempt)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


NETWORK_ATTEMPTS = 3


def with_retries(what: str, fn: Callable[[], Any], *, attempts: int = NETWORK_ATTEMPTS,
                 backoff_s: float = 0.1, log: Log = _stderr) -> Any:
    """Call ``fn``; repeat it after a pause when it raises a *retryable* ExternalError (a
    dropped connection, a 5xx). Auth errors and refusals are raised at once; a push that was
    rejected because the branch moved is left to the caller (it must re-apply first).

    Repeating a push whose answer was lost is safe: if it did land, git finds the branch
    already at the commit and succeeds; otherwise it is pushed or rejected as usual."""
    policy = RetryPolicy(attempts=attempts, backoff=backoff_s * 2)
    return retry_call(fn, policy=policy, what=f"gitops: {what}", log=log,
                      retry_on=lambda e: is_retryable(e) and not isinstance(e, PushRejected))


def _check_conflict(clone: Clone, old: str | None, new: str | None, folders: Sequence[str],
                    desired: Mapping[str, Mapping[str, str]]) -> None:
    """Someone pushed meanwhile. Their change to another folder is fine (we re-apply ours on
    top). Their change to one of our folders is a real conflict, unless it already is exactly
    what we wanted."""
    now = _current_ids(clone, new, folders)
    for folder in folders:
        if clone.tree_id(old, folder) == clone.tree_id(new, folder):
            continue
        if now[folder] == desired[folder]:
            continue
        raise ExternalError(
            f"conflict: {folder!r} was changed by someone else (now at commit "
            f"{(new or '')[:12]}) while this publish was in flight; nothing was pushed",
            hint="look at the GitOps repository's log for that folder, then run the command "
                 "again to publish on top of it", retryable=False)


# --------------------------------------------------------------------------- rendering

def params_renderer(params_path: str | Path = "params.yaml") -> Render:
    """Render and validate one environment's folder with the deploy section of params.yaml
    (:func:`gitops.render.render_env` validates every manifest before returning)."""
    from modelops.gitops.render import render_env
    from modelops.settings import load_settings

    params = load_settings(params_path)

    def render(release: Any, env: str) -> Mapping[str, bytes]:
        params.deploy.environment(env, params_path)
        return render_env(release, params, env)

    return render


# --------------------------------------------------------------------------- CLI

def read_rendered_dir(root: str | Path, envs: Sequence[str] | None = None
                      ) -> dict[str, dict[str, bytes]]:
    """``<root>/<env>/<model>/**`` as folder -> {relative name: bytes} (only ``envs`` if set)."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: rendered folder not found",
                         hint="render first: modelops-gitops render --out DIR")
    out: dict[str, dict[str, bytes]] = {}
    for env_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        if envs and env_dir.name not in envs:
            continue
        for model_dir in sorted(p for p in env_dir.iterdir() if p.is_dir()):
            files = {f.relative_to(model_dir).as_posix(): f.read_bytes()
                     for f in sorted(model_dir.rglob("*")) if f.is_file()}
            out[f"{env_dir.name}/{model_dir.name}"] = files
    if not out:
        wanted = f" for {', '.join(envs)}" if envs else ""
        raise InputError(f"{base}: no <env>/<model>/ folders{wanted}",
                         hint="the layout is DIR/<env>/<model>/<files>")
    return out


def describe(changes: Mapping[str, Files | None]) -> tuple[str, list[tuple[str, str]]]:
    """Subject and trailers for publishing ``changes`` (read from each release.json).

    One release in one or more environments gets that release's provenance trailers (one
    ``Environment`` trailer per environment); a batch of different releases gets one
    ``Published: <env>/<model>@<version> sha256:<digest>`` trailer per folder."""
    import json

    infos: dict[str, dict[str, Any]] = {}
    for folder, files in sorted(changes.items()):
        try:
            raw = json.loads((files or {}).get("release.json", b"{}"))
        except ValueError:
            raw = {}
        infos[folder] = raw if isinstance(raw, dict) else {}
    models = {f.split("/")[1] for f in infos}
    releases = {(i.get("version"), i.get("sha256")) for i in infos.values()}
    if len(models) == 1 and len(releases) == 1:
        (model,) = models
        info = next(iter(infos.values()))
        envs = [f.split("/")[0] for f in infos]
        rel = type("R", (), {k: v for k, v in info.items() if isinstance(v, str)})
        trailers = [t for t in release_trailers(rel, envs[0]) if t[0] not in
                    ("Model", "Environment")]
        trailers = [("Model", model), *[("Environment", e) for e in envs], *trailers]
        version = info.get("version", "unversioned")
        return (f"publish {model} {version} to {', '.join(envs)}",
                [*trailers, ("Gitops-Action", "publish")])
    trailers = [("Published", f"{f}@{i.get('version', 'unversioned')} "
                              f"sha256:{i.get('sha256', 'unknown')}") for f, i in infos.items()]
    return (f"publish {len(infos)} model/env folders",
            [*trailers, ("Gitops-Action", "publish")])


def register(sub: Any) -> None:
    p = sub.add_parser(
        "publish", help="commit the rendered manifests to the GitOps repository and push",
        description="Build the release from dvc.lock and params.yaml, render and validate its "
                    "manifests for each --env, and publish <env>/<model>/ (complete: stale files "
                    "removed) to the GitOps repository as ONE commit with provenance trailers, "
                    "pushed without force. No change: no commit, exit 0. When someone else "
                    "pushed first it fetches, re-applies and retries; a conflicting change to "
                    "the same folder or an auth error stops with exit 2.",
        epilog=f"Repository: {REPO_PRECEDENCE}.")
    p.add_argument("--env", action="append", dest="envs", metavar="ENV",
                   help="environment to publish (repeat for several; one commit for all)")
    p.add_argument("--rendered-dir", metavar="DIR",
                   help="publish already rendered folders DIR/<env>/<model>/ instead of "
                        "rendering (all of them, or those of --env)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--version", help="release version (default: first 12 digits of git HEAD)")
    p.add_argument("--image", help="serving image (default: modelops.deploy.image in params.yaml)")
    p.add_argument("--artifact-uri", help="where the ONNX artifact is stored (default: the DVC "
                                          "remote's content-addressed path)")
    p.add_argument("--max-attempts", type=int, default=8,
                   help="push attempts when others push at the same time (default: %(default)s)")
    p.add_argument("--gitops-repo", metavar="URL",
                   help="the GitOps repository (any git URL or path); default: "
                        "modelops.deploy.gitops_repo in params.yaml, else $GITOPS_REPO, else "
                        ".gitops-remote/")
    p.add_argument("--branch", default=DEFAULT_BRANCH,
                   help="the branch Argo CD follows (default: %(default)s)")
    p.set_defaults(handler=_cmd_publish)


def _cmd_publish(args: Any) -> int:
    if args.rendered_dir:
        changes: dict[str, Any] = read_rendered_dir(args.rendered_dir, args.envs)
    else:
        if not args.envs:
            raise InputError("no environment given (got nothing)",
                             hint="pass --env staging (repeat --env for several)")
        from modelops.gitops.release import build_release
        from modelops.settings import load_settings

        params = load_settings(args.params)
        for env in args.envs:
            params.deploy.environment(env, args.params)
        release = build_release(Path.cwd(), params, version=args.version, image=args.image,
                                artifact_uri=args.artifact_uri)
        render = params_renderer(args.params)
        changes = {}
        for env in args.envs:
            _stderr(f"gitops: rendering {release.model} {release.version} for {env}")
            changes[folder_name(env, release.model)] = dict(render(release, env))
    format_message(*describe(changes))  # bad trailer values fail here, before any git work
    url = resolve_repo(args.gitops_repo, configured_repo(args.params))

    def message(todo: list[str]) -> str:
        return format_message(*describe({f: changes[f] for f in todo}))

    result = publish(url, changes, message=message,
                     branch=args.branch, max_attempts=args.max_attempts)
    if result.noop:
        print(f"no change: {', '.join(result.unchanged)} already published in {redact(url)}")
    else:
        print(f"published {result.commit}: {', '.join(result.changed)} in {redact(url)}")
    return 0
