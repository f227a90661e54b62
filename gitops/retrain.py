"""Retraining on drift: the production drift alert reaches the model repository.

The hop, end to end::

    Prometheus rule ModelPredictionDrift (gitops/alerts.py, rendered with the manifests)
      -> Alertmanager route (alertmanager-retrain.yaml, rendered here) -> webhook receiver
      -> `modelops-gitops alert-relay` (this module): one repository_dispatch per model
      -> GitHub: `repository_dispatch` event `model-drift` -> .github/workflows/retrain.yml
      -> fresh data, `dvc repro`, a pull request with the new dvc.lock (never a direct push:
         the normal PR evaluation judges the retrained model).

Alertmanager cannot shape a webhook's body, and GitHub's dispatch endpoint needs
``{"event_type": ..., "client_payload": {...}}``, hence the small relay. It keeps no state: a
firing alert that Alertmanager repeats (``repeat_interval``) dispatches again, and the retrain
workflow's concurrency group plus its "pull request already open" check make that harmless.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from modelops.errors import ExternalError, InputError
from modelops.settings.retrain import RetrainParams

MAX_BODY = 1 << 20




# --------------------------------------------------------------------------- alertmanager

def alertmanager_config(model: str, retrain: RetrainParams) -> dict[str, Any]:
    """An Alertmanager config (route + receiver) sending drift alerts of ``model`` to the relay.

    Install it on the Alertmanager of the production cluster only (staging drift should not
    retrain): merge its ``route.routes[0]`` and ``receivers[1]`` into that Alertmanager's
    configuration; on its own it is a complete, valid file (``amtool check-config``)."""
    alerts = "|".join(retrain.alerts)
    receiver = f"{model}-retrain"
    return {
        "route": {
            "receiver": "default",
            "routes": [{
                "receiver": receiver,
                "matchers": [f'alertname=~"{alerts}"', f'model="{model}"'],
                "group_by": ["model"],
                "group_wait": "1m",
                "group_interval": "15m",
                "repeat_interval": retrain.repeat_interval,
                "continue": True,
            }],
        },
        "receivers": [
            {"name": "default"},
            {"name": receiver,
             "webhook_configs": [{"url": retrain.relay_url, "send_resolved": False,
                                  "max_alerts": 10}]},
        ],
    }


# --------------------------------------------------------------------------- relay

def dispatches_for(payload: Any, retrain: RetrainParams) -> list[dict[str, Any]]:
    """The repository_dispatch bodies for an Alertmanager webhook payload (version 4).

    One per model among the *firing* alerts named in ``retrain.alerts``; resolved alerts and
    other alert names dispatch nothing. Raises InputError for a body that is not Alertmanager's.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise InputError("not an alertmanager webhook payload: no 'alerts' list")
    per_model: dict[str, dict[str, Any]] = {}
    for alert in payload["alerts"]:
        if not isinstance(alert, dict):
            raise InputError("not an alertmanager webhook payload: an alert is not an object")
        labels = alert.get("labels") or {}
        if alert.get("status") != "firing" or labels.get("alertname") not in retrain.alerts:
            continue
        model = labels.get("model")
        if not model:
            continue
        entry = per_model.setdefault(model, {
            "model": model,
            "env": labels.get("env", ""),
            "version": labels.get("version", ""),
            "alerts": [],
            "starts_at": alert.get("startsAt", ""),
        })
        entry["alerts"].append(labels["alertname"])
    out = []
    for _model, data in sorted(per_model.items()):
        data["alerts"] = sorted(set(data["alerts"]))
        out.append({"event_type": retrain.event_type, "client_payload": data})
    return out


class Relay:
    """Sends dispatch bodies to GitHub (``POST /repos/{owner}/{repo}/dispatches``)."""

    def __init__(self, github: Any, repo: str, retrain: RetrainParams, *, log=None):
        self.github = github
        self.repo = repo
        self.retrain = retrain
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))

    def handle(self, payload: Any) -> int:
        bodies = dispatches_for(payload, self.retrain)
        for body in bodies:
            self.github.dispatch(self.repo, body["event_type"], body["client_payload"])
            self.log(f"alert-relay: dispatched {body['event_type']} for "
                     f"{body['client_payload']['model']} to {self.repo}")
        return len(bodies)


def make_server(relay: Relay, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, code: int, message: str) -> None:
            data = json.dumps({"message": message}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            if self.path in ("/healthz", "/-/healthy"):
                self._answer(200, "ok")
            else:
                self._answer(404, "not found")

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/alerts":
                self._answer(404, "post alertmanager webhooks to /alerts")
                return
            try:
                length = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self._answer(413, f"body must be 0..{MAX_BODY} bytes")
                return
            try:
                payload = json.loads(self.rfile.read(length) or b"null")
                sent = relay.handle(payload)
            except (ValueError, InputError) as exc:
                self._answer(400, str(exc))
                return
            except ExternalError as exc:
                # 5xx makes Alertmanager retry the notification later.
                relay.log(f"alert-relay: github dispatch failed: {exc}")
                self._answer(502, "github dispatch failed; alertmanager will retry")
                return
            self._answer(200, f"{sent} dispatch(es) sent")

    return ThreadingHTTPServer((host, port), Handler)


def _cmd_relay(args) -> int:
    import os
    import signal

    from modelops.github import GitHub
    from modelops.settings import load_settings

    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        raise InputError("GITHUB_TOKEN is empty: the relay needs a token that may create "
                         "repository_dispatch events (contents: write)")
    repo = args.repo or os.environ.get("GITHUB_REPOSITORY")
    if not repo or "/" not in repo:
        raise InputError(f"--repo must be OWNER/NAME (got {repo!r})")
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--listen must be HOST:PORT (got {args.listen!r})")
    params = load_settings(args.params)
    relay = Relay(GitHub(token, os.environ.get("GITHUB_API_URL")), repo, params.retrain)
    server = make_server(relay, host, int(port))
    print(f"alert-relay: listening on http://{host}:{server.server_address[1]}/alerts, "
          f"dispatching {params.retrain.event_type!r} to {repo}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        stop.wait()
    finally:
        server.shutdown()
        server.server_close()
    return 0


def _cmd_alertmanager(args) -> int:
    from modelops.fsutil import write_output
    from modelops.settings import load_settings
    from modelops.yamlio import dump_yaml

    params = load_settings(args.params)
    if write_output(args.out, dump_yaml(alertmanager_config(params.model.name,
                                                            params.retrain))):
        print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "alert-relay", help="turn Alertmanager drift alerts into GitHub repository_dispatch",
        description="Serve an Alertmanager webhook receiver at /alerts; each firing drift "
                    "alert (params.yaml modelops.retrain.alerts) becomes one repository_dispatch "
                    "event (modelops.retrain.event_type) on --repo, which starts the retrain "
                    "workflow. Token: "
                    "GITHUB_TOKEN; API: GITHUB_API_URL (default https://api.github.com).")
    p.add_argument("--listen", default="0.0.0.0:9095", help="HOST:PORT (default: %(default)s)")
    p.add_argument("--repo", default=None, help="OWNER/NAME (default: $GITHUB_REPOSITORY)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.set_defaults(handler=_cmd_relay)
    a = sub.add_parser(
        "alertmanager-config", help="render the Alertmanager route sending drift alerts to "
                                    "the relay",
        description="Write an Alertmanager configuration (route + webhook receiver) that sends "
                    "the model's drift alerts to the alert relay (params.yaml retrain).")
    a.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    a.add_argument("--out", default="-", help="output file, or - for stdout (default)")
    a.set_defaults(handler=_cmd_alertmanager)
