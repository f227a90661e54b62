"""The HTTP side of the runtime: ``workers`` event loops (asyncio; uvloop when installed), one
thread each, sharing one listening socket, parsing HTTP/1.1 with ``httptools`` (llhttp, the
parser Node.js and uvicorn use) and running each inference inline on the loop of its connection.

Chosen by measurement (``bench/serve.py``, docs/how-to/serve.md): for a model this small the
per-request cost is all framework; handing each request to a thread pool and back cost ~70 us
(a quarter of the whole round trip at batch 1), so each loop computes its own requests (ONNX
Runtime releases the GIL while it computes, so ``workers`` inferences run at once). When the
recent inference time is over 5 ms, requests go to a pool of ``workers`` threads instead, so a
slow model never keeps a loop from answering probes and scrapes. A connection
costs a few kilobytes, not a thread, so idle keep-alive clients exhaust nothing; a connection
reads its next request only after answering the previous one (back-pressure, no unbounded
queue); at most ``max_connections`` are held.

Routes (Open Inference Protocol, KServe v2): ``GET|HEAD /v2``, ``/v2/health/live``,
``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]``, ``.../ready``, ``POST .../infer``,
and ``GET|HEAD /metrics``. Every error, the HTTP layer's included (bad request line, URL or
headers too long, unknown method, short body), is ``{"error": "..."}`` with the right status;
a method a route does not take gets 405 with ``Allow``.

Shutdown (:meth:`ServingServer.stop`): readiness turns 503 at once while every request, on new
connections too, is still answered (with ``Connection: close``) for ``drain`` seconds, the time
Kubernetes takes to drop the pod from its Service endpoints; then the listener closes, idle
connections close, and in-flight requests get up to ``grace`` seconds to finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import sys
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import httptools
import orjson

from modelops.serve.backends import Backend, BackendInputError
from modelops.serve.metrics import ServingMetrics
from modelops.serve.protocol import Limits, RequestError, decode, encode

SERVER_NAME = "modelops-serve"
SERVER_VERSION = "0.2.0"
MAX_URL_BYTES = 8 << 10  # longer request targets get 414
MAX_HEADER_BYTES = 32 << 10  # larger header sections get 431
MAX_HEADERS = 100
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_SERVER_HEADER = f"Server: {SERVER_NAME}/{SERVER_VERSION}\r\n".encode()
_JSON = b"application/json"
_READ = ("GET", "HEAD")
_REQUEST_LINE = re.compile(rb"[A-Z][A-Z-]{0,31} [!-~]+ HTTP/1\.[01]\r?\n")


@dataclass
class ServingState:
    """What the connections share. ``backend`` is None until the artifact is verified and
    loaded; ``draining`` is set on SIGTERM (readiness 503, connections close after answering)."""

    model: str
    version: str
    limits: Limits
    metrics: ServingMetrics
    max_request_bytes: int = 8 << 20
    inject_latency_s: float = 0.0
    backend: Backend | None = None
    draining: bool = False
    body_timeout: float = 30.0  # a started request must be complete within this many seconds
    idle_timeout: float = 75.0  # idle keep-alive connections close after this many seconds
    max_connections: int = 4096
    monitor: Any = None  # a modelops.serve.monitor.InputMonitor, fed after each answer

    @property
    def ready(self) -> bool:
        return self.backend is not None and not self.draining


class _Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    target: bytes
    path: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    keep_alive: bool = True
    received: float = 0.0  # perf_counter when the whole body was in


def _error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, answer requests in order, one at a time."""

    __slots__ = ("srv", "st", "worker", "transport", "parser", "req", "queue", "busy",
                 "closing", "timer", "header_bytes", "body_len", "expect_len")

    def __init__(self, srv: ServingServer, worker: _Worker):
        self.srv = srv
        self.worker = worker
        self.st = srv.state
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.req: Request | None = None
        self.queue: deque[Request] = deque()
        self.busy = False
        self.closing = False
        self.timer: asyncio.TimerHandle | None = None
        self.header_bytes = 0
        self.body_len = 0
        self.expect_len: int | None = None

    # ------------------------------------------------------------------ transport events
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        st = self.st
        if self.srv.connection_count() >= st.max_connections:
            self._send_error(503, f"this server holds its limit of {st.max_connections} "
                                  "connections; retry later", close=True)
            return
        self.worker.connections.add(self)
        self._arm(st.idle_timeout, self._idle_timeout)

    def connection_lost(self, exc) -> None:
        self.worker.connections.discard(self)
        self.closing = True
        self._disarm()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except _Reject as exc:
            self._send_error(exc.status, exc.message, close=True)
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, _Reject):
                self._send_error(cause.status, cause.message, close=True)
            else:
                traceback.print_exception(cause or exc)
                self._send_error(500, "internal error while reading the request", close=True)
        except httptools.HttpParserUpgrade:
            if self.req is not None and not self.queue:
                self._send_error(400, "protocol upgrades are not supported; send plain "
                                      "HTTP/1.1", close=True)
        except httptools.HttpParserInvalidMethodError:
            if _REQUEST_LINE.match(data):  # a well-formed line with a method nobody knows
                self._send_error(405, "unknown http method; this server takes GET, HEAD and "
                                      "POST", close=True,
                                 extra=(("Allow", "GET, HEAD, POST, OPTIONS"),))
            else:
                self._send_error(400, "malformed request line; send an HTTP/1.1 request",
                                 close=True)
        except httptools.HttpParserError as exc:
            reason = str(exc) or type(exc).__name__
            self._send_error(400, f"malformed http request ({reason})", close=True)

    def eof_received(self):
        # every complete request was answered inline; a half-sent one gets a last word
        if self.req is not None and self.expect_len is not None and self.req.method:
            self._send_error(400, self._short_body_message("the client closed its side"),
                             close=True)
        return False

    # ------------------------------------------------------------------ parser callbacks
    def on_message_begin(self) -> None:
        self.req = Request(method="", target=b"")
        self.header_bytes = 0
        self.body_len = 0
        self.expect_len = None
        self._arm(self.st.body_timeout, self._request_timeout)

    def on_url(self, url: bytes) -> None:
        req = self.req
        req.target += url
        if len(req.target) > MAX_URL_BYTES:
            raise _Reject(414, f"request target is over {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        headers = self.req.headers
        if self.header_bytes > MAX_HEADER_BYTES or len(headers) >= MAX_HEADERS:
            raise _Reject(431, f"request headers are over {MAX_HEADER_BYTES} bytes or "
                               f"{MAX_HEADERS} fields")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        req = self.req
        req.method = self.parser.get_method().decode("ascii", "replace")
        req.keep_alive = self.parser.should_keep_alive()
        try:
            path = httptools.parse_url(req.target).path
        except httptools.HttpParserInvalidURLError:
            raise _Reject(400, f"malformed request target {req.target[:80]!r}") from None
        req.path = path.decode("latin-1")
        length = req.headers.get("content-length")
        chunked = "chunked" in req.headers.get("transfer-encoding", "").lower()
        if length is not None:
            if not length.isdigit():
                raise _Reject(400, f"content-length must be a number of bytes "
                                   f"(got {length[:40]!r})")
            self.expect_len = int(length)
        elif chunked:
            self.expect_len = -1  # until the last chunk
        limit = self.st.max_request_bytes
        if self.expect_len is not None and self.expect_len > limit:
            raise _Reject(413, f"request body of {self.expect_len} bytes is over this server's "
                               f"limit of {limit} (--max-request-bytes); send smaller batches")
        if (self.expect_len and req.headers.get("expect", "").lower() == "100-continue"
                and self.transport is not None):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, chunk: bytes) -> None:
        self.body_len += len(chunk)
        if self.body_len > self.st.max_request_bytes:
            raise _Reject(413, f"request body is over this server's limit of "
                               f"{self.st.max_request_bytes} bytes (--max-request-bytes); "
                               "send smaller batches")
        self.req.body += chunk

    def on_message_complete(self) -> None:
        req = self.req
        self.req = None
        self.expect_len = None
        self._disarm()
        req.received = time.perf_counter()
        self.queue.append(req)
        if not self.busy:
            self._next()

    # ------------------------------------------------------------------ timeouts
    def _arm(self, seconds: float, callback) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = self.worker.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _idle_timeout(self) -> None:
        self.timer = None
        if not self.busy and not self.queue and self.req is None:
            self._close()

    def _short_body_message(self, why: str) -> str:
        return (f"request body is shorter than its content-length: got {self.body_len} of "
                f"{self.expect_len} bytes ({why})")

    def _request_timeout(self) -> None:
        self.timer = None
        if self.req is None:
            return
        secs = self.st.body_timeout
        if self.req.method:  # headers are in: the body is short
            if self.expect_len is not None and self.expect_len >= 0:
                msg = self._short_body_message(f"nothing more within {secs:g}s")
            else:
                msg = f"request body not complete within {secs:g}s"
            self._send_error(400, msg, close=True)
        else:
            self._send_error(408, f"request headers not complete within {secs:g}s", close=True)

    # ------------------------------------------------------------------ answering
    def _next(self) -> None:
        while self.queue and not self.closing:
            req = self.queue.popleft()
            if req.method == "POST" and self._infer_route(req.path):
                self.worker.inflight += 1
                if self.srv.slow():  # keep this loop free for probes, scrapes, others
                    self.busy = True
                    self.transport.pause_reading()
                    fut = self.worker.loop.run_in_executor(self.srv.pool, self.srv.infer, req)
                    fut.add_done_callback(lambda f, r=req: self._infer_done(r, f))
                    return
                try:
                    answer = self.srv.infer(req)
                except Exception as exc:  # a bug: say so and keep serving
                    traceback.print_exc()
                    answer = (500, _error_body(f"inference failed: {type(exc).__name__}"),
                              _JSON, ())
                finally:
                    self.worker.inflight -= 1
                self._respond(req, *answer)
                continue
            self._respond(req, *self.srv.handle(req))
        if not self.closing and self.req is None and not self.busy:
            self._arm(self.st.idle_timeout, self._idle_timeout)

    def _infer_done(self, req: Request, fut: asyncio.Future) -> None:
        self.worker.inflight -= 1
        self.busy = False
        try:
            answer = fut.result()
        except Exception as exc:  # a bug: say so and keep serving
            traceback.print_exception(exc)
            answer = (500, _error_body(f"inference failed: {type(exc).__name__}"), _JSON, ())
        if self.closing or self.transport is None or self.transport.is_closing():
            return
        self._respond(req, *answer)
        if not self.closing:
            self.transport.resume_reading()
            self._next()

    def _infer_route(self, path: str) -> bool:
        return path.endswith("/infer") and path.startswith("/v2/models/")

    def _respond(self, req: Request, status: int, body: bytes, ctype: bytes,
                 extra: tuple[tuple[str, str], ...] = ()) -> None:
        close = not req.keep_alive or self.st.draining
        head = self._head(status, len(body), ctype, extra, close)
        self.transport.write(head if req.method == "HEAD" else head + body)
        if close:
            self._close()

    def _head(self, status: int, length: int, ctype: bytes, extra, close: bool) -> bytes:
        parts = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, "").encode()),
                 _SERVER_HEADER, b"Content-Type: ", ctype, b"\r\nContent-Length: %d\r\n" % length]
        for k, v in extra:
            parts.append(f"{k}: {v}\r\n".encode("latin-1"))
        if close:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        return b"".join(parts)

    def _send_error(self, status: int, message: str, *, close: bool,
                    extra: tuple[tuple[str, str], ...] = ()) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if status >= 400 and self.req is not None and self._infer_route(self.req.path or ""):
            self.st.metrics.request(status)  # a refused inference request still counts
            if self.st.monitor is not None and status in (400, 413):
                self.st.monitor.rejected("limit" if status == 413 else "malformed")
        body = _error_body(message)
        self.transport.write(self._head(status, len(body), _JSON, extra, close) + body)
        if close:
            self._close()

    def _close(self) -> None:
        self.closing = True
        self._disarm()
        self.queue.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def close_if_idle(self) -> None:
        if not self.busy and not self.queue and self.req is None:
            self._close()


@dataclass
class _Worker:
    """One event loop, its thread's share of the connections."""

    loop: asyncio.AbstractEventLoop
    connections: set = field(default_factory=set)
    inflight: int = 0
    server: asyncio.AbstractServer | None = None
    thread: threading.Thread | None = None


class ServingServer:
    """The listening socket and the worker loops. The socket is bound in the constructor, so
    ``server_address`` is the real port at once (``port=0`` picks a free one: no pick-then-bind
    race). :meth:`serve_forever` runs the loops until :meth:`stop`."""

    def __init__(self, host: str, port: int, state: ServingState, workers: int = 2):
        self.state = state
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.create_server((host, port), family=family, backlog=1024)
        self.sock.setblocking(False)
        self.server_address = self.sock.getsockname()[:2]
        self.workers = [_Worker(_new_loop()) for _ in range(max(1, workers))]
        # Inference runs inline on its connection's loop while requests are fast (the common
        # case: a thread hop would cost more than the model); once the recent average is over
        # ``inline_max_seconds`` it moves to this pool, so probes and scrapes stay prompt.
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="infer")
        self.inline_max_seconds = 0.005
        self._ewma = 0.0
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._hard_stop = False

    def slow(self) -> bool:
        return self._ewma > self.inline_max_seconds

    def connection_count(self) -> int:
        return sum(len(w.connections) for w in self.workers)

    def inflight(self) -> int:
        return sum(w.inflight for w in self.workers)

    # ------------------------------------------------------------------ lifecycle
    def serve_forever(self) -> None:
        """Run every worker loop (one in this thread); return after :meth:`stop`."""
        ready = threading.Barrier(len(self.workers))
        for w in self.workers[1:]:
            w.thread = threading.Thread(target=self._run, args=(w, ready), daemon=True,
                                        name="http-worker")
            w.thread.start()
        try:
            self._run(self.workers[0], ready)
        finally:
            for w in self.workers[1:]:
                if w.thread is not None:
                    w.thread.join(10)
            self.pool.shutdown(wait=False)
            self._stopped.set()

    def _run(self, w: _Worker, ready: threading.Barrier) -> None:
        asyncio.set_event_loop(w.loop)

        async def main() -> None:
            w.server = await w.loop.create_server(lambda: HttpConnection(self, w),
                                                  sock=self.sock, backlog=1024)
            while not self._stopping.is_set():
                await asyncio.sleep(0.05)
            # wind down: stop accepting, close idle connections, let in-flight ones finish
            w.server.close()
            while w.connections:
                for conn in list(w.connections):
                    conn.close_if_idle()
                if self._hard_stop:
                    for conn in list(w.connections):
                        conn._close()
                await asyncio.sleep(0.01)

        try:
            ready.wait(10)
            w.loop.run_until_complete(main())
        except threading.BrokenBarrierError:
            pass
        finally:
            w.loop.close()

    def stop(self, drain: float = 0.0, grace: float = 30.0) -> bool:
        """Drain and stop (thread-safe); True when no request was cut off.

        Readiness is 503 from the first moment; for ``drain`` seconds every request is still
        answered (new connections included), each connection closing after its answer; then
        the listener closes and in-flight requests get ``grace`` seconds.
        """
        self.state.draining = True
        if drain > 0:
            time.sleep(drain)
        self._stopping.set()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and (self.inflight() or self.connection_count()):
            time.sleep(0.01)
        clean = self.inflight() == 0
        self._hard_stop = True
        self._stopped.wait(10)
        return clean

    # stdlib socketserver-like names, for callers that run the server in a thread
    def shutdown(self) -> None:
        self.stop(0.0, 5.0)

    def server_close(self) -> None:
        self.sock.close()

    # ------------------------------------------------------------------ handlers
    def handle(self, req: Request) -> tuple[int, bytes, bytes, tuple]:
        """Every request but inference, on the loop (all cheap)."""
        st = self.state
        path = req.path
        method = req.method
        if path == "/metrics" or path in ("/v2", "/v2/") or path.startswith("/v2/health/"):
            allowed = _READ
        elif path.startswith("/v2/models/"):
            rest, name = self._model_path(path)
            if rest is None:
                return self._not_here(name)
            allowed = ("POST",) if rest == "infer" else _READ
            if rest not in ("", "ready", "infer"):
                return self._err(404, f"no route {path!r}; see /v2 and /metrics")
        else:
            return self._err(404, f"no route {path!r}; see /v2 and /metrics")
        if method == "OPTIONS":
            return 204, b"", _JSON, (("Allow", ", ".join((*allowed, "OPTIONS"))),)
        if method not in allowed:
            return self._err(405, f"method {method} is not allowed on {path}; use "
                                  f"{' or '.join(allowed)}",
                             (("Allow", ", ".join((*allowed, "OPTIONS"))),))
        if path == "/metrics":
            return 200, st.metrics.exposition(), b"text/plain; version=0.0.4; charset=utf-8", ()
        if path == "/v2/health/live":
            return self._json(200, {"live": True})
        if path == "/v2/health/ready":
            return self._json(200 if st.ready else 503, {"ready": st.ready})
        if path in ("/v2", "/v2/"):
            return self._json(200, {"name": SERVER_NAME, "version": SERVER_VERSION,
                                    "extensions": ["binary_tensor_data"]})
        if path.startswith("/v2/health/"):
            return self._err(404, f"no route {path!r}; health routes are /v2/health/live and "
                                  "/v2/health/ready")
        rest, _ = self._model_path(path)
        if rest == "ready":
            return self._json(200 if st.ready else 503,
                              {"name": st.model, "version": st.version, "ready": st.ready})
        if st.backend is None:
            return self._err(503, "model is not loaded yet; retry when /v2/health/ready is 200")
        b = st.backend
        return self._json(200, {"name": st.model, "versions": [st.version],
                                "platform": b.platform,
                                "inputs": [s.as_dict() for s in b.inputs],
                                "outputs": [s.as_dict() for s in b.outputs]})

    def _model_path(self, path: str) -> tuple[str | None, str]:
        """``/v2/models/{name}[/versions/{v}][/rest]`` -> (rest or None if not ours, name)."""
        parts = path.split("/")[3:]
        st = self.state
        if not parts or parts[0] != st.model:
            return None, parts[0] if parts else ""
        rest = parts[1:]
        if len(rest) >= 2 and rest[0] == "versions":
            if rest[1] != st.version:
                return None, f"{parts[0]} version {rest[1]}"
            rest = rest[2:]
        return "/".join(rest), parts[0]

    def _not_here(self, name: str):
        st = self.state
        return self._err(404, f"model {name!r} is not served here; this server serves "
                              f"{st.model!r} version {st.version!r}")

    @staticmethod
    def _json(status: int, obj: object):
        return status, orjson.dumps(obj), _JSON, ()

    @staticmethod
    def _err(status: int, message: str, extra: tuple = ()):
        return status, _error_body(message), _JSON, extra

    # ------------------------------------------------------------------ inference (pool)
    def infer(self, req: Request) -> tuple[int, bytes, bytes, tuple]:
        """Decode, run, encode one inference request (on a worker thread). The duration
        histogram covers this, from the whole body received to the answer ready."""
        st = self.state
        started = time.perf_counter()
        answer = self._infer(req)
        done = time.perf_counter()
        self._ewma += 0.2 * ((done - started) - self._ewma)
        st.metrics.duration.observe(done - req.received)
        st.metrics.request(answer[0])
        return answer

    def _infer(self, req: Request) -> tuple[int, bytes, bytes, tuple]:
        st = self.state
        rest, name = self._model_path(req.path)
        if rest is None:
            return self._not_here(name)
        backend = st.backend
        if backend is None:
            return self._err(503, "model is not loaded yet; retry when /v2/health/ready is 200")
        header_len = req.headers.get("inference-header-content-length")
        try:
            hl = int(header_len) if header_len is not None else None
        except ValueError:
            return self._err(400, f"inference-header-content-length must be an integer "
                                  f"(got {header_len!r})")
        try:
            decoded = decode(bytes(req.body), hl, backend.inputs, st.limits)
            try:
                outputs = backend.infer(decoded.feeds)
            except BackendInputError as exc:
                raise RequestError(400, f"the model refused the input: {exc}",
                                   "model") from None
            if st.inject_latency_s:
                time.sleep(st.inject_latency_s)
            payload, out_hl = encode(st.model, st.version, decoded, backend.outputs, outputs)
        except RequestError as exc:
            if st.monitor is not None:
                st.monitor.rejected(exc.reason, exc.input, exc.array)
            return self._err(exc.status, exc.message)
        except Exception as exc:  # the model or a bug: a 500 that says which
            print(f"serve: inference failed: {type(exc).__name__}: {exc}", file=sys.stderr,
                  flush=True)
            return self._err(500, f"inference failed: {type(exc).__name__}: {str(exc)[:200]}")
        logits = outputs[0]
        st.metrics.answered(logits)  # a queue append; counted in bulk, before each export
        monitor = st.monitor
        if monitor is not None:  # a queue append; the work is done off the request path
            monitor.observe(decoded.feeds.get(monitor.input_name), logits)
        if out_hl is None:
            return 200, payload, _JSON, ()
        return 200, payload, b"application/octet-stream", (
            ("Inference-Header-Content-Length", str(out_hl)),)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def make_server(host: str, port: int, state: ServingState, workers: int = 2) -> ServingServer:
    return ServingServer(host, port, state, workers)
