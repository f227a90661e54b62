"""The suite installed the way a user installs it: ``pip install <the project>`` into a clean
virtual environment (a fresh clone's files, pip's own build isolation, the dependencies from the
package index, pinned by ``requirements.lock`` as constraints), then used from a directory that
has nothing to do with this checkout.

One venv for the module: the base install first (what the comment job installs), what it can
do recorded, then the ``serve`` extra on top.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from scripts.project import copy_project, project_files
from tests.conftest import ROOT, run

pytestmark = pytest.mark.slow

# folders of the suite (pyproject package-dir) -> where they land in site-packages
PACKAGES = {"core": "modelops", "ci": "modelops/ci", "gitops": "modelops/gitops",
            "serve": "modelops/serve"}
DATA_DIRS = ("templates", "schemas")  # package data: every file under these folders
EXAMPLE_MODULES = {"pipeline", "scripts", "examples", "tests", "bench"}
GENERIC_NAMES = {"ci", "gitops", "serve", "core", "pipeline", "scripts"}
# modules of extras a base + serve install does not have (imported by optional parts)
EXTRA_MODULES = {"dvc", "hera", "kubernetes_validate", "tensorrt", "matplotlib",
                 "huggingface_hub", "onnx", "cuda", "pycuda", "jsonschema_rs",
                 "grafana_foundation_sdk"}


@dataclass(frozen=True)
class Installed:
    venv: Path
    python: Path
    site: Path
    elsewhere: Path
    source: Path
    base_seconds: float
    serve_help_before_extra: subprocess.CompletedProcess
    extra_seconds: float

    def script(self, name: str, *args: str, check: bool = False):
        return run([str(self.venv / "bin" / name), *args], cwd=self.elsewhere, check=check)


def pip_install(python: Path, target: str, cwd: Path) -> float:
    start = time.perf_counter()
    run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "-c", str(ROOT / "requirements.lock"), target], cwd=cwd, timeout=900)
    return time.perf_counter() - start


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    source = copy_project(root / "modelops-suite")  # what a clone holds; nothing built
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=root)
    python = venv / "bin" / "python"
    base = pip_install(python, str(source), root)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    serve_help = run([str(venv / "bin" / "modelops-serve"), "--help"], cwd=elsewhere,
                     check=False)
    extra = pip_install(python, f"{source}[serve]", root)
    print(f"\npip install <suite> into a clean venv: {base:.1f}s; + [serve]: {extra:.1f}s")
    site = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                     "['purelib'])"], cwd=elsewhere).stdout.strip())
    return Installed(venv, python, site, elsewhere, source, base, serve_help, extra)


def test_console_scripts_run_from_an_unrelated_directory(installed):
    ci = installed.script("modelops-ci", "--help", check=True).stdout
    assert ci.startswith("usage: modelops-ci")
    for command in ("check-params", "reproduce", "report", "comment", "compile", "gate"):
        assert command in ci, command
    gitops = installed.script("modelops-gitops", "--help", check=True).stdout
    assert gitops.startswith("usage: modelops-gitops")
    for command in ("release", "render", "validate", "publish", "promote", "rollback"):
        assert command in gitops, command
    serve = installed.script("modelops-serve", "--help", check=True).stdout
    assert serve.startswith("usage: modelops-serve")
    # and a command that does work, on the example repository's settings
    params = installed.elsewhere / "params.yaml"
    params.write_bytes((ROOT / "examples/breast-cancer/params.yaml").read_bytes())
    proc = installed.script("modelops-ci", "check-params", "--params", str(params))
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr


def test_serve_help_without_the_serve_extra_is_help_or_one_clear_line(installed):
    proc = installed.serve_help_before_extra
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0 or "modelops-suite[serve]" in proc.stderr


def test_the_installed_suite_is_one_namespaced_package(installed):
    where = installed.script("python", "-c", "import modelops; print(modelops.__file__)",
                             check=True).stdout.strip()
    assert Path(where).is_relative_to(installed.site), where
    tops = {p.name for p in installed.site.iterdir()}
    assert not tops & GENERIC_NAMES, tops & GENERIC_NAMES
    record = next(installed.site.glob("modelops_suite-*.dist-info")) / "RECORD"
    paths = [line.split(",")[0] for line in record.read_text().splitlines() if line]
    scripts = [p for p in paths if re.fullmatch(r"(\.\./)+bin/[^/]+", p)]
    outside = [p for p in paths if not p.startswith(("modelops/", "modelops_suite-"))
               and p not in scripts]
    assert outside == [], outside
    assert sorted(p.rsplit("/", 1)[-1] for p in scripts) == \
        ["modelops-ci", "modelops-gitops", "modelops-serve"]


def test_package_data_is_in_the_installed_wheel(installed):
    checked = 0
    for rel in project_files(ROOT):
        folder, _, rest = rel.partition("/")
        if folder in PACKAGES and rest.split("/")[0] in DATA_DIRS:
            got = installed.site / PACKAGES[folder] / rest
            assert got.is_file(), f"{rel} is not installed (pyproject package-data)"
            assert got.read_bytes() == (ROOT / rel).read_bytes(), rel
            checked += 1
    assert checked >= 4  # the report schema and comment template, the gitops ones


IMPORT_ALL = """
import importlib, json, pkgutil, sys
import modelops
missing, failed = {}, {}
for info in pkgutil.walk_packages(modelops.__path__, "modelops."):
    try:
        importlib.import_module(info.name)
    except ModuleNotFoundError as exc:
        missing[info.name] = exc.name
    except Exception as exc:
        failed[info.name] = repr(exc)
print(json.dumps({"missing": missing, "failed": failed,
                  "loaded": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def _import_everything(python: str, cwd: Path) -> dict:
    return json.loads(run([python, "-c", IMPORT_ALL], cwd=cwd).stdout)


def test_importing_the_installed_suite_loads_nothing_of_the_bundled_example(installed):
    found = _import_everything(str(installed.python), installed.elsewhere)
    assert found["failed"] == {}
    assert set(found["missing"].values()) <= EXTRA_MODULES, found["missing"]
    for module in ("modelops.ci.report", "modelops.ci.compare", "modelops.ci.comment",
                   "modelops.ci.gates", "modelops.gitops.release", "modelops.gitops.render",
                   "modelops.gitops.publish", "modelops.serve.server", "modelops.settings"):
        assert module not in found["missing"], module
    assert not set(found["loaded"]) & (EXAMPLE_MODULES | GENERIC_NAMES)


def test_importing_the_suite_in_this_checkout_loads_nothing_of_the_bundled_example():
    # here `pipeline` and `scripts` are importable (the working directory is on sys.path):
    # the suite must still not touch them
    found = _import_everything(sys.executable, ROOT)
    assert found["failed"] == {}
    assert not set(found["loaded"]) & EXAMPLE_MODULES, found["loaded"]
