"""``modelops-serve``: serve one model over the Open Inference Protocol with Prometheus metrics.

Start-up order: listen (so liveness answers), read the artifact once, check the sha256 of those
bytes, load the same bytes, warm up, then report ready. SIGTERM or SIGINT: readiness turns 503
at once while every request (new connections too) is still answered for ``--drain-seconds``;
then the listener closes and in-flight requests finish (up to ``--grace-seconds``); exit 0.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from modelops.cli import DefaultsHelpFormatter, run_main
from modelops.errors import InputError

ENV = {  # flag -> environment variable that sets its default (the container uses these)
    "model": "MODEL_PATH", "sha256": "MODEL_SHA256", "model_name": "MODEL_NAME",
    "model_version": "MODEL_VERSION", "role": "MODEL_ROLE", "drift_baseline": "DRIFT_BASELINE",
    "inject_latency_ms": "SERVE_INJECT_LATENCY_MS", "port": "PORT", "host": "SERVE_HOST",
    "role_file": "MODEL_ROLE_FILE", "drain_seconds": "SERVE_DRAIN_SECONDS",
    "grace_seconds": "SERVE_GRACE_SECONDS", "feature_window": "FEATURE_WINDOW",
    "feature_psi_threshold": "FEATURE_PSI_THRESHOLD", "feature_series_max": "FEATURE_SERIES_MAX",
}


# the names of modelops.serve.backends.BACKENDS (a test keeps them equal): the parser is built
# without importing the runtime, so --help works in an install without the [serve] extra
BACKEND_NAMES = ("onnxruntime", "tensorrt")
SERVE_EXTRA = "modelops-suite[serve]"


def _env(name: str, default=None):
    return os.environ.get(ENV[name], default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelops-serve",
        description="Serve one model over the Open Inference Protocol (KServe v2 HTTP/JSON and "
                    "binary tensors) with Prometheus metrics at /metrics. The artifact's sha256 "
                    "is checked before it is loaded; /v2/health/ready is 503 until it has been. "
                    "Each flag in CAPS can also come from the environment variable named.",
        epilog="Metrics: model_request_duration_seconds, model_requests_total{code}, "
               "model_predictions_total{class}, model_prediction_psi, "
               "model_prediction_confidence, model_input_rejected_total{reason}; with a "
               "baseline's features: model_feature_psi{feature}, model_feature_psi_max, "
               "model_features_drifted, model_features_monitored, "
               "model_feature_{missing,nonfinite,out_of_range}_total{feature}, "
               "model_input_rows_total; all labelled model, version, role. Exit codes: 0 "
               "stopped cleanly, 2 bad flag or artifact, 3 bug.",
        formatter_class=DefaultsHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--model", default=_env("model") or os.environ.get("MODEL_URI"),
                   metavar="PATH",
                   help="the artifact: models/model.onnx, or a TensorRT engine (.plan); a "
                        "file:// URI works too [MODEL_PATH, else MODEL_URI]")
    g.add_argument("--sha256", default=_env("sha256"), metavar="HEX",
                   help="expected sha256 of the artifact (from the release); the server refuses "
                        "to load a file that differs [MODEL_SHA256]")
    g.add_argument("--no-verify", action="store_true",
                   help="serve without a sha256 check (local experiments only)")
    g.add_argument("--model-name", default=_env("model_name", "digits-cnn"),
                   help="name in URLs and the `model` label [MODEL_NAME]")
    g.add_argument("--model-version", default=_env("model_version", "0"),
                   help="release version, the `version` label [MODEL_VERSION]")
    g.add_argument("--role", default=_env("role", "stable"), choices=("stable", "canary"),
                   help="the `role` label: which side of an Argo Rollouts canary this is "
                        "[MODEL_ROLE]")
    g.add_argument("--role-file", default=_env("role_file"), metavar="FILE",
                   help="downward-API labels file; its modelops.io/role label, read at each "
                        "scrape, overrides --role (Argo relabels pods on promotion) "
                        "[MODEL_ROLE_FILE]")
    g.add_argument("--backend", default="auto", choices=("auto", *BACKEND_NAMES),
                   help="auto: tensorrt for .plan/.engine files, onnxruntime otherwise")
    g.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto uses CUDA when the backend has it")
    g.add_argument("--threads", type=int, default=1,
                   help="compute threads per request (ONNX Runtime intra-op)")
    g = p.add_argument_group("drift")
    g.add_argument("--drift-baseline", default=_env("drift_baseline"), metavar="JSON",
                   help="metrics/drift_baseline.json; without it model_prediction_psi is NaN "
                        "[DRIFT_BASELINE]")
    g.add_argument("--psi-window", type=int, default=1000,
                   help="PSI over this many most recent predictions")
    g.add_argument("--psi-min-samples", type=int, default=100,
                   help="PSI is NaN until the window holds this many predictions")
    g = p.add_argument_group(
        "input monitoring",
        "with the baseline's features section: per-feature PSI over a sliding window of "
        "rows, data-quality counters, and the prediction-confidence histogram; computed off "
        "the request path")
    g.add_argument("--feature-window", type=int, default=int(_env("feature_window", "1000")),
                   help="feature PSI over this many most recent input rows [FEATURE_WINDOW]")
    g.add_argument("--feature-min-samples", type=int, default=200,
                   help="a feature's PSI is NaN until the window holds this many of its values")
    g.add_argument("--feature-psi-threshold", type=float,
                   default=float(_env("feature_psi_threshold", "0.2")),
                   help="model_features_drifted counts features whose PSI is at least this "
                        "[FEATURE_PSI_THRESHOLD]")
    g.add_argument("--feature-series-max", type=int,
                   default=int(_env("feature_series_max", "64")),
                   help="cardinality cap: at most this many feature label values per family "
                        "(the most drifted features for the PSI; the first ones of the "
                        "baseline for the counters, the rest as feature=\"_other\") "
                        "[FEATURE_SERIES_MAX]")
    g.add_argument("--scores", default="auto", choices=("auto", "logits", "probabilities"),
                   help="what the first output holds, for the confidence histogram; auto: "
                        "rows that sum to 1 are probabilities, others logits (softmax)")
    g.add_argument("--no-input-monitoring", action="store_true",
                   help="export neither feature drift, data quality nor confidence")
    g = p.add_argument_group("http")
    g.add_argument("--host", default=_env("host", "127.0.0.1"),
                   help="address to bind; 0.0.0.0 in a container [SERVE_HOST]")
    g.add_argument("--port", type=int, default=int(_env("port", "8080")),
                   help="port to bind; 0 picks a free one (printed) [PORT]")
    g.add_argument("--max-request-bytes", type=int, default=8 << 20,
                   help="larger request bodies get 413 unread")
    g.add_argument("--max-batch", type=int, default=1024,
                   help="larger batches get 413")
    g.add_argument("--nan-policy", default="reject", choices=("reject", "allow"),
                   help="reject: inputs holding NaN or infinity get 400")
    g.add_argument("--workers", type=int, default=2,
                   help="event-loop threads sharing the listener; each computes its own "
                        "connections' requests, so at most this many inferences run at once "
                        "(idle connections cost no thread)")
    g.add_argument("--max-connections", type=int, default=4096,
                   help="connections beyond this get 503 and are closed")
    g.add_argument("--body-timeout", type=float, default=30.0,
                   help="a request whose headers and body are not all in within this many "
                        "seconds gets 408 (headers) or 400 (a body shorter than its "
                        "content-length)")
    g.add_argument("--drain-seconds", type=float,
                   default=float(_env("drain_seconds", "5")),
                   help="on SIGTERM, keep answering (readiness 503, connections closed after "
                        "each answer) this long while the endpoints forget the pod "
                        "[SERVE_DRAIN_SECONDS]")
    g.add_argument("--grace-seconds", type=float,
                   default=float(_env("grace_seconds", "30")),
                   help="then wait this long for in-flight requests [SERVE_GRACE_SECONDS]")
    g.add_argument("--inject-latency-ms", type=float,
                   default=float(_env("inject_latency_ms", "0")),
                   help="add this delay to every inference (canary tests of the latency "
                        "analysis) [SERVE_INJECT_LATENCY_MS]")
    p.set_defaults(handler=serve)
    return p


def _check_args(args: argparse.Namespace) -> None:
    if not args.model:
        raise InputError("--model is required (or MODEL_PATH)",
                         hint="point it at models/model.onnx")
    if args.model.startswith("file://"):
        args.model = args.model[len("file://"):]
    elif "://" in args.model:
        raise InputError(f"--model: this server reads a local file, not {args.model!r}",
                         hint="fetch it first with `python -m modelops.serve.fetch` (the Rollout's "
                              "fetch-model init container does) and set MODEL_PATH to the file")
    if not args.no_verify:
        if not args.sha256:
            raise InputError("--sha256 is required (or MODEL_SHA256): the server only serves a "
                             "verified artifact",
                             hint="pass the release's sha256, or --no-verify for local tries")
        if not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
            raise InputError(f"--sha256: must be 64 hex digits (got {args.sha256!r})")
    for flag, value, low in (("--threads", args.threads, 1), ("--psi-window", args.psi_window, 1),
                             ("--psi-min-samples", args.psi_min_samples, 1),
                             ("--max-request-bytes", args.max_request_bytes, 1024),
                             ("--max-batch", args.max_batch, 1), ("--workers", args.workers, 1),
                             ("--max-connections", args.max_connections, 1),
                             ("--feature-window", args.feature_window, 1),
                             ("--feature-min-samples", args.feature_min_samples, 1),
                             ("--feature-series-max", args.feature_series_max, 1)):
        if value < low:
            raise InputError(f"{flag}: must be at least {low} (got {value!r})")
    if args.psi_min_samples > args.psi_window:
        raise InputError(f"--psi-min-samples: must be at most --psi-window {args.psi_window} "
                         f"(got {args.psi_min_samples!r})")
    if args.feature_min_samples > args.feature_window:
        raise InputError(f"--feature-min-samples: must be at most --feature-window "
                         f"{args.feature_window} (got {args.feature_min_samples!r})")
    if not 0 < args.feature_psi_threshold < float("inf"):
        raise InputError(f"--feature-psi-threshold: must be a number above 0 "
                         f"(got {args.feature_psi_threshold!r})")
    for flag, value in (("--body-timeout", args.body_timeout),
                        ("--drain-seconds", args.drain_seconds),
                        ("--grace-seconds", args.grace_seconds)):
        if not value >= 0 or value == float("inf"):
            raise InputError(f"{flag}: must be a number of seconds >= 0 (got {value!r})")
    if args.body_timeout <= 0:
        raise InputError(f"--body-timeout: must be more than 0 (got {args.body_timeout!r})")
    if args.inject_latency_ms < 0:
        raise InputError(f"--inject-latency-ms: must be >= 0 (got {args.inject_latency_ms!r})")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port: must be 0..65535 (got {args.port!r})")


def read_verified(path: Path, expected: str | None) -> tuple[bytes, str]:
    """The artifact's bytes, read once, and their sha256 (checked against ``expected``).

    The caller loads these very bytes: nothing reopens the path after the check, so a file
    swapped at that path after verification is never served.
    """

    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"{path}: model artifact not found",
                         hint="run `dvc pull` (or `dvc repro`) to get models/model.onnx"
                         ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the model artifact ({exc.strerror})") from exc
    actual = hashlib.sha256(data).hexdigest()
    if expected is not None and actual != expected.lower():
        raise InputError(f"{path}: sha256 {actual} does not match the release's "
                         f"{expected.lower()!r}; refusing to serve it",
                         hint="deploy the artifact named by the release (dvc pull), or fix "
                              "--sha256")
    return data, actual


def serve(args: argparse.Namespace) -> int:
    try:
        from modelops.drift import load_features
        from modelops.serve.backends import load_backend
        from modelops.serve.metrics import DriftWindow, RoleSource, ServingMetrics, load_baseline
        from modelops.serve.monitor import InputMonitor
        from modelops.serve.protocol import Limits
        from modelops.serve.server import ServingState, make_server
    except ImportError as exc:  # the runtime's packages are the [serve] extra
        raise InputError(f"the serving runtime is not installed ({exc})",
                         hint=f"pip install '{SERVE_EXTRA}'") from None

    _check_args(args)
    baseline = load_baseline(args.drift_baseline) if args.drift_baseline else None
    features = load_features(args.drift_baseline) if args.drift_baseline else None
    drift = DriftWindow(baseline, args.psi_window, args.psi_min_samples)
    role = RoleSource(args.role, args.role_file)
    metrics = ServingMetrics(args.model_name, args.model_version, role, drift)
    monitor = None if args.no_input_monitoring else InputMonitor(
        metrics, features, window=args.feature_window, min_samples=args.feature_min_samples,
        threshold=args.feature_psi_threshold, series_max=args.feature_series_max,
        scores=args.scores)
    state = ServingState(model=args.model_name, version=args.model_version,
                         limits=Limits(max_batch=args.max_batch, nan_policy=args.nan_policy),
                         metrics=metrics, max_request_bytes=args.max_request_bytes,
                         inject_latency_s=args.inject_latency_ms / 1000.0,
                         body_timeout=args.body_timeout, max_connections=args.max_connections,
                         monitor=monitor)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = make_server(args.host, args.port, state, workers=args.workers)
    except OSError as exc:
        raise InputError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}",
                         hint="pick another --port") from exc
    host, port = server.server_address[:2]
    thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    thread.start()
    print(f"serve: listening on http://{host}:{port} (live; not ready until verified)",
          flush=True)
    try:
        path = Path(args.model)
        data, digest = read_verified(path, None if args.no_verify else args.sha256)
        print(f"serve: {path} sha256 {digest} "
              f"{'(not checked: --no-verify)' if args.no_verify else 'verified'}", flush=True)
        backend = load_backend(args.backend, path, threads=args.threads, device=args.device,
                               data=data)
        del data
        if baseline is not None and backend.outputs and backend.outputs[0].shape[-1] not in (
                -1, len(baseline)):
            raise InputError(f"{args.drift_baseline}: class_distribution has {len(baseline)} "
                             f"classes but the model outputs {backend.outputs[0].shape[-1]}",
                             hint="use the drift baseline made with this model")
        if monitor is not None:
            monitor.bind(backend.inputs)
        _warm_up(backend)
        if monitor is not None:
            monitor.start()
        state.backend = backend
    except BaseException:
        server.stop(0.0, 1.0)
        server.server_close()
        raise
    print(f"serve: ready: model {args.model_name} version {args.model_version} role "
          f"{role()} on {backend.platform} ({backend.device})", flush=True)
    while not stop.wait(0.5):
        pass
    print(f"serve: stopping: not ready any more; answering for {args.drain_seconds:g}s more, "
          "then finishing in-flight requests", flush=True)
    started = time.monotonic()
    clean = server.stop(args.drain_seconds, args.grace_seconds)
    server.server_close()
    if monitor is not None:
        monitor.stop()
    took = time.monotonic() - started
    if not clean:
        print(f"serve: {state.inflight} request(s) still running after "
              f"{args.grace_seconds:.0f}s grace; exiting anyway", file=sys.stderr, flush=True)
        return 1
    print(f"serve: stopped cleanly ({took:.2f}s to drain)", flush=True)
    return 0


def _warm_up(backend) -> None:
    import numpy as np

    from modelops.serve.backends import DTYPES

    feeds = {}
    for spec in backend.inputs:
        shape = [1 if d == -1 else d for d in spec.shape]
        feeds[spec.name] = np.zeros(shape, dtype=DTYPES.get(spec.datatype, np.float32))
    backend.infer(feeds)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, argv, prog="modelops-serve", short_lived=False)


if __name__ == "__main__":
    sys.exit(main())
