"""Benchmark: this serving runtime vs KServe and MLServer, same model, same load generator.

    python bench/serve.py [--seconds 5] [--json out.json]

Load comes from wrk (an external C load generator: ``apt-get install wrk``), keep-alive
connections posting the same Open Inference Protocol body, at 1, 8 and 32 connections, batch
1 and 32. In the same run, against the same ONNX model with one ONNX Runtime intra-op thread
and one inference at a time everywhere:

- in-process ONNX Runtime (the floor: no HTTP, no JSON);
- ``modelops-serve --workers 1`` with JSON tensors, and with binary tensors;
- KServe 0.21 ``ModelServer`` (one worker) with a minimal ONNX Runtime ``Model``, its logging
  silenced *after* KServe configures it (KServe's own setup resets the access log to INFO; the
  bench checks that the server wrote no line per request);
- MLServer 1.7 through its custom-model path (an ``MLModel`` running ONNX Runtime: MLServer
  has no official ONNX runtime), ``debug: false`` (no access log), ``parallel_workers: 0``
  (inference in the server process, as the others).

KServe and MLServer live in their own virtual environments, created on first use
(``--kserve-venv``, ``--mlserver-venv``: ``pip install kserve==0.21.0`` / ``mlserver==1.7.1``
plus onnxruntime), so the project's lock stays free of them. Every server binds port 0; the
bench reads the ports it listens on from /proc. The table gives throughput, p50 and p99 (wrk's),
the throughput ratio against each baseline in the same cell, and p50 minus the in-process p50.
A last table times the runtime's hot path in process (decode, infer, encode, metrics).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "digits-cnn"
KSERVE_VERSION = "0.21.0"
MLSERVER_VERSION = "1.7.1"

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
    server = ModelServer(http_port=0, workers=1, enable_grpc=False,
                         enable_latency_logging=False)
    # KServe's ModelServer configures logging in its constructor (uvicorn.access at INFO):
    # quiet it afterwards, before uvicorn reads the levels
    for name in ("uvicorn.access", "kserve.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)
    server.start([model])
'''

MLSERVER_RUNTIME = r'''
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxModel(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(self.settings.parameters.uri, opts,
                                            providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32, copy=False)
        y = self.session.run(None, {"input": x})[0]
        return InferenceResponse(model_name=self.name, id=payload.id,
                                 outputs=[NumpyCodec.encode_output("logits", y)])
'''


# --------------------------------------------------------------------------- environment

def ensure_venv(venv: Path, package: str, check: str) -> Path:
    py = venv / "bin" / "python"
    if py.exists() and subprocess.run([py, "-c", f"import {check}, onnxruntime"],
                                      capture_output=True).returncode == 0:
        return py
    import onnxruntime

    print(f"==> creating {venv} with {package} (first run only)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", package,
                    f"onnxruntime=={onnxruntime.__version__}"], check=True)
    return py


def need_wrk() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        raise SystemExit("bench/serve.py needs wrk, an external load generator: "
                         "apt-get install wrk")
    return exe


def listening_ports(pid: int) -> list[int]:
    """TCP ports the process ``pid`` listens on (its socket inodes in /proc/net/tcp[6])."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        m = re.fullmatch(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:  # LISTEN
                    ports.append(int(cols[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


def wait_http(proc: subprocess.Popen, path: str, timeout: float = 120) -> int:
    """The port of ``proc`` that answers ``path`` with 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode} before it was ready")
        for port in listening_ports(proc.pid):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", path)
                if conn.getresponse().status == 200:
                    return port
            except (OSError, http.client.HTTPException):  # not ready, or not HTTP/1.1 (gRPC)
                pass
        time.sleep(0.3)
    raise SystemExit(f"server {proc.args[:3]} not ready after {timeout}s")


# --------------------------------------------------------------------------- load

def _bodies(x: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    if not binary:
        body = json.dumps({"id": "1", "inputs": [{"name": "input", "shape": list(x.shape),
                                                  "datatype": "FP32",
                                                  "data": x.ravel().tolist()}]})
        return body.encode(), {"Content-Type": "application/json"}
    head = json.dumps({"id": "1",
                       "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    return head + x.tobytes(), {"Content-Type": "application/octet-stream",
                                "Inference-Header-Content-Length": str(len(head))}


def _check_once(port: int, path: str, body: bytes, headers: dict) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body, headers)
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise SystemExit(f"port {port} answered {resp.status}: {data[:200]!r}")


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if m is None:
        raise SystemExit(f"wrk printed a latency this bench cannot read: {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60e3, "h": 3600e3}[unit]


def wrk(exe: str, work: Path, port: int, path: str, body: bytes, headers: dict,
        connections: int, seconds: float) -> dict:
    script = work / f"post-{len(body)}-{abs(hash(tuple(headers.items())))}.lua"
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(body)}"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    threads = 1 if connections == 1 else 2
    out = subprocess.run([exe, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s",
                          "--latency", "-s", str(script), f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    # the percentiles are lines of their own ("     99%    2.46ms"): a "+/- Stdev" column
    # such as "98.99%" must not match
    found = [re.search(p, out, re.M) for p in (r"Requests/sec:\s+([\d.]+)",
                                               r"^\s*50%\s+(\S+)$", r"^\s*99%\s+(\S+)$")]
    if not all(found):
        raise SystemExit(f"wrk's output has no throughput or latency percentiles:\n{out}")
    rps = float(found[0].group(1))
    p50, p99 = _ms(found[1].group(1)), _ms(found[2].group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"throughput": rps, "p50_ms": p50, "p99_ms": p99, "requests": total,
            "non_2xx": int(bad.group(1)) if bad else 0,
            "socket_errors": errors.group(1) if errors else ""}


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
    return {"throughput": len(lat) / took, "p50_ms": float(np.percentile(arr, 50) * 1e3),
            "p99_ms": float(np.percentile(arr, 99) * 1e3), "requests": len(lat), "non_2xx": 0,
            "socket_errors": ""}


def hot_path(model: Path, x_all: np.ndarray, batches: list[int], baseline: Path,
             n: int = 2000, flush_every: int = 500) -> list[dict]:
    """Microseconds per request of each step of the runtime's inference path, in process.

    ``metrics`` is what every request pays without input monitoring (duration histogram,
    request counter, queueing the class scores); ``monitor`` what input monitoring adds on
    the request path (queueing the request); ``off_path`` the bulk work done by the
    monitor's thread, here every ``flush_every`` requests, divided by the requests it
    covered: counting the predicted classes and the prediction-drift window, the quality
    counters, the confidence histogram and keeping the sliding window's rows (binned only at
    a scrape, not timed here).
    """
    from modelops.drift import load_features
    from modelops.serve.backends import load_backend
    from modelops.serve.metrics import DriftWindow, ServingMetrics
    from modelops.serve.monitor import InputMonitor
    from modelops.serve.protocol import Limits, decode, encode

    backend = load_backend("onnxruntime", model, threads=1)
    metrics = ServingMetrics(MODEL, "1", "stable", DriftWindow([0.1] * 10, 1000, 100))
    features = load_features(baseline)
    monitor = InputMonitor(metrics, features)
    monitor.bind(backend.inputs)
    rows = []
    for b in batches:
        body, _ = _bodies(np.ascontiguousarray(x_all[:b]), False)
        times = {"decode": 0.0, "infer": 0.0, "encode": 0.0, "metrics": 0.0, "monitor": 0.0,
                 "off_path": 0.0}
        for i in range(n):
            t0 = time.perf_counter()
            req = decode(body, None, backend.inputs, Limits())
            t1 = time.perf_counter()
            outs = backend.infer(req.feeds)
            t2 = time.perf_counter()
            encode(MODEL, "1", req, backend.outputs, outs)
            t3 = time.perf_counter()
            metrics.duration.observe(t3 - t0)
            metrics.request(200)
            metrics.answered(outs[0])
            t4 = time.perf_counter()
            monitor.observe(req.feeds.get(monitor.input_name), outs[0])
            t5 = time.perf_counter()
            for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                times[k] += dt
            if (i + 1) % flush_every == 0:
                t6 = time.perf_counter()
                metrics.settle()
                monitor.flush(publish=False)  # as the thread does; a scrape bins the window
                times["off_path"] += time.perf_counter() - t6
        rows.append({"batch": b, "features": features.count if features else 0,
                     **{k: v / n * 1e6 for k, v in times.items()}})
    return rows


def feature_baseline(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    """A drift baseline with per-feature quantile bins of ``x`` (for a model other than the
    pipeline's, whose own baseline does not fit it)."""
    from scripts.fixtures import class_distribution, feature_section

    path.write_text(json.dumps({"model": MODEL, "class_distribution": class_distribution(y),
                                "features": feature_section(x)}))
    return path


# --------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="per cell (default 5)")
    ap.add_argument("--model", type=Path,
                    help="ONNX model (default: models/model.onnx if present, else a small "
                         "fixture model with the same interface)")
    tmp = Path(tempfile.gettempdir())
    ap.add_argument("--kserve-venv", type=Path, default=tmp / "kserve-venv")
    ap.add_argument("--mlserver-venv", type=Path, default=tmp / "mlserver-venv")
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--connections", default="1,8,32")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--drift-baseline", type=Path,
                    help="the monitored server's baseline (default: "
                         "metrics/drift_baseline.json with models/model.onnx, else one made "
                         "from the held-out digits)")
    ap.add_argument("--servers", default="serve,kserve,mlserver",
                    help="which servers to load (default: all three; 'serve' alone skips "
                         "the baselines' venvs)")
    args = ap.parse_args(argv)

    from modelops.fsutil import sha256_file
    from scripts.fixtures import held_out, linear_model

    exe = need_wrk()
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    model = args.model or (ROOT / "models" / "model.onnx")
    if not model.is_file():
        model = linear_model(work / "model.onnx")
    x_all, y_all = held_out(ROOT)
    baseline = args.drift_baseline or ROOT / "metrics" / "drift_baseline.json"
    if not baseline.is_file() or model != ROOT / "models" / "model.onnx":
        baseline = feature_baseline(work / "drift_baseline.json", x_all, y_all)
    batches = [int(b) for b in args.batches.split(",")]
    conns = [int(c) for c in args.connections.split(",")]
    chosen = set(args.servers.split(","))
    kpy = (ensure_venv(args.kserve_venv, f"kserve=={KSERVE_VERSION}", "kserve")
           if "kserve" in chosen else None)
    mpy = (ensure_venv(args.mlserver_venv, f"mlserver=={MLSERVER_VERSION}", "mlserver")
           if "mlserver" in chosen else None)
    wrk_version = subprocess.run([exe, "-v"], capture_output=True, text=True).stdout.split(
        "\n")[0]
    print(f"==> model {model.name} ({model.stat().st_size / 1024:.0f} KiB), "
          f"{os.cpu_count()} CPU(s), {args.seconds:g}s per cell, load from {wrk_version}",
          flush=True)

    procs: dict[str, subprocess.Popen] = {}
    logs: dict[str, Path] = {}

    def spawn(name: str, cmd: list[str], cwd: Path) -> subprocess.Popen:
        logs[name] = work / f"{name}.log"
        fh = open(logs[name], "wb")  # noqa: SIM115 - lives as long as the process
        procs[name] = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT)
        return procs[name]

    results: list[dict] = []
    try:
        common = [sys.executable, "-m", "modelops.serve", "--model", str(model), "--sha256",
                  sha256_file(model), "--port", "0", "--threads", "1", "--workers", "1"]
        # production settings: the release's baseline, prediction drift and input monitoring
        ours = spawn("serve", [*common, "--drift-baseline", str(baseline)], ROOT)
        # the same server with neither baseline nor input monitoring: the cost of monitoring
        bare = spawn("serve-bare", [*common, "--no-input-monitoring"], ROOT)
        ports = {"serve": wait_http(ours, "/v2/health/ready"),
                 "serve-bare": wait_http(bare, "/v2/health/ready")}
        servers = [("serve (json)", "serve", False), ("serve (binary)", "serve", True),
                   ("serve unmonitored (json)", "serve-bare", False)]
        if kpy is not None:
            (work / "kserve_server.py").write_text(KSERVE_SERVER)
            ks = spawn("kserve", [str(kpy), str(work / "kserve_server.py"), MODEL, str(model)],
                       work)
            ports["kserve"] = wait_http(ks, f"/v2/models/{MODEL}/ready")
            servers.append(("kserve 0.21 (json)", "kserve", False))
        if mpy is not None:
            mdir = work / "mlserver"
            mdir.mkdir()
            (mdir / "onnx_runtime.py").write_text(MLSERVER_RUNTIME)
            (mdir / "settings.json").write_text(json.dumps({
                "debug": False, "parallel_workers": 0, "http_port": 0, "grpc_port": 0,
                "metrics_port": 0, "host": "127.0.0.1", "load_models_at_startup": True}))
            (mdir / "model-settings.json").write_text(json.dumps({
                "name": MODEL, "implementation": "onnx_runtime.OnnxModel",
                "parameters": {"uri": str(model)}}))
            ml = spawn("mlserver", [str(Path(mpy).parent / "mlserver"), "start", str(mdir)],
                       mdir)
            ports["mlserver"] = wait_http(ml, f"/v2/models/{MODEL}/ready")
            servers.append(("mlserver 1.7 (json)", "mlserver", False))
        infer = f"/v2/models/{MODEL}/infer"
        for _name, key, binary in servers:  # every server answers right before measuring
            body, headers = _bodies(np.ascontiguousarray(x_all[:1]), binary)
            _check_once(ports[key], infer, body, headers)
        quiet_before = {k: logs[k].stat().st_size for k in ports}
        for b in batches:
            x = np.ascontiguousarray(x_all[:b])
            floor = measure_inprocess(model, x, args.seconds)
            results.append({"server": "onnxruntime in-process", "batch": b, "connections": 1,
                            **floor})
            print(f"  batch {b:>2}  in-process onnxruntime        {floor['throughput']:>8.0f}/s"
                  f"  p50 {floor['p50_ms']:.3f} ms", flush=True)
            for c in conns:
                for name, key, binary in servers:
                    body, headers = _bodies(x, binary)
                    r = wrk(exe, work, ports[key], infer, body, headers, c, args.seconds)
                    if r["non_2xx"] or not r["requests"]:
                        raise SystemExit(f"{name}: {r['non_2xx']} non-2xx answers of "
                                         f"{r['requests']}; the comparison would be void")
                    results.append({"server": name, "batch": b, "connections": c, **r})
                    print(f"  batch {b:>2}  connections {c:>2}  {name:<20} "
                          f"{r['throughput']:>8.0f}/s  p50 {r['p50_ms']:.3f} ms  "
                          f"p99 {r['p99_ms']:.3f} ms", flush=True)
        total = sum(r["requests"] for r in results if r["server"] == "serve (json)")
        grown = {k: logs[k].stat().st_size - quiet_before[k] for k in quiet_before}
        print(f"==> log bytes written while measured ({total} JSON requests to serve): {grown}")
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['serve']}/metrics",
                                    timeout=10) as r:
            exported = r.read().decode()
        dropped = re.search(r"model_input_monitor_dropped_total\{[^}]*\} (\S+)", exported)
        print(f"==> requests the input monitor left out under load: "
              f"{dropped[1] if dropped else 'n/a'}")
        if any(v > 4096 for v in grown.values()):
            raise SystemExit(f"a server logged while measured ({grown}); the bench must "
                             "measure quiet servers")
    finally:
        for p in procs.values():
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
    print_table(results)
    hot = hot_path(model, x_all, batches, baseline)
    print("\n| hot path, us per request | batch | decode | infer | encode | metrics | "
          "+ input monitor, request path | + input monitor, off path (amortised) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in hot:
        print(f"| modelops-serve in process ({r['features']} features) | {r['batch']} | "
              f"{r['decode']:.1f} | {r['infer']:.1f} | {r['encode']:.1f} | "
              f"{r['metrics']:.1f} | {r['monitor']:.2f} | {r['off_path']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps({"cells": results, "hot_path": hot}, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def print_table(results: list[dict]) -> None:
    floor = {r["batch"]: r for r in results if r["server"] == "onnxruntime in-process"}
    base = {(r["server"].split()[0], r["batch"], r["connections"]): r for r in results}
    bare = {(r["batch"], r["connections"]): r for r in results
            if r["server"] == "serve unmonitored (json)"}
    print()
    print("| server | batch | connections | req/s | p50 ms | p99 ms | vs KServe | vs MLServer "
          "| vs unmonitored | p50 - in-process |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        cells = []
        for other in ("kserve", "mlserver"):
            o = base.get((other, r["batch"], r["connections"]))
            cells.append(f"{r['throughput'] / o['throughput']:.2f}x"
                         if o and r["server"].startswith("serve") else "-")
        b = bare.get((r["batch"], r["connections"]))
        cells.append(f"{r['throughput'] / b['throughput']:.2f}x"
                     if b and r["server"] == "serve (json)" else "-")
        extra = r["p50_ms"] - floor[r["batch"]]["p50_ms"]
        print(f"| {r['server']} | {r['batch']} | {r['connections']} | {r['throughput']:.0f} | "
              f"{r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {cells[0]} | {cells[1]} | {cells[2]} | "
              f"+{extra:.3f} ms |")


if __name__ == "__main__":
    sys.exit(main())
