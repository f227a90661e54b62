"""Benchmark: this serving runtime vs the KServe Python model server, same model, same client.

    python bench/serve.py [--seconds 3] [--kserve-venv /tmp/kserve-venv] [--json out.json]

One run measures, on this machine:
- in-process ONNX Runtime (the floor: no HTTP, no JSON);
- ``modelops-serve`` with JSON tensors and with binary tensors (the fast path);
- KServe's ``ModelServer`` (``kserve`` from PyPI, a minimal ONNX Runtime ``Model`` class), JSON
  tensors over its v2 REST endpoint;
at batch 1 and 32, with 1 and 16 concurrent clients (keep-alive connections, one thread each,
in a separate client process so the client does not share the server's interpreter). Every
server runs ONNX Runtime with one intra-op thread and logs nothing per request.

KServe lives in its own virtual environment (created here on first use: ``pip install
kserve==0.21.0 onnxruntime``) so the project's lock stays lean. The table prints throughput,
p50 and p99, the throughput ratio against KServe in the same cell and p50 minus the in-process
floor.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "digits-cnn"
KSERVE_VERSION = "0.21.0"

KSERVE_SERVER = r'''
import logging, sys
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer

class OnnxModel(Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self):
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.ready = True
        return True

    def predict(self, payload: InferRequest, headers=None, response_headers=None):
        x = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        y = self.session.run(None, {"input": x})[0]
        out = InferOutput(name="logits", shape=list(y.shape), datatype="FP32")
        out.set_data_from_numpy(y, binary_data=False)
        return InferResponse(model_name=self.name, infer_outputs=[out],
                             response_id=payload.id or "0")

if __name__ == "__main__":
    model = OnnxModel(sys.argv[1], sys.argv[2])
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    ModelServer(http_port=int(sys.argv[3]), workers=1, enable_grpc=False,
                enable_latency_logging=False).start([model])
'''


# --------------------------------------------------------------------------- environment

def ensure_kserve(venv: Path) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", "import kserve, onnxruntime"],
                                      capture_output=True).returncode == 0:
        return py
    print(f"==> creating {venv} with kserve=={KSERVE_VERSION} (first run only)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    import onnxruntime

    subprocess.run([py, "-m", "pip", "install", "-q", f"kserve=={KSERVE_VERSION}",
                    f"onnxruntime=={onnxruntime.__version__}"], check=True)
    return py


def _free_port() -> int:
    from scripts.canary_demo import free_port

    return free_port()


def _wait_ready(port: int, proc: subprocess.Popen, path: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"server on {port} not ready after {timeout}s")


# --------------------------------------------------------------------------- client

def _bodies(x: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    if not binary:
        body = json.dumps({"id": "1", "inputs": [{"name": "input", "shape": list(x.shape),
                                       "datatype": "FP32", "data": x.ravel().tolist()}]})
        return body.encode(), {"Content-Type": "application/json"}
    head = json.dumps({"id": "1",
                       "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return head + x.tobytes(), {"Content-Type": "application/octet-stream",
                                "Inference-Header-Content-Length": str(len(head))}


def _client_process(port: int, path: str, body: bytes, headers: dict, clients: int,
                    seconds: float, out: mp.Queue) -> None:
    lat: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start_evt = threading.Event()
    stop_at = [0.0]

    def worker(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", path, body, headers)  # warm the connection
        conn.getresponse().read()
        start_evt.wait()
        mine = lat[i]
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at[0]:
                break
            try:
                conn.request("POST", path, body, headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except OSError:
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append(time.perf_counter() - t0)
            if not ok:
                errors[i] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t_start = time.perf_counter()
    stop_at[0] = t_start + seconds
    start_evt.set()
    for t in threads:
        t.join()
    took = time.perf_counter() - t_start
    all_lat = np.array([v for chunk in lat for v in chunk])
    out.put({"requests": int(all_lat.size), "seconds": took, "errors": int(sum(errors)),
             "p50_ms": float(np.percentile(all_lat, 50) * 1e3) if all_lat.size else None,
             "p99_ms": float(np.percentile(all_lat, 99) * 1e3) if all_lat.size else None})


def measure_http(port: int, path: str, x: np.ndarray, clients: int, seconds: float,
                 binary: bool) -> dict:
    body, headers = _bodies(x, binary)
    q: mp.Queue = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=_client_process,
                                       args=(port, path, body, headers, clients, seconds, q))
    p.start()
    res = q.get(timeout=seconds + 120)
    p.join()
    res["throughput"] = res["requests"] / res["seconds"]
    return res


def measure_inprocess(model: Path, x: np.ndarray, seconds: float) -> dict:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    for _ in range(50):
        sess.run(None, {"input": x})
    lat = []
    t_start = time.perf_counter()
    end = t_start + seconds
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        sess.run(None, {"input": x})
        lat.append(time.perf_counter() - t0)
    took = time.perf_counter() - t_start
    arr = np.array(lat)
    return {"requests": len(lat), "seconds": took, "errors": 0, "throughput": len(lat) / took,
            "p50_ms": float(np.percentile(arr, 50) * 1e3),
            "p99_ms": float(np.percentile(arr, 99) * 1e3)}


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="per cell (default 3)")
    ap.add_argument("--model", type=Path,
                    help="ONNX model (default: models/model.onnx if present, else a small "
                         "fixture model with the same interface)")
    ap.add_argument("--kserve-venv", type=Path, default=Path(tempfile.gettempdir()) /
                    "kserve-venv", help="virtual environment for kserve (created if missing)")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--clients", default="1,16")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)

    from modelops.fsutil import sha256_file
    from scripts.fixtures import held_out, linear_model

    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = args.model or (ROOT / "models" / "model.onnx")
    if not model.is_file():
        model = linear_model(work / "model.onnx")
    x_all, _ = held_out(ROOT)
    batches = [int(b) for b in args.batches.split(",")]
    clients = [int(c) for c in args.clients.split(",")]
    kpy = ensure_kserve(args.kserve_venv)
    print(f"==> model {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model.name} "
          f"({model.stat().st_size / 1024:.0f} KiB), {os.cpu_count()} CPU(s), "
          f"{args.seconds:.0f}s per cell", flush=True)

    procs: list[subprocess.Popen] = []
    results: list[dict] = []
    try:
        ours_port = _free_port()
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "modelops.serve", "--model", str(model), "--sha256",
             sha256_file(model), "--port", str(ours_port), "--threads", "1"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        ks_port = _free_port()
        script = work / "kserve_server.py"
        script.write_text(KSERVE_SERVER)
        procs.append(subprocess.Popen([str(kpy), str(script), MODEL, str(model), str(ks_port)],
                                      cwd=work, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        _wait_ready(ours_port, procs[0], "/v2/health/ready")
        _wait_ready(ks_port, procs[1], f"/v2/models/{MODEL}/ready")
        infer = f"/v2/models/{MODEL}/infer"
        for b in batches:
            x = np.ascontiguousarray(x_all[:b])
            floor = measure_inprocess(model, x, args.seconds)
            results.append({"server": "onnxruntime in-process", "batch": b, "clients": 1,
                            **floor})
            print(f"  batch {b:>2}  in-process onnxruntime       {floor['throughput']:>8.0f}/s",
                  flush=True)
            for c in clients:
                for name, port, binary in (("serve (json)", ours_port, False),
                                           ("serve (binary)", ours_port, True),
                                           ("kserve (json)", ks_port, False)):
                    r = measure_http(port, infer, x, c, args.seconds, binary)
                    if r["errors"] or not r["requests"]:
                        raise SystemExit(f"{name}: {r['errors']} error responses of "
                                         f"{r['requests']}; the comparison would be void")
                    results.append({"server": name, "batch": b, "clients": c, **r})
                    print(f"  batch {b:>2}  clients {c:>2}  {name:<16} "
                          f"{r['throughput']:>8.0f}/s  p50 {r['p50_ms']:.2f} ms  "
                          f"errors {r['errors']}", flush=True)
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def print_table(results: list[dict]) -> None:
    floor = {r["batch"]: r for r in results if r["server"] == "onnxruntime in-process"}
    ks = {(r["batch"], r["clients"]): r for r in results if r["server"] == "kserve (json)"}
    print()
    print(f"| {'server':<24} | batch | clients | req/s | p50 ms | p99 ms | vs KServe req/s "
          "| p50 - in-process |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        k = ks.get((r["batch"], r["clients"]))
        ratio = (f"{r['throughput'] / k['throughput']:.2f}x"
                 if k and r["server"] != "onnxruntime in-process" else "-")
        extra = r["p50_ms"] - floor[r["batch"]]["p50_ms"]
        print(f"| {r['server']:<24} | {r['batch']} | {r['clients']} | {r['throughput']:.0f} | "
              f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {ratio} | +{extra:.3f} ms |")


if __name__ == "__main__":
    sys.exit(main())
