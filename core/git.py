"""The suite's one way to run ``git``.

:func:`git` turns a failing command into one :class:`~modelops.errors.ExternalError` whose
``retryable`` flag says whether trying again can help (a network hiccup: yes; a rejected
password, a missing repository, a hook that said no: no). :func:`git_text` is the read-only
shorthand for queries (``rev-parse``, ``show``) whose failure is an answer, not an error.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from modelops.errors import ExternalError

# stderr fragments that mean "try again later" versus "stop, a person must act".
_AUTH = re.compile(
    r"authentication failed|permission denied|could not read username|could not read password|"
    r"http[^\n]*\b40[13]\b|access denied|not authorized|unauthorized|invalid credentials|"
    r"terminal prompts disabled", re.I)
_MISSING_REPO = re.compile(r"does not appear to be a git repository|repository .* not found|"
                           r"not found|no such file or directory", re.I)
_TRANSIENT = re.compile(
    r"could not resolve host|connection (timed out|refused|reset)|early eof|"
    r"the remote end hung up unexpectedly|operation timed out|temporary failure|"
    r"http[^\n]*\b(429|500|502|503|504)\b|rpc failed|unable to access", re.I)

def classify(stderr: str) -> tuple[bool, str]:
    """(retryable, what to do next) for a failed git command's stderr."""
    if _AUTH.search(stderr):
        return False, ("check the credentials for the GitOps repository (a token with write "
                       "access, or an SSH key); nothing was force-pushed")
    if _TRANSIENT.search(stderr):
        return True, "the network or the server failed; run the command again"
    if _MISSING_REPO.search(stderr):
        return False, "check the GitOps repository URL (--gitops-repo or GITOPS_REPO)"
    return False, "see git's message above"


# set by git for hooks; they would point our commands at the wrong repository
_REPO_ENV = frozenset({"GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                       "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_PREFIX", "GIT_QUARANTINE_PATH",
                       "GIT_NAMESPACE", "GIT_COMMON_DIR"})


def redact(text: str) -> str:
    """Hide credentials embedded in URLs (https://user:token@host)."""
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)


def git(args: Sequence[str], *, cwd: str | Path | None = None, input: bytes | None = None,
        env: Mapping[str, str] | None = None, check: bool = True,
        what: str | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run ``git args...``; raise :class:`ExternalError` (retryable or not) when it fails.

    ``timeout`` bounds the whole command (a retryable error when it runs out). Hooks' repository
    variables (``GIT_DIR`` ...) are dropped, prompts are off and messages are in English.
    """
    full_env = {k: v for k, v in os.environ.items() if k not in _REPO_ENV}
    full_env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", **(env or {})})
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True,
                              env=full_env, timeout=timeout)
    except FileNotFoundError as exc:
        raise ExternalError("git is not installed", hint="install git 2.30 or newer") from exc
    except subprocess.TimeoutExpired as exc:
        label = what or f"git {args[0]}"
        raise ExternalError(f"{label} did not finish within {timeout:g}s",
                            hint="the network or the server is stalled; run the command again",
                            retryable=True) from exc
    if check and proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        retryable, hint = classify(err)
        label = what or f"git {args[0]}"
        raise ExternalError(f"{label} failed (exit {proc.returncode}): {redact(err)}",
                            hint=hint, retryable=retryable)
    return proc


def git_text(args: Sequence[str], *, cwd: str | Path | None = None,
             timeout: float | None = 120) -> str | None:
    """stdout of ``git args...`` as text, or None when git exits non-zero (no such revision,
    no such path, not a repository)."""
    proc = git(args, cwd=cwd, check=False, timeout=timeout)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")
