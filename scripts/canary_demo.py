"""A canary analysis on this machine: serving processes behind a Service, a real Prometheus,
client traffic, and the AnalysisTemplates that ``gitops render`` writes, previewed by
:mod:`gitops.analysis` as Argo Rollouts would decide.

``python -m scripts.canary_demo`` (``make canary-demo``) starts ``STABLE_REPLICAS`` stable
servers and, per scenario, one canary server with its own ``version`` label, each scenario's
canary behind a Service (:mod:`scripts.service_proxy`, balancing new connections over ready
endpoints as kube-proxy does) that also selects the stable pods: the canary gets its share of
ready pods, as ``setWeight: 25`` on 4 replicas gives it. Clients send held-out digits to the
Service, never to a server directly, so the canary's metrics fill from real client traffic:

- ``healthy``: the same model as stable -> the run is Successful (promote);
- ``degraded``: the model with shuffled weights -> prediction drift: Failed (abort);
- ``drifted-inputs``: the good model fed inverted images -> prediction drift and input drift
  (every pixel against its training bins): Failed;
- ``erroring``: a model whose outputs are NaN, answered 500 -> error rate: Failed;
- ``rejecting``: a canary with a lowered ``--max-batch``, answering 413 to a third of the
  requests -> error rate (non-2xx): Failed;
- ``slow``: the good model with injected latency -> latency p99: Failed;
- ``idle``: a canary in a Service no client uses -> every query NaN: Inconclusive (pause);
- ``absent``: a version that no pod serves -> every query empty: Inconclusive.

Every process binds 127.0.0.1 on a port the kernel picks and reports (no pick-then-bind race);
Prometheus runs from its binary with a temporary config (scrape every second) and storage, and
everything stops at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelops.errors import ExternalError, InputError
from scripts.service_proxy import Endpoint, ServiceProxy

ROOT = Path(__file__).resolve().parents[1]
MODEL = "digits-cnn"
STABLE_REPLICAS = 3  # + 1 canary pod: the canary's share of connections is 1/4


def free_port() -> int:
    """A port nothing listens on (for tests that need a dead address; never bind it later)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LISTENING = re.compile(r"listening on http://[^:\s]+:(\d+)")


def read_port(popen: subprocess.Popen) -> tuple[int, list[str]]:
    """The port a ``modelops-serve`` started with ``--port 0`` reports on its first line (its
    stdout a text pipe), and the lines read up to it."""
    lines = []
    for line in popen.stdout:
        lines.append(line)
        m = LISTENING.search(line)
        if m:
            return int(m.group(1)), lines
    raise ExternalError(f"the server exited ({popen.wait()}) before it listened: "
                        + "".join(lines)[-500:])


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - local URLs
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(url: str, proc: subprocess.Popen, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ExternalError(f"{what} exited with {proc.returncode} before it was ready")
        with contextlib.suppress(OSError):
            if _get(url)[0] == 200:
                return
        time.sleep(0.2)
    raise ExternalError(f"{what} not ready at {url} after {timeout:.0f}s")


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen
    log: Path
    port: int = 0
    _seen: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_port(self, timeout: float = 60.0) -> int:
        """The port the process reported it listens on."""
        deadline = time.monotonic() + timeout
        while not self._seen.wait(0.1):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-500:] if self.log.exists() else ""
                raise ExternalError(f"{self.name} did not report a listening port "
                                    f"(exit {self.popen.poll()}): {tail}")
        return self.port

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def _spawn(name: str, cmd: list[str], log: Path, pattern: str, **kw) -> Proc:
    """Start ``cmd``; a thread copies its output to ``log`` and takes the port from the first
    line matching ``pattern`` (group 1)."""
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)
    proc = Proc(name, popen, log)
    regex = re.compile(pattern)

    def pump() -> None:
        with open(log, "wb") as fh:
            for line in popen.stdout:
                fh.write(line)
                fh.flush()
                if not proc._seen.is_set():
                    m = regex.search(line.decode("utf-8", "replace"))
                    if m:
                        proc.port = int(m.group(1))
                        proc._seen.set()

    threading.Thread(target=pump, daemon=True, name=f"log-{name}").start()
    return proc


def start_server(workdir: Path, name: str, model: Path, *, version: str, role: str,
                 baseline: Path | None, extra: list[str] | None = None,
                 python: str = sys.executable) -> Proc:
    """``modelops-serve`` on a port the kernel picks (read back from its first line), sha256
    checked; returns once the process reported its port."""
    from modelops.fsutil import sha256_file

    cmd = [python, "-m", "modelops.serve", "--model", str(model), "--sha256", sha256_file(model),
           "--model-name", MODEL, "--model-version", version, "--role", role,
           "--host", "127.0.0.1", "--port", "0", "--psi-window", "300",
           "--psi-min-samples", "50", "--feature-window", "300", "--feature-min-samples", "50",
           "--drain-seconds", "0", *(extra or [])]
    if baseline is not None:
        cmd += ["--drift-baseline", str(baseline)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = _spawn(name, cmd, workdir / f"serve-{name}.log",
                  r"listening on http://127\.0\.0\.1:(\d+)", cwd=ROOT, env=env)
    proc.wait_port()
    return proc


def start_prometheus(workdir: Path, targets: list[str], binary: str = "prometheus",
                     scrape_interval: str = "1s", rule_files: list[Path] | None = None,
                     namespace: str | None = None) -> Proc:
    """Prometheus from its binary, scraping ``targets`` and evaluating ``rule_files`` (plain
    rules files, a PrometheusRule's spec) every ``scrape_interval``. The targets get the
    ``namespace`` label Kubernetes discovery gives a pod's target (the environment's namespace,
    which every rendered query selects)."""
    exe = shutil.which(binary)
    if exe is None:
        raise InputError("prometheus is not installed",
                         hint="apt-get install prometheus (only the binary is used; do not "
                              "start its service)")
    cfg = workdir / "prometheus.yml"
    cfg.write_text(json.dumps({
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [{"job_name": "model-serving", "scrape_interval": scrape_interval,
                            "scrape_timeout": scrape_interval,
                            "static_configs": [{
                                "targets": targets,
                                **({"labels": {"namespace": namespace}} if namespace else {})}]}],
        **({"rule_files": [str(p) for p in rule_files]} if rule_files else {}),
    }))
    data = workdir / "prometheus-data"
    data.mkdir(exist_ok=True)
    proc = _spawn("prometheus",
                  [exe, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                   "--web.listen-address=127.0.0.1:0", "--log.level=info"],
                  workdir / "prometheus.log",
                  r'msg="Listening on" address=127\.0\.0\.1:(\d+)', cwd=workdir)
    proc.wait_port()
    wait_until(f"{proc.url}/-/ready", proc.popen, "prometheus", timeout=60)
    return proc


class Traffic:
    """Background clients posting held-out batches to a Service until stopped. Each client
    opens a new connection every ``per_connection`` requests (kube-proxy balances connections,
    not requests); batch sizes vary from 1 to ``batch``."""

    def __init__(self, url: str, x: np.ndarray, batch: int = 8, clients: int = 1,
                 pause: float = 0.02, per_connection: int = 4, seed: int = 0):
        self.url = f"{url}/v2/models/{MODEL}/infer"
        self.x, self.batch, self.pause = x, batch, pause
        self.per_connection = per_connection
        self.seed = seed
        self.codes: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(seed * 100 + i,), daemon=True)
                         for i in range(clients)]

    def _run(self, seed: int) -> None:
        import http.client
        from urllib.parse import urlparse

        u = urlparse(self.url)
        rng = np.random.default_rng(seed)
        conn = None
        sent = 0
        while not self._stop.is_set():
            if conn is None or sent >= self.per_connection:
                if conn is not None:
                    conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
                sent = 0
            n = int(rng.integers(1, self.batch + 1))
            xb = self.x[rng.choice(len(self.x), n, replace=False)]
            body = json.dumps({"inputs": [{"name": "input", "shape": list(xb.shape),
                                           "datatype": "FP32",
                                           "data": xb.ravel().tolist()}]})
            try:
                conn.request("POST", u.path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                code = resp.status
                sent += 1
                if resp.getheader("Connection", "").lower() == "close":
                    sent = self.per_connection
            except OSError:
                code = 0
                conn.close()
                conn = None
            with self._lock:
                self.codes[code] = self.codes.get(code, 0) + 1
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()

    def start(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=35)


SCRAPE_INTERVAL = "1s"  # the lab's Prometheus, and the rendered scrape_interval


def demo_namespace(params_file: Path | None = None) -> str:
    """The namespace of the first environment of params.yaml: the one the lab renders, whose
    queries select it."""
    from modelops.settings import load_settings

    deploy = load_settings(params_file or ROOT / "params.yaml").deploy
    return next(iter(deploy.environments.values())).namespace


def render_analysis_templates(out_dir: Path, prometheus_url: str, *, interval: str = "2s",
                              count: int = 4, failure_limit: int = 1,
                              inconclusive_limit: int = 1, rate_window: str = "10s",
                              params_file: Path | None = None,
                              baseline: dict | None = None) -> Path:
    """Render the manifests with ``gitops render``'s code, params.yaml + test overrides.

    Only ``modelops.deploy.prometheus.address`` and ``modelops.deploy.analysis`` timing are
    overridden; the thresholds (error rate, latency p99, PSI) stay those of params.yaml. With
    the servers' drift ``baseline`` (its features binned), the input-drift template is
    rendered too.
    """
    from modelops.gitops.release import Release
    from modelops.gitops.render import render_env, write_env
    from modelops.settings import parse_settings
    from modelops.yamlio import load_yaml_file

    pfile = params_file or ROOT / "params.yaml"
    raw = load_yaml_file(pfile)
    deploy = raw.setdefault("modelops", {}).setdefault("deploy", {})
    deploy.setdefault("prometheus", {}).update({"address": prometheus_url,
                                                "scrape_interval": SCRAPE_INTERVAL})
    analysis = deploy.setdefault("analysis", {})
    analysis.update({"interval": interval, "count": count, "failure_limit": failure_limit,
                     "inconclusive_limit": inconclusive_limit, "rate_window": rate_window})
    params = parse_settings(raw, pfile)
    release = Release(model=MODEL, version="2", sha256="0" * 64, dvc_md5="0" * 32,
                      artifact_uri="s3://models/digits-cnn/model.onnx",
                      image=params.deploy.image, source_repo="example/model-repo",
                      source_commit="0" * 40, dvc_lock_sha256="0" * 64,
                      drift_baseline=baseline)
    env = next(iter(params.deploy.environments))
    files = render_env(release, params, env)
    target = write_env(files, out_dir, env, MODEL)
    return target / "analysis-templates.yaml"


@dataclass
class Scenario:
    name: str
    version: str
    expect: str  # the AnalysisRun's phase Argo would reach
    deciding: tuple[str, ...] = ()  # metrics that must end in that phase
    model: str = "good"  # good | shuffled | nan
    inputs: str = "held-out"  # held-out | inverted | none
    latency_ms: float = 0.0
    extra: tuple[str, ...] = ()
    serve: bool = True
    run: Any = None  # the RunResult
    service: ServiceProxy | None = None
    traffic: Traffic | None = None


def scenarios() -> list[Scenario]:
    return [
        Scenario("healthy", "2-healthy", "Successful"),
        Scenario("degraded", "3-degraded", "Failed", ("prediction-drift",), model="shuffled"),
        Scenario("drifted-inputs", "4-drifted", "Failed", ("prediction-drift", "input-drift"),
                 inputs="inverted"),
        Scenario("erroring", "8-erroring", "Failed", ("error-rate",), model="nan"),
        Scenario("rejecting", "9-rejecting", "Failed", ("error-rate",),
                 extra=("--max-batch", "5")),
        Scenario("slow", "5-slow", "Failed", ("latency-p99",), latency_ms=400),
        Scenario("idle", "6-idle", "Inconclusive", ("error-rate", "latency-p99",
                                                    "prediction-drift", "input-drift"),
                 inputs="none"),
        Scenario("absent", "7-absent", "Inconclusive", ("error-rate", "latency-p99",
                                                        "prediction-drift", "input-drift"),
                 serve=False),
    ]


@contextlib.contextmanager
def canary_lab(workdir: Path, chosen: list[Scenario], *, warmup: float = 8.0,
               log=print) -> Iterator[dict[str, Any]]:
    """Start models, servers, Services, Prometheus and traffic; yield handles; stop all."""
    from scripts.fixtures import class_distribution, feature_section, held_out, linear_model

    procs: list[Proc] = []
    proxies: list[ServiceProxy] = []
    traffic: list[Traffic] = []
    try:
        x, y = held_out(workdir)  # workdir has no data/: sklearn's digits, deterministic
        good = linear_model(workdir / "good.onnx")
        models = {"good": good,
                  "shuffled": linear_model(workdir / "shuffled.onnx", shuffled=True),
                  "nan": linear_model(workdir / "nan.onnx", nan=True)}
        baseline = workdir / "drift_baseline.json"
        baseline.write_text(json.dumps({"model": MODEL, "split": "validation",
                                        "class_distribution": class_distribution(y),
                                        "n": int(len(y)), "features": feature_section(x)}))
        log(f"==> starting {STABLE_REPLICAS} stable servers and one canary per scenario")
        stables = [start_server(workdir, f"stable-{i}", good, version="1", role="stable",
                                baseline=baseline) for i in range(STABLE_REPLICAS)]
        procs.extend(stables)
        canaries: dict[str, Proc] = {}
        for sc in chosen:
            if not sc.serve:
                continue
            extra = list(sc.extra)
            if sc.latency_ms:
                extra += ["--inject-latency-ms", str(sc.latency_ms)]
            p = start_server(workdir, sc.name, models[sc.model], version=sc.version,
                             role="canary", baseline=baseline, extra=extra)
            procs.append(p)
            canaries[sc.name] = p
        for p in procs:
            wait_until(f"{p.url}/v2/health/ready", p.popen, f"server {p.name}")
        log("==> one Service per scenario over the stable pods and its canary (kube-proxy: "
            "random ready endpoint per connection)")
        for i, sc in enumerate(chosen):
            eps = [Endpoint(p.name, p.port) for p in stables]
            if sc.name in canaries:
                eps.append(Endpoint("canary", canaries[sc.name].port))
            sc.service = ServiceProxy(sc.name, eps, seed=i).start()
            proxies.append(sc.service)
        log(f"==> starting prometheus (scrape every {SCRAPE_INTERVAL})")
        prom = start_prometheus(workdir, [f"127.0.0.1:{p.port}" for p in procs],
                                scrape_interval=SCRAPE_INTERVAL, namespace=demo_namespace())
        procs.append(prom)
        log("==> clients send held-out digits to each Service")
        for i, sc in enumerate(chosen):
            if sc.inputs == "none":
                continue
            xs = 1.0 - x if sc.inputs == "inverted" else x
            clients = 4 if sc.latency_ms else 2
            sc.traffic = Traffic(sc.service.url, xs, clients=clients, seed=i).start()
            traffic.append(sc.traffic)
        time.sleep(warmup)  # rate windows and the PSI windows fill up
        yield {"prometheus": prom, "servers": canaries, "stables": stables, "baseline": baseline,
               "traffic": traffic, "services": {sc.name: sc.service for sc in chosen}}
    finally:
        for t in traffic:
            t.stop()
        for px in proxies:
            px.stop()
        for p in reversed(procs):
            p.stop()


def thresholds(params_file: Path | None = None) -> dict[str, float]:
    """The analysis thresholds of params.yaml (``deploy.analysis``)."""
    from modelops.settings import load_settings

    a = load_settings(params_file or ROOT / "params.yaml").deploy.analysis
    return {"error_rate_max": a.error_rate_max,
            "latency_p99_max_seconds": a.latency_p99_max_seconds,
            "drift_psi_max": a.drift_psi_max}


def run_scenarios(workdir: Path, chosen: list[Scenario] | None = None, *, interval: str = "2s",
                  count: int = 4, log=print, inspect=None) -> list[Scenario]:
    """Preview each scenario's analysis step (one AnalysisRun of every rendered template, as
    Argo runs a step), all scenarios in parallel; fills ``Scenario.run``. ``inspect(lab)`` is
    called with the running lab before it stops (tests look at traffic and metrics there)."""
    from modelops.gitops.analysis import load_templates, run_analysis

    chosen = chosen if chosen is not None else scenarios()
    limit = thresholds()["latency_p99_max_seconds"]
    for sc in chosen:
        if sc.latency_ms:  # well over the params.yaml threshold, whatever it is
            sc.latency_ms = max(sc.latency_ms, 2000.0 * limit)
    with canary_lab(workdir, chosen, log=log) as lab:
        prom = lab["prometheus"]
        path = render_analysis_templates(workdir / "gitops", prom.url, interval=interval,
                                         count=count,
                                         baseline=json.loads(lab["baseline"].read_text()))
        log(f"==> previewing {path.relative_to(workdir)} for {len(chosen)} canaries")

        def one(sc: Scenario) -> None:
            templates = load_templates(path, {"model": MODEL, "version": sc.version})
            metrics = [m for ms in templates.values() for m in ms]
            sc.run = run_analysis(metrics, sc.name)

        threads = [threading.Thread(target=one, args=(sc,)) for sc in chosen]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if inspect is not None:
            inspect(lab)
    return chosen


def as_designed(sc: Scenario) -> bool:
    phases = {r.metric.name: r.phase for r in sc.run.metrics}
    return sc.run.phase == sc.expect and all(phases.get(m) == sc.expect for m in sc.deciding)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.canary_demo",
        description="Canary analysis on this machine: stable and canary servers behind "
                    "kube-proxy-like Services, a real Prometheus, client traffic through the "
                    "Services, and a preview of Argo Rollouts' decision on the rendered "
                    "AnalysisTemplates.")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep logs there")
    parser.add_argument("--interval", default="2s", help="analysis interval (default 2s)")
    parser.add_argument("--count", type=int, default=4, help="measurements per metric")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="canary-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    shares: dict[str, str] = {}

    def look(lab: dict[str, Any]) -> None:
        for name, svc in lab["services"].items():
            total = sum(svc.connections.values())
            shares[name] = (f"{svc.connections['canary']}/{total}" if total else "0/0")

    try:
        done = run_scenarios(work, interval=args.interval, count=args.count, inspect=look)
    except (ExternalError, InputError) as exc:
        print(f"canary-demo: error: {exc}", file=sys.stderr)
        return 2
    ok = True
    print("\n==> results (a preview of Argo Rollouts' decision: Failed/Error abort, "
          "Inconclusive pauses)")
    from modelops.gitops.analysis import verdict

    for sc in done:
        good = as_designed(sc)
        ok &= good
        decided = ", ".join(f"{r.metric.name}={r.phase}" for r in sc.run.metrics
                            if r.phase != "Successful") or "all Successful"
        print(f"  {sc.name:<15} canary connections {shares.get(sc.name, '-'):>9}  "
              f"run {sc.run.phase:<12} -> {verdict(sc.run.phase):<8} ({decided})  "
              f"{'as designed' if good else 'UNEXPECTED'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
