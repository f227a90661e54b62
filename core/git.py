"""The suite's one way to run ``git``.

:func:`git` turns a failing command into one :class:`~modelops.errors.ExternalError` whose
``retryable`` flag says whether trying again can help (a network hiccup, a stalled server: yes;
a rejected password, a missing repository, a hook that said no, a ref the server may not write:
no). :func:`git_text` is the read-only shorthand for queries (``rev-parse``, ``show``) whose
failure is an answer, not an error.

Every network operation is bounded (:class:`NetworkLimits`, each overridable by an environment
variable):

- over http(s), git aborts a transfer slower than ``low_speed_limit`` bytes/s for
  ``low_speed_time`` seconds (``GIT_HTTP_LOW_SPEED_LIMIT``/``_TIME``: a server that accepts the
  connection and never answers fails after that time);
- over ssh, OpenSSH gets ``ConnectTimeout`` (connect and banner exchange) and
  ``ServerAliveInterval``/``ServerAliveCountMax`` (a connection that goes silent), appended to
  ``GIT_SSH_COMMAND`` or ``core.sshCommand`` when they name ``ssh``, so the user's own ``-o``
  options still win (OpenSSH keeps the first value of an option);
- every network command (clone, fetch, push, ls-remote ...), git:// included, which has no
  timeout of its own, runs under an overall ``timeout``; when it runs out, the command and the
  helpers it started (git-remote-https, ssh) are killed and the error is retryable.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelops.errors import ExternalError

NETWORK_COMMANDS = frozenset({"clone", "fetch", "push", "ls-remote", "pull", "archive",
                              "fetch-pack", "send-pack", "remote", "submodule"})


@dataclass(frozen=True)
class NetworkLimits:
    """Bounds of one network git command. Environment overrides: ``MODELOPS_GIT_TIMEOUT``,
    ``MODELOPS_GIT_CONNECT_TIMEOUT``, ``MODELOPS_GIT_LOW_SPEED_TIME`` (seconds) and
    ``MODELOPS_GIT_LOW_SPEED_LIMIT`` (bytes/s)."""

    timeout: float = 300.0  # the whole command
    connect_timeout: int = 15  # ssh ConnectTimeout (TCP connect and the banner exchange)
    keepalive_interval: int = 15  # ssh ServerAliveInterval
    keepalive_count: int = 3  # ssh ServerAliveCountMax: silent for 45 s -> gone
    low_speed_limit: int = 1000  # http(s): bytes/s ...
    low_speed_time: int = 30  # ... below which for this long aborts the transfer

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> NetworkLimits:
        env = os.environ if env is None else env
        base = cls()

        def number(name: str, default: float, kind: type = float) -> float:
            raw = env.get(name, "")
            try:
                value = kind(raw) if raw else default
            except ValueError:
                return default
            return value if value > 0 else default

        return cls(timeout=number("MODELOPS_GIT_TIMEOUT", base.timeout),
                   connect_timeout=int(number("MODELOPS_GIT_CONNECT_TIMEOUT",
                                              base.connect_timeout, int)),
                   keepalive_interval=base.keepalive_interval,
                   keepalive_count=base.keepalive_count,
                   low_speed_limit=int(number("MODELOPS_GIT_LOW_SPEED_LIMIT",
                                              base.low_speed_limit, int)),
                   low_speed_time=int(number("MODELOPS_GIT_LOW_SPEED_TIME",
                                             base.low_speed_time, int)))


# --------------------------------------------------------------------------- classification
# stderr fragments, checked in this order: the first group that matches decides.
_REFUSED = re.compile(r"hook declined|protected branch|denied by policy|GH00[0-9]|"
                      r"push declined", re.I)
_SERVER_PERMISSION = re.compile(
    r"(cannot lock ref|unable to create|unable to write|insufficient permission|"
    r"failed to write|unable to open)[^\n]*(permission denied|read-only file system)|"
    r"insufficient permission for adding an object|read-only file system", re.I)
_AUTH = re.compile(
    r"authentication failed|permission denied \(publickey|could not read username|"
    r"could not read password|http[^\n]*\b40[13]\b|access denied|not authorized|unauthorized|"
    r"invalid credentials|terminal prompts disabled|host key verification failed|"
    r"permission to [^\s]+ denied|permission denied", re.I)
_TRANSIENT = re.compile(
    r"could not resolve host|connection (timed out|refused|reset|closed)|early eof|"
    r"the remote end hung up unexpectedly|operation timed out|operation too slow|"
    r"timed out during banner exchange|kex_exchange_identification|broken pipe|"
    r"ssh_exchange_identification|temporary failure|http[^\n]*\b(429|500|502|503|504)\b|"
    r"rpc failed|unable to access|unexpected disconnect|did not finish within", re.I)
# a clone of a repository on this filesystem copies (or hardlinks) its objects folder file by
# file; a push under way there (its quarantine, objects/tmp_objdir-incoming-*) or a repack can
# remove a file between the listing and the copy. Copying again sees the settled folder.
_LOCAL_COPY_RACE = re.compile(
    r"failed to (copy file to|create link|unlink|stat|start iterator over|iterate over) "
    r"'[^'\n]*(tmp_objdir|/objects/)[^'\n]*'", re.I)
_MISSING_REPO = re.compile(r"does not appear to be a git repository|"
                           r"repository .* (not found|does not exist)|"
                           r"not found|no such file or directory", re.I)
_HINTS = {
    "refused": ("the GitOps repository refused the change (a server hook or a branch "
                "protection rule, see its message above); nothing was force-pushed"),
    "permission": ("the GitOps repository may not be written by this account (a permission "
                   "on the server side, see above); fix the permissions or use another "
                   "account; nothing was pushed"),
    "auth": ("check the credentials for the GitOps repository (a token with write access, "
             "or an SSH key); nothing was force-pushed"),
}


def refusal(stderr: str) -> str | None:
    """``"refused"`` (a hook or a protection rule said no), ``"permission"`` (the server may
    not write: "cannot lock ref ...: Permission denied") or ``"auth"`` (bad or missing
    credentials) when ``stderr`` says no retry can help; None otherwise."""
    if _REFUSED.search(stderr):
        return "refused"
    if _SERVER_PERMISSION.search(stderr):
        return "permission"
    if _AUTH.search(stderr):
        return "auth"
    return None


def classify(stderr: str) -> tuple[bool, str]:
    """(retryable, what to do next) for a failed git command's stderr."""
    kind = refusal(stderr)
    if kind is not None:
        return False, _HINTS[kind]
    if _TRANSIENT.search(stderr):
        return True, "the network or the server failed; run the command again"
    if _LOCAL_COPY_RACE.search(stderr):
        return True, ("the repository changed while it was copied (a push or a repack under "
                      "way there); run the command again")
    if _MISSING_REPO.search(stderr):
        return False, "check the GitOps repository URL (--gitops-repo or GITOPS_REPO)"
    return False, "see git's message above"


# --------------------------------------------------------------------------- environment

# set by git for hooks; they would point our commands at the wrong repository
_REPO_ENV = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                       "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PREFIX", "GIT_QUARANTINE_PATH",
                       "GIT_NAMESPACE", "GIT_COMMON_DIR"})


def redact(text: str) -> str:
    """Hide credentials embedded in URLs (https://user:token@host)."""
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)


@functools.lru_cache(maxsize=8)
def _configured_ssh_command(home: str, xdg: str, config_env: tuple[str, ...]) -> str | None:
    """``core.sshCommand`` from the global/system config (the clones we make have no
    repository config of their own); keyed on what can change it."""
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"})
    try:
        proc = subprocess.run(["git", "config", "--get", "core.sshCommand"], capture_output=True,
                              env=env, cwd=os.path.expanduser("~") or "/", timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.decode("utf-8", "replace").strip() or None


def ssh_command(limits: NetworkLimits, env: Mapping[str, str]) -> str | None:
    """The ``GIT_SSH_COMMAND`` that bounds ssh transports, or None to leave git's choice alone
    (``GIT_SSH`` set, or a command that is not OpenSSH: the overall timeout still bounds it)."""
    if env.get("GIT_SSH") and not env.get("GIT_SSH_COMMAND"):
        return None
    base = env.get("GIT_SSH_COMMAND") or _configured_ssh_command(
        env.get("HOME", ""), env.get("XDG_CONFIG_HOME", ""),
        tuple(f"{k}={v}" for k, v in sorted(env.items()) if k.startswith("GIT_CONFIG"))) or "ssh"
    try:
        program = shlex.split(base)[0]
    except (ValueError, IndexError):
        return None
    if os.path.basename(program) not in ("ssh", "ssh.exe"):
        return None
    return (f"{base} -o ConnectTimeout={limits.connect_timeout} "
            f"-o ServerAliveInterval={limits.keepalive_interval} "
            f"-o ServerAliveCountMax={limits.keepalive_count}")


def git_env(extra: Mapping[str, str] | None = None,
            limits: NetworkLimits | None = None) -> dict[str, str]:
    """The environment every git command of the suite runs with."""
    env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(extra or {})})
    limits = limits or NetworkLimits.from_env(env)
    env.setdefault("GIT_HTTP_LOW_SPEED_LIMIT", str(limits.low_speed_limit))
    env.setdefault("GIT_HTTP_LOW_SPEED_TIME", str(limits.low_speed_time))
    ssh = ssh_command(limits, env)
    if ssh is not None:
        env["GIT_SSH_COMMAND"] = ssh
    return env


# --------------------------------------------------------------------------- running

def _descendants(pid: int) -> list[int]:
    """Child processes of ``pid``, recursively (Linux /proc; empty elsewhere)."""
    out: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    children = [int(c) for c in fh.read().split()]
            except (OSError, ValueError):
                continue
            out.extend(children)
            stack.extend(children)
    return out


def _kill_tree(proc: subprocess.Popen) -> None:
    """Kill git and what it started (git-remote-https, ssh, a hook), then reap git."""
    victims = [*_descendants(proc.pid), proc.pid]
    for pid in victims:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def _command(args: Sequence[str]) -> str:
    """The git subcommand of ``args`` (after any ``-c key=value`` / ``-C dir`` options)."""
    i = 0
    while i < len(args):
        if args[i] in ("-c", "-C"):
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return args[i]
    return ""


def git(args: Sequence[str], *, cwd: str | Path | None = None, input: bytes | None = None,
        env: Mapping[str, str] | None = None, check: bool = True,
        what: str | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``git args...``; raise :class:`ExternalError` (retryable or not) when it fails.

    ``timeout`` bounds the whole command (a retryable error when it runs out); network
    commands get :class:`NetworkLimits`' timeout when none is given. Hooks' repository
    variables (``GIT_DIR`` ...) are dropped, prompts are off and messages are in English.
    """
    limits = NetworkLimits.from_env()
    full_env = git_env(env, limits)
    command = _command(args)
    if timeout is None and command in NETWORK_COMMANDS:
        timeout = limits.timeout
    label = what or f"git {command or 'command'}"
    try:
        proc = subprocess.Popen(["git", *args], cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE,
                                stdin=subprocess.PIPE if input is not None else
                                subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise ExternalError("git is not installed", hint="install git 2.30 or newer") from exc
    with proc:
        try:
            stdout, stderr = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc)
            raise ExternalError(
                f"{label} did not finish within {timeout:g}s: the server accepted the "
                "connection but did not answer, or the network stalled",
                hint="run the command again; if it keeps happening, check the GitOps "
                     "repository's server (MODELOPS_GIT_TIMEOUT sets the limit)",
                retryable=True) from None
        except BaseException:
            _kill_tree(proc)
            raise
    result = subprocess.CompletedProcess(["git", *args], proc.returncode, stdout, stderr)
    if check and result.returncode != 0:
        err = stderr.decode("utf-8", "replace").strip()
        retryable, hint = classify(err)
        raise ExternalError(f"{label} failed (exit {result.returncode}): {redact(err)}",
                            hint=hint, retryable=retryable)
    return result


def git_text(args: Sequence[str], *, cwd: str | Path | None = None,
             timeout: float | None = 120) -> str | None:
    """stdout of ``git args...`` as text, or None when git exits non-zero (no such revision,
    no such path, not a repository)."""
    proc = git(args, cwd=cwd, check=False, timeout=timeout)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")
