"""Publish rendered manifests into the GitOps repository: one commit, pushed without force.

The GitOps repository holds ``<env>/<model>/<files>``. Publishing writes the *complete* desired
state of each given folder (files no longer rendered are removed), as one commit whose message
ends with provenance trailers, and pushes it.

- Nothing changed: no commit, no push; the result says so.
- The push is rejected because someone else pushed first: fetch, re-apply the same desired
  state on the new head and push again, for up to ``retry_for`` seconds (and at most
  ``max_attempts`` times when given) with exponential pauses under full jitter, so many
  publishers behind a slow remote spread out and all land. If the other push changed one of
  *our* folders to something else, that is a real conflict: stop (non-retryable), never
  force-push. A refusal no retry can help (a hook, a protection rule, a permission, a bad
  credential) stops at the first attempt with the server's message.
- Each published folder gets ``managed.json``, the git blob id of every file the publisher
  wrote. A folder whose files no longer match it (a hotfix committed by hand, a file added
  beside the managed ones, one removed) is reported by name before anything is overwritten,
  and nothing is pushed unless ``overwrite_manual_changes`` says so.
- Across folders: two folders may not produce the same Argo CD Application, nor deploy the
  same model to the same namespace of the same cluster.
- Killed at any moment: ``git push`` moves the remote ref atomically, so the remote branch is
  either unchanged or at the complete new commit; the temporary clone and a local
  repository's push quarantine are removed by the next run (:mod:`gitops.workdirs`,
  :func:`gitops.gitrepo.sweep_quarantine`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
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
    TreeEntry,
    ensure_bare_remote,
    is_local,
    local_path,
    redact,
)
from modelops.gitops.workdirs import locked_tempdir
from modelops.retry import RetryPolicy, is_retryable, retry_call
from modelops.settings import load_settings
from modelops.yamlio import load_yaml_all_fast

DEFAULT_REMOTE_DIR = ".gitops-remote"
ENV_REPO = "GITOPS_REPO"
MANAGED_FILE = "managed.json"
TEMP_PREFIX = "modelops-gitops-"
RETRY_FOR_S = 300.0  # how long a publish keeps re-applying when others push first

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
    overwritten: list[str] = field(default_factory=list)  # folders whose hand edits were replaced

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

    return load_settings(params_path).deploy.gitops_repo or None


def configured_branch(params_path: str | Path | None) -> str | None:
    """``modelops.deploy.argocd.target_revision`` of params.yaml (the branch the Applications
    follow, so the branch to publish to), or None when there is no such file."""
    if not params_path or not Path(params_path).is_file():
        return None

    return load_settings(params_path).deploy.argocd.target_revision or None


_HOST_LIKE = re.compile(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+(:[0-9]+)?/")


def resolve_repo(flag: str | None = None, configured: str | None = None,
                 base: str | Path | None = None) -> str:
    """The GitOps repository URL: ``--gitops-repo``, else the params.yaml value
    (``modelops.deploy.gitops_repo``), else ``$GITOPS_REPO``, else ``.gitops-remote/`` (a bare
    repository created on first use). The committed configuration wins over the environment;
    the flag over both.

    A value without a scheme (``https://``, ``ssh://``, ``git://``, ``file://``) or scp-like
    ``user@host:path`` is a local path, and it must exist (a repository, or an empty folder
    made for one): ``github.com/org/gitops.git`` is refused rather than turned into a new
    local repository. Only the default ``.gitops-remote/`` is created on first use.
    """
    base_dir = Path(base or Path.cwd())
    sources = (("--gitops-repo", flag), ("modelops.deploy.gitops_repo", configured),
               (f"${ENV_REPO}", os.environ.get(ENV_REPO)))
    source, url = next(((name, value) for name, value in sources if value), ("", None))
    if not url:
        return str(ensure_bare_remote(default_remote(base_dir)))
    if not is_local(url):
        return url
    path = local_path(url)
    if not path.is_absolute():
        path = base_dir / path
    if path.resolve() == default_remote(base_dir).resolve():
        return str(ensure_bare_remote(path))
    if not path.exists():
        looks_remote = _HOST_LIKE.match(url)
        raise InputError(
            f"{source}: {url!r} is not a URL with a scheme and no repository exists at "
            f"{str(path)!r}",
            hint=(f"did you mean 'https://{url}'? " if looks_remote else "")
            + "give a git URL (https://host/org/gitops.git, ssh://git@host/org/gitops.git, "
              "git@host:org/gitops.git) or the path of an existing repository (create one "
              "with `git init --bare PATH`)")
    if path.is_dir() and not any(path.iterdir()):
        ensure_bare_remote(path)  # an empty folder made for it
    elif not (git_dir_of(path) / "HEAD").exists():
        raise InputError(f"{source}: {str(path)!r} exists but is not a git repository",
                         hint="point it at a bare repository or an empty folder")
    return str(path)


def git_dir_of(path: Path) -> Path:
    return path / ".git" if (path / ".git").is_dir() else path


# --------------------------------------------------------------------------- publish

class ManualChanges(ExternalError):
    """A managed folder was changed outside modelops-gitops since it was last published."""

    retryable = False


def _folder_ids(entries: Mapping[str, TreeEntry], folder: str) -> dict[str, str]:
    return _by_folder(entries, [folder])[folder]


def _by_folder(entries: Mapping[str, TreeEntry], folders: Sequence[str]
               ) -> dict[str, dict[str, str]]:
    """path -> blob id (``mode:id`` when the mode is not a plain file's) of each folder."""
    out: dict[str, dict[str, str]] = {f: {} for f in folders}
    for path, e in entries.items():
        env, _, rest = path.partition("/")
        model = rest.partition("/")[0]
        files = out.get(f"{env}/{model}")
        if files is not None:
            files[path] = e.oid if e.mode == "100644" else f"{e.mode}:{e.oid}"
    return out


def managed_manifest(clone: Clone, files: Mapping[str, bytes]) -> bytes:
    """``managed.json`` for a folder holding ``files``: the blob id of each, as git names it
    in the GitOps repository (its object format)."""
    data = {"format": 1, "managed_by": "modelops-gitops",
            "note": "written by modelops-gitops publish; an edit to this folder made by other "
                    "means is reported by the next publish instead of being overwritten",
            "object_format": clone.object_format(),
            "files": {name: clone.blob_id(body) for name, body in sorted(files.items())}}
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


def with_manifest(clone: Clone, files: Files | None) -> dict[str, bytes] | None:
    """``files`` plus their ``managed.json`` (None stays None: the folder is deleted)."""
    if files is None:
        return None
    own = {k: v for k, v in files.items() if k != MANAGED_FILE}
    return {**own, MANAGED_FILE: managed_manifest(clone, own)}


def manual_changes(clone: Clone, current: Mapping[str, Mapping[str, str]]
                   ) -> dict[str, list[str]]:
    """For each folder of ``current`` (folder -> its files' ids) that changed since
    modelops-gitops last wrote it (by its managed.json), what changed: ``['rollout.yaml
    edited', 'hpa.yaml added']``. A folder published before managed.json existed is taken as
    it is. One ``git cat-file`` for all the manifests."""
    folders = [f for f in sorted(current) if f"{f}/{MANAGED_FILE}" in current[f]]
    blobs = clone.read_objects([current[f][f"{f}/{MANAGED_FILE}"].rpartition(":")[2]
                                for f in folders])
    out = {}
    for folder, data in zip(folders, blobs, strict=True):
        found = _changes_since(folder, current[folder], data)
        if found:
            out[folder] = found
    return out


def _changes_since(folder: str, current: Mapping[str, str], data: bytes | None) -> list[str]:
    manifest_path = f"{folder}/{MANAGED_FILE}"
    try:
        recorded = json.loads(data or b"")["files"]
        if not isinstance(recorded, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        return [f"{MANAGED_FILE} edited"]
    now = {path[len(folder) + 1:]: oid for path, oid in current.items() if path != manifest_path}
    out = [f"{name} edited" for name in sorted(now) if name in recorded
           and now[name] != recorded[name]]
    out += [f"{name} added" for name in sorted(now) if name not in recorded]
    out += [f"{name} removed" for name in sorted(recorded) if name not in now]
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


def _identity(docs_by_file: Mapping[str, list[Any]]) -> dict[str, Any] | None:
    from modelops.gitops.render import application_identity

    return application_identity(docs_by_file)


def _application_of(data: bytes | None, source: str) -> dict[str, Any] | None:
    if data is None:
        return None

    try:
        docs = load_yaml_all_fast(data.decode("utf-8", "replace"), source)
    except InputError:
        return None
    return _identity({"application.yaml": docs})


def check_across(clone: Clone, entries: Mapping[str, TreeEntry],
                 changes: Mapping[str, Files | None]) -> None:
    """Refuse a state where two folders produce one Argo CD Application (``a``+``b-c`` and
    ``a-b``+``c`` both name ``a-b-c``), or deploy one model twice into one namespace of one
    cluster (staging and production sharing a namespace: each sync would overwrite the
    other). The folders being published are checked against each other and against every
    other folder of the repository."""
    apps: dict[str, dict[str, Any]] = {}
    for folder, files in changes.items():
        app = _application_of((files or {}).get("application.yaml"), f"{folder}/application.yaml")
        if app is not None:
            apps[folder] = app
    others = sorted({path.rsplit("/", 1)[0] for path in entries
                     if path.count("/") == 2 and path.endswith("/application.yaml")}
                    - set(changes))
    if not apps:
        return
    blobs = clone.read_objects([entries[f"{f}/application.yaml"].oid for f in others])
    for folder, data in zip(others, blobs, strict=True):
        app = _application_of(data, f"{folder}/application.yaml")
        if app is not None:
            apps[folder] = app
    seen_names: dict[tuple[Any, Any], str] = {}
    seen_places: dict[tuple[str, Any, Any], str] = {}
    problems = []
    for folder in sorted(apps, key=lambda f: (f not in changes, f)):
        app = apps[folder]
        name_key = (app["namespace"], app["name"])
        place_key = (folder.split("/")[1], app["server"], app["destination"])
        if name_key in seen_names:
            problems.append(f"{seen_names[name_key]!r} and {folder!r} both produce the Argo CD "
                            f"Application {app['name']!r} in namespace {app['namespace']!r}: "
                            "one would replace the other")
        elif place_key in seen_places:
            problems.append(f"{seen_places[place_key]!r} and {folder!r} both deploy model "
                            f"{place_key[0]!r} into namespace {app['destination']!r} of "
                            f"{app['server']!r}: each sync would overwrite the other's objects")
        seen_names.setdefault(name_key, folder)
        seen_places.setdefault(place_key, folder)
    if problems:
        raise InputError("; ".join(problems[:5]) + "; nothing was pushed",
                         hint="give each environment its own namespace, and models and "
                              "environments names whose '<model>-<env>' is unique")


def publish(url: str, changes: Mapping[str, Files | None], *,
            message: str | Callable[[list[str]], str],
            branch: str = DEFAULT_BRANCH, ref: str | None = None,
            max_attempts: int | None = None, retry_for: float = RETRY_FOR_S,
            backoff_s: float = 0.25, log: Log = _stderr,
            workdir: str | Path | None = None, clone: Clone | None = None,
            overwrite_manual_changes: bool = False) -> PublishResult:
    """Make each folder of ``changes`` hold exactly its files in ``url``'s ``branch``, as one
    commit pushed to ``ref`` (the branch by default; another ref for a pull-request branch,
    which then starts from the branch head).

    ``changes`` maps ``"<env>/<model>"`` to ``{relative name: bytes}`` (None deletes the
    folder); each folder also gets its ``managed.json``. ``message`` is the commit message,
    or a function of the folders that really change (so the message names only those).
    Pushes that lose a race are re-applied for ``retry_for`` seconds (``max_attempts`` also
    caps the tries when given). Raises :class:`ExternalError` (``retryable`` set) when git
    fails, a non-retryable one on a real conflict, :class:`ManualChanges` when a folder was
    edited by other means (unless ``overwrite_manual_changes``), and never force-pushes.
    ``clone`` reuses an open clone (whose remote-tracking head is the base the caller chose).
    """
    changes = check_files(changes)
    if max_attempts is not None and max_attempts < 1:
        raise InputError(f"max attempts must be at least 1 (got {max_attempts!r})")
    if not retry_for >= 0:
        raise InputError(f"the retry time must be seconds >= 0 (got {retry_for!r})")
    target_ref = ref or f"refs/heads/{branch}"
    folders = sorted(changes)
    with locked_tempdir(TEMP_PREFIX, workdir) as tmp:
        if clone is None:
            log(f"gitops: cloning {branch!r} of {redact(url)}")

            def fresh_clone() -> Clone:
                shutil.rmtree(tmp / "repo", ignore_errors=True)
                return Clone.create(url, tmp / "repo", branch)

            clone = with_retries("cloning", fresh_clone, backoff_s=backoff_s, log=log)
        wanted = {f: with_manifest(clone, changes[f]) for f in folders}
        desired = {f: {f"{f}/{name}": clone.blob_id(data) for name, data in (files or {}).items()}
                   for f, files in wanted.items()}
        state: dict[str, Any] = {"base": clone.remote_head(), "attempt": 0, "moved": False,
                                 "todo": []}
        started = time.monotonic()

        def attempt() -> PublishResult:
            state["attempt"] += 1
            if state["moved"]:
                new_base = with_retries("fetching", clone.fetch, backoff_s=backoff_s, log=log)
                _check_conflict(clone, state["base"], new_base, state["todo"], desired)
                state["base"], state["moved"] = new_base, False
            base = state["base"]
            entries = clone.ls_tree(base)
            current = _by_folder(entries, folders)
            todo = [f for f in folders if current[f] != desired[f]]
            same = [f for f in folders if f not in todo]
            if not todo:
                log(f"gitops: no change: {', '.join(folders)} already as rendered "
                    f"(at {(base or '')[:12]}); nothing committed")
                return PublishResult(url, target_ref, None, base, [], same, state["attempt"])
            edited = manual_changes(clone, {f: current[f] for f in todo})
            if edited and not overwrite_manual_changes:
                listed = "; ".join(f"{f}: {', '.join(v)}" for f, v in edited.items())
                raise ManualChanges(
                    f"changed outside modelops-gitops since it was last published: {listed}; "
                    "nothing was pushed",
                    hint="look at `git log -p -- <folder>` in the GitOps repository; keep the "
                         "change by carrying it into params.yaml and publishing, or replace "
                         "it on purpose with --overwrite-manual-changes")
            check_across(clone, entries, {f: wanted[f] for f in todo})
            text = message(todo) if callable(message) else message
            for f in edited:
                log(f"gitops: {f}: overwriting changes made outside modelops-gitops: "
                    f"{', '.join(edited[f])}")
                text = text.rstrip("\n") + f"\nOverwrote-Manual-Changes: {f}\n"
            commit = clone.commit_tree(base, {f: wanted[f] for f in todo}, text)
            state["todo"] = todo
            tries = f"/{max_attempts}" if max_attempts else ""
            log(f"gitops: pushing {commit[:12]} ({len(todo)} folder(s) changed) to "
                f"{target_ref} (attempt {state['attempt']}{tries})")
            try:
                with_retries("pushing", lambda c=commit: clone.push(c, target_ref),
                             backoff_s=backoff_s, log=log)
            except PushRejected:
                state["moved"] = True
                raise
            log(f"gitops: published {commit[:12]} to {target_ref}: {', '.join(todo)}")
            return PublishResult(url, target_ref, commit, base, todo, same, state["attempt"],
                                 sorted(edited))

        race = RetryPolicy(attempts=max_attempts, budget=retry_for, backoff=backoff_s,
                           max_backoff=8.0, jitter="full")

        try:
            return retry_call(attempt, policy=race, log=log,
                              what="gitops: someone else pushed first; fetching and re-applying",
                              retry_on=lambda e: isinstance(e, PushRejected))
        except PushRejected:
            raise ExternalError(
                f"gave up after {state['attempt']} attempts in "
                f"{time.monotonic() - started:.0f}s: the GitOps repository kept moving while "
                f"publishing {', '.join(state['todo'])}",
                hint="run the command again (or allow more time with --retry-for); nothing "
                     "was force-pushed", retryable=True) from None


NETWORK_ATTEMPTS = 3


def with_retries(what: str, fn: Callable[[], Any], *, attempts: int = NETWORK_ATTEMPTS,
                 backoff_s: float = 0.25, log: Log = _stderr) -> Any:
    """Call ``fn``; repeat it after a pause when it raises a *retryable* ExternalError (a
    dropped connection, a 5xx, a stalled server). Auth errors and refusals are raised at once;
    a push that was rejected because the branch moved is left to the caller (it must re-apply
    first).

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
    for folder in folders:
        if clone.tree_id(old, folder) == clone.tree_id(new, folder):
            continue
        if _folder_ids(clone.ls_tree(new, [folder]), folder) == desired[folder]:
            continue
        raise ExternalError(
            f"conflict: {folder!r} was changed by someone else (now at commit "
            f"{(new or '')[:12]}) while this publish was in flight; nothing was pushed",
            hint="look at the GitOps repository's log for that folder, then run the command "
                 "again to publish on top of it", retryable=False)


# --------------------------------------------------------------------------- rendering

def params_renderer(params_path: str | Path = "params.yaml",
                    branch: str | None = None) -> Render:
    """Render and validate one environment's folder with the deploy section of params.yaml
    (:func:`gitops.render.render_env` checks the folder before returning); the Application
    follows ``branch`` (default: ``modelops.deploy.argocd.target_revision``)."""
    from modelops.gitops.render import render_env

    params = load_settings(params_path)

    def render(release: Any, env: str) -> Mapping[str, bytes]:
        params.deploy.environment(env, params_path)
        return render_env(release, params, env, branch=branch)

    return render


# --------------------------------------------------------------------------- CLI

def _leftover(name: str, models: set[str]) -> bool | None:
    """For a hidden entry of ``DIR/<env>/``: True when it is what ``render --out`` leaves
    while writing or after being killed (ignored), False for ``.<model>.old`` without
    ``<model>`` (a swap that was interrupted), None when it is no such thing."""
    match = re.fullmatch(r"\.(.+?)\.(old|tmp-[^/]*)", name)
    if match is None:
        return None
    model, kind = match.groups()
    if kind == "old":
        return model in models
    return True


def read_rendered_dir(root: str | Path, envs: Sequence[str] | None = None
                      ) -> dict[str, dict[str, bytes]]:
    """``<root>/<env>/<model>/<file>`` as folder -> {file name: bytes} (only ``envs`` if set).

    The layout is strict: symbolic links, files outside the model folders and sub-folders
    inside them are refused (the content of each folder is checked by
    :func:`gitops.render.check_rendered`). What ``render --out`` leaves while it writes, or
    after it was killed (``.<model>.tmp-*``, a stale ``.<model>.old``), is ignored; an
    interrupted swap (``.<model>.old`` without ``<model>``) is refused."""
    base = Path(root)
    if not base.is_dir():
        raise InputError(f"{base}: rendered folder not found",
                         hint="render first: modelops-gitops render --out DIR")
    hint = "the layout is DIR/<env>/<model>/<files>, as `modelops-gitops render --out DIR` writes"
    out: dict[str, dict[str, bytes]] = {}

    def refuse(path: Path, problem: str) -> InputError:
        return InputError(f"{path}: {problem}; nothing was published", hint=hint)

    for env_dir in sorted(base.iterdir()):
        if env_dir.is_symlink():
            raise refuse(env_dir, "a symbolic link in the rendered folder")
        if not env_dir.is_dir():
            raise refuse(env_dir, "a file outside the <env>/<model>/ folders")
        if envs and env_dir.name not in envs:
            continue
        entries = sorted(env_dir.iterdir())
        models = {e.name for e in entries if not e.name.startswith(".")}
        for model_dir in entries:
            if model_dir.name.startswith("."):
                kind = _leftover(model_dir.name, models)
                if kind is True:
                    continue
                if kind is False:
                    raise refuse(model_dir, "an earlier `render --out` was interrupted while "
                                            "it replaced this folder; render it again")
            if model_dir.is_symlink():
                raise refuse(model_dir, "a symbolic link in the rendered folder")
            if not model_dir.is_dir():
                raise refuse(model_dir, "a file outside the <env>/<model>/ folders")
            files: dict[str, bytes] = {}
            for item in sorted(model_dir.iterdir()):
                if item.is_symlink():
                    raise refuse(item, "a symbolic link (its target would be published)")
                if not item.is_file():
                    raise refuse(item, "not a regular file (sub-folders are not rendered)")
                files[item.name] = item.read_bytes()
            out[f"{env_dir.name}/{model_dir.name}"] = files
    if not out:
        wanted = f" for {', '.join(envs)}" if envs else ""
        raise InputError(f"{base}: no <env>/<model>/ folders{wanted}", hint=hint)
    return out


def describe(changes: Mapping[str, Files | None]) -> tuple[str, list[tuple[str, str]]]:
    """Subject and trailers for publishing ``changes`` (read from each release.json).

    One release in one or more environments gets that release's provenance trailers (one
    ``Environment`` trailer per environment); a batch of different releases gets one
    ``Published: <env>/<model>@<version> sha256:<digest>`` trailer per folder."""

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


def add_publish_args(p: Any) -> None:
    """The options every command that publishes shares (publish, promote, rollback)."""
    p.add_argument("--max-attempts", type=int, default=None, metavar="N",
                   help="at most N push attempts when others push at the same time (default: "
                        "no count, only --retry-for)")
    p.add_argument("--retry-for", type=float, default=RETRY_FOR_S, metavar="SECONDS",
                   help="keep re-applying for this long when others push first (default: "
                        "%(default)g; each pause is random up to a growing cap, so many "
                        "publishers spread out)")
    p.add_argument("--overwrite-manual-changes", action="store_true",
                   help="replace files edited (or added) in the GitOps folder by other means "
                        "since the last publish, instead of stopping (the commit says so)")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "publish", help="commit the rendered manifests to the GitOps repository and push",
        description="Build the release from dvc.lock and params.yaml, render and validate its "
                    "manifests for each --env, and publish <env>/<model>/ (complete: stale files "
                    "removed) to the GitOps repository as ONE commit with provenance trailers, "
                    "pushed without force. No change: no commit, exit 0. When someone else "
                    "pushed first it fetches, re-applies and retries; a conflicting change to "
                    "the same folder, a folder edited by hand since it was published, a hook's "
                    "refusal, a permission or an auth error stops with exit 2.",
        epilog=f"Repository: {REPO_PRECEDENCE}. Branch: --branch, else "
               "modelops.deploy.argocd.target_revision, else main; the rendered Applications "
               "follow that branch. Network operations are bounded (see docs/how-to/deploy.md: "
               "MODELOPS_GIT_TIMEOUT and friends).")
    p.add_argument("--env", action="append", dest="envs", metavar="ENV",
                   help="environment to publish (repeat for several; one commit for all)")
    p.add_argument("--rendered-dir", metavar="DIR",
                   help="publish already rendered folders DIR/<env>/<model>/ instead of "
                        "rendering (all of them, or those of --env); each is checked exactly "
                        "as render checks it, and its Application must follow --branch")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--version", help="release version (default: first 12 digits of git HEAD)")
    p.add_argument("--image", help="serving image (default: modelops.deploy.image in params.yaml)")
    p.add_argument("--artifact-uri", help="where the ONNX artifact is stored (default: the DVC "
                                          "remote's content-addressed path)")
    add_publish_args(p)
    p.add_argument("--gitops-repo", metavar="URL",
                   help="the GitOps repository (a git URL, or the path of an existing "
                        "repository); default: modelops.deploy.gitops_repo in params.yaml, else "
                        "$GITOPS_REPO, else .gitops-remote/")
    p.add_argument("--branch", default=None,
                   help="the branch Argo CD follows (default: "
                        "modelops.deploy.argocd.target_revision, else main)")
    p.set_defaults(handler=_cmd_publish)


def branch_of(args: Any) -> str:
    """``--branch``, else the params' ``argocd.target_revision``, else main."""
    return args.branch or configured_branch(getattr(args, "params", None)) or DEFAULT_BRANCH


def _cmd_publish(args: Any) -> int:
    from modelops.gitops.render import check_rendered

    branch = branch_of(args)
    if args.rendered_dir:
        changes: dict[str, Any] = read_rendered_dir(args.rendered_dir, args.envs)
        for folder, files in changes.items():
            folder_name(*folder.split("/"))
            check_rendered(folder, files, branch=branch)
    else:
        if not args.envs:
            raise InputError("no environment given (got nothing)",
                             hint="pass --env staging (repeat --env for several)")
        from modelops.gitops.release import build_release

        params = load_settings(args.params)
        for env in args.envs:
            params.deploy.environment(env, args.params)
        release = build_release(Path.cwd(), params, version=args.version, image=args.image,
                                artifact_uri=args.artifact_uri)
        for warning in params.deploy.placeholders(release.image):
            _stderr(f"warning: {warning}")
        render = params_renderer(args.params, branch=branch)
        changes = {}
        for env in args.envs:
            _stderr(f"gitops: rendering {release.model} {release.version} for {env}")
            changes[folder_name(env, release.model)] = dict(render(release, env))
    format_message(*describe(changes))  # bad trailer values fail here, before any git work
    url = resolve_repo(args.gitops_repo, configured_repo(args.params))

    def message(todo: list[str]) -> str:
        return format_message(*describe({f: changes[f] for f in todo}))

    result = publish(url, changes, message=message, branch=branch,
                     max_attempts=args.max_attempts, retry_for=args.retry_for,
                     overwrite_manual_changes=args.overwrite_manual_changes)
    if result.noop:
        print(f"no change: {', '.join(result.unchanged)} already published in {redact(url)}")
    else:
        print(f"published {result.commit}: {', '.join(result.changed)} in {redact(url)}")
    return 0
