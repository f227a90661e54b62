"""The HTTP side of the runtime: a lean threaded HTTP/1.1 server (stdlib, keep-alive, no Nagle).

Chosen by measurement (see ``bench/serve.py`` and the README): for a model this small the
per-request cost is all framework, and a thread per connection over ``http.server`` with one
``write`` per response beats an ASGI stack; ONNX Runtime releases the GIL while it computes.

Routes (Open Inference Protocol, KServe v2): ``GET /v2``, ``/v2/health/live``,
``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``, ``/v2/models/{name}[/versions/{v}]
/ready``, ``POST /v2/models/{name}[/versions/{v}]/infer``, and ``GET /metrics``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from modelops.serve.backends import Backend
from modelops.serve.metrics import ServingMetrics
from modelops.serve.protocol import Limits, RequestError, decode, encode

SERVER_NAME = "modelops-serve"
SERVER_VERSION = "0.1.0"
_REASONS = {s.value: s.phrase for s in HTTPStatus}


@dataclass
class ServingState:
    """What the handlers share. ``backend`` is None until the artifact is verified and loaded."""

    model: str
    version: str
    limits: Limits
    metrics: ServingMetrics
    max_request_bytes: int = 8 << 20
    inject_latency_s: float = 0.0
    backend: Backend | None = None
    draining: bool = False
    inflight: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def ready(self) -> bool:
        return self.backend is not None and not self.draining

    def enter(self) -> None:
        with self._cond:
            self.inflight += 1

    def leave(self) -> None:
        with self._cond:
            self.inflight -= 1
            if self.inflight == 0:
                self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.inflight > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = f"{SERVER_NAME}/{SERVER_VERSION}"
    disable_nagle_algorithm = True
    timeout = 75  # idle keep-alive connections close after this many seconds
    state: ServingState  # set on the subclass made by make_server

    # ------------------------------------------------------------------ plumbing
    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        pass  # no per-request log line: it would cost more than the inference

    def _reply(self, code: int, body: bytes, ctype: str = "application/json",
               extra: tuple[tuple[str, str], ...] = ()) -> None:
        if self.state.draining:
            self.close_connection = True
        head = [f"HTTP/1.1 {code} {_REASONS.get(code, '')}",
                f"Server: {self.server_version}",
                f"Content-Type: {ctype}",
                f"Content-Length: {len(body)}"]
        head.extend(f"{k}: {v}" for k, v in extra)
        if self.close_connection:
            head.append("Connection: close")
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)

    def _json(self, code: int, obj: object) -> None:
        self._reply(code, json.dumps(obj, separators=(",", ":")).encode())

    def _error(self, code: int, message: str) -> None:
        self._json(code, {"error": message})

    def _model_path(self, path: str) -> tuple[str | None, str]:
        """Split ``/v2/models/{name}[/versions/{v}][/rest]`` into (rest, name check)."""
        parts = path.split("/")[3:]  # after '', 'v2', 'models'
        if not parts or parts[0] != self.state.model:
            return None, parts[0] if parts else ""
        rest = parts[1:]
        if len(rest) >= 2 and rest[0] == "versions":
            if rest[1] != self.state.version:
                return None, f"{parts[0]} version {rest[1]}"
            rest = rest[2:]
        return "/".join(rest), parts[0]

    # ------------------------------------------------------------------ routes
    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        st = self.state
        if path == "/metrics":
            self._reply(200, st.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")
        elif path == "/v2/health/live":
            self._json(200, {"live": True})
        elif path == "/v2/health/ready":
            self._json(200 if st.ready else 503, {"ready": st.ready})
        elif path == "/v2" or path == "/v2/":
            self._json(200, {"name": SERVER_NAME, "version": SERVER_VERSION,
                             "extensions": ["binary_tensor_data"]})
        elif path.startswith("/v2/models/"):
            rest, name = self._model_path(path)
            if rest is None:
                self._error(404, f"model {name!r} is not served here; this server serves "
                                 f"{st.model!r} version {st.version!r}")
            elif rest == "ready":
                self._json(200 if st.ready else 503,
                           {"name": st.model, "version": st.version, "ready": st.ready})
            elif rest == "":
                if st.backend is None:
                    self._error(503, "model is not loaded yet; retry when /v2/health/ready is "
                                     "200")
                    return
                self._json(200, {"name": st.model, "versions": [st.version],
                                 "platform": st.backend.platform,
                                 "inputs": [s.as_dict() for s in st.backend.inputs],
                                 "outputs": [s.as_dict() for s in st.backend.outputs]})
            else:
                self._error(404, f"no route GET {path!r}")
        else:
            self._error(404, f"no route GET {path!r}; see /v2 and /metrics")

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        path = self.path.split("?", 1)[0]
        if path.startswith("/v2/models/"):
            rest, name = self._model_path(path)
            if rest == "infer":
                self._infer()
                return
            if rest is None:
                self._drain_body()
                self._error(404, f"model {name!r} is not served here; this server serves "
                                 f"{self.state.model!r} version {self.state.version!r}")
                return
        self._drain_body()
        self._error(404, f"no route POST {path!r}")

    def _drain_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length and length.isdigit() and int(length) <= self.state.max_request_bytes:
            self.rfile.read(int(length))
        else:
            self.close_connection = True

    def _infer(self) -> None:
        st = self.state
        st.enter()
        start = time.perf_counter()
        code = 500
        try:
            code = self._infer_inner(st)
        except (ConnectionError, TimeoutError):
            raise
        except Exception as exc:  # a backend failure must not kill the connection silently
            import traceback

            traceback.print_exc()
            self.close_connection = True
            self._error(500, f"inference failed: {type(exc).__name__}: {str(exc)[:200]}")
        finally:
            st.metrics.duration.observe(time.perf_counter() - start)
            st.metrics.request(code)
            st.leave()

    def _infer_inner(self, st: ServingState) -> int:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(411, "send the body with a content-length header (chunked transfer "
                             "encoding is not accepted)")
            return 411
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self.close_connection = True
            self._error(411, f"a content-length header is required (got {length_text!r})")
            return 411
        length = int(length_text)
        if length > st.max_request_bytes:
            self.close_connection = True  # the body stays unread
            self._error(413, f"request body of {length} bytes is over this server's limit of "
                             f"{st.max_request_bytes} (--max-request-bytes); send smaller "
                             "batches")
            return 413
        body = self.rfile.read(length)
        if len(body) != length:
            self.close_connection = True
            return 400
        backend = st.backend
        if backend is None or st.draining:
            self._error(503, "model is not ready; retry when /v2/health/ready is 200")
            return 503
        header_len = self.headers.get("Inference-Header-Content-Length")
        try:
            hl = int(header_len) if header_len is not None else None
        except ValueError:
            self._error(400, f"inference-header-content-length must be an integer "
                             f"(got {header_len!r})")
            return 400
        try:
            req = decode(body, hl, backend.inputs, st.limits)
            outputs = backend.infer(req.feeds)
            if st.inject_latency_s:
                time.sleep(st.inject_latency_s)
            payload, out_hl = encode(st.model, st.version, req.id, backend.outputs, outputs,
                                     req.outputs, req.binary_outputs)
        except RequestError as exc:
            self._error(exc.status, exc.message)
            return exc.status
        except ValueError as exc:  # NaN in the output cannot be sent as JSON
            self._error(500, f"the model produced values that cannot be encoded: {exc}")
            return 500
        logits = outputs[0]
        if logits.ndim == 2 and logits.shape[1] > 1:
            st.metrics.predictions(np.argmax(logits, axis=1).tolist())
        if out_hl is None:
            self._reply(200, payload)
        else:
            self._reply(200, payload, "application/octet-stream",
                        (("Inference-Header-Content-Length", str(out_hl)),))
        return 200


class Server(ThreadingHTTPServer):
    daemon_threads = True  # idle keep-alive connections never block exit
    block_on_close = False
    request_queue_size = 256
    allow_reuse_address = True

    def handle_error(self, request, client_address) -> None:
        # a client that hangs up mid-request is normal; anything else is a bug worth a line
        import sys
        import traceback

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, socket.timeout, TimeoutError)):
            return
        traceback.print_exc()


def make_server(host: str, port: int, state: ServingState) -> Server:
    handler = type("BoundHandler", (Handler,), {"state": state})
    return Server((host, port), handler)
