"""Filesystem helpers: outputs appear whole or not at all; inputs fail naming their file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelops.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_json(path: str | Path, what: str, hint: str | None = None) -> Any:
    """The JSON document at ``path``; an :class:`InputError` naming the file (and ``what`` it
    should be) when it is missing, unreadable or not JSON. ``hint`` says how to make it."""
    p = Path(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(f"{p}: {what} not found", hint=hint) from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{p}: not valid JSON: {exc}", hint=hint) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: cannot read the {what}: {exc}", hint=hint) from exc


def write_json(path: str | Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def md5_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()  # noqa: S324 - DVC's content hash, not for security
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_output(out: str, text: str) -> bool:
    """A command's ``--out``: ``-`` prints ``text``; a path gets it atomically. True if written."""
    if out == "-":
        print(text, end="")
        return False
    atomic_write_text(out, text)
    return True
