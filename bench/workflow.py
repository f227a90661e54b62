"""Benchmark: render + strict validation of the Argo Workflow for generated pipelines.

Pipelines of 5, 50 and 500 stages (each stage depends on up to two earlier ones) are rendered
with ``gitops.workflow.render_workflow`` and validated with the strict upstream CRD schema.
The table shows the time per stage relative to the 5-stage pipeline: a ratio near 1 means the
cost grows linearly with the number of stages.

    python bench/workflow.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modelops.gitops.crd import validate_strict  # noqa: E402
from modelops.gitops.workflow import WorkflowContext, WorkflowParams, render_workflow  # noqa: E402


def generated_graph(n: int, seed: int = 0) -> dict[str, list[str]]:
    rng = random.Random(seed)
    graph: dict[str, list[str]] = {}
    for i in range(n):
        ups = sorted({f"stage-{rng.randrange(i)}" for _ in range(min(i, 2))})
        graph[f"stage-{i}"] = ups
    return graph


def measure(n: int, repeat: int) -> tuple[float, float]:
    graph = generated_graph(n)
    ctx = WorkflowContext("bench", "bench", "a" * 40, "b" * 64)
    render, validate = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        doc = render_workflow(graph, WorkflowParams(), ctx)
        t1 = time.perf_counter()
        problems = validate_strict(doc)
        t2 = time.perf_counter()
        assert not problems, problems[:3]
        render.append(t1 - t0)
        validate.append(t2 - t1)
    return statistics.median(render), statistics.median(validate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    validate_strict(render_workflow(generated_graph(2), WorkflowParams(),
                                    WorkflowContext("w", "w", "a", "b")))  # warm schema cache
    rows = []
    for n in (5, 50, 500):
        r, v = measure(n, args.repeat)
        rows.append((n, r, v))
    base = (rows[0][1] + rows[0][2]) / rows[0][0]
    print(f"{'stages':>7} {'render ms':>10} {'validate ms':>12} {'total ms':>9} "
          f"{'ms/stage':>9} {'per-stage vs 5':>15}")
    for n, r, v in rows:
        per = (r + v) / n
        print(f"{n:>7} {r * 1e3:>10.1f} {v * 1e3:>12.1f} {(r + v) * 1e3:>9.1f} "
              f"{per * 1e3:>9.2f} {per / base:>14.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
