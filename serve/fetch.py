"""``python -m modelops.serve.fetch``: download the released model artifact and verify its sha256.

The Rollout runs this as its ``fetch-model`` init container: the release names the artifact by
URI (a DVC remote's content-addressed path) and sha256; the serving container then reads the
verified local file (``MODEL_PATH``). Sources: a local path, ``file://``, ``http(s)://`` and
``s3://`` (boto3; ``AWS_ENDPOINT_URL`` selects an S3-compatible store such as MinIO).

The bytes stream into a temporary file beside ``--out`` while they are hashed; only a file whose
sha256 matches is renamed to ``--out``, so on any failure nothing is left there. Transient
network errors (connection refused or reset, timeouts, HTTP 5xx and 429, S3 throttling) are
retried a bounded number of times with a growing pause; a 404, a denied request or a hash
mismatch fails at once. A file already at ``--out`` with the right sha256 is kept (an init
container restarted in the same pod does not download again).
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from modelops.cli import DefaultsHelpFormatter, run_main
from modelops.errors import ExternalError, InputError, SuiteError
from modelops.fsutil import atomic_path, sha256_file
from modelops.retry import RetryPolicy, retry_call

CHUNK = 1 << 20
PROGRESS_MIN_BYTES = 8 << 20  # smaller downloads print one line at the end only
RETRY_HTTP = {408, 425, 429, 500, 502, 503, 504}
RETRY_S3_CODES = {"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable",
                  "Throttling", "ThrottlingException", "RequestTimeTooSkewed"}


def _redact(uri: str) -> str:
    """The URI without credentials or query string (presigned URLs carry secrets there)."""
    parts = urllib.parse.urlsplit(uri)
    if not parts.scheme or parts.scheme == "file":
        return uri
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# --------------------------------------------------------------------------- sources
# Each source opens the artifact and yields (size or None, chunks). Transient failures raise
# ExternalError(retryable=True); permanent ones InputError or ExternalError(retryable=False).

Source = Callable[[str, float], tuple[int | None, Iterator[bytes]]]


def _iter(fh: BinaryIO) -> Iterator[bytes]:
    try:
        while block := fh.read(CHUNK):
            yield block
    finally:
        fh.close()


def _open_file(uri: str, timeout: float) -> tuple[int | None, Iterator[bytes]]:
    path = Path(urllib.parse.unquote(urllib.parse.urlsplit(uri).path)
                if uri.startswith("file://") else uri)
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by _iter
    except FileNotFoundError:
        raise InputError(f"{uri}: file not found",
                         hint="check MODEL_URI; run `dvc push` so the remote has the "
                              "artifact") from None
    except OSError as exc:
        raise InputError(f"{uri}: cannot read ({exc.strerror or exc})") from exc
    return os.fstat(fh.fileno()).st_size, _iter(fh)


def _open_http(uri: str, timeout: float) -> tuple[int | None, Iterator[bytes]]:
    shown = _redact(uri)
    request = urllib.request.Request(  # noqa: S310 - only http(s) reach here
        uri, headers={"User-Agent": "modelops-serve-fetch"})
    try:
        resp = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - scheme checked
    except urllib.error.HTTPError as exc:
        exc.close()
        retry = exc.code in RETRY_HTTP
        raise ExternalError(f"{shown}: HTTP {exc.code} {exc.reason}", retryable=retry,
                            hint=None if retry else "check MODEL_URI and that the artifact "
                                                    "was pushed (`dvc push`)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ExternalError(f"{shown}: {reason}", retryable=True) from None
    length = resp.headers.get("Content-Length")
    return (int(length) if length and length.isdigit() else None), _iter(resp)


def _s3_client():
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise InputError("s3:// URIs need boto3, which is not installed",
                         hint="pip install boto3 (the serving image has it)") from None
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return boto3.client("s3", endpoint_url=endpoint or None,
                        config=Config(retries={"max_attempts": 1}, connect_timeout=10,
                                      read_timeout=60))


def _open_s3(uri: str, timeout: float) -> tuple[int | None, Iterator[bytes]]:
    parts = urllib.parse.urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        raise InputError(f"{uri}: not an object URI like 's3://bucket/path/to/model.onnx'")
    client = _s3_client()  # first: a clear error when boto3 is missing
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
    )

    try:
        obj = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        retry = code in RETRY_S3_CODES or status in RETRY_HTTP
        hint = None
        if code in ("NoSuchKey", "NoSuchBucket", "404"):
            hint = "check MODEL_URI and that the artifact was pushed (`dvc push`)"
        elif code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
            hint = ("check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, from "
                    "deploy.artifact_credentials_secret)")
        raise ExternalError(f"{uri}: {code or status} {err.get('Message', '')}".rstrip(),
                            retryable=retry, hint=hint) from None
    except NoCredentialsError:
        raise InputError(f"{uri}: no AWS credentials found",
                         hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in the pod: "
                              "deploy.artifact_credentials_secret)") from None
    except (EndpointConnectionError, BotoCoreError) as exc:
        raise ExternalError(f"{uri}: {exc}", retryable=True) from None
    body = obj["Body"]

    def chunks() -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(CHUNK)
        except (BotoCoreError, OSError) as exc:
            raise ExternalError(f"{uri}: download interrupted ({exc})", retryable=True) from None
        finally:
            body.close()

    return obj.get("ContentLength"), chunks()


SOURCES: dict[str, Source] = {"": _open_file, "file": _open_file, "http": _open_http,
                              "https": _open_http, "s3": _open_s3}


def source_for(uri: str) -> Source:
    scheme = urllib.parse.urlsplit(uri).scheme.lower() if "://" in uri else ""
    if scheme not in SOURCES:
        raise InputError(f"--uri: unsupported scheme {scheme!r} in {_redact(uri)!r}",
                         hint="use a local path, file://, http(s):// or s3://")
    return SOURCES[scheme]


# --------------------------------------------------------------------------- fetch

class Progress:
    """Prints ``fetch: 12.0/48.0 MiB (25%)`` at most once a second for large downloads."""

    INTERVAL = 1.0

    def __init__(self, total: int | None, enabled: bool, stream=None):
        self.total, self.done, self.stream = total, 0, stream or sys.stderr
        self.enabled = enabled and (total is None or total >= PROGRESS_MIN_BYTES)
        self.last = time.monotonic() - self.INTERVAL

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and now - self.last >= self.INTERVAL:
            self.last = now
            mib = self.done / (1 << 20)
            if self.total:
                pct = 100 * self.done / self.total
                print(f"fetch: {mib:.1f}/{self.total / (1 << 20):.1f} MiB ({pct:.0f}%)",
                      file=self.stream, flush=True)
            else:
                print(f"fetch: {mib:.1f} MiB", file=self.stream, flush=True)


def _chunks(uri: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """``chunks``, with a read that breaks off mid-way turned into a retryable error."""
    it = iter(chunks)
    while True:
        try:
            block = next(it)
        except StopIteration:
            return
        except (OSError, http.client.HTTPException) as exc:
            raise ExternalError(f"{_redact(uri)}: download interrupted "
                                f"({type(exc).__name__}: {exc})", retryable=True) from None
        yield block


def _download(uri: str, out: Path, expected: str, *, timeout: float, progress: bool) -> None:
    """One attempt: stream ``uri`` into a temporary file, check, rename to ``out``."""

    size, chunks = source_for(uri)(uri, timeout)
    digest = hashlib.sha256()
    meter = Progress(size, progress)
    try:
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                for block in _chunks(uri, chunks):
                    fh.write(block)
                    digest.update(block)
                    meter.add(len(block))
                fh.flush()
                os.fsync(fh.fileno())
            if size is not None and meter.done != size:
                raise ExternalError(f"{_redact(uri)}: got {meter.done} bytes, expected {size} "
                                    "(connection cut short)", retryable=True)
            actual = digest.hexdigest()
            if actual != expected:
                raise InputError(
                    f"{_redact(uri)}: sha256 mismatch: expected {expected}, got {actual}; "
                    f"nothing was written to {out}",
                    hint="the stored artifact is not the released one: check MODEL_URI and "
                         "MODEL_SHA256 come from the same release.json")
    except OSError as exc:  # reading errors are ExternalError already: this is the local side
        raise InputError(f"{out}: cannot write ({exc.strerror or exc})",
                         hint="check that the folder exists, is writable and has room "
                              "(in the pod: the emptyDir mounted at /models)") from None


def fetch(uri: str, sha256: str, out: str | Path, *, attempts: int = 4, backoff: float = 1.0,
          timeout: float = 60.0, progress: bool = True, log=None) -> str:
    """Download ``uri`` to ``out`` if its sha256 is ``sha256``; returns "fetched" or "present".

    Retries retryable errors up to ``attempts`` tries in all, under the suite's retry policy
    (:mod:`modelops.retry`: exponential pauses from ``backoff`` seconds, jittered, at most 30).
    Raises InputError / ExternalError; ``out`` is then
    untouched.
    """
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    expected = sha256.lower()
    out = Path(out)
    if out.is_file() and sha256_file(out) == expected:
        log(f"fetch: {out} already present, sha256 {expected[:12]} verified")
        return "present"
    shown = _redact(uri)
    started = time.monotonic()
    policy = RetryPolicy(attempts=attempts, backoff=backoff)
    try:
        retry_call(lambda: _download(uri, out, expected, timeout=timeout, progress=progress),
                   policy=policy, what="fetch", log=log)
    except SuiteError as exc:
        if exc.retryable:
            exc.message += f" (gave up after {attempts} attempts)"
        raise
    took = time.monotonic() - started
    log(f"fetch: {shown} -> {out} ({out.stat().st_size} bytes, {took:.1f}s), "
        f"sha256 {expected[:12]} verified")
    return "fetched"


# --------------------------------------------------------------------------- CLI

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m modelops.serve.fetch",
        description="Download the released model artifact, verify its sha256 and write it "
                    "atomically (nothing at --out on failure). Sources: a local path, file://, "
                    "http(s):// and s3:// (boto3; AWS_ENDPOINT_URL for S3-compatible stores, "
                    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or any boto3 credential source). "
                    "Each flag in CAPS can also come from the environment variable named.",
        epilog="Transient errors (connection, timeouts, HTTP 5xx/429, S3 throttling) are "
               "retried; 404, access denied and a sha256 mismatch are not. A file already at "
               "--out with the right sha256 is kept. Exit codes: 0 done, 2 failed (one line "
               "on stderr says why), 3 bug.",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--uri", default=os.environ.get("MODEL_URI"),
                   help="where the artifact is stored [MODEL_URI]")
    p.add_argument("--sha256", default=os.environ.get("MODEL_SHA256"), metavar="HEX",
                   help="the release's sha256 of the artifact [MODEL_SHA256]")
    p.add_argument("--out", default=os.environ.get("MODEL_PATH"), metavar="PATH",
                   help="where to write the verified file [MODEL_PATH]")
    p.add_argument("--attempts", type=int, default=4,
                   help="tries in all for transient errors")
    p.add_argument("--backoff", type=float, default=1.0,
                   help="seconds before the first retry; doubles each time (at most 30)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for a connection or the next bytes")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=_cmd)
    return p


def _cmd(args: argparse.Namespace) -> int:
    for flag, env in (("uri", "MODEL_URI"), ("sha256", "MODEL_SHA256"), ("out", "MODEL_PATH")):
        if not getattr(args, flag):
            raise InputError(f"--{flag} is required (or {env}) (got nothing)",
                             hint="the rendered Rollout sets MODEL_URI, MODEL_SHA256 and "
                                  "MODEL_PATH from the release")
    if not re.fullmatch(r"[0-9a-fA-F]{64}", args.sha256):
        raise InputError(f"--sha256: must be 64 hex digits (got {args.sha256!r})",
                         hint="use the sha256 from the release's release.json")
    if args.attempts < 1:
        raise InputError(f"--attempts: must be at least 1 (got {args.attempts})")
    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out: {str(out)!r} is a folder; give the file to write",
                         hint="e.g. --out /models/model.onnx")
    fetch(args.uri, args.sha256, out, attempts=args.attempts, backoff=args.backoff,
          timeout=args.timeout, progress=not args.quiet)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, argv, prog="fetch")


if __name__ == "__main__":
    sys.exit(main())
