"""The incident the suite exists to catch, on this machine: a feature of the tabular example
silently rescaled by 10 upstream while the model keeps answering.

``python -m scripts.drift_demo`` (``make drift-demo``) builds ``examples/breast-cancer`` with
its own ``dvc repro`` (model and per-feature baseline), renders a release of it with
``gitops.render`` (the example's own settings, the rules' ``for`` shortened to seconds),
starts a stable and a canary ``modelops-serve`` of it behind a kube-proxy-like Service, a
real Prometheus (1 s scrapes) with the rendered PrometheusRule's rules loaded (prediction
drift; input drift and data quality), and clients that send rows of the data set through the
Service; the dashboard is the rendered folder's ``dashboard.yaml``:

1. **normal traffic**: every feature stays below its drift threshold, no drift alert fires,
   and every panel of the model's Grafana dashboard has data in Prometheus;
2. **the incident**: ``mean radius`` arrives multiplied by 10. The demo counts the requests a
   pod has answered since the change when that feature's PSI crosses the threshold; then
   ``ModelFeatureDrift{feature="mean radius"}`` fires in Prometheus, the dashboard's "most
   drifted features" query puts it first, and every other feature stays below;
3. **a shift of the prediction mix**: only malignant cases arrive (features in their units):
   the prediction-drift signal (``model_prediction_psi``, ``ModelPredictionDrift``) catches
   it as before.

Every process binds 127.0.0.1 on a port the kernel picks; everything stops at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelops.errors import ExternalError
from scripts.canary_demo import Proc, start_prometheus, start_server, wait_until
from scripts.service_proxy import Endpoint, ServiceProxy

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "breast-cancer"
MODEL = "breast-cancer-gbt"
TEAM = "oncology-ml"
RESCALED = "mean radius"
FACTOR = 10.0
THRESHOLD = 0.2  # feature PSI: the runtime's --feature-psi-threshold and the alert's
FEATURE_WINDOW = 500  # rows per pod
FEATURE_MIN_SAMPLES = 100
ALERT_FOR = "4s"  # the rules' `for`, shortened for a demo
NORMAL_REQUESTS = 1400  # enough to fill each pod's window with normal rows first
MAX_INCIDENT_REQUESTS = 400
DRIFT_ALERTS = ("ModelFeatureDrift", "ModelInputDriftWidespread", "ModelPredictionDrift",
                "ModelPredictionDriftSevere")


# --------------------------------------------------------------------------- set-up

def build_example(workdir: Path, log: Callable[[str], None] = print) -> Path:
    """A copy of ``examples/breast-cancer`` as a repository of its own, after ``dvc repro``."""
    from scripts.project import project_files

    repo = workdir / "breast-cancer"
    prefix = "examples/breast-cancer/"
    for rel in project_files(ROOT):
        if rel.startswith(prefix):
            target = repo / rel[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "demo", "GIT_AUTHOR_EMAIL": "demo@example.invalid",
           "GIT_COMMITTER_NAME": "demo", "GIT_COMMITTER_EMAIL": "demo@example.invalid"}
    for cmd in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                ["git", "commit", "-q", "-m", "the example"],
                [sys.executable, "-m", "dvc", "repro", "-q"]):
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True,
                              timeout=900)
        if proc.returncode:
            raise ExternalError(f"{' '.join(cmd[:3])} in the example failed: "
                                f"{(proc.stderr or proc.stdout)[-800:]}")
    log(f"==> built {MODEL} with dvc repro (model, per-feature baseline)")
    return repo


def render_release(repo: Path, workdir: Path) -> tuple[Path, dict[str, Any], str]:
    """``modelops-gitops render``'s folder for a release of the built example (its params,
    the rules' ``for`` shortened to seconds): the PrometheusRule's rules as a file Prometheus
    loads, the dashboard the folder publishes for Grafana, and the environment's namespace
    that their queries select."""
    from modelops.fsutil import md5_file, sha256_file
    from modelops.gitops.release import Release
    from modelops.gitops.render import render_env
    from modelops.settings import parse_settings
    from modelops.yamlio import dump_yaml, load_yaml_all, load_yaml_file

    raw = load_yaml_file(repo / "params.yaml")
    raw["modelops"].setdefault("deploy", {}).setdefault("prometheus", {})["scrape_interval"] = "1s"
    raw["modelops"]["alerts"] = {
        "drift_for": ALERT_FOR, "severe_for": ALERT_FOR, "missing_for": "1h",
        "feature_psi_warning": THRESHOLD, "feature_drift_for": ALERT_FOR,
        "quality_for": ALERT_FOR, "quality_window": "20s"}
    params = parse_settings(raw, repo / "params.yaml")
    model = repo / "models/classifier.onnx"
    release = Release(
        model=MODEL, version="1", sha256=sha256_file(model), dvc_md5=md5_file(model),
        artifact_uri="s3://models/breast-cancer-gbt/classifier.onnx", image=params.deploy.image,
        source_repo="example/breast-cancer", source_commit="0" * 40,
        dvc_lock_sha256=sha256_file(repo / "dvc.lock"),
        drift_baseline=json.loads((repo / "eval/drift_baseline.json").read_text()))
    files = render_env(release, params, "production")
    (rule,) = load_yaml_all(files["prometheus-rules.yaml"].decode())
    path = workdir / "rules.yaml"
    path.write_text(dump_yaml(rule["spec"]))
    (configmap,) = load_yaml_all(files["dashboard.yaml"].decode())
    namespace = params.deploy.environment("production").namespace
    return path, json.loads(configmap["data"][f"{MODEL}-production.json"]), namespace


@dataclass
class Data:
    x: np.ndarray  # every row of the data set, the schema's column order
    y: np.ndarray
    names: list[str]


def load_data() -> Data:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return Data(d.data.astype(np.float32), d.target.astype(np.int64),
                [str(n) for n in d.feature_names])


class Client:
    """One client posting one row per request to a Service, opening a new connection every
    ``per_connection`` requests (kube-proxy balances connections)."""

    def __init__(self, url: str, per_connection: int = 4):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.path = f"/v2/models/{MODEL}/infer"
        self.per_connection = per_connection
        self._conn: http.client.HTTPConnection | None = None
        self._sent = 0
        self.codes: dict[int, int] = {}

    def post(self, body: bytes) -> int:
        if self._conn is None or self._sent >= self.per_connection:
            if self._conn is not None:
                self._conn.close()
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            self._sent = 0
        self._conn.request("POST", self.path, body, {"Content-Type": "application/json"})
        resp = self._conn.getresponse()
        resp.read()
        self._sent += 1
        if resp.getheader("Connection", "").lower() == "close":
            self._sent = self.per_connection
        self.codes[resp.status] = self.codes.get(resp.status, 0) + 1
        return resp.status

    def row(self, row: np.ndarray) -> int:
        return self.post(json.dumps({"inputs": [{
            "name": "features", "shape": [1, len(row)], "datatype": "FP32",
            "data": [float(v) for v in row]}]}).encode())

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def scrape(proc: Proc) -> str:
    with urllib.request.urlopen(f"{proc.url}/metrics", timeout=10) as r:  # noqa: S310
        return r.read().decode()


def sample(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', line.split("}", 1)[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def feature_psi(text: str) -> dict[str, float]:
    out = {}
    for m in re.finditer(r'^model_feature_psi\{feature="((?:[^"\\]|\\.)*)"[^}]*\} (\S+)$', text,
                         re.M):
        out[m.group(1)] = float(m.group(2))
    return out


def prom_query(url: str, query: str, **params: str) -> list[dict[str, Any]]:
    path = "query_range" if "start" in params else "query"
    q = urllib.parse.urlencode({"query": query, **params})
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{q}", timeout=10) as r:  # noqa: S310
        body = json.loads(r.read())
    if body.get("status") != "success":
        raise ExternalError(f"prometheus refused {query!r}: {body}")
    return body["data"]["result"]


def firing(url: str) -> list[dict[str, str]]:
    with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=10) as r:  # noqa: S310
        alerts = json.loads(r.read())["data"]["alerts"]
    return [{**a["labels"]} for a in alerts if a["state"] == "firing"]


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise ExternalError(f"{what} did not happen within {timeout:.0f}s")


@contextlib.contextmanager
def drift_lab(workdir: Path, log: Callable[[str], None] = print) -> Iterator[dict[str, Any]]:
    """The example built, a stable and a canary server behind a Service, Prometheus with the
    rules; yields handles and stops everything."""
    procs: list[Proc] = []
    service = None
    try:
        repo = build_example(workdir, log)
        model, baseline = repo / "models/classifier.onnx", repo / "eval/drift_baseline.json"
        extra = ["--feature-window", str(FEATURE_WINDOW), "--feature-min-samples",
                 str(FEATURE_MIN_SAMPLES), "--feature-psi-threshold", str(THRESHOLD)]
        import scripts.canary_demo as cd

        saved = cd.MODEL
        cd.MODEL = MODEL  # start_server names the model after the canary demo's
        try:
            stable = start_server(workdir, "stable", model, version="1", role="stable",
                                  baseline=baseline, extra=extra)
            procs.append(stable)
            canary = start_server(workdir, "canary", model, version="2", role="canary",
                                  baseline=baseline, extra=extra)
            procs.append(canary)
        finally:
            cd.MODEL = saved
        for p in (stable, canary):
            wait_until(f"{p.url}/v2/health/ready", p.popen, f"server {p.name}")
        service = ServiceProxy(MODEL, [Endpoint("stable", stable.port),
                                       Endpoint("canary", canary.port)], seed=0).start()
        rules, board, namespace = render_release(repo, workdir)
        prom = start_prometheus(workdir, [f"127.0.0.1:{p.port}" for p in (stable, canary)],
                                rule_files=[rules], namespace=namespace)
        procs.append(prom)
        log(f"==> stable v1 and canary v2 behind a Service on {service.url}; prometheus on "
            f"{prom.url} with the rules loaded")
        yield {"stable": stable, "canary": canary, "service": service, "prometheus": prom,
               "repo": repo, "baseline": baseline, "dashboard": board}
    finally:
        if service is not None:
            service.stop()
        for p in reversed(procs):
            p.stop()


# --------------------------------------------------------------------------- the scenario

@dataclass
class Incident:
    normal_max_psi: float = 0.0  # largest feature PSI of the stable pod after normal traffic
    normal_alerts: list[dict] = field(default_factory=list)
    dashboard: dict[str, int] = field(default_factory=dict)  # panel/ref -> series returned
    crossed_after: int | None = None  # requests the stable pod answered since the change
    psi_at_crossing: float = 0.0
    others_at_crossing: float = 0.0
    alerts: list[dict] = field(default_factory=list)  # firing after the incident
    alert_seconds: float = 0.0
    panel_top: list[tuple[str, float]] = field(default_factory=list)
    others_max_psi: float = 0.0
    prediction_psi: float = 0.0
    prediction_alerts: list[dict] = field(default_factory=list)


def run_incident(lab: dict[str, Any], log: Callable[[str], None] = print,
                 seed: int = 0) -> Incident:
    from modelops.gitops.dashboard import panel_queries

    out = Incident()
    data = load_data()
    rng = np.random.default_rng(seed)
    j = data.names.index(RESCALED)
    stable, prom = lab["stable"], lab["prometheus"]
    client = Client(lab["service"].url)
    try:
        # 1. normal traffic, a few refused requests among it
        log(f"==> normal traffic: {NORMAL_REQUESTS} rows through the Service")
        start = time.time()
        bad = json.dumps({"inputs": [{"name": "features", "shape": [1, 30], "datatype": "FP64",
                                      "data": [0.0] * 30}]}).encode()
        for i in range(NORMAL_REQUESTS):
            client.row(data.x[rng.integers(len(data.x))])
            if i % 100 == 0:
                client.post(bad)  # a client on an old schema: answered 400, counted
            time.sleep(0.004)
        time.sleep(3)
        out.normal_max_psi = max(feature_psi(scrape(stable)).values())
        out.normal_alerts = [a for a in firing(prom.url) if a["alertname"] in DRIFT_ALERTS]
        board = lab["dashboard"]  # the one the rendered folder publishes for Grafana
        end = time.time()
        for title, ref, expr in panel_queries(board, rate_interval="15s"):
            result = prom_query(prom.url, expr, start=f"{start:.3f}", end=f"{end:.3f}",
                                step="1")
            values = [float(v) for s in result for _, v in s["values"]]
            out.dashboard[f"{title} [{ref}]"] = sum(1 for v in values if v == v)
        log(f"    largest feature PSI {out.normal_max_psi:.3f}; drift alerts firing: "
            f"{len(out.normal_alerts)}; dashboard queries with data: "
            f"{sum(1 for v in out.dashboard.values() if v)}/{len(out.dashboard)}")

        # 2. the incident: one feature in other units
        log(f"==> the incident: {RESCALED!r} arrives multiplied by {FACTOR:g}")
        before = sample(scrape(stable), "model_requests_total", code="200") or 0.0
        changed = time.monotonic()
        for _ in range(MAX_INCIDENT_REQUESTS):
            row = data.x[rng.integers(len(data.x))].copy()
            row[j] *= FACTOR
            client.row(row)
            text = scrape(stable)
            psi = feature_psi(text)
            answered = int((sample(text, "model_requests_total", code="200") or 0) - before)
            if psi.get(RESCALED, 0.0) >= THRESHOLD and out.crossed_after is None:
                out.crossed_after = answered
                out.psi_at_crossing = psi[RESCALED]
                out.others_at_crossing = max(v for k, v in psi.items() if k != RESCALED)
                break
        if out.crossed_after is None:
            raise ExternalError(f"{RESCALED!r} did not cross {THRESHOLD} within "
                                f"{MAX_INCIDENT_REQUESTS} requests")
        log(f"    {RESCALED!r} crossed PSI {THRESHOLD} after the stable pod answered "
            f"{out.crossed_after} requests since the change (PSI {out.psi_at_crossing:.3f}; "
            f"largest other feature {out.others_at_crossing:.3f})")

        def drift_alerts() -> list[dict]:
            return [a for a in firing(prom.url) if a["alertname"] == "ModelFeatureDrift"
                    and a.get("version") == "1"]

        def still_drifting() -> list[dict]:  # the producer keeps sending its new units
            for _ in range(20):
                row = data.x[rng.integers(len(data.x))].copy()
                row[j] *= FACTOR
                client.row(row)
            return drift_alerts()

        out.alerts = wait_for(still_drifting, 90, "ModelFeatureDrift firing")
        out.alert_seconds = time.monotonic() - changed
        top = [q for q in panel_queries(board) if q[0].startswith("Most drifted")][0][2]
        result = prom_query(prom.url, top)
        out.panel_top = sorted(((s["metric"]["feature"], float(s["value"][1]))
                                for s in result), key=lambda t: -t[1])
        out.others_max_psi = max(v for k, v in feature_psi(scrape(stable)).items()
                                 if k != RESCALED)
        log(f"    ModelFeatureDrift fired {out.alert_seconds:.1f}s after the change for "
            f"{sorted({a['feature'] for a in out.alerts})}; the dashboard's most drifted: "
            f"{out.panel_top[0][0]!r} {out.panel_top[0][1]:.2f}, next "
            f"{out.panel_top[1][1]:.3f}")

        # 3. a real shift of the prediction mix, features in their units
        log("==> a shift of the prediction mix: only malignant cases")
        malignant = data.x[data.y == 0]
        for _ in range(600):
            client.row(malignant[rng.integers(len(malignant))])

        def prediction_alerts() -> list[dict]:
            # the stable's alert is the one that matters (most of the traffic); the canary's
            # may fire first under load, so wait for the stable's, not for any
            alerts = [a for a in firing(prom.url) if a["alertname"] == "ModelPredictionDrift"]
            return alerts if any(a.get("version") == "1" for a in alerts) else []

        out.prediction_alerts = wait_for(prediction_alerts, 90,
                                         "ModelPredictionDrift firing for the stable (v1)")
        out.prediction_psi = sample(scrape(stable), "model_prediction_psi") or 0.0
        log(f"    model_prediction_psi {out.prediction_psi:.2f}; ModelPredictionDrift fired "
            f"for version(s) {sorted({a['version'] for a in out.prediction_alerts})}")
    finally:
        client.close()
    return out


def as_designed(r: Incident) -> list[str]:
    """What went other than designed (empty: the demo showed what it should)."""
    problems = []
    if r.normal_max_psi >= THRESHOLD or r.normal_alerts:
        problems.append(f"normal traffic drifted (PSI {r.normal_max_psi}, {r.normal_alerts})")
    if not r.dashboard or not all(r.dashboard.values()):
        problems.append(f"dashboard queries without data: "
                        f"{[k for k, v in r.dashboard.items() if not v]}")
    if {a.get("feature") for a in r.alerts} != {RESCALED}:
        problems.append(f"feature drift alerts for {[a.get('feature') for a in r.alerts]}")
    if not r.panel_top or r.panel_top[0][0] != RESCALED or r.panel_top[0][1] < THRESHOLD:
        problems.append(f"the dashboard's most drifted features: {r.panel_top[:3]}")
    if any(v >= THRESHOLD for k, v in r.panel_top if k != RESCALED) or \
            r.others_max_psi >= THRESHOLD:
        problems.append("another feature crossed the threshold")
    if not r.prediction_alerts or r.prediction_psi < THRESHOLD:
        problems.append("the prediction-mix shift was not caught")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.drift_demo",
        description="A feature of the breast-cancer example rescaled by 10 upstream: the "
                    "serving runtime's feature drift, the alert in a real Prometheus, the "
                    "dashboard's query; then a shift of the prediction mix.")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep logs there")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="drift-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        with drift_lab(work) as lab:
            result = run_incident(lab)
    except ExternalError as exc:
        print(f"drift-demo: error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    problems = as_designed(result)
    print("\n==> " + ("as designed" if not problems else "UNEXPECTED: " + "; ".join(problems)))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
