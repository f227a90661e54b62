"""A small client of the Argo Server REST API: submit a Workflow and follow it to the end.

Endpoints (Argo Workflows' ``WorkflowService`` / ``WorkflowTemplateService``):
``POST /api/v1/workflows/{namespace}`` with ``{"workflow": {...}}``,
``GET /api/v1/workflows/{namespace}/{name}``,
``POST /api/v1/workflow-templates/{namespace}`` with ``{"template": {...}}``.
The bearer token comes from the environment and is never printed: errors quote the server's
message, never the request headers.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

from modelops.errors import ExternalError, InputError
from modelops.retry import RetryPolicy, retry_call

FINAL_PHASES = ("Succeeded", "Failed", "Error")


@dataclass
class ArgoServer:
    url: str
    token: str | None
    timeout: float = 30.0
    retries: int = 3
    backoff: float = 1.0
    verify_tls: bool = True
    sleep: Callable[[float], None] = time.sleep

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        policy = RetryPolicy(attempts=self.retries + 1, backoff=self.backoff, sleep=self.sleep)
        return retry_call(lambda: self._request_once(method, path, body), policy=policy,
                          what=f"argo server {method} {path}")

    def _request_once(self, method: str, path: str, body: Any) -> dict[str, Any]:
        url = self.url.rstrip("/") + path
        try:
            resp = requests.request(method, url, json=body, headers=self._headers(),
                                    timeout=self.timeout, verify=self.verify_tls)
        except requests.RequestException as exc:
            raise ExternalError(f"argo server {self.url} unreachable: {type(exc).__name__}",
                                retryable=True) from None
        if resp.status_code < 400:
            return resp.json()
        message = _server_message(resp)
        if resp.status_code in (401, 403):
            raise ExternalError(
                f"argo server refused the request ({resp.status_code}): {message}",
                hint="check the token in the environment variable named by --token-env "
                     "and the service account's RBAC in that namespace",
                retryable=False)
        if resp.status_code == 409:
            raise ExternalError(f"argo server: conflict: {message}", retryable=False)
        if resp.status_code < 500:
            raise InputError(f"argo server rejected the manifest ({resp.status_code}): "
                             f"{message}")
        raise ExternalError(f"argo server error {resp.status_code}: {message}", retryable=True)

    def submit(self, doc: dict[str, Any]) -> dict[str, Any]:
        namespace = doc.get("metadata", {}).get("namespace") or "default"
        if doc.get("kind") == "WorkflowTemplate":
            return self._request("POST", f"/api/v1/workflow-templates/{namespace}",
                                 {"namespace": namespace, "template": doc})
        return self._request("POST", f"/api/v1/workflows/{namespace}",
                             {"namespace": namespace, "workflow": doc})

    def get(self, namespace: str, name: str) -> dict[str, Any]:
        return self._request("GET", f"/api/v1/workflows/{namespace}/{name}")

    def follow(self, namespace: str, name: str, *, poll: float = 2.0, deadline: float = 7200,
               out=sys.stdout) -> dict[str, Any]:
        """Poll until the workflow ends; print each phase change and each finished stage."""
        start = time.monotonic()
        seen: dict[str, str] = {}
        last_phase = None
        while True:
            wf = self.get(namespace, name)
            status = wf.get("status") or {}
            phase = status.get("phase") or "Pending"
            if phase != last_phase:
                print(f"workflow {name}: {phase}", file=out, flush=True)
                last_phase = phase
            for node in (status.get("nodes") or {}).values():
                if node.get("type") != "Pod":
                    continue
                key, node_phase = node.get("displayName", node.get("id")), node.get("phase")
                if seen.get(key) != node_phase:
                    seen[key] = node_phase
                    print(f"  {key}: {node_phase}", file=out, flush=True)
            if phase in FINAL_PHASES:
                return wf
            if time.monotonic() - start > deadline:
                raise ExternalError(f"workflow {name} still {phase} after {deadline:.0f}s",
                                    hint="follow it with `argo watch` or raise --deadline",
                                    retryable=True)
            self.sleep(poll)


def _server_message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text[:200].strip() or resp.reason
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)[:300]
    return str(data)[:300]
