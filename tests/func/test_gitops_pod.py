"""The rendered Rollout pod is runnable: fetch-model init container + serving container.

Checks the wiring in the rendered manifests (volumes, mounts, env, the drift baseline in the
pod template, credentials, security context), then runs the pod as the kubelet would, minus the
container runtime: the init container's command and environment fetch the artifact from a real
HTTP server into the ``/models`` volume (a temporary folder), and the serving container's
environment starts ``modelops-serve`` on the fetched file with the pod template's baseline (a
downward API file), so the drift gauge the AnalysisTemplate queries is a number, not NaN.
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

from modelops.errors import ConfigError
from modelops.fsutil import sha256_file
from modelops.gitops.release import Release
from modelops.gitops.render import BASELINE_KEY, KINDS, render_docs, render_env
from modelops.settings import load_settings, parse_settings
from modelops.yamlio import load_yaml_all, load_yaml_file
from scripts.canary_demo import read_port, wait_until
from scripts.fixtures import class_distribution, held_out, linear_model
from tests.conftest import ROOT
from tests.unit.test_gitops_release import example_release


@pytest.fixture(scope="module")
def params():
    return load_settings(ROOT / "params.yaml")


def _pod(files_or_docs):
    rollout = files_or_docs["rollout.yaml"]
    (doc,) = load_yaml_all(rollout.decode()) if isinstance(rollout, bytes) else rollout
    return doc["spec"]["template"]["spec"]


def _pod_meta(files_or_docs):
    rollout = files_or_docs["rollout.yaml"]
    (doc,) = load_yaml_all(rollout.decode()) if isinstance(rollout, bytes) else rollout
    return doc["spec"]["template"]["metadata"]


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
    assert init["command"] == ["python", "-m", "modelops.serve.fetch"]
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
    # the baseline file: the release's own ConfigMap (named after its content) -> volume ->
    # mount -> DRIFT_BASELINE
    (configmap,) = load_yaml_all(files["drift-baseline.yaml"].decode())
    text = configmap["data"][BASELINE_KEY]
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert configmap["metadata"]["name"] == f"digits-cnn-baseline-{digest[:10]}"
    assert configmap["immutable"] is True
    options = configmap["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
    assert set(options.split(",")) == {"Prune=false", "ServerSideApply=true"}
    assert json.loads(text) == release.drift_baseline
    ref = volumes["drift-baseline"]["configMap"]
    assert ref["name"] == configmap["metadata"]["name"]
    (item,) = ref["items"]
    assert item["key"] == BASELINE_KEY
    assert serve_env["DRIFT_BASELINE"] == f"{_mounts(main)['drift-baseline']}/{item['path']}"
    assert next(m for m in main["volumeMounts"] if m["name"] == "drift-baseline")["readOnly"]
    annotations = _pod_meta(files)["annotations"]
    assert annotations["modelops.io/drift-baseline-sha256"] == digest
    assert not any(len(v) > 1000 for v in annotations.values())  # nothing big in the pod
    # the runtime's drifted-feature count uses the alert's threshold
    assert float(serve_env["FEATURE_PSI_THRESHOLD"]) == params.alerts.feature_psi_warning
    # hardened containers, resources from params, no credentials unless configured
    for c in (init, main):
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"]["drop"] == ["ALL"]
        assert _mounts(c)["tmp"] == "/tmp"
    fr = params.deploy.fetch_resources
    assert init["resources"]["limits"] == {"cpu": fr.limits.cpu, "memory": fr.limits.memory}
    assert "envFrom" not in init and "envFrom" not in main


def test_stable_and_canary_pods_each_read_their_own_baseline(params):
    """Argo Rollouts keeps one ReplicaSet per pod template: the stable release's pods, restarted
    mid-canary or after an abort, still mount the stable model's baseline, not the canary's."""
    stable = example_release(version="1", drift_baseline={
        "model": "digits-cnn", "class_distribution": [0.5, 0.5]})
    canary = example_release(version="2", drift_baseline={
        "model": "digits-cnn", "class_distribution": [0.9, 0.1]})
    old, new = (render_env(r, params, "production") for r in (stable, canary))
    names = []
    for files, dist in ((old, [0.5, 0.5]), (new, [0.9, 0.1])):
        (configmap,) = load_yaml_all(files["drift-baseline.yaml"].decode())
        assert json.loads(configmap["data"][BASELINE_KEY])["class_distribution"] == dist
        volumes = {v["name"]: v for v in _pod(files)["volumes"]}
        assert volumes["drift-baseline"]["configMap"]["name"] == configmap["metadata"]["name"]
        names.append(configmap["metadata"]["name"])
    assert names[0] != names[1]  # two ConfigMaps side by side, each pod template its own


def test_credentials_secret_goes_to_the_init_container_only(params):
    raw = load_yaml_file(ROOT / "params.yaml")
    raw["modelops"]["deploy"]["artifact_credentials_secret"] = "model-store-creds"
    pod = _pod(render_env(example_release(), parse_settings(raw), "staging"))
    assert pod["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "model-store-creds"}}]
    assert "envFrom" not in pod["containers"][0]
    raw["modelops"]["deploy"]["artifact_credentials_secret"] = "Bad Secret"
    with pytest.raises(ConfigError) as info:
        parse_settings(raw, "params.yaml")
    assert info.value.path == "modelops.deploy.artifact_credentials_secret"
    assert "'Bad Secret'" in str(info.value)


def test_release_without_baseline_mounts_none(params):
    release = example_release(drift_baseline=None)
    files = render_env(release, params, "staging")  # still validates
    (kust,) = load_yaml_all(files["kustomization.yaml"].decode())
    assert kust["resources"] == [k.filename for k in KINDS.values() if k.in_kustomization
                                 and k.filename != "drift-baseline.yaml"]
    pod = _pod(files)
    assert "DRIFT_BASELINE" not in _env(pod["containers"][0])
    assert "drift-baseline" not in {v["name"] for v in pod["volumes"]}
    assert "drift-baseline" not in _mounts(pod["containers"][0])
    assert not any("drift-baseline" in k for k in _pod_meta(files)["annotations"])
    assert "drift-baseline.yaml" not in files


def test_release_json_carries_the_baseline_to_every_environment(params):
    """Promote renders the target from the source's release.json: same baseline bytes."""
    staging = render_env(example_release(), params, "staging")
    copied = Release.from_json(staging["release.json"])
    production = render_env(copied, params, "production")
    a, b = (load_yaml_all(files["drift-baseline.yaml"].decode())[0]
            for files in (staging, production))
    assert a["data"] == b["data"] and a["metadata"]["name"] == b["metadata"]["name"]
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
    configmaps = {c["metadata"]["name"]: c for c in docs["drift-baseline.yaml"]}
    # the kubelet's part: volumes as folders, ConfigMap items as files (the labels file as
    # Argo Rollouts labels a canary pod)
    volume_dirs = {}
    for v in pod["volumes"]:
        volume_dirs[v["name"]] = tmp_path / "volumes" / v["name"]
        volume_dirs[v["name"]].mkdir(parents=True)
        if "configMap" in v:
            data = configmaps[v["configMap"]["name"]]["data"]
            for item in v["configMap"]["items"]:
                (volume_dirs[v["name"]] / item["path"]).write_text(data[item["key"]])
    (volume_dirs["podinfo"] / "labels").write_text('modelops.io/role="canary"\n')
    assert (volume_dirs["drift-baseline"] / "drift_baseline.json").is_file()

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
    env = {**container_env(main), "PORT": "0", "SERVE_HOST": "127.0.0.1"}
    serving = subprocess.Popen([sys.executable, "-m", "modelops.serve"], cwd=ROOT, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    port, _ = read_port(serving)
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
    raw["modelops"]["model"]["artifact"]["path"] = "models/engine.onnx"
    pod = _pod(render_docs(example_release(), parse_settings(raw), "staging"))
    assert _env(pod["initContainers"][0])["MODEL_PATH"] == "/models/engine.onnx"
    assert _env(pod["containers"][0])["MODEL_PATH"] == "/models/engine.onnx"
