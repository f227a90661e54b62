"""Open Inference Protocol (KServe v2) request decoding and response encoding, transport-free.

JSON tensors (``data`` flat or nested, row-major) and the binary tensor extension: when the
request carries ``Inference-Header-Content-Length: N``, the first N bytes are the JSON header
and each input with ``parameters.binary_data_size`` takes its raw little-endian bytes from the
rest, in order. Outputs come back binary when the request asks for ``binary_data_output`` (or
``binary_data`` on an output). Every problem is a :class:`RequestError` with an HTTP status and
a message naming the input and the bad value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from modelops.serve.backends import DTYPES, TensorSpec


class RequestError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_batch: int = 1024
    nan_policy: str = "reject"  # reject | allow


@dataclass
class Decoded:
    id: str | None
    feeds: dict[str, np.ndarray]
    outputs: list[str] | None  # names asked for, None = all
    binary_outputs: bool


def _bad(message: str, status: int = 400) -> RequestError:
    return RequestError(status, message)


def _shown(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def decode(body: bytes, header_length: int | None, inputs: list[TensorSpec],
           limits: Limits) -> Decoded:
    """Turn a request body into named, shape- and dtype-checked numpy arrays."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise _bad(f"inference-header-content-length {header_length} is outside the body "
                       f"({len(body)} bytes)")
        head, rest = body[:header_length], memoryview(body)[header_length:]
    else:
        head, rest = body, memoryview(b"")
    try:
        req = json.loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _bad(f"request body is not valid JSON ({exc})") from None
    if not isinstance(req, dict):
        raise _bad(f"request must be a JSON object with 'inputs' (got {_shown(req)})")
    raw_inputs = req.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _bad("request needs 'inputs': a non-empty list of tensors")
    specs = {s.name: s for s in inputs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise _bad(f"inputs[{i}] must be an object (got {_shown(item)})")
        name = item.get("name")
        spec = specs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise _bad(f"inputs[{i}].name: unknown input {_shown(name)}; this model takes "
                       f"{', '.join(repr(s) for s in specs)}")
        if name in feeds:
            raise _bad(f"inputs[{i}].name: input {name!r} is given twice")
        shape = item.get("shape")
        if (not isinstance(shape, list) or not shape
                or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)):
            raise _bad(f"inputs[{i}].shape: must be a list of integers (got {_shown(shape)})")
        datatype = item.get("datatype")
        if datatype != spec.datatype:
            raise _bad(f"inputs[{i}].datatype: input {name!r} takes {spec.datatype!r} "
                       f"(got {_shown(datatype)})")
        _check_shape(i, name, shape, spec, limits)
        count = math.prod(shape)
        dtype = np.dtype(DTYPES[datatype]).newbyteorder("<")
        params = item.get("parameters") or {}
        size = params.get("binary_data_size") if isinstance(params, dict) else None
        if size is not None:
            if header_length is None:
                raise _bad(f"inputs[{i}].parameters.binary_data_size needs the "
                           "inference-header-content-length header")
            if not isinstance(size, int) or size != count * dtype.itemsize:
                raise _bad(f"inputs[{i}].parameters.binary_data_size: shape {shape} of "
                           f"{datatype} needs {count * dtype.itemsize} bytes (got {_shown(size)})")
            if offset + size > len(rest):
                raise _bad(f"inputs[{i}]: binary data is truncated (need {size} bytes at "
                           f"offset {offset}, {len(rest) - offset} left)")
            arr = np.frombuffer(rest[offset:offset + size], dtype=dtype).reshape(shape)
            offset += size
        else:
            arr = _from_json(i, item.get("data"), shape, count, datatype)
        if arr.dtype.kind == "f" and limits.nan_policy == "reject" and not np.isfinite(arr).all():
            raise _bad(f"inputs[{i}].data: input {name!r} contains NaN or infinity; this server "
                       "rejects them (--nan-policy reject)")
        feeds[name] = arr.astype(DTYPES[datatype], copy=False)
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise _bad(f"inputs: missing input(s) {', '.join(repr(m) for m in missing)}")
    if offset != len(rest):
        raise _bad(f"binary data has {len(rest) - offset} trailing byte(s) no input claims")
    asked = req.get("outputs")
    names = None
    binary = bool(isinstance(req.get("parameters"), dict)
                  and req["parameters"].get("binary_data_output"))
    if asked is not None:
        if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
            raise _bad(f"outputs: must be a list of objects with 'name' (got {_shown(asked)})")
        names = [o.get("name") for o in asked]
        binary = binary or any(isinstance(o.get("parameters"), dict)
                               and o["parameters"].get("binary_data") for o in asked)
    rid = req.get("id")
    return Decoded(id=rid if isinstance(rid, str) else None, feeds=feeds, outputs=names,
                   binary_outputs=binary)


def _check_shape(i: int, name: str, shape: list[int], spec: TensorSpec, limits: Limits) -> None:
    if len(shape) != len(spec.shape):
        raise _bad(f"inputs[{i}].shape: input {name!r} has {len(spec.shape)} dimensions "
                   f"{list(spec.shape)} (got {shape})")
    for axis, (got, want) in enumerate(zip(shape, spec.shape)):
        if got < 1:
            raise _bad(f"inputs[{i}].shape[{axis}]: dimensions must be at least 1 (got {got})")
        if want != -1 and got != want:
            raise _bad(f"inputs[{i}].shape[{axis}]: input {name!r} needs {want} here, shape "
                       f"{list(spec.shape)} with -1 for any (got {shape})")
    if shape[0] > limits.max_batch:
        raise _bad(f"inputs[{i}].shape[0]: batch {shape[0]} is over this server's limit of "
                   f"{limits.max_batch} (--max-batch); split the request", 413)


def _from_json(i: int, data: object, shape: list[int], count: int, datatype: str) -> np.ndarray:
    if not isinstance(data, list):
        raise _bad(f"inputs[{i}].data: must be a list of numbers (got {_shown(data)})")
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError):
        raise _bad(f"inputs[{i}].data: ragged nested lists do not make a tensor") from None
    if arr.dtype.kind not in "biuf":
        raise _bad(f"inputs[{i}].data: {datatype} needs numbers (got {arr.dtype.kind!r}-kind "
                   f"values such as {_shown(arr.ravel()[:1].tolist())})")
    if arr.size != count:
        raise _bad(f"inputs[{i}].data: shape {shape} needs {count} values (got {arr.size})")
    return arr.reshape(shape)


def encode(model: str, version: str, rid: str | None, specs: list[TensorSpec],
           arrays: list[np.ndarray], names: list[str] | None,
           binary: bool) -> tuple[bytes, int | None]:
    """Response body, and the JSON header length when outputs are sent binary."""
    by_name = {s.name: (s, a) for s, a in zip(specs, arrays)}
    if names is None:
        names = [s.name for s in specs]
    for n in names:
        if n not in by_name:
            raise _bad(f"outputs: unknown output {_shown(n)}; this model gives "
                       f"{', '.join(repr(s.name) for s in specs)}")
    outs = []
    blobs = []
    for n in names:
        spec, arr = by_name[n]
        entry = {"name": n, "datatype": spec.datatype, "shape": list(arr.shape)}
        if binary:
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            entry["data"] = arr.ravel().tolist()
        outs.append(entry)
    resp = {"model_name": model, "model_version": version, "outputs": outs}
    if rid is not None:
        resp["id"] = rid
    head = json.dumps(resp, separators=(",", ":"), allow_nan=False).encode()
    if binary:
        return head + b"".join(blobs), len(head)
    return head, None
