"""The example pipeline's CI requirements: only what its stages import, the CPU PyTorch wheel
on Linux (hosted runners have no GPU), at the versions requirements.lock pins; the workflows
that run the pipeline install this file, not the whole lock."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from packaging.requirements import Requirement

from modelops.yamlio import load_yaml_file

ROOT = Path(__file__).resolve().parents[2]
REQS = ROOT / "pipeline" / "requirements.txt"
IMPORT_NAMES = {"sklearn": "scikit-learn"}


def _requirements() -> tuple[list[str], list[Requirement]]:
    options, reqs = [], []
    for line in REQS.read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if line.startswith("-"):
            options.append(line)
        elif line and not line.startswith("#"):
            reqs.append(Requirement(line))
    return options, reqs


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==", 1)
            pins[name.lower().replace("_", "-")] = version.strip()
    return pins


def test_linux_gets_the_cpu_torch_wheel_at_the_locked_version():
    options, reqs = _requirements()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in options
    assert "-c ../requirements.lock" in options
    torch = [r for r in reqs if r.name == "torch"]
    linux = [r for r in torch if r.marker.evaluate({"sys_platform": "linux"})]
    other = [r for r in torch if r.marker.evaluate({"sys_platform": "darwin"})]
    assert [str(r.specifier) for r in linux] == [f"=={_lock()['torch']}+cpu"]
    assert [str(r.specifier) for r in other] == [f"=={_lock()['torch']}"]


def test_it_holds_what_the_stages_import_and_no_test_tools():
    imported = set()
    for path in (ROOT / "pipeline").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    third_party = {IMPORT_NAMES.get(m, m) for m in imported
                   if m not in sys.stdlib_module_names and m not in ("pipeline", "modelops")}
    named = {r.name for r in _requirements()[1]}
    assert third_party <= named, third_party - named
    assert not named & {"pytest", "moto", "zizmor", "dvc"}
    lock = _lock()
    assert all(r.name.lower() in lock for r in _requirements()[1])


def test_the_workflows_that_run_the_pipeline_install_it():
    for name in ("pr.yml", "release.yml", "retrain.yml"):
        text = (ROOT / ".github" / "workflows" / name).read_text()
        assert "requirements: pipeline/requirements.txt" in text, name
        assert "requirements: requirements.lock" not in text, name
    doc = load_yaml_file(ROOT / ".github" / "workflows" / "pr.yml")
    assert doc["jobs"]["modelops"]["with"]["requirements"] == "pipeline/requirements.txt"
