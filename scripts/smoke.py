"""``python -m scripts.smoke``: serve the pipeline's model locally and query it like a client would.

Starts ``modelops-serve`` on a free 127.0.0.1 port with ``models/model.onnx`` (sha256 checked),
``metrics/drift_baseline.json`` as the drift baseline, sends the held-out test split over the
Open Inference Protocol (one batch, then single requests), checks the answers against in-process
ONNX Runtime, prints accuracy, latency and the exported metrics, and stops the server with
SIGTERM (it must drain and exit 0). Exit 0 when all of that holds, 1 otherwise, 2 on bad input.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from scripts.canary_demo import ROOT, read_port, wait_until
from scripts.fixtures import held_out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scripts.smoke",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    ap.add_argument("--baseline", type=Path, default=Path("metrics/drift_baseline.json"))
    ap.add_argument("--requests", type=int, default=200, help="single requests to time")
    args = ap.parse_args(argv)
    from modelops.fsutil import sha256_file

    for p in (args.model, args.baseline):
        if not p.is_file():
            print(f"scripts.smoke: error: {p}: not found; run `dvc repro` first", file=sys.stderr)
            return 2
    x, y = held_out(Path.cwd())
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelops.serve", "--model", str(args.model), "--sha256",
         sha256_file(args.model), "--drift-baseline", str(args.baseline), "--port", "0",
         "--model-version", "local", "--psi-min-samples", "50"],
        cwd=Path.cwd(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    ok = True
    port, early = read_port(proc)
    try:
        wait_until(f"http://127.0.0.1:{port}/v2/health/ready", proc, "server")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        path = "/v2/models/digits-cnn/infer"

        def infer(batch: np.ndarray) -> np.ndarray:
            body = json.dumps({"inputs": [{"name": "input", "shape": list(batch.shape),
                                           "datatype": "FP32", "data": batch.ravel().tolist()}]})
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = json.loads(resp.read())
            if resp.status != 200:
                raise RuntimeError(f"server answered {resp.status}: {data}")
            out = data["outputs"][0]
            return np.asarray(out["data"], np.float32).reshape(out["shape"])

        logits = np.concatenate([infer(x[i:i + 256]) for i in range(0, len(x), 256)])
        import onnxruntime as ort

        want = ort.InferenceSession(str(args.model)).run(None, {"input": x})[0]
        same = bool(np.allclose(logits, want, atol=1e-5))
        acc = float((logits.argmax(1) == y).mean())
        lat = []
        for i in range(args.requests):
            t0 = time.perf_counter()
            infer(x[i % len(x)][None])
            lat.append((time.perf_counter() - t0) * 1e3)
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
        psi = next(line.split()[-1] for line in text.splitlines()
                   if line.startswith("model_prediction_psi{"))
        n200 = next(line.split()[-1] for line in text.splitlines()
                    if line.startswith("model_requests_total{code=\"200\""))
        print(f"  {len(x)} held-out digits over HTTP: accuracy {acc:.4f}, logits "
              f"{'match' if same else 'DIFFER from'} in-process onnxruntime")
        print(f"  {args.requests} single requests: p50 {np.percentile(lat, 50):.2f} ms, "
              f"p99 {np.percentile(lat, 99):.2f} ms")
        print(f"  /metrics: model_requests_total{{code=\"200\"}} {n200}, "
              f"model_prediction_psi {float(psi):.4f}")
        ok = same
        conn.close()
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"scripts.smoke: error: {exc}", file=sys.stderr)
        ok = False
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    out = "".join(early) + out
    clean = proc.returncode == 0 and "stopped cleanly" in out
    print(f"  SIGTERM: {'drained and exited 0' if clean else 'did NOT stop cleanly'}")
    if not clean:
        print(out, file=sys.stderr)
    return 0 if ok and clean else 1


if __name__ == "__main__":
    sys.exit(main())
