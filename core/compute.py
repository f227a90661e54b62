"""Compute used by each pipeline stage, and what it cost.

``python -m modelops.compute --stage NAME -- CMD...`` runs one DVC stage's command (the launchers in
``pipeline/run.sh`` does this) and, when it succeeds, writes
``metrics/compute/<stage>.json``: wall seconds, CPU seconds (user + system of the stage's
processes) and GPU seconds (wall time times the GPUs visible to the stage: what a cloud bills
for an attached GPU). The file is a ``cache: false`` metrics output of the stage, so git holds
the compute that produced each committed model, the PR report shows it, the release records
it, and ``modelops-ci cost`` sums it over history.

Costs come from the price table in ``params.yaml`` ``cost``; they are estimates.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from modelops.settings.cost import CostParams

COMPUTE_DIR = Path("metrics/compute")




def visible_gpus() -> int:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def measure(stage: str, cmd: Sequence[str], out_dir: Path = COMPUTE_DIR) -> int:
    """Run ``cmd``; on success write ``<out_dir>/<stage>.json``; return its exit code."""
    from modelops.fsutil import write_json

    gpus = visible_gpus()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    try:
        code = subprocess.call(list(cmd))
    except FileNotFoundError:
        print(f"modelops.compute: {cmd[0]!r} not found", file=sys.stderr)
        return 2
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        return code
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    write_json(out_dir / f"{stage}.json", {
        "stage": stage,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "gpu_seconds": round(wall * gpus, 3),
        "gpus": gpus,
        "cpu_count": os.cpu_count() or 1,
    })
    return 0


# --------------------------------------------------------------------------- reading

def read_compute(root: Path) -> dict[str, dict[str, Any]]:
    """stage -> its recorded compute, from ``metrics/compute/*.json`` under ``root``."""
    out = {}
    for path in sorted((root / COMPUTE_DIR).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        out[path.stem] = data
    return out


def price(compute: dict[str, Any], prices: CostParams) -> float:
    return (compute.get("cpu_seconds", 0.0) / 3600 * prices.cpu_core_hour
            + compute.get("gpu_seconds", 0.0) / 3600 * prices.gpu_hour)


def totals(stages: dict[str, dict[str, Any]], prices: CostParams) -> dict[str, Any]:
    cpu = sum(s.get("cpu_seconds", 0.0) for s in stages.values())
    gpu = sum(s.get("gpu_seconds", 0.0) for s in stages.values())
    wall = sum(s.get("wall_seconds", 0.0) for s in stages.values())
    return {"wall_seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
            "gpu_seconds": round(gpu, 3),
            "cost": round(sum(price(s, prices) for s in stages.values()), 6),
            "currency": prices.currency}


def compute_section(root: Path, prices: CostParams, reran: Sequence[str] | None = None
                    ) -> dict[str, Any]:
    """The ``compute`` section of report.json: every stage's recorded compute and its cost;
    ``reran`` (stages this change reran) says which of them this pull request paid for."""
    stages = read_compute(root)
    if not stages:
        return {"status": "skipped", "reason": "no metrics/compute/*.json: stages ran without "
                "the compute launcher"}
    rows = {name: {**data, "cost": round(price(data, prices), 6),
                   "reran": reran is not None and name in reran}
            for name, data in stages.items()}
    this_run = {n: d for n, d in stages.items() if reran is not None and n in reran}
    return {"status": "pass", "stages": rows, "total": totals(stages, prices),
            "this_change": totals(this_run, prices) if reran is not None else None,
            "prices": {"cpu_core_hour": prices.cpu_core_hour, "gpu_hour": prices.gpu_hour,
                       "currency": prices.currency}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelops.compute",
        description="Run one DVC stage's command and record its compute in "
                    "metrics/compute/<stage>.json when it succeeds.")
    parser.add_argument("--stage", required=True, help="stage name (the file's name)")
    parser.add_argument("--out-dir", default=str(COMPUTE_DIR), help="default: %(default)s")
    parser.add_argument("cmd", nargs=argparse.REMAINDER, help="-- the stage's command")
    args = parser.parse_args(argv)
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        parser.error("give the stage's command after --")
    return measure(args.stage, cmd, Path(args.out_dir))


if __name__ == "__main__":
    sys.exit(main())
