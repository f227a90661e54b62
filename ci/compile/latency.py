"""Latency and throughput of a runner, and the environment the figures came from."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported where arrays are made: the timing step's fast path
    import numpy as np  # (same artifact as the base) reads versions only, without it

PERCENTILES = (50, 90, 95, 99)


def make_batch(x: np.ndarray, size: int) -> np.ndarray:
    """``size`` rows of ``x`` (repeated when ``x`` is shorter), contiguous float32."""
    import numpy as np

    reps = -(-size // len(x))
    return np.ascontiguousarray(np.concatenate([x] * reps)[:size], dtype=np.float32)


def measure(infer: Callable[[np.ndarray], np.ndarray], batch: np.ndarray, *, warmup: int,
            runs: int, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Warm up, then time ``runs`` calls; percentiles in milliseconds, throughput in samples/s.

    Throughput is at the median call, batch size / p50, so it agrees with the percentiles
    beside it (batch size x runs / total time would let a few slow calls rule it); ``mean_ms``
    is the mean call.
    """
    import numpy as np

    for _ in range(warmup):
        infer(batch)
    times = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = clock()
        infer(batch)
        times[i] = clock() - t0
    out = {f"p{p}_ms": float(np.percentile(times, p) * 1000) for p in PERCENTILES}
    out["mean_ms"] = float(times.mean() * 1000)
    p50 = out["p50_ms"]
    out["throughput_per_s"] = float(len(batch) * 1000 / p50) if p50 > 0 else float("inf")
    return out


def compare_table(compiled: Callable, baseline: Callable, x: np.ndarray,
                  batch_sizes: Sequence[int], *, warmup: int, runs: int,
                  log: Callable[[str], None] = lambda _m: None) -> list[dict]:
    """One row per batch size: compiled and baseline figures side by side, with the speedup
    (baseline p50 / compiled p50; above 1 means the compiled model is faster)."""
    rows = []
    for size in batch_sizes:
        batch = make_batch(x, size)
        log(f"latency at batch {size}: {warmup} warm-up + {runs} timed runs each")
        c = measure(compiled, batch, warmup=warmup, runs=runs)
        b = measure(baseline, batch, warmup=warmup, runs=runs)
        rows.append({"batch": size, "compiled": c, "baseline": b,
                     "speedup_p50": b["p50_ms"] / c["p50_ms"] if c["p50_ms"] > 0 else None})
    return rows


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """CPU/GPU model and library versions, recorded beside every figure."""
    from modelops.ci.compile.tensorrt import cuda_devices

    gpus = cuda_devices()
    libs = {}
    for dist in ("onnxruntime", "onnxruntime-gpu", "onnx", "numpy", "tensorrt", "torch"):
        v = _version(dist)
        if v:
            libs[dist] = v
    try:
        import onnxruntime as ort

        providers = ort.get_available_providers()
    except ImportError:
        providers = []
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": [{"name": g.name, "compute_capability": g.compute_capability} for g in gpus],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "libraries": libs,
        "onnxruntime_providers": providers,
    }
