"""A Kubernetes Service on this machine: a TCP proxy in front of serving processes that
balances the way kube-proxy does, for the canary demo and its tests.

kube-proxy (iptables mode, the default) sends each *new connection* to one of the Service's
*ready* endpoints, picked at random with equal probability; the requests of a keep-alive
connection all go where its first one went. A Service that selects both the stable and the
canary ReplicaSet therefore gives the canary its share of ready pods: Argo Rollouts' basic
canary with ``setWeight: 25`` on 4 replicas runs 1 canary pod, and about a quarter of new
connections reach it. Readiness comes from each endpoint's ``/v2/health/ready`` (the kubelet's
readiness probe, polled every ``probe_interval`` seconds): a pod that is not ready, or is
draining after SIGTERM, gets no new connections.

Binds 127.0.0.1 on a port the kernel picks (``port`` after :meth:`start`); everything runs in
one background thread with its own event loop, and :meth:`stop` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import random
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Endpoint:
    name: str  # e.g. "stable-0", "canary"
    port: int
    host: str = "127.0.0.1"
    ready: bool = False


@dataclass
class ServiceProxy:
    name: str
    endpoints: list[Endpoint]
    seed: int = 0
    probe_interval: float = 0.5
    port: int = 0
    connections: Counter = field(default_factory=Counter)  # endpoint name -> connections
    refused: int = 0  # connections that found no ready endpoint (kube-proxy rejects them)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait_ready: float = 30.0) -> ServiceProxy:
        sock = socket.create_server(("127.0.0.1", 0))  # the port is ours once bound
        self.port = sock.getsockname()[1]
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)

            async def main() -> None:
                self._server = await asyncio.start_server(self._handle, sock=sock)
                started.set()
                while not self._stop.is_set():
                    await asyncio.sleep(0.05)
                self._server.close()

            self._loop.run_until_complete(main())
            self._loop.close()

        self._thread = threading.Thread(target=run, name=f"service-{self.name}", daemon=True)
        self._thread.start()
        threading.Thread(target=self._probe_loop, name=f"probe-{self.name}",
                         daemon=True).start()
        started.wait(10)
        deadline = time.monotonic() + wait_ready
        while time.monotonic() < deadline and not all(e.ready for e in self.endpoints):
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------ readiness
    def _probe_loop(self) -> None:
        while not self._stop.is_set():
            for e in self.endpoints:
                e.ready = _probe(e)
            self._stop.wait(self.probe_interval)

    def ready_endpoints(self) -> list[Endpoint]:
        return [e for e in self.endpoints if e.ready]

    def pick(self) -> Endpoint | None:
        """kube-proxy's choice for one new connection: uniform over the ready endpoints."""
        ready = self.ready_endpoints()
        with self._lock:
            if not ready:
                self.refused += 1
                return None
            choice = ready[self._rng.randrange(len(ready))]
            self.connections[choice.name] += 1
            return choice

    # ------------------------------------------------------------------ forwarding
    async def _handle(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        target = self.pick()
        if target is None:
            writer.close()  # iptables REJECT: the client sees the connection refused/reset
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(target.host, target.port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def _probe(e: Endpoint) -> bool:
    try:
        conn = http.client.HTTPConnection(e.host, e.port, timeout=1.0)
        conn.request("GET", "/v2/health/ready")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False
