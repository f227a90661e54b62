"""A canary analysis on this machine: serving processes, a real Prometheus, traffic, and the
AnalysisTemplates that ``gitops render`` writes, evaluated by :mod:`gitops.analysis`.

``python -m scripts.canary_demo`` (``make canary-demo``) runs the scenarios side by side, each
canary
with its own ``version`` label (the templates select ``role="canary"`` and the version arg):

- ``healthy``: the same model as stable -> every analysis passes;
- ``degraded``: the model with shuffled weights -> the drift analysis fails (abort);
- ``drifted-inputs``: the good model fed inverted images -> the drift analysis fails (abort);
- ``erroring``: a model whose outputs are NaN, answered 500 -> the error analysis fails (abort);
- ``slow``: the good model with injected latency -> the latency analysis fails (abort);
- ``idle``: a canary that is scraped but gets no traffic -> every query is NaN (inconclusive);
- ``absent``: a version that no pod serves -> every query is empty (inconclusive).

Everything binds 127.0.0.1; Prometheus runs from its binary with a temporary config (scrape
every second) and storage folder, and all processes stop at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
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

ROOT = Path(__file__).resolve().parents[1]
MODEL = "digits-cnn"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def start_server(workdir: Path, name: str, model: Path, *, version: str, role: str,
                 baseline: Path | None, extra: list[str] | None = None,
                 python: str = sys.executable) -> Proc:
    """``modelops-serve`` on a free port, sha256 checked; returns once the process started."""
    from modelops.fsutil import sha256_file

    port = free_port()
    log = workdir / f"serve-{name}.log"
    cmd = [python, "-m", "modelops.serve", "--model", str(model), "--sha256", sha256_file(model),
           "--model-name", MODEL, "--model-version", version, "--role", role,
           "--host", "127.0.0.1", "--port", str(port), "--psi-window", "300",
           "--psi-min-samples", "50", *(extra or [])]
    if baseline is not None:
        cmd += ["--drift-baseline", str(baseline)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fh = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    popen = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=env)
    return Proc(name, popen, port, log)


def start_prometheus(workdir: Path, targets: list[str], binary: str = "prometheus",
                     scrape_interval: str = "1s") -> Proc:
    exe = shutil.which(binary)
    if exe is None:
        raise InputError("prometheus is not installed",
                         hint="apt-get install prometheus (only the binary is used; do not "
                              "start its service)")
    port = free_port()
    cfg = workdir / "prometheus.yml"
    cfg.write_text(json.dumps({
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "scrape_configs": [{"job_name": "model-serving", "scrape_interval": scrape_interval,
                            "scrape_timeout": scrape_interval,
                            "static_configs": [{"targets": targets}]}],
    }))
    data = workdir / "prometheus-data"
    data.mkdir(exist_ok=True)
    log = workdir / "prometheus.log"
    fh = open(log, "wb")  # noqa: SIM115 - lives as long as the process
    popen = subprocess.Popen(
        [exe, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        cwd=workdir, stdout=fh, stderr=subprocess.STDOUT)
    proc = Proc("prometheus", popen, port, log)
    wait_until(f"{proc.url}/-/ready", popen, "prometheus", timeout=60)
    return proc


class Traffic:
    """Background clients posting held-out batches to one server until stopped."""

    def __init__(self, url: str, x: np.ndarray, batch: int = 8, clients: int = 1,
                 pause: float = 0.02):
        self.url = f"{url}/v2/models/{MODEL}/infer"
        self.x, self.batch, self.pause = x, batch, pause
        self.codes: dict[int, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(clients)]

    def _run(self, seed: int) -> None:
        import http.client
        from urllib.parse import urlparse

        u = urlparse(self.url)
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        rng = np.random.default_rng(seed)
        while not self._stop.is_set():
            idx = rng.choice(len(self.x), self.batch, replace=False)
            xb = self.x[idx]
            body = json.dumps({"inputs": [{"name": "input", "shape": list(xb.shape),
                                           "datatype": "FP32",
                                           "data": xb.ravel().tolist()}]})
            try:
                conn.request("POST", u.path, body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                code = resp.status
            except OSError:
                code = 0
                conn.close()
                conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
            with self._lock:
                self.codes[code] = self.codes.get(code, 0) + 1
            self._stop.wait(self.pause)
        conn.close()

    def start(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=35)


def render_analysis_templates(out_dir: Path, prometheus_url: str, *, interval: str = "2s",
                              count: int = 4, failure_limit: int = 1,
                              inconclusive_limit: int = 1, rate_window: str = "10s",
                              params_file: Path | None = None) -> Path:
    """Render the manifests with ``gitops render``'s code, params.yaml + test overrides.

    Only ``modelops.deploy.prometheus.address`` and ``modelops.deploy.analysis`` timing are
    overridden; the thresholds (error rate, latency p99, PSI) stay those of params.yaml.
    """
    from modelops.gitops.release import Release
    from modelops.gitops.render import render_env, write_env
    from modelops.settings import parse_settings
    from modelops.yamlio import load_yaml_file

    pfile = params_file or ROOT / "params.yaml"
    raw = load_yaml_file(pfile)
    deploy = raw.setdefault("modelops", {}).setdefault("deploy", {})
    deploy.setdefault("prometheus", {})["address"] = prometheus_url
    analysis = deploy.setdefault("analysis", {})
    analysis.update({"interval": interval, "count": count, "failure_limit": failure_limit,
                     "inconclusive_limit": inconclusive_limit, "rate_window": rate_window})
    params = parse_settings(raw, pfile)
    release = Release(model=MODEL, version="2", sha256="0" * 64, dvc_md5="0" * 32,
                      artifact_uri="s3://models/digits-cnn/model.onnx",
                      image=params.deploy.image, source_repo="example/model-repo",
                      source_commit="0" * 40, dvc_lock_sha256="0" * 64)
    env = next(iter(params.deploy.environments))
    files = render_env(release, params, env)
    target = write_env(files, out_dir, env, MODEL)
    return target / "analysis-templates.yaml"


@dataclass
class Scenario:
    name: str
    version: str
    expect: dict[str, str]  # template short name -> expected phase
    model: str = "good"  # good | shuffled | nan
    inputs: str = "held-out"  # held-out | inverted | none
    latency_ms: float = 0.0
    serve: bool = True
    results: dict[str, Any] = field(default_factory=dict)


def scenarios() -> list[Scenario]:
    ok = "Successful"
    return [
        Scenario("healthy", "2-healthy", {"error-rate": ok, "latency-p99": ok,
                                          "prediction-drift": ok}),
        Scenario("degraded", "3-degraded", {"prediction-drift": "Failed"}, model="shuffled"),
        Scenario("drifted-inputs", "4-drifted", {"prediction-drift": "Failed"},
                 inputs="inverted"),
        Scenario("erroring", "8-erroring", {"error-rate": "Failed", "latency-p99": ok},
                 model="nan"),
        Scenario("slow", "5-slow", {"latency-p99": "Failed", "error-rate": ok,
                                    "prediction-drift": ok}, latency_ms=400),
        Scenario("idle", "6-idle", {"error-rate": "Inconclusive",
                                    "latency-p99": "Inconclusive",
                                    "prediction-drift": "Inconclusive"}, inputs="none"),
        Scenario("absent", "7-absent", {"error-rate": "Inconclusive",
                                        "latency-p99": "Inconclusive",
                                        "prediction-drift": "Inconclusive"}, serve=False),
    ]


@contextlib.contextmanager
def canary_lab(workdir: Path, chosen: list[Scenario], *, warmup: float = 8.0,
               log=print) -> Iterator[dict[str, Any]]:
    """Start models, servers, Prometheus and traffic; yield handles; stop everything."""
    from scripts.fixtures import class_distribution, held_out, linear_model

    procs: list[Proc] = []
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
                                        "n": int(len(y))}))
        log("==> starting stable and canary servers")
        stable = start_server(workdir, "stable", good, version="1", role="stable",
                              baseline=baseline)
        procs.append(stable)
        by_name: dict[str, Proc] = {}
        for sc in chosen:
            if not sc.serve:
                continue
            extra = ["--inject-latency-ms", str(sc.latency_ms)] if sc.latency_ms else []
            p = start_server(workdir, sc.name, models[sc.model],
                             version=sc.version, role="canary", baseline=baseline,
                             extra=extra)
            procs.append(p)
            by_name[sc.name] = p
        for p in procs:
            wait_until(f"{p.url}/v2/health/ready", p.popen, f"server {p.name}")
        log("==> starting prometheus (scrape every 1s)")
        prom = start_prometheus(workdir, [f"127.0.0.1:{p.port}" for p in procs])
        procs.append(prom)
        log("==> driving traffic from the held-out digits")
        traffic.append(Traffic(stable.url, x).start())
        for sc in chosen:
            if sc.name in by_name and sc.inputs != "none":
                xs = 1.0 - x if sc.inputs == "inverted" else x
                clients = 4 if sc.latency_ms else 1
                traffic.append(Traffic(by_name[sc.name].url, xs, clients=clients).start())
        time.sleep(warmup)  # rate windows and the PSI window fill up
        yield {"prometheus": prom, "servers": by_name, "stable": stable, "traffic": traffic}
    finally:
        for t in traffic:
            t.stop()
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
                  count: int = 4, log=print) -> list[Scenario]:
    """Run every scenario's analysis in parallel; fills ``Scenario.results``."""
    from modelops.gitops.analysis import load_templates, run_templates

    chosen = chosen if chosen is not None else scenarios()
    limit = thresholds()["latency_p99_max_seconds"]
    for sc in chosen:
        if sc.latency_ms:  # well over the params.yaml threshold, whatever it is
            sc.latency_ms = max(sc.latency_ms, 2000.0 * limit)
    with canary_lab(workdir, chosen, log=log) as lab:
        prom = lab["prometheus"]
        path = render_analysis_templates(workdir / "gitops", prom.url, interval=interval,
                                         count=count)
        log(f"==> evaluating {path.relative_to(workdir)} for {len(chosen)} canaries")
        combined = {}
        for sc in chosen:
            for tname, metrics in load_templates(path, {"model": MODEL,
                                                        "version": sc.version}).items():
                short = tname.removeprefix(f"{MODEL}-")
                for m in metrics:
                    m.template = f"{sc.name}/{short}"
                combined[f"{sc.name}/{short}"] = metrics
        for run in run_templates(combined):
            sc_name, short = run.template.split("/", 1)
            sc = next(s for s in chosen if s.name == sc_name)
            sc.results[short] = run
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.canary_demo",
        description="Canary analysis on this machine: stable and canary servers, a real "
                    "Prometheus, held-out traffic, and the rendered AnalysisTemplates.")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep logs there")
    parser.add_argument("--interval", default="2s", help="analysis interval (default 2s)")
    parser.add_argument("--count", type=int, default=4, help="measurements per metric")
    args = parser.parse_args(argv)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="canary-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        done = run_scenarios(work, interval=args.interval, count=args.count)
    except (ExternalError, InputError) as exc:
        print(f"canary-demo: error: {exc}", file=sys.stderr)
        return 2
    ok = True
    print("\n==> results (Argo Rollouts: Failed/Error abort, Inconclusive pauses)")
    for sc in done:
        phases = {k: r.phase for k, r in sc.results.items()}
        good = all(phases.get(k) == v for k, v in sc.expect.items())
        ok &= good
        cells = "  ".join(f"{k}={v}" for k, v in sorted(phases.items()))
        print(f"  {sc.name:<15} {cells}  {'as designed' if good else 'UNEXPECTED'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
