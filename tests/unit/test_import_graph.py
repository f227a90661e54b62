"""The suite's import graph: the core at the bottom, ci/gitops/serve above it, no cycles.

Read statically from the source (every ``import`` and ``from ... import``, at module level or
inside functions), so a cycle hidden in a function body counts too.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE_DIRS = {"modelops": "core", "modelops.ci": "ci", "modelops.gitops": "gitops",
                "modelops.serve": "serve"}
LAYERS = ("modelops.ci", "modelops.gitops", "modelops.serve")  # above the core


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the distribution."""
    out: dict[str, Path] = {}
    for package, folder in PACKAGE_DIRS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            # a folder mapped to its own package (ci/ inside core? no) is not nested here
            if any(name.startswith(p + ".") or name == p for p in PACKAGE_DIRS
                   if p != package and p.startswith(package + ".")):
                continue
            out[name] = path
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> set[str]:
    """Modules of the suite that ``module`` imports (submodule targets resolved)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            names = [f"{target}.{a.name}" for a in node.names] + [target]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


GRAPH = {m: _imports(m) for m in MODULES}


def _package(module: str) -> str:
    for layer in LAYERS:
        if module == layer or module.startswith(layer + "."):
            return layer
    return "modelops"  # the core


def test_every_module_is_seen():
    assert "modelops.errors" in MODULES and "modelops.ci.report" in MODULES
    assert "modelops.gitops.publish" in MODULES and "modelops.serve.server" in MODULES


def test_the_core_imports_nothing_above_it():
    upward = sorted(f"{m} -> {d}" for m, deps in GRAPH.items() if _package(m) == "modelops"
                    for d in deps if _package(d) != "modelops")
    assert not upward, upward


def test_no_import_cycles_between_modules():
    cycles = _cycles(GRAPH)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_no_import_cycles_between_packages():
    packages: dict[str, set[str]] = {}
    for m, deps in GRAPH.items():
        packages.setdefault(_package(m), set()).update(
            _package(d) for d in deps if _package(d) != _package(m))
    cycles = _cycles(packages)
    assert not cycles, cycles


def test_a_cycle_is_found_when_there_is_one():
    """The checker itself: a two-module and a three-module cycle are both reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b", "a"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_serving_runtime_needs_only_the_core():
    runtime = sorted(m for m in MODULES if _package(m) == "modelops.serve")
    for m in runtime:
        outside = sorted(d for d in GRAPH[m] if _package(d) not in ("modelops", "modelops.serve"))
        assert not outside, f"{m} imports {outside}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_importing_the_suite_loads_nothing_of_the_example(module):
    """No module of the suite imports the bundled example's pipeline (or scripts, tests)."""
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in ("pipeline", "scripts", "tests", "bench", "ci",
                                              "gitops", "serve"), f"{module} imports {name}"


def test_import_loads_no_example_module_at_run_time():
    before = set(sys.modules)
    for module in sorted(MODULES):
        if module.endswith("__main__") or ".compile.tensorrt" in module:
            continue
        importlib.import_module(module)
    loaded = set(sys.modules) - before
    assert not [m for m in loaded if m.split(".")[0] in ("pipeline", "scripts")]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One representative path for each strongly connected component with a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    comps: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                comps.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    out = []
    for comp in comps:
        members = set(comp)
        start = comp[0]
        path, seen, node = [start], {start}, start
        while True:
            nxt = sorted(w for w in graph[node] if w in members)
            step = next((w for w in nxt if w == start and len(path) > 1), None) or \
                next((w for w in nxt if w not in seen), start)
            path.append(step)
            if step == start:
                break
            seen.add(step)
            node = step
        out.append(path)
    return out
