"""The serving runtime as a real process on 127.0.0.1: readiness after the sha256 check, the
Open Inference Protocol (JSON and binary), clear 4xx, limits, metrics, graceful shutdown."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest

from modelops.fsutil import sha256_file
from scripts.canary_demo import read_port, wait_until
from scripts.fixtures import class_distribution, held_out, linear_model
from tests.conftest import ROOT

MODEL = "digits-cnn"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve")
    model = linear_model(d / "model.onnx")
    x, y = held_out(d, limit=200)
    baseline = d / "drift_baseline.json"
    baseline.write_text(json.dumps({"class_distribution": class_distribution(y)}))
    return {"dir": d, "model": model, "baseline": baseline, "x": x, "y": y}


def _start(artifacts, *extra: str, sha: str | None = None):
    cmd = [sys.executable, "-m", "modelops.serve", "--model", str(artifacts["model"]),
           "--sha256", sha or sha256_file(artifacts["model"]), "--model-version", "3",
           "--role", "canary", "--port", "0", "--drift-baseline",
           str(artifacts["baseline"]), "--psi-min-samples", "10", "--psi-window", "100", *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    port, _ = read_port(proc)
    return proc, port


@pytest.fixture(scope="module")
def server(artifacts):
    proc, port = _start(artifacts, "--max-request-bytes", "200000", "--max-batch", "256")
    wait_until(f"http://127.0.0.1:{port}/v2/health/ready", proc, "server")
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def _call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(method, path, body, headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def _infer_body(x):
    return json.dumps({"id": "r1", "inputs": [{"name": "input", "shape": list(x.shape),
                                               "datatype": "FP32",
                                               "data": x.ravel().tolist()}]})


def test_health_metadata_and_inference_match_onnxruntime(server, artifacts):
    assert _call(server, "GET", "/v2/health/live")[0] == 200
    assert _call(server, "GET", "/v2/health/ready")[0] == 200
    status, _, meta = _call(server, "GET", f"/v2/models/{MODEL}")
    meta = json.loads(meta)
    assert status == 200 and meta["versions"] == ["3"]
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 1, 8, 8]}]
    x = artifacts["x"][:32]
    status, _, body = _call(server, "POST", f"/v2/models/{MODEL}/infer", _infer_body(x))
    assert status == 200
    out = json.loads(body)
    assert out["id"] == "r1" and out["outputs"][0]["shape"] == [32, 10]
    want = ort.InferenceSession(str(artifacts["model"])).run(None, {"input": x})[0]
    got = np.array(out["outputs"][0]["data"], np.float32).reshape(32, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    status, _, _ = _call(server, "POST", f"/v2/models/{MODEL}/versions/3/infer", _infer_body(x))
    assert status == 200


def test_binary_fast_path(server, artifacts):
    x = artifacts["x"][:4]
    head = json.dumps({"inputs": [{"name": "input", "shape": [4, 1, 8, 8], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    status, headers, body = _call(server, "POST", f"/v2/models/{MODEL}/infer",
                                  head + x.tobytes(),
                                  {"Inference-Header-Content-Length": str(len(head))})
    assert status == 200
    hl = int(headers["Inference-Header-Content-Length"])
    logits = np.frombuffer(body[hl:], np.float32).reshape(4, 10)
    assert (logits.argmax(1) == artifacts["y"][:4]).all()


@pytest.mark.parametrize("path, body, status, words", [
    (f"/v2/models/{MODEL}/infer", b"{not json", 400, "not valid json"),
    (f"/v2/models/{MODEL}/infer",
     json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP64",
                             "data": [0] * 64}]}).encode(), 400, "takes 'fp32'"),
    (f"/v2/models/{MODEL}/infer",
     json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                             "data": [0] * 63 + [float("nan")]}]}).encode(), 400, "nan"),
    (f"/v2/models/{MODEL}/infer",
     json.dumps({"inputs": [{"name": "input", "shape": [300, 1, 8, 8], "datatype": "FP32",
                             "data": [0]}]}).encode(), 413, "--max-batch"),
    ("/v2/models/other/infer", b"{}", 404, "not served here"),
    (f"/v2/models/{MODEL}/versions/9/infer", b"{}", 404, "version 9"),
])
def test_bad_requests_get_clear_4xx_and_the_server_lives_on(server, path, body, status, words):
    got, _, data = _call(server, "POST", path, body)
    assert got == status
    assert words in json.loads(data)["error"].lower()
    assert _call(server, "GET", "/v2/health/live")[0] == 200


def test_oversized_body_is_refused_unread(server):
    with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
        s.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: x\r\n"
                  "Content-Length: 999999999\r\n\r\n".encode())
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 413")
    assert "--max-request-bytes" in reply


def test_garbage_bytes_do_not_crash_the_server(server):
    for junk in (b"\x00\xff" * 500 + b"\r\n\r\n", b"GET\r\n\r\n", b"POST / HTTP/9.9\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", server), timeout=10) as s:
            s.sendall(junk)
            s.settimeout(5)
            with contextlib.suppress(TimeoutError, ConnectionError):
                s.recv(4096)
    assert _call(server, "GET", "/v2/health/ready")[0] == 200


def test_metrics_count_requests_predictions_and_drift(server, artifacts):
    x = artifacts["x"][:50]
    _call(server, "POST", f"/v2/models/{MODEL}/infer", _infer_body(x))
    refused = _call(server, "POST", f"/v2/models/{MODEL}/infer", b'{"inputs": 1}')  # its own
    assert refused[0] == 400  # 400, whatever ran before
    _, _, text = _call(server, "GET", "/metrics")
    text = text.decode()
    lab = 'model="digits-cnn",role="canary",version="3"'
    assert f'model_requests_total{{code="400",{lab}}}' in text
    assert f'model_requests_total{{code="200",{lab}}}' in text
    assert f"model_request_duration_seconds_count{{{lab}}}" in text
    psi = float(next(line.split()[-1] for line in text.splitlines()
                     if line.startswith("model_prediction_psi{")))
    assert 0 <= psi < 0.2  # held-out digits predicted by a good model: little drift


def test_wrong_sha256_refuses_to_serve(artifacts):
    proc, _port = _start(artifacts, sha="0" * 64)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "does not match" in out and "refusing to serve" in out


def test_bad_flags_exit_2_with_one_line(artifacts):
    out = subprocess.run([sys.executable, "-m", "modelops.serve", "--model", "x.onnx", "--sha256",
                          "zz"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "--sha256: must be 64 hex digits (got 'zz')" in out.stderr
    assert "Traceback" not in out.stderr


def test_tensorrt_backend_without_tensorrt_is_a_clear_error(artifacts):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    out = subprocess.run([sys.executable, "-m", "modelops.serve", "--model",
                          str(artifacts["model"]),
                          "--no-verify", "--backend", "tensorrt", "--port", "0"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "tensorrt" in out.stderr and "--backend onnxruntime" in out.stderr


def test_sigterm_lets_in_flight_requests_finish(artifacts):
    proc, port = _start(artifacts, "--inject-latency-ms", "1500")
    wait_until(f"http://127.0.0.1:{port}/v2/health/ready", proc, "server")
    result = {}

    def slow_call():
        result["status"] = _call(port, "POST", f"/v2/models/{MODEL}/infer",
                                 _infer_body(artifacts["x"][:1]))[0]

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    t.join(20)
    out, _ = proc.communicate(timeout=20)
    assert result["status"] == 200
    assert proc.returncode == 0
    assert "stopped cleanly" in out


def test_smoke_command_of_the_demo(artifacts, tmp_path):
    env = {"PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "scripts.smoke", "--model",
                          str(artifacts["model"]), "--baseline", str(artifacts["baseline"]),
                          "--requests", "20"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **env})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "logits match in-process onnxruntime" in out.stdout
    assert "drained and exited 0" in out.stdout
    missing = subprocess.run([sys.executable, "-m", "scripts.smoke", "--model", "nope.onnx"],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60,
                             env={**os.environ, **env})
    assert missing.returncode == 2 and "nope.onnx: not found" in missing.stderr


def test_not_ready_until_the_verified_model_is_loaded(artifacts):
    """The HTTP side answers live at once, but ready and infer only once a backend is set
    (modelops-serve sets it after the sha256 check and the warm-up)."""
    from modelops.serve.backends import load_backend
    from modelops.serve.metrics import DriftWindow, ServingMetrics
    from modelops.serve.protocol import Limits
    from modelops.serve.server import ServingState, make_server

    state = ServingState(model=MODEL, version="3", limits=Limits(),
                         metrics=ServingMetrics(MODEL, "3", "canary", DriftWindow(None, 10, 1)))
    server = make_server("127.0.0.1", 0, state)
    port = server.server_address[1]
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        body = _infer_body(artifacts["x"][:1])
        assert _call(port, "GET", "/v2/health/live")[0] == 200
        assert _call(port, "GET", "/v2/health/ready")[0] == 503
        assert _call(port, "GET", f"/v2/models/{MODEL}/ready")[0] == 503
        status, _, data = _call(port, "POST", f"/v2/models/{MODEL}/infer", body)
        assert status == 503 and "not loaded yet" in json.loads(data)["error"]
        state.backend = load_backend("auto", artifacts["model"])
        assert _call(port, "GET", "/v2/health/ready")[0] == 200
        assert _call(port, "POST", f"/v2/models/{MODEL}/infer", body)[0] == 200
        state.draining = True  # SIGTERM: not ready any more, connections close
        status, headers, _ = _call(port, "GET", "/v2/health/ready")
        assert status == 503 and headers.get("Connection") == "close"
        assert _call(port, "POST", f"/v2/models/{MODEL}/infer", body)[0] == 200  # answered
    finally:
        server.shutdown()
        server.server_close()
