"""The stage graph of a DVC pipeline, read through DVC's own API (``Repo.index.graph``), and
the orders the Workflow and its tasks need."""

from __future__ import annotations

import heapq
import os
from pathlib import Path
from typing import Any

from modelops.errors import InputError


def pipeline_graph(repo_root: str | Path) -> dict[str, list[str]]:
    """Stage name -> names of the stages it depends on, read through DVC's own API."""
    return _read_pipeline(repo_root)[0]


def pipeline_commands(repo_root: str | Path) -> dict[str, str]:
    """Stage name -> its command (``cmd`` of dvc.yaml, lists joined by newlines)."""
    return _read_pipeline(repo_root)[1]


def _read_pipeline(repo_root: str | Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(repo_root)) as repo:
            graph = repo.index.graph
            names = {stage: _stage_name(stage, repo.root_dir) for stage in graph.nodes}
            deps: dict[str, list[str]] = {names[s]: [] for s in graph.nodes}
            cmds: dict[str, str] = {}
            for stage in graph.nodes:
                cmd = getattr(stage, "cmd", "") or ""
                cmds[names[stage]] = "\n".join(cmd) if isinstance(cmd, list) else str(cmd)
            # DVC's edges go from a stage to the stages producing its dependencies.
            for stage, upstream in graph.edges:
                deps[names[stage]].append(names[upstream])
    except DvcException as exc:
        raise InputError(f"{repo_root}: cannot read the dvc pipeline: {exc}",
                         hint="run `dvc status` there to see what dvc says") from exc
    return {name: sorted(ups) for name, ups in sorted(deps.items())}, cmds


def _stage_name(stage: Any, root: str) -> str:
    """``name`` for stages of the root dvc.yaml, ``sub/dvc.yaml:name`` for nested ones."""
    dvcfile = os.path.relpath(stage.path, root)
    name = getattr(stage, "name", None) or dvcfile
    return name if dvcfile == "dvc.yaml" else f"{dvcfile}:{name}"


def topological_order(graph: dict[str, list[str]]) -> list[str]:
    """Stages in dependency order (ties by name, so the output is stable)."""

    missing = sorted({u for ups in graph.values() for u in ups} - set(graph))
    if missing:
        raise InputError(f"stage graph names unknown stage {missing[0]!r}")
    waiting = {stage: len(set(ups)) for stage, ups in graph.items()}
    users: dict[str, list[str]] = {stage: [] for stage in graph}
    for stage, ups in graph.items():
        for u in set(ups):
            users[u].append(stage)
    ready = [stage for stage, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        stage = heapq.heappop(ready)
        order.append(stage)
        for user in users[stage]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(graph):
        raise InputError("the stage graph has a cycle: "
                         + ", ".join(sorted(s for s, n in waiting.items() if n)))
    return order


def _groups(order: list[str], size: int) -> list[list[str]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def ancestors(graph: dict[str, list[str]]) -> dict[str, set[str]]:
    """Every stage's transitive upstream stages."""
    memo: dict[str, set[str]] = {}
    for stage in topological_order(graph):
        memo[stage] = set(graph[stage]).union(*(memo[u] for u in graph[stage]))
    return memo
