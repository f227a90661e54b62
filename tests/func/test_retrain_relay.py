"""Drift alert -> Alertmanager -> relay -> repository_dispatch, with a real Alertmanager and
amtool (Debian's prometheus-alertmanager) and the GitHub API imitation; and the relay under
abuse: forged, unauthenticated, unknown-model and malformed requests, partial failures and
storms of repeats."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from modelops.errors import InputError
from modelops.github import GitHub, GitHubPolicy
from modelops.gitops.retrain import (
    Credentials,
    Forbidden,
    Relay,
    RelayPolicy,
    RelayState,
    RetrainParams,
    alertmanager_config,
    make_server,
    parse_payload,
)
from modelops.yamlio import dump_yaml
from tests.conftest import require_tool
from tests.github_imitation import github_api  # noqa: F401

RETRAIN = RetrainParams()
POLICY = RelayPolicy.from_settings(RETRAIN, "digits-cnn")
TOKEN = "relay-token-0123456789abcdef"
CREDS = Credentials(TOKEN)


def _alert(name="ModelPredictionDrift", model="digits-cnn", status="firing", env="production",
           fingerprint="a1b2c3", starts="2026-11-28T10:00:00Z", **labels):
    return {"status": status, "labels": {"alertname": name, "model": model, "version": "v7",
                                         "env": env, **labels},
            "annotations": {}, "startsAt": starts, "fingerprint": fingerprint}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """Stands for GitHub where only the relay's decisions matter (no HTTP)."""

    def __init__(self):
        self.sent = []

    def dispatch(self, repo, event_type, payload):
        self.sent.append((repo, event_type, payload))


# ----------------------------------------------------------------------------- mapping

def test_one_dispatch_per_model_for_firing_drift_alerts():
    policy = replace(POLICY, models=frozenset({"digits-cnn", "other-model"}))
    alerts = parse_payload({"version": "4", "alerts": [
        _alert(), _alert("ModelPredictionDriftSevere", fingerprint="ff"),
        _alert(model="other-model"), _alert(status="resolved", fingerprint="1"),
        _alert("HighErrorRate", model="fourth"),
    ]})
    bodies = Relay(Recorder(), "octo/models", policy).plan(alerts)
    assert [b["client_payload"]["model"] for b in bodies] == ["digits-cnn", "other-model"]
    first = bodies[0]["client_payload"]
    assert bodies[0]["event_type"] == "model-drift"
    assert first["alerts"] == ["ModelPredictionDrift", "ModelPredictionDriftSevere"]
    assert first["version"] == "v7" and first["env"] == "production"
    assert first["starts_at"] == "2026-11-28T10:00:00Z"
    assert first["fingerprints"] == ["a1b2c3", "ff"]


MALFORMED = [
    None, [], {"alerts": "x"}, {"alerts": [1]}, {"version": "3", "alerts": []},
    {"alerts": [{**_alert(), "labels": ["alertname", "model"]}]},            # labels as a list
    {"alerts": [{**_alert(), "labels": {"alertname": "ModelPredictionDrift",
                                        "model": {"name": "digits-cnn"}}}]},  # model as a dict
    {"alerts": [{**_alert(), "status": "maybe"}]},
    {"alerts": [{**_alert(), "startsAt": "yesterday"}]},
    {"alerts": [{**_alert(), "fingerprint": {"x": 1}}]},
    {"alerts": [_alert()] * 1001},
]


@pytest.mark.parametrize("payload", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_payloads_are_input_errors(payload):
    with pytest.raises(InputError):
        parse_payload(payload)


def test_unknown_models_and_environments_are_forbidden():
    relay = Relay(Recorder(), "octo/models", POLICY)
    with pytest.raises(Forbidden, match="some-other-model"):
        relay.plan(parse_payload({"alerts": [_alert(model="some-other-model")]}))
    with pytest.raises(Forbidden, match="staging"):
        relay.plan(parse_payload({"alerts": [_alert(env="staging")]}))
    with pytest.raises(Forbidden):
        relay.plan(parse_payload({"alerts": [_alert(env="")]}))


def test_a_storm_of_repeats_dispatches_at_most_the_cap():
    now = [1_000_000.0]
    github = Recorder()
    relay = Relay(github, "octo/models", POLICY, clock=lambda: now[0], log=lambda m: None)
    # 50 repeats within the cooldown, each a new firing (new fingerprint): one dispatch
    for i in range(50):
        starts = f"2026-11-28T10:{i:02d}:00Z"
        relay.handle({"alerts": [_alert(fingerprint=f"{i:x}", starts=starts)]})
        now[0] += 60
    assert len(github.sent) == 1
    # a repeat every cooldown, for five days: never more than daily_cap in any 24 hours
    github.sent.clear()
    start = now[0] + POLICY.cooldown
    sent_at = []
    for i in range(20):
        now[0] = start + i * POLICY.cooldown
        if relay.handle({"alerts": [_alert(fingerprint=f"b{i:x}")]})["sent"]:
            sent_at.append(now[0])
    assert len(github.sent) == len(sent_at) >= 5  # it does retrain, as often as allowed
    for t0 in sent_at:
        assert sum(1 for t in sent_at if t0 <= t < t0 + 86400) <= POLICY.daily_cap


def test_state_survives_a_restart(tmp_path):
    path = tmp_path / "relay-state.json"
    github = Recorder()
    Relay(github, "octo/models", POLICY, state=RelayState.load(path),
          log=lambda m: None).handle({"alerts": [_alert()]})
    again = Relay(github, "octo/models", POLICY, state=RelayState.load(path), log=lambda m: None)
    result = again.handle({"alerts": [_alert()]})
    assert len(github.sent) == 1 and result["suppressed"][0]["reason"] == "already dispatched"


# ----------------------------------------------------------------------------- alertmanager

def test_alertmanager_config_is_valid_authenticated_and_routes_only_production(tmp_path):
    amtool = require_tool("amtool")
    config = tmp_path / "alertmanager.yaml"
    rendered = alertmanager_config("digits-cnn", RETRAIN)
    webhook = rendered["receivers"][1]["webhook_configs"][0]
    assert webhook["http_config"] == {"authorization": {
        "type": "Bearer", "credentials_file": RETRAIN.credentials_file}}
    config.write_text(dump_yaml(rendered))
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    basic = alertmanager_config("digits-cnn", replace(RETRAIN, auth="basic"))
    assert basic["receivers"][1]["webhook_configs"][0]["http_config"] == {"basic_auth": {
        "username": "alertmanager", "password_file": RETRAIN.credentials_file}}
    (tmp_path / "basic.yaml").write_text(dump_yaml(basic))
    assert subprocess.run([amtool, "check-config", str(tmp_path / "basic.yaml")],
                          capture_output=True).returncode == 0

    def route(*labels: str) -> str:
        proc = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                               *labels], capture_output=True, text=True)
        return proc.stdout.strip()

    drift = ["alertname=ModelPredictionDrift", "model=digits-cnn"]
    assert route(*drift, "env=production") == "digits-cnn-retrain"
    assert route("alertname=ModelPredictionDriftSevere", "model=digits-cnn",
                 "env=production") == "digits-cnn-retrain"
    assert route(*drift, "env=staging") == "default"
    assert route(*drift) == "default"
    assert route("alertname=ModelPredictionDrift", "model=other", "env=production") == "default"
    assert route("alertname=HighErrorRate", "model=digits-cnn", "env=production") == "default"


def test_the_rendered_rules_alerts_reach_the_relay_from_production_only(tmp_path):
    """The contract between the two rendered halves: a drift alert as production's rendered
    PrometheusRule fires it (its static labels plus what it aggregates by) is routed to the
    relay by the rendered Alertmanager config; the same alert from staging's rules is not."""
    from modelops.gitops.render import render_env
    from modelops.settings import load_settings
    from modelops.yamlio import load_yaml_all
    from tests.conftest import ROOT
    from tests.unit.test_gitops_release import example_release

    amtool = require_tool("amtool")
    params = load_settings(ROOT / "params.yaml")
    config = tmp_path / "alertmanager.yaml"
    config.write_text(dump_yaml(alertmanager_config("digits-cnn", params.retrain)))

    def fired(env: str, alert: str) -> list[str]:
        (rule_doc,) = load_yaml_all(render_env(example_release(), params, env)
                                    ["prometheus-rules.yaml"].decode())
        rule = next(r for g in rule_doc["spec"]["groups"] for r in g["rules"]
                    if r.get("alert") == alert)
        namespace = params.deploy.environments[env].namespace
        labels = {**rule["labels"], "alertname": alert, "namespace": namespace,
                  "model": "digits-cnn", "version": "5"}  # its `by (namespace, model, version)`
        return [f"{k}={v}" for k, v in labels.items()]

    def route(labels: list[str]) -> str:
        proc = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                               *labels], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout.strip()

    assert route(fired("production", "ModelPredictionDrift")) == "digits-cnn-retrain"
    assert route(fired("staging", "ModelPredictionDrift")) == "default"


def _post(url: str, body: object, auth: str | None = f"Bearer {TOKEN}") -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if auth is not None:
        headers["Authorization"] = auth
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture
def relay_server(github_api):  # noqa: F811
    gh = GitHub("write-token", github_api.api_url, policy=GitHubPolicy(sleep=lambda s: None))
    policy = replace(POLICY, models=frozenset({"digits-cnn", "second-model"}))
    logs: list[str] = []
    relay = Relay(gh, "octo/models", policy, log=logs.append)
    server = make_server(relay, "127.0.0.1", 0, CREDS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", relay, logs
    finally:
        server.shutdown()
        server.server_close()


def test_forged_unauthenticated_unknown_and_malformed_requests_dispatch_nothing(
        relay_server, github_api):  # noqa: F811
    url, _relay, _logs = relay_server
    good = {"alerts": [_alert()]}
    basic = "Basic " + base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
    assert _post(url, good, auth=None)[0] == 401
    assert _post(url, good, auth="Bearer wrong-token-wrong-token")[0] == 401
    assert _post(url, good, auth=f"Bearer {TOKEN}x")[0] == 401
    assert _post(url, good, auth=basic)[0] == 401  # the relay expects a bearer token
    assert _post(url, {"alerts": [_alert(model="some-other-model")]})[0] == 403
    fifty = {"alerts": [_alert(model=f"made-up-{i}") for i in range(50)]}
    assert _post(url, fifty)[0] == 403
    assert _post(url, {"alerts": [_alert(), _alert(env="staging", fingerprint="2")]})[0] == 403
    for body in MALFORMED:
        assert _post(url, body)[0] == 400, body
    assert _post(url, b"{not json")[0] == 400
    assert github_api.repos["octo/models"].dispatches == []
    code, answer = _post(url, good)
    assert code == 200 and answer["sent"] == ["digits-cnn"]
    assert len(github_api.repos["octo/models"].dispatches) == 1


def test_basic_auth_when_configured(github_api):  # noqa: F811
    creds = Credentials(TOKEN, "basic", "alertmanager")
    server = make_server(Relay(Recorder(), "octo/models", POLICY, log=lambda m: None),
                         "127.0.0.1", 0, creds)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    try:
        good = "Basic " + base64.b64encode(f"alertmanager:{TOKEN}".encode()).decode()
        bad = "Basic " + base64.b64encode(f"mallory:{TOKEN}".encode()).decode()
        assert _post(url, {"alerts": []}, auth=bad)[0] == 401
        assert _post(url, {"alerts": []}, auth=f"Bearer {TOKEN}")[0] == 401
        assert _post(url, {"alerts": []}, auth=good)[0] == 200
    finally:
        server.shutdown()
        server.server_close()


def test_a_github_failure_midway_never_dispatches_twice(relay_server, github_api):  # noqa: F811
    url, _relay, logs = relay_server
    injected = []

    def after_first(message: str) -> None:
        logs.append(message)
        if "dispatched" in message and not injected:
            injected.append(github_api.inject("POST", "/repos/octo/models/dispatches", 502,
                                              times=5))

    _relay.log = after_first
    both = {"alerts": [_alert(), _alert(model="second-model", fingerprint="b2")]}
    assert _post(url, both)[0] == 502
    dispatches = github_api.repos["octo/models"].dispatches
    assert [d["client_payload"]["model"] for d in dispatches] == ["digits-cnn"]
    github_api.faults.clear()
    code, answer = _post(url, both)  # Alertmanager retries the whole notification
    assert code == 200 and answer["sent"] == ["second-model"]
    assert answer["suppressed"] == [{"model": "digits-cnn", "reason": "already dispatched"}]
    assert sorted(d["client_payload"]["model"] for d in dispatches) == ["digits-cnn",
                                                                        "second-model"]


def test_relay_answers_502_when_github_fails_so_alertmanager_retries(relay_server, github_api):  # noqa: F811
    url, _relay, _logs = relay_server
    github_api.inject("POST", "/repos/octo/models/dispatches", 502)
    assert _post(url, {"alerts": [_alert()]})[0] == 502
    assert _post(url, {"alerts": [_alert()]})[0] == 200
    assert _post(url.replace("/alerts", "/other"), {})[0] == 404
    assert len(github_api.repos["octo/models"].dispatches) == 1


@pytest.mark.slow
def test_real_alertmanager_delivers_a_production_drift_alert_as_one_dispatch(
        tmp_path, github_api):  # noqa: F811
    binary = require_tool("prometheus-alertmanager")
    gh = GitHub("write-token", github_api.api_url, policy=GitHubPolicy(sleep=lambda s: None))
    relay = Relay(gh, "octo/models", POLICY, log=lambda m: None)
    server = make_server(relay, "127.0.0.1", 0, CREDS)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    relay_url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config = alertmanager_config("digits-cnn", RetrainParams(relay_url=relay_url,
                                                             credentials_file=str(token_file)))
    config["route"]["routes"][0].update(group_wait="1s", group_interval="1s")
    (tmp_path / "am.yaml").write_text(dump_yaml(config))
    port = _free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'am.yaml'}", f"--storage.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "am.log").open("w"))
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/-/ready", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "am.log").read_text()
                time.sleep(0.2)
        labels = {"alertname": "ModelPredictionDrift", "model": "digits-cnn", "version": "v7",
                  "severity": "warning"}
        alerts = [{"labels": {**labels, "env": "production"}},
                  {"labels": {**labels, "env": "staging"}},
                  {"labels": {"alertname": "HighErrorRate", "model": "digits-cnn",
                              "env": "production"}}]
        req = urllib.request.Request(f"{base}/api/v2/alerts", data=json.dumps(alerts).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
        assert urllib.request.urlopen(req, timeout=10).status == 200
        repo = github_api.repos["octo/models"]
        deadline = time.monotonic() + 30
        while not repo.dispatches:
            assert time.monotonic() < deadline, "no dispatch reached GitHub"
            time.sleep(0.2)
        time.sleep(1.5)  # a second group interval: nothing else may arrive
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        server.shutdown()
        server.server_close()
    assert len(repo.dispatches) == 1
    body = repo.dispatches[0]
    assert body["event_type"] == "model-drift"
    assert body["client_payload"]["model"] == "digits-cnn"
    assert body["client_payload"]["env"] == "production"
    assert body["client_payload"]["version"] == "v7"


def test_relay_cli_needs_both_tokens_and_binds_loopback_by_default(tmp_path):
    from modelops.gitops.retrain import read_token
    from tests.conftest import PY, ROOT

    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    cmd = [PY, "-m", "modelops.gitops", "alert-relay", "--repo", "octo/models",
           "--params", str(Path(ROOT) / "params.yaml")]
    no_github = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=base,
                               timeout=60)
    assert no_github.returncode == 2 and "GITHUB_TOKEN" in no_github.stderr
    no_relay = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                              env={**base, "GITHUB_TOKEN": "x"}, timeout=60)
    assert no_relay.returncode == 2 and "MODELOPS_RELAY_TOKEN" in no_relay.stderr
    helptext = subprocess.run([*cmd[:4], "--help"], capture_output=True, text=True, cwd=ROOT,
                              env=base, timeout=60).stdout
    assert "127.0.0.1:9095" in helptext
    with pytest.raises(InputError, match="16 characters"):
        Credentials("short")
    (tmp_path / "t").write_text(" secret-token-from-a-file \n")
    assert read_token(str(tmp_path / "t"), env={}) == "secret-token-from-a-file"
