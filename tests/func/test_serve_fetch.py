"""``python -m modelops.serve.fetch`` against a real HTTP server, a real S3 imitation and local
files.

The HTTP server is the standard library's on 127.0.0.1, scripted per path (status sequences);
the S3 store is moto's ThreadedMotoServer on 127.0.0.1, reached through ``AWS_ENDPOINT_URL``.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import socket
import threading

import pytest

from modelops.serve import fetch as fetch_mod
from modelops.serve.fetch import main
from tests.conftest import PY, ROOT, require_module, run

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
OTHER = hashlib.sha256(b"something else").hexdigest()
CUT = 0  # scripted status: a 200 whose body breaks off


class Script:
    """path -> list of responses; each request pops the first (the last one repeats)."""

    def __init__(self):
        self.routes: dict[str, list[tuple[int, bytes]]] = {}
        self.hits: dict[str, int] = {}


@pytest.fixture(scope="module")
def http_server():
    script = Script()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's spelling
            path = self.path.split("?")[0]
            script.hits[path] = script.hits.get(path, 0) + 1
            queue = script.routes.get(path) or [(404, b"not found")]
            status, body = queue.pop(0) if len(queue) > 1 else queue[0]
            cut = status == CUT  # promise more bytes than sent, then hang up
            self.send_response(200 if cut else status)
            self.send_header("Content-Length", str(len(body) + (1000 if cut else 0)))
            self.end_headers()
            self.wfile.write(body)
            if cut:
                self.close_connection = True

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def _fetch(capsys, *args: str) -> tuple[int, str]:
    code = main(["--quiet", "--backoff", "0", *args])
    return code, capsys.readouterr().err


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir())


def test_http_ok(http_server, tmp_path, capsys):
    url, script = http_server
    script.routes["/ok/model.onnx"] = [(200, PAYLOAD)]
    out = tmp_path / "models" / "model.onnx"
    code, err = _fetch(capsys, "--uri", f"{url}/ok/model.onnx", "--sha256", SHA,
                       "--out", str(out))
    assert code == 0, err
    assert out.read_bytes() == PAYLOAD
    assert f"sha256 {SHA[:12]} verified" in err
    assert _leftovers(out.parent) == ["model.onnx"]


def test_http_404_fails_at_once_and_writes_nothing(http_server, tmp_path, capsys):
    url, script = http_server
    script.routes["/gone"] = [(404, b"no")]
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", f"{url}/gone", "--sha256", SHA, "--out", str(out))
    assert code == 2
    assert script.hits["/gone"] == 1  # a 404 is not retried
    assert f"{url}/gone: HTTP 404" in err
    assert "dvc push" in err  # says what to do next
    assert _leftovers(tmp_path) == []


def test_http_5xx_is_retried_then_succeeds(http_server, tmp_path, capsys):
    url, script = http_server
    script.routes["/flaky"] = [(503, b"busy"), (502, b"bad gateway"), (200, PAYLOAD)]
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", f"{url}/flaky", "--sha256", SHA, "--out", str(out),
                       "--attempts", "3")
    assert code == 0, err
    assert script.hits["/flaky"] == 3
    assert "attempt 1/3 failed: " in err and "HTTP 503" in err
    assert out.read_bytes() == PAYLOAD


def test_http_5xx_gives_up_after_the_bound(http_server, tmp_path, capsys):
    url, script = http_server
    script.routes["/down"] = [(500, b"boom")]
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", f"{url}/down", "--sha256", SHA, "--out", str(out),
                       "--attempts", "2")
    assert code == 2
    assert script.hits["/down"] == 2
    assert "gave up after 2 attempts" in err
    assert _leftovers(tmp_path) == []


def test_connection_cut_mid_body_is_retried(http_server, tmp_path, capsys):
    url, script = http_server
    script.routes["/cut"] = [(CUT, PAYLOAD[:1000]), (200, PAYLOAD)]
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", f"{url}/cut", "--sha256", SHA, "--out", str(out))
    assert code == 0, err
    assert "attempt 1/4 failed" in err and ("cut short" in err or "interrupted" in err)
    assert script.hits["/cut"] == 2 and out.read_bytes() == PAYLOAD


def test_unwritable_out_is_one_clear_error(tmp_path, capsys):
    src = tmp_path / "m.onnx"
    src.write_bytes(PAYLOAD)
    out = tmp_path / "m.onnx" / "model.onnx"  # its folder is a file
    code, err = _fetch(capsys, "--uri", str(src), "--sha256", SHA, "--out", str(out))
    assert code == 2
    assert err.startswith(f"fetch: error: {out}: cannot write")
    assert "Traceback" not in err


def test_hash_mismatch_names_uri_and_both_hashes(http_server, tmp_path, capsys):
    url, script = http_server
    script.routes["/tampered"] = [(200, PAYLOAD + b"x")]
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", f"{url}/tampered?token=secret", "--sha256", SHA,
                       "--out", str(out))
    assert code == 2
    assert script.hits["/tampered"] == 1  # a mismatch is not retried
    line = err.splitlines()[0]
    assert line.startswith(f"fetch: error: {url}/tampered: sha256 mismatch")
    assert SHA in line and hashlib.sha256(PAYLOAD + b"x").hexdigest() in line
    assert "secret" not in err  # the query string (presigned URL secrets) is not shown
    assert _leftovers(tmp_path) == []


def test_connection_refused_is_retried_then_fails(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", f"http://127.0.0.1:{port}/m", "--sha256", SHA,
                       "--out", str(out), "--attempts", "2", "--timeout", "2")
    assert code == 2
    assert "attempt 1/2 failed" in err and "gave up after 2 attempts" in err
    assert _leftovers(tmp_path) == []


def test_local_path_and_file_uri(tmp_path, capsys):
    src = tmp_path / "store" / "model.onnx"
    src.parent.mkdir()
    src.write_bytes(PAYLOAD)
    for i, uri in enumerate([str(src), src.as_uri()]):
        out = tmp_path / f"out{i}" / "model.onnx"
        code, err = _fetch(capsys, "--uri", uri, "--sha256", SHA, "--out", str(out))
        assert code == 0, err
        assert out.read_bytes() == PAYLOAD
    code, err = _fetch(capsys, "--uri", str(tmp_path / "nope.onnx"), "--sha256", SHA,
                       "--out", str(tmp_path / "x.onnx"))
    assert code == 2 and "nope.onnx: file not found" in err
    assert not (tmp_path / "x.onnx").exists()


def test_existing_good_file_is_kept_and_bad_one_replaced(tmp_path, capsys):
    src = tmp_path / "model-src.onnx"
    src.write_bytes(PAYLOAD)
    out = tmp_path / "out" / "model.onnx"
    out.parent.mkdir()
    out.write_bytes(b"stale bytes from an earlier try")
    code, err = _fetch(capsys, "--uri", str(src), "--sha256", SHA, "--out", str(out))
    assert code == 0 and out.read_bytes() == PAYLOAD
    src.unlink()  # the source is gone: only the verified local copy can satisfy the call
    code, err = _fetch(capsys, "--uri", str(src), "--sha256", SHA.upper(), "--out", str(out))
    assert code == 0 and "already present" in err


def test_mismatch_keeps_an_existing_file_untouched(tmp_path, capsys):
    src = tmp_path / "model-src.onnx"
    src.write_bytes(PAYLOAD)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"old")
    code, err = _fetch(capsys, "--uri", str(src), "--sha256", OTHER, "--out", str(out))
    assert code == 2 and OTHER in err and SHA in err
    assert out.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["model-src.onnx", "model.onnx"]


@pytest.mark.parametrize(("args", "match"), [
    (["--uri", "ftp://h/x", "--sha256", SHA, "--out", "o"], "unsupported scheme 'ftp'"),
    (["--uri", "x", "--sha256", "abc", "--out", "o"], "--sha256: must be 64 hex digits"),
    (["--sha256", SHA, "--out", "o"], "--uri is required (or MODEL_URI)"),
    (["--uri", "s3://bucket-only", "--sha256", SHA, "--out", "o"], "not an object URI"),
])
def test_bad_arguments(tmp_path, capsys, monkeypatch, args, match):
    monkeypatch.chdir(tmp_path)
    for name in ("MODEL_URI", "MODEL_SHA256", "MODEL_PATH"):
        monkeypatch.delenv(name, raising=False)
    code, err = _fetch(capsys, *args)
    assert code == 2
    assert match in err
    assert _leftovers(tmp_path) == []


def test_progress_lines_for_large_downloads(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fetch_mod, "PROGRESS_MIN_BYTES", 0)
    monkeypatch.setattr(fetch_mod.Progress, "INTERVAL", 0.0)
    monkeypatch.setattr(fetch_mod, "CHUNK", 100_000)
    src = tmp_path / "big.onnx"
    src.write_bytes(PAYLOAD)
    code = main(["--uri", str(src), "--sha256", SHA, "--out", str(tmp_path / "o.onnx")])
    err = capsys.readouterr().err
    assert code == 0
    assert "fetch: 0.3/0.3 MiB (100%)" in err
    assert err.count("MiB (") >= 3  # one line per chunk at interval 0


# --------------------------------------------------------------------------- s3

@pytest.fixture(scope="module")
def s3_store():
    require_module("moto")
    boto3 = require_module("boto3")
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    client = boto3.client("s3", endpoint_url=url, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
    client.create_bucket(Bucket="models")
    key = f"digits-cnn/files/md5/ab/{'c' * 30}"
    client.put_object(Bucket="models", Key=key, Body=PAYLOAD)
    try:
        yield url, f"s3://models/{key}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_store, monkeypatch):
    url, uri = s3_store
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": url}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return uri


def test_s3_ok_through_aws_endpoint_url(s3_env, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", s3_env, "--sha256", SHA, "--out", str(out))
    assert code == 0, err
    assert out.read_bytes() == PAYLOAD


def test_s3_missing_key_fails_at_once(s3_env, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", "s3://models/nope", "--sha256", SHA, "--out", str(out),
                       "--attempts", "3")
    assert code == 2
    assert "s3://models/nope: NoSuchKey" in err and "attempt" not in err
    assert _leftovers(tmp_path) == []


def test_s3_hash_mismatch(s3_env, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    code, err = _fetch(capsys, "--uri", s3_env, "--sha256", OTHER, "--out", str(out))
    assert code == 2
    assert f"{s3_env}: sha256 mismatch: expected {OTHER}, got {SHA}" in err
    assert _leftovers(tmp_path) == []


def test_cli_reads_the_container_environment(s3_env, tmp_path):
    """As the init container runs it: no flags, everything from the environment."""
    out = tmp_path / "models" / "model.onnx"
    env = {**os.environ, "MODEL_URI": s3_env, "MODEL_SHA256": SHA, "MODEL_PATH": str(out)}
    proc = run([PY, "-m", "modelops.serve.fetch"], cwd=ROOT, env=env)
    assert out.read_bytes() == PAYLOAD
    assert "verified" in proc.stderr
    help_text = run([PY, "-m", "modelops.serve.fetch", "--help"], cwd=ROOT).stdout
    assert "MODEL_URI" in help_text and "AWS_ENDPOINT_URL" in help_text


def test_serving_image_has_what_fetch_and_serve_import():
    """serve/Dockerfile installs the suite as a wheel (no file copied by name) and pins, as in
    requirements.lock, every distribution the two entry points import; those entry points load
    only the core and the runtime of the suite."""
    import json
    import re

    code = ("import sys; before = set(sys.modules); "
            "import json, importlib.metadata as md, modelops.serve.fetch, "
            "modelops.serve.__main__, botocore.exceptions; "
            "dists = md.packages_distributions(); new = set(sys.modules) - before; "
            "print(json.dumps({'modules': sorted(m for m in new if m.startswith("
            "'modelops')), 'dists': sorted({d for m in new for d in "
            "dists.get(m.split('.')[0], [])})}))")
    loaded = json.loads(run([PY, "-c", code], cwd=ROOT).stdout)
    assert "modelops.serve.fetch" in loaded["modules"]
    outside = [m for m in loaded["modules"]
               if m.startswith(("modelops.ci", "modelops.gitops", "modelops.settings"))]
    assert outside == []
    dockerfile = (ROOT / "serve" / "Dockerfile").read_text()
    copied = re.findall(r"^COPY (?:--\S+ )*(\S+)", dockerfile, re.M)
    assert not [c for c in copied if c.endswith(".py")], copied
    assert re.search(r"pip install .*--no-deps /wheels/\*\.whl", dockerfile)
    lock = {k.lower().replace("_", "-"): v for k, v in (
        line.split("==") for line in (ROOT / "requirements.lock").read_text().split()
        if "==" in line)}
    pins = {k.lower().replace("_", "-"): v for k, v in re.findall(
        r"^\s+([A-Za-z0-9_.\-]+)==(\S+)", dockerfile, re.M) if k != "setuptools"}
    needed = {d.lower().replace("_", "-") for d in loaded["dists"]} - {"modelops-suite"}
    assert sorted(needed - set(pins)) == []
    for name, version in pins.items():
        assert lock.get(name) == version, name
