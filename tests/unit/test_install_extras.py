"""Each job installs only what it needs: the commands of a job work with nothing but the
extras that job installs (``pyproject.toml``).

A command runs in a fresh interpreter in which every distribution outside the dependency
closure of those extras is made unimportable (a ``sys.meta_path`` finder refuses the modules
they ship, as if they were not installed); the command must still succeed. So the comment job,
which installs the base package only, cannot grow a hidden DVC or numpy import, and optional
imports (jsonschema's format checkers, ruamel.yaml's C loader) are proven optional.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata

import pytest

from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SUITE = "modelops-suite"


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0].lower() \
        .replace("_", "-").replace(".", "-")


def _closure(requirements: list[str]) -> set[str]:
    """The distributions ``requirements`` pull in, following installed metadata (markers that
    need an extra are not followed: an extra is installed only when asked for)."""
    seen: set[str] = set()
    todo = [r for r in requirements if "extra ==" not in r]
    while todo:
        name = _name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(r for r in requires if "extra ==" not in r.split(";", 1)[-1])
    return seen


def allowed(*extras: str) -> set[str]:
    reqs = list(PYPROJECT["project"]["dependencies"])
    for extra in extras:
        reqs += PYPROJECT["project"]["optional-dependencies"][extra]
    return _closure(reqs) | {SUITE}


PROBE = """
import importlib.abc, json, sys

BLOCKED = set(json.loads(sys.argv.pop(1)))


class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in this job's extras)",
                                      name=name)
        return None


sys.meta_path.insert(0, NotInstalled())
from modelops.ci.__main__ import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
sys.exit(rc or 0)
"""


def blocked_modules(extras: tuple[str, ...]) -> list[str]:
    """Top-level modules of every installed distribution outside the closure of ``extras``."""
    keep = allowed(*extras)
    out = set()
    for module, dists in metadata.packages_distributions().items():
        if module in sys.stdlib_module_names or module == "modelops":
            continue
        if not any(_name(d) in keep for d in dists):
            out.add(module)
    return sorted(out)


def run_with(extras: tuple[str, ...], args: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROBE, json.dumps(blocked_modules(extras)),
                           *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_comment_job_needs_only_the_base_package(tmp_path):
    report = ROOT / "tests" / "data" / "comment" / "report.json"
    proc = run_with((), ["comment", "--preview", "--report", str(report),
                         "--out", str(tmp_path / "c.md")], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "c.md").read_text().startswith("<!-- modelops-suite:sticky:")
    # a later job's failure, and no report at all (the evaluation failed first): base only too
    proc = run_with((), ["comment", "--preview", "--report", str(report), "--fail-section",
                         "compile=the GPU job failed", "--out", str(tmp_path / "f.md")],
                    tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the GPU job failed" in (tmp_path / "f.md").read_text()
    proc = run_with((), ["comment", "--preview", "--report", str(tmp_path / "none.json"),
                         "--if-missing", "the evaluate job failed", "--model", "m",
                         "--out", str(tmp_path / "m.md")], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "the evaluation did not finish" in (tmp_path / "m.md").read_text()


@pytest.mark.parametrize("args", [["--help"], ["steps"], ["check-params"]])
def test_the_command_line_itself_needs_only_the_base_package(args):
    proc = run_with((), args, ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_command_of_a_bigger_extra_fails_without_it(tmp_path):
    """The blocker is real: evaluating needs DVC (the ci extra) and says so."""
    assert "dvc" not in allowed() and "dvc" in allowed("ci")
    assert "onnxruntime" in allowed("onnx") and "numpy" not in allowed()
    proc = run_with((), ["reproduce"], ROOT)
    assert proc.returncode == 2 and "cannot import dvc" in proc.stderr
    assert run_with(("ci",), ["dvc-remote"], ROOT).returncode == 0
