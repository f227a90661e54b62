"""Benchmark: rendering the Argo Workflow, and what running it the Argo way costs.

1. Render + strict validation for generated pipelines of 5, 50 and 500 stages (each stage
   depends on up to two earlier ones). The table shows the time per stage relative to the
   5-stage pipeline: a ratio near 1 means the cost grows linearly with the number of stages.
2. ``--run``: the three-stage test pipeline (a -> b -> c) after a parameter change, run by the
   local Argo emulation (``tests/argo_executor.py``: a fresh clone per task, results passed as
   artifacts, outputs through the shared DVC remote, the last task committing the result)
   against the honest baseline, ``dvc repro`` in one fresh clone of the same commit. The
   ratio is the price of running every stage in a pod of its own on one machine; on a
   cluster the stages' pods run on different nodes.

    python bench/workflow.py [--repeat 3] [--run]
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

WF = WorkflowParams(image="registry.example/train@sha256:" + "a" * 64)


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
        doc = render_workflow(graph, WF, ctx)
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
    parser.add_argument("--run", action="store_true",
                        help="also run the three-stage pipeline through the Argo emulation")
    args = parser.parse_args()
    validate_strict(render_workflow(generated_graph(2), WF,
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
    if args.run:
        run_pipeline(args.repeat)
    return 0


def run_pipeline(repeat: int) -> None:
    import tempfile

    from tests.argo_executor import LocalArgo
    from tests.func import test_workflow_run as t

    emulated, local = [], []
    for i in range(repeat):
        tmp = Path(tempfile.mkdtemp(prefix="bench-workflow-"))
        repo, origin = t.make_repo(tmp, "http://127.0.0.1:1/api/v3", str(tmp / "remote"),
                                   pull_request={"enabled": False})
        rev = t.set_param(repo, "a", "x", 10 + i)
        doc = t.render(repo)
        t0 = time.perf_counter()
        result = LocalArgo(doc, tmp / "argo", base_env=t.ENV).run()
        t1 = time.perf_counter()
        assert result.phase == "Succeeded", result.logs()[-3000:]
        t.reference(tmp, origin, rev)
        t2 = time.perf_counter()
        emulated.append(t1 - t0)
        local.append(t2 - t1)
    e, b = statistics.median(emulated), statistics.median(local)
    print(f"\na -> b -> c after a parameter change (median of {repeat}):")
    print(f"  dvc repro in one fresh clone (baseline): {b:6.2f} s")
    print(f"  the Workflow, a pod per stage (emulated): {e:6.2f} s  ({e / b:.2f}x)")


if __name__ == "__main__":
    sys.exit(main())
