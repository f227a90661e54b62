"""Retraining on drift: the production drift alert reaches the model repository.

The hop, end to end::

    Prometheus rule ModelPredictionDrift (gitops/alerts.py, rendered with the manifests)
      -> Alertmanager route (alertmanager-config, rendered here): only env="production"
      -> webhook receiver, authenticated (a bearer token or basic auth in http_config)
      -> `modelops-gitops alert-relay` (this module): one repository_dispatch per model
      -> GitHub: `repository_dispatch` event `model-drift` -> .github/workflows/retrain.yml
      -> fresh data of the alert's model and window, `dvc repro`, a pull request (never a
         direct push: the normal PR evaluation judges the retrained model).

Alertmanager cannot shape a webhook's body, and GitHub's dispatch endpoint needs
``{"event_type": ..., "client_payload": {...}}``, hence the small relay. It cannot be abused:

- it listens on 127.0.0.1 unless told otherwise, and every POST must carry the token
  (``Authorization: Bearer``, or basic auth), compared in constant time: 401 otherwise;
- a body that is not Alertmanager's (labels as a list, a model that is not a string, ...) is
  400, and nothing is dispatched; an alert for a model or an environment the relay was not
  configured for is 403, and nothing is dispatched;
- a dispatch is remembered per model and alert fingerprints: when GitHub fails midway through
  a batch (502, Alertmanager retries the whole notification) the models already dispatched are
  not dispatched again;
- a storm guard: at most one dispatch per model per ``retrain.cooldown`` and
  ``retrain.daily_cap`` per model in any 24 hours; repeats answer 200 "suppressed".

The memory is kept in ``--state`` (a JSON file) when given, so a restart does not forget it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from modelops.errors import ExternalError, InputError
from modelops.fsutil import write_json, write_output
from modelops.settings import load_settings
from modelops.settings.retrain import RetrainParams, duration_seconds
from modelops.yamlio import dump_yaml

MAX_BODY = 1 << 20
MAX_ALERTS = 1000
DAY = 86400
_FINGERPRINT = re.compile(r"^[0-9a-fA-F]{1,64}$")


class Forbidden(Exception):
    """The request is well formed but names a model or environment this relay refuses."""


# --------------------------------------------------------------------------- alertmanager

def _matcher(label: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f'{label}="{values[0]}"'
    return f'{label}=~"{"|".join(re.escape(v) for v in values)}"'


def alertmanager_config(model: str, retrain: RetrainParams) -> dict[str, Any]:
    """An Alertmanager config (route + receiver) sending the drift alerts of ``model`` in the
    configured environments (``env="production"``) to the relay, with its credentials.

    Merge its ``route.routes[0]`` and ``receivers[1]`` into the production Alertmanager's
    configuration and mount the relay's token at ``retrain.credentials_file``; on its own it is
    a complete, valid file (``amtool check-config``)."""
    receiver = f"{model}-retrain"
    if retrain.auth == "bearer":
        http_config = {"authorization": {"type": "Bearer",
                                         "credentials_file": retrain.credentials_file}}
    else:
        http_config = {"basic_auth": {"username": retrain.basic_username,
                                      "password_file": retrain.credentials_file}}
    return {
        "route": {
            "receiver": "default",
            "routes": [{
                "receiver": receiver,
                "matchers": [_matcher("alertname", retrain.alerts), f'model="{model}"',
                             _matcher(retrain.env_label, retrain.environments)],
                "group_by": ["model", retrain.env_label],
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
                                  "max_alerts": 10, "http_config": http_config}]},
        ],
    }


# --------------------------------------------------------------------------- the payload

@dataclass(frozen=True)
class Alert:
    status: str
    labels: dict[str, str]
    starts_at: str
    fingerprint: str


def _bad(message: str) -> InputError:
    return InputError(f"not an alertmanager webhook payload: {message}")


def parse_payload(payload: Any) -> list[Alert]:
    """The alerts of an Alertmanager webhook body (version 4), strictly checked."""
    if not isinstance(payload, dict):
        raise _bad("the body must be a JSON object")
    if "version" in payload and payload["version"] != "4":
        raise _bad(f"version must be \"4\" (got {payload['version']!r:.40})")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise _bad("no 'alerts' list")
    if len(alerts) > MAX_ALERTS:
        raise _bad(f"{len(alerts)} alerts, more than {MAX_ALERTS}")
    out = []
    for i, alert in enumerate(alerts):
        where = f"alerts[{i}]"
        if not isinstance(alert, dict):
            raise _bad(f"{where} is not an object")
        status = alert.get("status")
        if status not in ("firing", "resolved"):
            raise _bad(f"{where}.status must be 'firing' or 'resolved' (got {status!r:.40})")
        labels = alert.get("labels")
        if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
            raise _bad(f"{where}.labels must map strings to strings (got {labels!r:.60})")
        starts = alert.get("startsAt", "")
        if not isinstance(starts, str) or (starts and _parse_time(starts) is None):
            raise _bad(f"{where}.startsAt must be an RFC 3339 time (got {starts!r:.40})")
        fingerprint = alert.get("fingerprint", "")
        if not isinstance(fingerprint, str) or (fingerprint and
                                                not _FINGERPRINT.match(fingerprint)):
            raise _bad(f"{where}.fingerprint must be a hex string (got {fingerprint!r:.40})")
        out.append(Alert(status, dict(labels), starts, fingerprint))
    return out


def _parse_time(text: str) -> dt.datetime | None:
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# --------------------------------------------------------------------------- the relay

@dataclass
class RelayPolicy:
    """What the relay accepts and how often it may dispatch."""

    models: frozenset[str]
    environments: frozenset[str]
    env_label: str = "env"
    alerts: frozenset[str] = frozenset({"ModelPredictionDrift", "ModelPredictionDriftSevere"})
    event_type: str = "model-drift"
    cooldown: float = 6 * 3600
    daily_cap: int = 2

    @classmethod
    def from_settings(cls, retrain: RetrainParams, model: str) -> RelayPolicy:
        return cls(models=frozenset(retrain.models or [model]),
                   environments=frozenset(retrain.environments), env_label=retrain.env_label,
                   alerts=frozenset(retrain.alerts), event_type=retrain.event_type,
                   cooldown=duration_seconds(retrain.cooldown), daily_cap=retrain.daily_cap)


@dataclass
class RelayState:
    """What was dispatched, when: the idempotency keys and each model's dispatch times."""

    path: Path | None = None
    keys: dict[str, float] = field(default_factory=dict)
    times: dict[str, list[float]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None) -> RelayState:
        state = cls(path)
        if path and path.exists():
            try:
                data = json.loads(path.read_text())
                state.keys = {str(k): float(v) for k, v in data.get("keys", {}).items()}
                state.times = {str(k): [float(t) for t in v]
                               for k, v in data.get("times", {}).items()}
            except (ValueError, AttributeError, TypeError) as exc:
                raise InputError(f"{path}: the relay's state is not readable ({exc})",
                                 hint="move the file away to start with an empty memory") from exc
        return state

    def save(self) -> None:
        if self.path is None:
            return

        write_json(self.path, {"keys": self.keys, "times": self.times})

    def prune(self, now: float, keep: float) -> None:
        self.keys = {k: t for k, t in self.keys.items() if now - t < keep}
        self.times = {m: [t for t in ts if now - t < DAY] for m, ts in self.times.items()}


class Relay:
    """Turns authenticated Alertmanager notifications into ``repository_dispatch`` events."""

    def __init__(self, github: Any, repo: str, policy: RelayPolicy, *,
                 state: RelayState | None = None, log: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time):
        self.github = github
        self.repo = repo
        self.policy = policy
        self.state = state or RelayState()
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.clock = clock
        self.lock = threading.Lock()

    def plan(self, alerts: Sequence[Alert]) -> list[dict[str, Any]]:
        """One dispatch body per (model, environment) among the firing drift alerts.
        Raises :class:`Forbidden` for a model or environment this relay does not accept."""
        p = self.policy
        groups: dict[tuple[str, str], list[Alert]] = {}
        for alert in alerts:
            if alert.labels.get("alertname") not in p.alerts:
                continue
            model = alert.labels.get("model", "")
            env = alert.labels.get(p.env_label, "")
            if model not in p.models:
                raise Forbidden(f"model {model!r} is not one this relay retrains "
                                f"({', '.join(sorted(p.models))})")
            if env not in p.environments:
                raise Forbidden(f"{p.env_label} {env!r} may not retrain (only "
                                f"{', '.join(sorted(p.environments))})")
            if alert.status == "firing":
                groups.setdefault((model, env), []).append(alert)
        bodies = []
        for (model, env), group in sorted(groups.items()):
            starts = sorted(a.starts_at for a in group if a.starts_at)
            fingerprints = sorted({a.fingerprint or _label_key(a.labels) for a in group})
            bodies.append({"event_type": p.event_type, "client_payload": {
                "model": model, "env": env,
                "version": next((a.labels["version"] for a in group if "version" in a.labels),
                                ""),
                "alerts": sorted({a.labels["alertname"] for a in group}),
                "starts_at": starts[0] if starts else "",
                "fingerprints": fingerprints[:20],
            }})
        return bodies

    def handle(self, payload: Any) -> dict[str, Any]:
        """Dispatch what ``payload`` asks for; return what was sent and what was suppressed.
        A GitHub failure raises (the relay answers 502) after the earlier dispatches of the
        batch were remembered, so Alertmanager's retry does not repeat them."""
        bodies = self.plan(parse_payload(payload))
        sent, suppressed = [], []
        with self.lock:
            now = self.clock()
            self.state.prune(now, max(self.policy.cooldown, DAY))
            for body in bodies:
                data = body["client_payload"]
                model = data["model"]
                key = f"{model}|{data['env']}|{','.join(data['fingerprints'])}|{data['starts_at']}"
                recent = self.state.times.get(model, [])
                if key in self.state.keys:
                    suppressed.append({"model": model, "reason": "already dispatched"})
                    continue
                if recent and now - max(recent) < self.policy.cooldown:
                    suppressed.append({"model": model, "reason": "cooldown"})
                    continue
                if len(recent) >= self.policy.daily_cap:
                    suppressed.append({"model": model, "reason": "daily cap"})
                    continue
                self.github.dispatch(self.repo, body["event_type"], data)
                self.state.keys[key] = now
                self.state.times.setdefault(model, []).append(now)
                self.state.save()
                sent.append(model)
                self.log(f"alert-relay: dispatched {body['event_type']} for {model} "
                         f"({data['env']}) to {self.repo}")
            for s in suppressed:
                self.log(f"alert-relay: {s['model']}: suppressed ({s['reason']})")
        return {"sent": sent, "suppressed": suppressed}


def _label_key(labels: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- HTTP

@dataclass(frozen=True)
class Credentials:
    """What a request must carry: ``Authorization: Bearer <token>`` or basic auth."""

    token: str
    scheme: str = "bearer"  # bearer | basic
    username: str = "alertmanager"

    def __post_init__(self) -> None:
        if len(self.token) < 16:
            raise InputError("the relay's token is shorter than 16 characters",
                             hint="generate one: python -c 'import secrets; "
                                  "print(secrets.token_urlsafe(32))'")

    def accepts(self, header: str | None) -> bool:
        if not header:
            return False
        if self.scheme == "bearer":
            want = f"Bearer {self.token}".encode()
        else:
            basic = base64.b64encode(f"{self.username}:{self.token}".encode()).decode()
            want = f"Basic {basic}".encode()
        return hmac.compare_digest(header.strip().encode(), want)


def make_server(relay: Relay, host: str, port: int, credentials: Credentials
                ) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _answer(self, code: int, message: str, extra: dict | None = None) -> None:
            data = json.dumps({"message": message, **(extra or {})}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if code == 401:
                realm = "Bearer" if credentials.scheme == "bearer" else "Basic"
                self.send_header("WWW-Authenticate", f'{realm} realm="modelops-alert-relay"')
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
            if not credentials.accepts(self.headers.get("Authorization")):
                self._answer(401, "missing or wrong credentials")
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
                result = relay.handle(payload)
            except (ValueError, InputError) as exc:
                self._answer(400, str(exc).splitlines()[0])
                return
            except Forbidden as exc:
                relay.log(f"alert-relay: refused: {exc}")
                self._answer(403, str(exc))
                return
            except ExternalError as exc:
                # 5xx makes Alertmanager retry the notification later.
                relay.log(f"alert-relay: github dispatch failed: {exc}")
                self._answer(502, "github dispatch failed; alertmanager will retry")
                return
            self._answer(200, f"{len(result['sent'])} dispatch(es) sent", result)

    return ThreadingHTTPServer((host, port), Handler)


def read_token(token_file: str | None, env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise InputError(f"{token_file}: cannot read the relay's token ({exc})") from exc
    else:
        token = env.get("MODELOPS_RELAY_TOKEN", "").strip()
    if not token:
        raise InputError("the relay has no token: it refuses to accept unauthenticated alerts",
                         hint="pass --token-file (a mounted Secret) or set "
                              "MODELOPS_RELAY_TOKEN; Alertmanager sends the same token "
                              "(modelops.retrain.credentials_file)")
    return token


def _cmd_relay(args) -> int:
    from modelops.github import GitHub

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
    credentials = Credentials(read_token(args.token_file), params.retrain.auth,
                              params.retrain.basic_username)
    policy = RelayPolicy.from_settings(params.retrain, params.model.name)
    relay = Relay(GitHub(token, os.environ.get("GITHUB_API_URL")), repo, policy,
                  state=RelayState.load(Path(args.state) if args.state else None))
    server = make_server(relay, host.strip("[]"), int(port), credentials)
    print(f"alert-relay: listening on http://{host}:{server.server_address[1]}/alerts "
          f"({credentials.scheme} auth), dispatching {policy.event_type!r} to {repo} for "
          f"{', '.join(sorted(policy.models))} in {', '.join(sorted(policy.environments))}",
          flush=True)
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
    params = load_settings(args.params)
    if write_output(args.out, dump_yaml(alertmanager_config(params.model.name,
                                                            params.retrain))):
        print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "alert-relay", help="turn Alertmanager drift alerts into GitHub repository_dispatch",
        description="Serve an authenticated Alertmanager webhook receiver at /alerts; each "
                    "firing drift alert (params.yaml modelops.retrain.alerts) of a configured "
                    "model and environment becomes one repository_dispatch event "
                    "(modelops.retrain.event_type) on --repo, at most once per cooldown and "
                    "daily_cap times a day. Inbound token: --token-file or "
                    "MODELOPS_RELAY_TOKEN; GitHub token: GITHUB_TOKEN; API: GITHUB_API_URL "
                    "(default https://api.github.com).")
    p.add_argument("--listen", default="127.0.0.1:9095",
                   help="HOST:PORT (default: %(default)s; in a pod, 0.0.0.0:9095)")
    p.add_argument("--repo", default=None, help="OWNER/NAME (default: $GITHUB_REPOSITORY)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--token-file", default=None,
                   help="file holding the token Alertmanager sends (default: "
                        "$MODELOPS_RELAY_TOKEN)")
    p.add_argument("--state", default=None,
                   help="JSON file remembering dispatches across restarts (default: memory)")
    p.set_defaults(handler=_cmd_relay)
    a = sub.add_parser(
        "alertmanager-config", help="render the Alertmanager route sending drift alerts to "
                                    "the relay",
        description="Write an Alertmanager configuration (route + webhook receiver with its "
                    "credentials) that sends the model's production drift alerts to the alert "
                    "relay (params.yaml modelops.retrain).")
    a.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    a.add_argument("--out", default="-", help="output file, or - for stdout (default)")
    a.set_defaults(handler=_cmd_alertmanager)
