"""Drift alert -> Alertmanager -> relay -> repository_dispatch, with a real Alertmanager and
amtool (Debian's prometheus-alertmanager) and the GitHub API imitation."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from modelops.github import GitHub, GitHubPolicy
from modelops.gitops.retrain import (
    Relay,
    RetrainParams,
    alertmanager_config,
    dispatches_for,
    make_server,
)
from modelops.yamlio import dump_yaml
from tests.conftest import require_tool
from tests.github_imitation import github_api  # noqa: F401

RETRAIN = RetrainParams()


def _alert(name="ModelPredictionDrift", model="digits-cnn", status="firing", **labels):
    return {"status": status, "labels": {"alertname": name, "model": model, "version": "v7",
                                         **labels},
            "annotations": {}, "startsAt": "2026-11-28T10:00:00Z"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- mapping

def test_one_dispatch_per_model_for_firing_drift_alerts():
    payload = {"version": "4", "alerts": [
        _alert(), _alert("ModelPredictionDriftSevere"), _alert(model="other-model"),
        _alert(status="resolved", model="third"), _alert("HighErrorRate", model="fourth"),
        {"status": "firing", "labels": {"alertname": "ModelPredictionDrift"}},  # no model
    ]}
    bodies = dispatches_for(payload, RETRAIN)
    assert [b["client_payload"]["model"] for b in bodies] == ["digits-cnn", "other-model"]
    first = bodies[0]
    assert first["event_type"] == "model-drift"
    assert first["client_payload"]["alerts"] == ["ModelPredictionDrift",
                                                 "ModelPredictionDriftSevere"]
    assert first["client_payload"]["version"] == "v7"


@pytest.mark.parametrize("payload", [None, [], {"alerts": "x"}, {"alerts": [1]}])
def test_garbage_is_rejected(payload):
    from modelops.errors import InputError

    with pytest.raises(InputError):
        dispatches_for(payload, RETRAIN)


# ----------------------------------------------------------------------------- alertmanager

def test_alertmanager_config_is_valid_and_routes_only_drift_to_the_relay(tmp_path):
    amtool = require_tool("amtool")
    config = tmp_path / "alertmanager.yaml"
    config.write_text(dump_yaml(alertmanager_config("digits-cnn", RETRAIN)))
    check = subprocess.run([amtool, "check-config", str(config)], capture_output=True,
                           text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    def route(*labels: str) -> str:
        proc = subprocess.run([amtool, "config", "routes", "test", f"--config.file={config}",
                               *labels], capture_output=True, text=True)
        return proc.stdout.strip()

    assert route("alertname=ModelPredictionDrift", "model=digits-cnn") == "digits-cnn-retrain"
    assert route("alertname=ModelPredictionDriftSevere", "model=digits-cnn") == \
        "digits-cnn-retrain"
    assert route("alertname=ModelPredictionDrift", "model=other") == "default"
    assert route("alertname=HighErrorRate", "model=digits-cnn") == "default"


def _post(url: str, body: object) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
def test_real_alertmanager_delivers_a_drift_alert_as_one_dispatch(tmp_path, github_api):  # noqa: F811
    binary = require_tool("prometheus-alertmanager")
    gh = GitHub("write-token", github_api.api_url, policy=GitHubPolicy(sleep=lambda s: None))
    relay = Relay(gh, "octo/models", RETRAIN, log=lambda m: None)
    server = make_server(relay, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    relay_url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    config = alertmanager_config("digits-cnn", RetrainParams(relay_url=relay_url))
    route = config["route"]["routes"][0]
    route.update(group_wait="1s", group_interval="1s")
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
        alerts = [{"labels": {"alertname": "ModelPredictionDrift", "model": "digits-cnn",
                              "version": "v7", "severity": "warning"}},
                  {"labels": {"alertname": "HighErrorRate", "model": "digits-cnn"}}]
        assert _post(f"{base}/api/v2/alerts", alerts) == 200
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
    assert body["client_payload"]["version"] == "v7"


def test_relay_answers_502_when_github_fails_so_alertmanager_retries(github_api):  # noqa: F811
    gh = GitHub("write-token", github_api.api_url, policy=GitHubPolicy(sleep=lambda s: None))
    server = make_server(Relay(gh, "octo/models", RETRAIN, log=lambda m: None), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    try:
        github_api.inject("POST", "/repos/octo/models/dispatches", 502)
        assert _post(url, {"alerts": [_alert()]}) == 502
        assert _post(url, {"alerts": [_alert()]}) == 200
        assert _post(url, {"nope": 1}) == 400
        assert _post(url.replace("/alerts", "/other"), {}) == 404
    finally:
        server.shutdown()
        server.server_close()
    assert len(github_api.repos["octo/models"].dispatches) == 1


def test_relay_cli_needs_a_token(tmp_path):
    from tests.conftest import PY, ROOT

    proc = subprocess.run([PY, "-m", "modelops.gitops", "alert-relay", "--repo", "octo/models",
                           "--params", str(Path(ROOT) / "params.yaml")],
                          capture_output=True, text=True, cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}, timeout=60)
    assert proc.returncode == 2
    assert "GITHUB_TOKEN" in proc.stderr
