"""A loopback imitation of the Argo Server REST API, for tests.

It checks the bearer token, validates every submitted Workflow / WorkflowTemplate against the
upstream CRD schema in strict mode (the same check a real API server's structural schema plus
``kubeconform -strict`` would make), names workflows from ``generateName`` like the API server,
and moves each workflow Pending -> Running -> Succeeded over successive GETs, with one Pod node
per DAG task. Faults are injected per test: ``fail_next`` (status codes to answer next) and
``final_phase``.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelops.gitops.crd import validate_strict


class ArgoServerImitation:
    def __init__(self, token: str = "good-token"):
        self.token = token
        self.workflows: dict[tuple[str, str], dict[str, Any]] = {}
        self.templates: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.fail_next: list[int] = []
        self.final_phase = "Succeeded"
        self._counter = itertools.count(1)
        self._polls: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ArgoServerImitation:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ----------------------------------------------------------------- behaviour
    def _status(self, key: tuple[str, str]) -> dict[str, Any]:
        wf = self.workflows[key]
        polls = self._polls[key] = self._polls.get(key, 0) + 1
        spec = wf["spec"]
        entry = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])
        tasks = [t["name"] for t in entry.get("dag", {}).get("tasks", [])]
        if polls == 1:
            phase, node_phase = "Pending", "Pending"
        elif polls == 2:
            phase, node_phase = "Running", "Running"
        else:
            phase = self.final_phase
            node_phase = "Succeeded" if phase == "Succeeded" else "Failed"
        nodes = {f"{key[1]}-{i}": {"id": f"{key[1]}-{i}", "displayName": name, "type": "Pod",
                                   "phase": node_phase} for i, name in enumerate(tasks)}
        status: dict[str, Any] = {"phase": phase, "nodes": nodes}
        if phase == "Failed":
            status["message"] = "child 'train' failed"
        return status

    def _handler(self):
        imitation = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _guard(self) -> bool:
                with imitation._lock:
                    imitation.requests.append((self.command, self.path, dict(self.headers)))
                    fault = imitation.fail_next.pop(0) if imitation.fail_next else None
                if fault:
                    self._send(fault, {"code": 13, "message": "injected fault"})
                    return False
                if self.headers.get("Authorization") != f"Bearer {imitation.token}":
                    self._send(401, {"code": 16, "message": "token not valid"})
                    return False
                return True

            def do_POST(self) -> None:  # noqa: N802
                if not self._guard():
                    return
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                parts = self.path.strip("/").split("/")
                if parts[:3] == ["api", "v1", "workflows"] and len(parts) == 4:
                    doc, store = body.get("workflow"), imitation.workflows
                elif parts[:3] == ["api", "v1", "workflow-templates"] and len(parts) == 4:
                    doc, store = body.get("template"), imitation.templates
                else:
                    self._send(404, {"code": 5, "message": f"no route {self.path}"})
                    return
                if not isinstance(doc, dict):
                    self._send(400, {"code": 3, "message": "missing workflow in body"})
                    return
                problems = validate_strict(doc)
                if problems:
                    self._send(400, {"code": 3, "message": "; ".join(problems[:3])})
                    return
                meta = dict(doc.get("metadata") or {})
                prefix = meta.get("generateName", "wf-")
                name = meta.get("name") or f"{prefix}{next(imitation._counter):05d}"
                meta["name"] = name
                meta["namespace"] = parts[3]
                created = {**doc, "metadata": meta}
                with imitation._lock:
                    if (parts[3], name) in store:
                        self._send(409, {"code": 6, "message": f"{name} already exists"})
                        return
                    store[(parts[3], name)] = created
                self._send(200, created)

            def do_GET(self) -> None:  # noqa: N802
                if not self._guard():
                    return
                parts = self.path.strip("/").split("/")
                key = (parts[3], parts[4]) if len(parts) == 5 else None
                if parts[:3] != ["api", "v1", "workflows"] or key not in imitation.workflows:
                    self._send(404, {"code": 5, "message": "workflow not found"})
                    return
                with imitation._lock:
                    wf = {**imitation.workflows[key], "status": imitation._status(key)}
                self._send(200, wf)

        return Handler
