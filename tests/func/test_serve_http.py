"""The serving runtime's HTTP layer as a real process: no client input yields a 5xx, every
error body is JSON (the HTTP layer's own too), 405 with Allow, HEAD, a short body gets 400,
idle connections cost no thread, SIGTERM drains while still answering, the duration histogram
leaves the upload out, and the bytes served are the bytes verified."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelops.fsutil import sha256_file
from scripts.fixtures import held_out, linear_model
from tests.conftest import ROOT

MODEL = "digits-cnn"
INFER = f"/v2/models/{MODEL}/infer"


def _start(model, *extra: str, sha: str | None = None, env: dict | None = None):
    cmd = [sys.executable, "-m", "modelops.serve", "--model", str(model),
           "--sha256", sha or sha256_file(model), "--model-version", "3", "--port", "0",
           *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={**os.environ, **(env or {})})
    lines = []
    port = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            port = int(m.group(1))
        if "serve: ready" in line:
            break
    assert port is not None, "".join(lines)
    proc.lines = lines
    return proc, port


def _drain_output(proc) -> str:
    out, _ = proc.communicate(timeout=60)
    return "".join(proc.lines) + out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("http")
    model = linear_model(d / "model.onnx")
    x, y = held_out(d, limit=64)
    return {"dir": d, "model": model, "x": x, "y": y}


@pytest.fixture(scope="module")
def server(artifacts):
    proc, port = _start(artifacts["model"], "--body-timeout", "1", "--max-batch", "64",
                        "--drain-seconds", "0")
    yield {"port": port, "pid": proc.pid}
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def _call(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(method, path, body, headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), data


def _raw(port, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as it is; the first response (headers and Content-Length body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        with contextlib.suppress(ConnectionError):
            s.sendall(data)
        got = b""
        with contextlib.suppress(TimeoutError, ConnectionError):
            while chunk := s.recv(65536):
                got += chunk
                head, sep, body = got.partition(b"\r\n\r\n")
                m = re.search(rb"(?i)content-length: (\d+)", head)
                if sep and m and len(body) >= int(m.group(1)):
                    break
        return got


def _status_and_body(reply: bytes) -> tuple[int, dict]:
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def _tensor(data, shape=(1, 1, 8, 8), datatype="FP32") -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(shape),
                                   "datatype": datatype, "data": data}]}).encode()


@pytest.mark.parametrize("body, words", [
    (_tensor([1e39] + [0.0] * 63), "beyond fp32 range"),
    (_tensor([-3.5e38] + [0.0] * 63), "beyond fp32 range"),
    (_tensor([1.7e308] + [0.0] * 63), "beyond fp32 range"),
    (b'{"inputs": [{"name": "input", "shape": [1,1,8,8], "datatype": "FP32", "data": [1e400'
     + b", 0" * 63 + b"]}]}", "nan, infinity"),
    (b'{"inputs": ' + b"[" * 50000 + b"]" * 50000 + b"}", "nested too deeply"),  # 100 KB
    (_tensor([[[[0.0] * 8] * 8]] * 2, shape=(1, 1, 8, 8)), "needs 64 values"),
    (_tensor([0] * 64, datatype="INT64"), "takes 'fp32'"),
    (_tensor([True] * 64), "needs numbers"),
    (_tensor(["x"] * 64), "needs numbers"),
    (_tensor([0.0] * 64, shape=(1, 1, 8, 7)), "shape[3]"),
    (_tensor([0.0] * 64, shape=(1, 64)), "dimensions"),
    (_tensor(None), "list of numbers"),
    (b'{"inputs": [{"name": "input", "shape": [1,1,8,8], "datatype": "FP32", "data": '
     + b"[[" * 30 + b"0" + b"]]" * 30 + b"}]}", "needs 64 values"),
])
def test_hostile_tensors_get_a_4xx_naming_the_problem(server, body, words):
    status, headers, data = _call(server["port"], "POST", INFER, body)
    assert 400 <= status < 500, data[:200]
    assert headers["Content-Type"] == "application/json"
    assert words in json.loads(data)["error"].lower()


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=5), inner,
                                                              max_size=4),
    max_leaves=30)
_inputs = st.fixed_dictionaries({
    "name": st.sampled_from(["input", "x", 1]),
    "shape": st.one_of(st.lists(st.integers(-2, 70), max_size=5), _json),
    "datatype": st.sampled_from(["FP32", "FP64", "INT64", "BOOL", "fp32", 3]),
    "data": st.one_of(_json, st.lists(st.floats(width=64), min_size=0, max_size=70)),
}, optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]), _json,
                                           max_size=2)})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.one_of(
    st.fixed_dictionaries({"inputs": st.lists(_inputs, max_size=2)},
                          optional={"outputs": _json, "parameters": _json, "id": _json}),
    _json))
def test_no_generated_body_gets_a_5xx(server, body):
    data = json.dumps(body, allow_nan=True).encode()
    status, _, reply = _call(server["port"], "POST", INFER, data)
    assert status < 500, (body, reply[:300])
    if status != 200:
        assert isinstance(json.loads(reply)["error"], str)


@pytest.mark.parametrize("raw, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/9.9\r\n\r\n", 400),
    (b"\x00\xff" * 50 + b"\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET /v2 HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"b" * 40000 + b"\r\n\r\n", 431),
    (b"PUT /v2/health/ready HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", 405),
    (b"TRACE /v2 HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"DELETE " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"BREW /v2 HTTP/1.1\r\nHost: x\r\n\r\n", 405),  # a method llhttp does not know
    (b"GET " + INFER.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"POST /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", 404),
])
def test_http_layer_errors_are_json(server, raw, status):
    got, body = _status_and_body(_raw(server["port"], raw))
    assert got == status
    assert isinstance(body["error"], str) and body["error"]


def test_405_says_what_is_allowed(server):
    status, headers, body = _call(server["port"], "PUT", "/v2/health/live", b"")
    assert status == 405 and headers["Allow"] == "GET, HEAD, OPTIONS"
    status, headers, body = _call(server["port"], "GET", INFER)
    assert status == 405 and headers["Allow"] == "POST, OPTIONS"
    assert "use POST" in json.loads(body)["error"]


def test_head_on_health_and_metadata(server):
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", f"/v2/models/{MODEL}",
                 "/metrics"):
        status, headers, body = _call(server["port"], "HEAD", path)
        assert status == 200, path
        assert body == b"" and int(headers["Content-Length"]) > 0, path


def test_a_body_shorter_than_its_content_length_gets_400(server, artifacts):
    body = _tensor(artifacts["x"][:1].ravel().tolist())
    head = (f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body) + 10}\r\n"
            "\r\n").encode()
    status, reply = _status_and_body(_raw(server["port"], head + body, timeout=20))
    assert status == 400
    assert "shorter than its content-length" in reply["error"]


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return int(next(line.split()[1] for line in fh if line.startswith("Threads:")))


def test_idle_keep_alive_connections_cost_no_thread(server, artifacts):
    before = _threads(server["pid"])
    socks = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", server["port"]), timeout=10)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
            socks.append(s)
        for s in socks:
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
        during = _threads(server["pid"])
        status, _, _ = _call(server["port"], "POST", INFER,
                             _tensor(artifacts["x"][:1].ravel().tolist()))
        assert status == 200  # a normal client is still answered
    finally:
        for s in socks:
            s.close()
    assert during <= before + 2, (before, during)


def test_the_histogram_measures_inference_not_the_upload(artifacts):
    proc, port = _start(artifacts["model"], "--drain-seconds", "0")
    try:
        body = _tensor(artifacts["x"][:1].ravel().tolist())
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
                      .encode() + body[:20])
            time.sleep(1.5)  # a slow client
            s.sendall(body[20:])
            assert s.recv(65536).startswith(b"HTTP/1.1 200")
        _, _, text = _call(port, "GET", "/metrics")
        line = next(v for v in text.decode().splitlines()
                    if v.startswith("model_request_duration_seconds_sum"))
        assert float(line.split()[-1]) < 0.75  # the 1.5 s upload is not in it
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_sigterm_drains_new_connections_still_answered(artifacts):
    proc, port = _start(artifacts["model"], "--drain-seconds", "3", "--inject-latency-ms",
                        "1000")
    body = _tensor(artifacts["x"][:1].ravel().tolist())
    result = {}

    def slow_call():
        result["in-flight"] = _call(port, "POST", INFER, body)[0]

    t = threading.Thread(target=slow_call)
    t.start()
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    status, _, _ = _call(port, "GET", "/v2/health/ready")
    assert status == 503  # not ready at once: the endpoints drop the pod
    status, headers, data = _call(port, "POST", INFER, body)  # a new connection, answered
    assert status == 200 and headers.get("Connection") == "close"
    t.join(20)
    out = _drain_output(proc)
    assert result["in-flight"] == 200
    assert proc.returncode == 0 and "stopped cleanly" in out


def test_the_bytes_served_are_the_bytes_verified(artifacts, tmp_path):
    """The artifact is a FIFO: it gives the released model to the first reader; right after
    the server says "verified" a tampered model is offered to anyone who opens the path again.
    A server that reopened the path after hashing would load and serve the tampered one."""
    good = artifacts["model"].read_bytes()
    tampered = linear_model(tmp_path / "shuffled.onnx", shuffled=True).read_bytes()
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)

    def offer(data: bytes) -> None:
        with contextlib.suppress(OSError), open(fifo, "wb") as fh:
            fh.write(data)

    threading.Thread(target=offer, args=(good,), daemon=True).start()
    cmd = [sys.executable, "-m", "modelops.serve", "--model", str(fifo), "--sha256",
           sha256_file(artifacts["model"]), "--port", "0", "--drain-seconds", "0"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    port = None
    try:
        for line in proc.stdout:
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
            if re.search(r"sha256 [0-9a-f]{64} verified", line):
                threading.Thread(target=offer, args=(tampered,), daemon=True).start()
            if "serve: ready" in line:
                break
        assert port is not None
        x = artifacts["x"][:16]
        status, _, data = _call(port, "POST", INFER, _tensor(x.ravel().tolist(), (16, 1, 8, 8)))
        assert status == 200
        got = np.array(json.loads(data)["outputs"][0]["data"], np.float32).reshape(16, 10)
        want = ort.InferenceSession(good).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
        with contextlib.suppress(OSError):  # release the offer nobody took
            os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
