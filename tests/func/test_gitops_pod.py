"""The rendered Rollout pod is runnable: fetch-model init container + serving container.

Checks the wiring in the rendered manifests (volumes, mounts, env, the drift-baseline
ConfigMap, credentials, security context), then runs the pod as the kubelet would, minus the
container runtime: the init container's command and environment fetch the artifact from a real
HTTP server into the ``/models`` volume (a temporary folder), and the serving container's
environment starts ``python -m serve`` on the fetched file with the ConfigMap's baseline, so the
drift gauge the AnalysisTemplate queries is a number, not NaN.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import http.server
import json
import math
import signal
import subprocess
import sys
import threading

import pytest

from ci.config import load_params, parse_params
from ci.errors import ConfigError
from ci.fsutil import sha256_file
from ci.yamlio import load_yaml_all, load_yaml_file
from gitops.release import Release
from gitops.render import KINDS, render_docs, render_env
from serve.canary import free_port, wait_until
from serve.fixtures import class_distribution, held_out, linear_model
from tests.conftest import ROOT
from tests.unit.test_gitops_release import example_release


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def _pod(files_or_docs):
    rollout = files_or_docs["rollout.yaml"]
    (doc,) = load_yaml_all(rollout.decode()) if isinstance(rollout, bytes) else rollout
    return doc["spec"]["template"]["spec"]


def _env(container) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", [])}


def _mounts(container) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}


def test_pod_wiring(params):
    release = example_release()
    files = render_env(release, params, "production")
    pod = _pod(files)
    (init,) = pod["initContainers"]
    (main,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert init["name"] == "fetch-model" and init["image"] == main["image"] == release.image
    assert init["command"] == ["python", "-m", "serve.fetch"]
    fetch_env, serve_env = _env(init), _env(main)
    assert fetch_env == {"MODEL_URI": release.artifact_uri, "MODEL_SHA256": release.sha256,
                         "MODEL_PATH": "/models/model.onnx"}
    assert serve_env["MODEL_PATH"] == fetch_env["MODEL_PATH"]
    assert serve_env["MODEL_SHA256"] == release.sha256
    assert "MODEL_URI" not in serve_env
    # the fetched file lands in the emptyDir that the server mounts read-only
    assert "emptyDir" in volumes["model"]
    assert _mounts(init)["model"] == _mounts(main)["model"] == "/models"
    assert next(m for m in main["volumeMounts"] if m["name"] == "model")["readOnly"] is True
    # the baseline file: ConfigMap key -> volume item -> mount -> DRIFT_BASELINE
    cm_volume = volumes["drift-baseline"]["configMap"]
    (item,) = cm_volume["items"]
    assert serve_env["DRIFT_BASELINE"] == f"{_mounts(main)['drift-baseline']}/{item['path']}"
    (cm,) = load_yaml_all(files["drift-baseline.yaml"].decode())
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", cm_volume["name"])
    assert cm["metadata"]["name"] == "digits-cnn-drift-baseline"
    assert cm["metadata"]["namespace"] == params.deploy.environments["production"].namespace
    assert json.loads(cm["data"][item["key"]]) == release.drift_baseline
    digest = hashlib.sha256(cm["data"][item["key"]].encode()).hexdigest()
    (rollout,) = load_yaml_all(files["rollout.yaml"].decode())
    pod_meta = rollout["spec"]["template"]["metadata"]
    assert pod_meta["annotations"]["modelops.io/drift-baseline-sha256"] == digest
    # hardened containers, resources from params, no credentials unless configured
    for c in (init, main):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert _mounts(c)["tmp"] == "/tmp"
    fr = params.deploy.fetch_resources
    assert init["resources"]["limits"] == {"cpu": fr.limits.cpu, "memory": fr.limits.memory}
    assert "envFrom" not in init and "envFrom" not in main


def test_configmap_is_validated_as_a_core_kind(params):
    import copy

    from gitops.validate import validate_manifests

    (cm,) = render_docs(example_release(), params, "staging")["drift-baseline.yaml"]
    assert validate_manifests([cm], ["drift-baseline.yaml"]) == []
    bad = copy.deepcopy(cm)
    bad["data"]["drift_baseline.json"] = 3  # ConfigMap data values are strings
    bad["dat"] = bad.pop("binaryData", {})  # misspelled field: strict mode rejects it
    problems = [str(p) for p in validate_manifests([bad], ["drift-baseline.yaml"])]
    assert any("data.drift_baseline.json" in p for p in problems), problems
    assert any("dat" in p and "data." not in p for p in problems), problems


def test_credentials_secret_goes_to_the_init_container_only(params):
    raw = load_yaml_file(ROOT / "params.yaml")
    raw["deploy"]["artifact_credentials_secret"] = "model-store-creds"
    pod = _pod(render_env(example_release(), parse_params(raw), "staging"))
    assert pod["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "model-store-creds"}}]
    assert "envFrom" not in pod["containers"][0]
    raw["deploy"]["artifact_credentials_secret"] = "Bad Secret"
    with pytest.raises(ConfigError) as info:
        parse_params(raw, "params.yaml")
    assert info.value.path == "deploy.artifact_credentials_secret"
    assert "'Bad Secret'" in str(info.value)


def test_release_without_baseline_renders_no_configmap(params):
    release = example_release(drift_baseline=None)
    files = render_env(release, params, "staging")  # still validates
    assert "drift-baseline.yaml" not in files
    (kust,) = load_yaml_all(files["kustomization.yaml"].decode())
    assert "drift-baseline.yaml" not in kust["resources"]
    assert kust["resources"] == [k.filename for name, k in KINDS.items()
                                 if k.in_kustomization and name != "drift-baseline"]
    pod = _pod(files)
    assert "DRIFT_BASELINE" not in _env(pod["containers"][0])
    assert "drift-baseline" not in {v["name"] for v in pod["volumes"]}


def test_release_json_carries_the_baseline_to_every_environment(params):
    """Promote renders the target from the source's release.json: same baseline bytes."""
    staging = render_env(example_release(), params, "staging")
    copied = Release.from_json(staging["release.json"])
    production = render_env(copied, params, "production")
    (a,) = load_yaml_all(staging["drift-baseline.yaml"].decode())
    (b,) = load_yaml_all(production["drift-baseline.yaml"].decode())
    assert a["data"] == b["data"]
    assert production["release.json"] == staging["release.json"]


# --------------------------------------------------------------------------- run the pod

def _call(port: int, method: str, path: str, body: str | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request(method, path, body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


@pytest.mark.slow
def test_rendered_pod_runs_fetch_then_serve_with_drift_baseline(params, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    model = linear_model(store / "blob")
    x, y = held_out(tmp_path, limit=150)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(store))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    baseline = {"model": "digits-cnn", "split": "validation",
                "classes": [str(i) for i in range(10)],
                "class_distribution": class_distribution(y), "n": len(y)}
    release = example_release(
        sha256=sha256_file(model), drift_baseline=baseline,
        artifact_uri=f"http://127.0.0.1:{server.server_address[1]}/blob")
    docs = render_docs(release, params, "staging")
    pod = _pod(docs)
    (cm,) = docs["drift-baseline.yaml"]
    # the kubelet's part: volumes as folders, the ConfigMap's keys as files
    volume_dirs = {}
    for v in pod["volumes"]:
        volume_dirs[v["name"]] = tmp_path / "volumes" / v["name"]
        volume_dirs[v["name"]].mkdir(parents=True)
        if "configMap" in v:
            for item in v["configMap"]["items"]:
                (volume_dirs[v["name"]] / item["path"]).write_text(cm["data"][item["key"]])
    (volume_dirs["podinfo"] / "labels").write_text('modelops.io/role="canary"\n')

    def container_env(c):
        env = _env(c)
        for k, v in env.items():
            for m in c["volumeMounts"]:
                if v.startswith(m["mountPath"] + "/"):
                    env[k] = str(volume_dirs[m["name"]]) + v[len(m["mountPath"]):]
                    break
        return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), **env}

    try:
        (init,) = pod["initContainers"]
        cmd = [sys.executable if a == "python" else a for a in init["command"]]
        proc = subprocess.run(cmd, cwd=ROOT, env=container_env(init), capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert (volume_dirs["model"] / "model.onnx").read_bytes() == model.read_bytes()
    finally:
        server.shutdown()
        server.server_close()

    (main,) = pod["containers"]
    port = free_port()
    env = {**container_env(main), "PORT": str(port), "SERVE_HOST": "127.0.0.1"}
    serving = subprocess.Popen([sys.executable, "-m", "serve"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(f"http://127.0.0.1:{port}/v2/health/ready", serving, "server")
        body = json.dumps({"inputs": [{"name": "input", "shape": list(x.shape),
                                       "datatype": "FP32", "data": x.ravel().tolist()}]})
        status, _ = _call(port, "POST", "/v2/models/digits-cnn/infer", body)
        assert status == 200
        _, text = _call(port, "GET", "/metrics")
        line = next(s for s in text.decode().splitlines()
                    if s.startswith("model_prediction_psi{"))
        assert 'role="canary"' in line and 'version="0123456789ab"' in line
        psi = float(line.split()[-1])
        assert not math.isnan(psi) and 0 <= psi < 0.2  # a baseline was loaded
    finally:
        serving.send_signal(signal.SIGTERM)
        serving.wait(20)


def test_fetched_file_name_follows_artifact_path():
    raw = load_yaml_file(ROOT / "params.yaml")
    raw["deploy"]["artifact_path"] = "models/engine.plan"
    pod = _pod(render_docs(example_release(), parse_params(raw), "staging"))
    assert _env(pod["initContainers"][0])["MODEL_PATH"] == "/models/engine.plan"
    assert _env(pod["containers"][0])["MODEL_PATH"] == "/models/engine.plan"
