"""Benchmark: ONNX Runtime optimised vs unoptimised vs PyTorch eager on the example model.

CPU, one thread each (fair on a shared runner; ``--threads`` to change), batch sizes 1, 8, 32,
128. The baseline is ONNX Runtime with graph optimisation disabled, measured in the same run;
every other figure is given as a ratio to it (above 1 = faster than the baseline).

    .venv/bin/python bench/compile.py [--runs 200] [--warmup 20] [--threads 1]

Needs models/model.pt and models/model.onnx (``dvc repro export``) and data/prepared/test.npz.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modelops.ci.compile.latency import environment, make_batch, measure  # noqa: E402
from modelops.ci.compile.onnxruntime import make_session  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="1,8,32,128")
    args = ap.parse_args(argv)

    import torch

    from pipeline.model import load_checkpoint

    torch.set_num_threads(args.threads)
    onnx_path, pt_path = ROOT / "models/model.onnx", ROOT / "models/model.pt"
    for p in (onnx_path, pt_path, ROOT / "data/prepared/test.npz"):
        if not p.exists():
            print(f"bench: {p.relative_to(ROOT)} not found; run `dvc repro export` first",
                  file=sys.stderr)
            return 2
    x = np.load(ROOT / "data/prepared/test.npz")["x"].astype(np.float32)

    net = load_checkpoint(pt_path).eval()

    def torch_eager(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(batch)).numpy()

    cpu = ["CPUExecutionProvider"]
    unopt = make_session(onnx_path, optimize=False, provider_list=cpu, threads=args.threads)
    opt = make_session(onnx_path, optimize=True, provider_list=cpu, threads=args.threads)

    def ort_run(sess):
        return lambda batch: sess.run(["logits"], {"input": batch})[0]

    contenders = [("onnxruntime unoptimised (baseline)", ort_run(unopt)),
                  ("onnxruntime optimised (level all)", ort_run(opt)),
                  ("pytorch eager", torch_eager)]
    batch0 = make_batch(x, 8)
    ref = contenders[0][1](batch0)
    for name, fn in contenders[1:]:
        err = float(np.abs(fn(batch0) - ref).max())
        if err > 1e-3:
            print(f"bench: {name} disagrees with the baseline (max abs {err:.3g})",
                  file=sys.stderr)
            return 1

    env = environment()
    print(f"cpu: {env['cpu']} ({args.threads} thread(s)); "
          + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()))
    print(f"{args.warmup} warm-up + {args.runs} timed runs per cell; ratio = baseline p50 / p50\n")
    head = f"{'batch':>5}  {'runtime':<36} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} " \
           f"{'samples/s':>10} {'ratio':>6}"
    print(head)
    print("-" * len(head))
    for size in (int(b) for b in args.batches.split(",")):
        batch = make_batch(x, size)
        rows = [(name, measure(fn, batch, warmup=args.warmup, runs=args.runs))
                for name, fn in contenders]
        base = rows[0][1]["p50_ms"]
        for name, r in rows:
            print(f"{size:>5}  {name:<36} {r['p50_ms']:>8.3f} {r['p95_ms']:>8.3f} "
                  f"{r['p99_ms']:>8.3f} {r['throughput_per_s']:>10.0f} "
                  f"{base / r['p50_ms']:>5.2f}x")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
