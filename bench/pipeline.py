"""Benchmark of the example model repository.

Measures, in one run, on this machine:
  * cold pipeline: a fresh copy of the project (what a clone holds, no DVC cache) -> ``dvc repro``
    -> ``dvc push`` to the default local remote (what ``make demo`` does after installing),
  * a no-op ``dvc repro`` right after (everything up to date), against the cold repro,
  * ONNX Runtime vs PyTorch CPU inference latency of the example model at batch 1 and 32
    (one thread each, same inputs), against PyTorch.

Usage: ``python bench/pipeline.py [--runs N] [--keep DIR]``; run from the repository root.
Prints one Markdown table; ratios are against the baseline named in each row.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from scripts.project import copy_project  # noqa: E402


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr}")
    return took


def latency(fn, runs: int) -> tuple[float, float]:
    for _ in range(10):
        fn()
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    p50, p95 = np.percentile(times * 1000, [50, 95])
    return float(p50), float(p95)


def inference_rows(repo: Path, runs: int) -> list[tuple[str, float, str, float]]:
    import onnxruntime as ort
    import torch

    os.chdir(repo)
    from pipeline.model import load_checkpoint
    from pipeline.prepare import load_split

    torch.set_num_threads(1)
    model = load_checkpoint(Path("models/model.pt"))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession("models/model.onnx", sess_options=opts,
                                providers=["CPUExecutionProvider"])
    x_test, _ = load_split("test")
    rows = []
    for batch in (1, 32):
        x = np.ascontiguousarray(x_test[:batch])
        xt = torch.from_numpy(x)

        def run_torch(xt=xt):
            with torch.inference_mode():
                model(xt)

        def run_ort(x=x):
            sess.run(["logits"], {"input": x})

        print(f"  latency at batch {batch} ({runs} runs each)", flush=True)
        t50, t95 = latency(run_torch, runs)
        o50, o95 = latency(run_ort, runs)
        rows.append((f"PyTorch CPU batch {batch} p50", t50 / 1000, "baseline", 1.0))
        rows.append((f"ONNX Runtime CPU batch {batch} p50", o50 / 1000,
                     f"PyTorch batch {batch} p50", t50 / o50))
        rows.append((f"PyTorch CPU batch {batch} p95", t95 / 1000, "baseline", 1.0))
        rows.append((f"ONNX Runtime CPU batch {batch} p95", o95 / 1000,
                     f"PyTorch batch {batch} p95", t95 / o95))
    return rows


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.3f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=500, help="latency runs per measurement")
    parser.add_argument("--keep", type=Path, help="keep the temporary project copy here")
    args = parser.parse_args()

    env = {**os.environ, "VIRTUAL_ENV": sys.prefix, "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    repo = args.keep or tmp / "project"
    repo.mkdir(parents=True, exist_ok=True)
    try:
        print(f"==> fresh copy of the project in {repo}", flush=True)
        copy_project(repo)
        subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
        dvc = [sys.executable, "-m", "dvc"]
        print("==> cold dvc repro (all stages)", flush=True)
        cold = timed([*dvc, "repro"], repo, env)
        print("==> dvc push to the local remote", flush=True)
        push = timed([*dvc, "push"], repo, env)
        print("==> no-op dvc repro", flush=True)
        noop = min(timed([*dvc, "repro"], repo, env) for _ in range(3))
        print("==> inference latency", flush=True)
        rows = [
            ("cold dvc repro + dvc push", cold + push, "baseline", 1.0),
            ("  of which dvc repro", cold, "", cold / (cold + push)),
            ("  of which dvc push", push, "", push / (cold + push)),
            ("no-op dvc repro (best of 3)", noop, "cold dvc repro", cold / noop),
            *inference_rows(repo, args.runs),
        ]
    finally:
        os.chdir(ROOT)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print("\n| measurement | time | ratio | against |")
    print("|---|---:|---:|---|")
    for name, seconds, against, ratio in rows:
        shown = "" if not against else (f"{ratio:.2f}x" if against != "baseline" else "1.00x")
        if name.startswith("  "):
            shown, against = f"{ratio:.0%}", "share of the total"
        print(f"| {name.strip()} | {fmt_time(seconds)} | {shown} | {against} |")
    import platform

    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"python {platform.python_version()}; ratios > 1 mean faster than the baseline "
          "(cold/no-op for repro, PyTorch/ONNX Runtime for latency)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
