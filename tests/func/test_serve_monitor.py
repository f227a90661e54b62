"""Input monitoring in the real serving process on 127.0.0.1: a baseline with per-feature
bins, requests over HTTP (JSON and binary), refused ones, and what /metrics says after them;
a baseline that does not fit the model stops the start-up with one clear line."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops.fsutil import sha256_file
from scripts.canary_demo import read_port, wait_until
from scripts.fixtures import class_distribution, feature_section, held_out, linear_model
from tests.conftest import ROOT

MODEL = "digits-cnn"


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("serve-monitor")
    model = linear_model(d / "model.onnx")
    x, y = held_out(d)
    baseline = d / "drift_baseline.json"
    baseline.write_text(json.dumps({
        "model": MODEL, "class_distribution": class_distribution(y),
        "features": {**feature_section(x), "names": [f"px{j}" for j in range(64)]}}))
    return {"dir": d, "model": model, "baseline": baseline, "x": x, "y": y}


def start(artifacts, *extra: str, baseline=None):
    cmd = [sys.executable, "-m", "modelops.serve", "--model", str(artifacts["model"]),
           "--sha256", sha256_file(artifacts["model"]), "--port", "0", "--model-version", "4",
           "--drift-baseline", str(baseline or artifacts["baseline"]),
           "--feature-min-samples", "50", "--feature-window", "400", "--nan-policy", "reject",
           *extra]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    return proc


@pytest.fixture(scope="module")
def server(artifacts):
    proc = start(artifacts, "--feature-series-max", "16")
    port, _ = read_port(proc)
    wait_until(f"http://127.0.0.1:{port}/v2/health/ready", proc, "server")
    yield port
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def call(port, body: bytes, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("POST", f"/v2/models/{MODEL}/infer", body, headers or {})
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp.status


def json_body(x: np.ndarray, datatype: str = "FP32") -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(x.shape), "datatype": datatype,
                                   "data": x.ravel().tolist()}]}).encode()


def metrics(port) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            assert s.labels.get("model") == MODEL and s.labels.get("version") == "4"
            key = tuple(sorted((k, v) for k, v in s.labels.items()
                               if k not in ("model", "version", "role")))
            out[(s.name, key)] = s.value
    return out


def test_requests_feed_drift_quality_confidence_and_refusals(server, artifacts):
    x = artifacts["x"]
    # 120 rows in JSON batches of 4, and 80 as binary tensors: all monitored
    for i in range(30):
        assert call(server, json_body(x[4 * i:4 * i + 4])) == 200
    xb = np.ascontiguousarray(x[120:200])
    head = json.dumps({"inputs": [{"name": "input", "shape": list(xb.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": xb.nbytes}}]}).encode()
    assert call(server, head + xb.tobytes(),
                {"Inference-Header-Content-Length": str(len(head))}) == 200
    nan = x[:2].copy()
    nan[0, 0, 0, 0] = np.nan
    nan[1, 0, 0, 0] = np.nan
    assert call(server, json.dumps({"inputs": [{"name": "input", "shape": [2, 1, 8, 8],
                                                 "datatype": "FP32",
                                                 "data": [None if v != v else float(v)
                                                          for v in nan.ravel()]}]}
                                   ).replace("null", "NaN").encode()) == 400
    assert call(server, json_body(x[:1], "FP64")) == 400  # the schema
    assert call(server, b"{not json") == 400
    assert call(server, json_body(np.zeros((2000, 1, 8, 8), np.float32))) == 413
    bright = np.full((3, 1, 8, 8), 2.0, np.float32)  # beyond the training range 0..1
    assert call(server, json_body(bright)) == 200
    m = metrics(server)
    assert m[("model_input_rows_total", ())] == 200 + 2 + 3
    assert m[("model_input_rejected_total", (("reason", "nonfinite"),))] == 1
    assert m[("model_input_rejected_total", (("reason", "schema"),))] == 1
    assert m[("model_input_rejected_total", (("reason", "malformed"),))] == 1
    assert m[("model_input_rejected_total", (("reason", "limit"),))] == 1
    assert m[("model_feature_nonfinite_total", (("feature", "px0"),))] == 2
    assert m[("model_feature_out_of_range_total", (("feature", "px1"),))] == 3
    # 64 features, a cap of 16: counters for px0..px15 and the rest together
    assert m[("model_feature_out_of_range_total", (("feature", "_other"),))] == 3 * 48
    assert ("model_feature_out_of_range_total", (("feature", "px16"),)) not in m
    psi = {k[1][0][1]: v for k, v in m.items() if k[0] == "model_feature_psi"}
    assert len(psi) == 16 and all(v == v for v in psi.values())  # top 16, numbers now
    assert m[("model_features_monitored", ())] == 64
    assert m[("model_prediction_confidence_count", ())] == 203
    assert m[("model_prediction_confidence_bucket", (("le", "+Inf"),))] == 203
    assert m[("model_input_monitor_dropped_total", ())] == 0


def test_without_input_monitoring_nothing_of_it_is_exported(artifacts):
    proc = start(artifacts, "--no-input-monitoring")
    port, _ = read_port(proc)
    try:
        wait_until(f"http://127.0.0.1:{port}/v2/health/ready", proc, "server")
        assert call(port, json_body(artifacts["x"][:4])) == 200
        names = {k[0] for k in metrics(port)}
        assert "model_prediction_psi" in names and "model_requests_total" in names
        assert not {n for n in names if n.startswith(("model_feature", "model_input",
                                                      "model_prediction_confidence"))}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


def test_a_baseline_for_other_features_stops_the_start_up_with_one_line(artifacts, tmp_path):
    data = json.loads(artifacts["baseline"].read_text())
    f = data["features"]
    for key in ("names", "min", "max", "quantile_edges", "bin_distribution"):
        f[key] = f[key][:30]
    wrong = tmp_path / "other.json"
    wrong.write_text(json.dumps(data))
    proc = start(artifacts, baseline=wrong)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert ("the drift baseline describes 30 features but rows of input 'input' [-1, 1, 8, 8] "
            "hold 64 values") in out
    assert "Traceback" not in out
