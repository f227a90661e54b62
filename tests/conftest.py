"""Shared fixtures. Tests that need an optional tool call ``require_tool``: locally they skip
when it is missing; in CI (``CI`` set) they fail, so a missing install step cannot hide."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


@pytest.fixture(autouse=True)
def _dvc_logs_to_this_tests_streams():
    """``import dvc`` binds DVC's log handlers to the ``sys.stdout``/``sys.stderr`` of that
    moment (``dvc/__init__.py`` calls ``dvc.logger.setup()``): when that was inside an earlier
    test's ``capsys``, they write to a closed file and DVC's next log line ("Initialized DVC
    repository.") raises. Point them at this test's streams instead."""
    if "dvc.logger" in sys.modules:
        for handler in logging.getLogger("dvc").handlers:
            if isinstance(handler, logging.StreamHandler):
                # not setStream(): it flushes the old stream first, which may be closed
                handler.stream = (sys.stderr if handler.level >= logging.WARNING
                                  else sys.stdout)
    return


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false")


def require_tool(name: str) -> str:
    """Return the path of executable ``name``; skip locally, fail in CI, when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name!r} is not installed (.ci/run installs it)"
        if in_ci():
            pytest.fail(message + "; CI must have it", pytrace=False)
        pytest.skip(message)
    return path


def require_npm_tool(folder: str, package: str) -> Path:
    """``tools/<folder>``, where ``make test`` installs the npm ``package`` it runs (and
    ``node``); skip locally, fail in CI, when either is missing."""
    require_tool("node")
    tool = ROOT / "tools" / folder
    if not (tool / "node_modules" / package).is_dir():
        message = f"{package} is not installed: npm ci --prefix tools/{folder}"
        if in_ci():
            pytest.fail(message + "; CI must have it", pytrace=False)
        pytest.skip(message)
    return tool


def require_module(name: str):
    """Import and return ``name``; skip locally, fail in CI, when it is missing."""
    try:
        return __import__(name)
    except ImportError:
        if in_ci():
            pytest.fail(f"python module {name!r} is missing; CI must have it", pytrace=False)
        pytest.skip(f"python module {name!r} is not installed")


def run(cmd: list[str], cwd: Path | str, check: bool = True, env: dict | None = None,
        timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a command, capture its output, and show it when the command fails."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=full_env,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr}")
    return proc


@pytest.fixture
def git_env(tmp_path, monkeypatch):
    """A git identity that does not depend on the machine's global config."""
    env = {
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env
