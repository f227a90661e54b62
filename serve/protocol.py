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
import orjson
import simdjson

from modelops.serve.backends import DTYPES, TensorSpec


class RequestError(Exception):
    """A request refused with ``status``. ``reason`` says why, for the
    ``model_input_rejected_total{reason}`` counter: ``malformed`` (not the protocol: bad JSON,
    no inputs, truncated binary data), ``schema`` (an input's name, datatype, shape or values
    are not the model's), ``nonfinite`` (NaN or infinity refused by the NaN policy; ``input``
    and ``array`` then hold the refused tensor, for the data-quality counters), ``limit``
    (over a size limit), ``model`` (the model itself refused the input)."""

    def __init__(self, status: int, message: str, reason: str = "schema",
                 input: str | None = None, array: np.ndarray | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.input = input
        self.array = array


@dataclass(frozen=True)
class Limits:
    max_batch: int = 1024
    nan_policy: str = "reject"  # reject | allow


@dataclass
class Decoded:
    id: str | None
    feeds: dict[str, np.ndarray]
    outputs: list[str] | None  # names asked for, None = all
    binary_outputs: bool  # the request's binary_data_output (default for every output)
    binary: dict[str, bool] | None = None  # per-output binary_data, overriding the default
    nonfinite_input: bool = False  # an input held NaN/Inf (only with --nan-policy allow)

    def binary_for(self, name: str) -> bool:
        if self.binary and name in self.binary:
            return self.binary[name]
        return self.binary_outputs


def _bad(message: str, status: int = 400, reason: str = "schema") -> RequestError:
    return RequestError(status, message, reason)


def _malformed(message: str) -> RequestError:
    return RequestError(400, message, "malformed")


def _shown(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _lenient_json(head: bytes, strict_error: Exception) -> object:
    """What Python's ``json`` reads beyond strict JSON (``NaN``, ``Infinity``, ``1e400``: JSON
    clients such as Python's send them), so those reach the NaN policy with a clear message."""
    try:
        return json.loads(head)
    except RecursionError:
        raise _malformed("request body is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise _malformed(f"request body is not valid JSON ({strict_error})") from None


# Below this size orjson reads a body as fast, and in the server faster: at batch 1 (64
# numbers, 0.7 KB) the simdjson path cost the monitored server 12 % of its throughput (five
# interleaved runs each way), while at batch 32 (12 KB) it halves the decode.
FAST_JSON_MIN_BYTES = 4096


def _fast_load(head: bytes) -> dict | None:
    """The request object as ``orjson.loads`` reads it, except that the ``data`` of each input
    with a floating-point datatype comes as a float64 array, copied out of simdjson's parse in
    C; or None when this path cannot vouch for the result (then orjson reads the body).

    At batch 32 a JSON tensor is 2,048 numbers: orjson makes a Python float of each, numpy
    reads them back one by one and then they are freed (about 90 us of a 0.5 ms round trip);
    simdjson's ``Array.as_buffer`` writes them straight into one buffer (about 20 us with the
    parse). The result is the same as orjson's or None:

    - anything simdjson refuses (not strict JSON, NaN, ``1e400``, integers beyond 64 bits,
      nesting deeper than 1024) is None: orjson and the lenient reader then say what they
      always said;
    - a key repeated in an object (orjson keeps the last) is None;
    - ``as_buffer`` fails on anything but numbers (None), and it flattens nested arrays,
      which here would hide a ragged tensor: so every JSON array of the document must be
      one this function saw as a whole. Each array starts with a ``[`` byte, so the body
      holding exactly as many ``[`` bytes as the arrays seen (``inputs``, each ``data``
      and the arrays of the other values) proves no ``data`` nests; a ``[`` inside a string
      only sends the request down orjson's path;
    - an input with another datatype (integers, BOOL) sends the whole body to orjson, whose
      Python ints the general path checks against the type's range.
    """
    try:
        doc = simdjson.Parser().parse(head)  # a parser per body: no state shared by threads
    except (ValueError, RuntimeError, MemoryError):
        return None
    if not isinstance(doc, simdjson.Object):
        return None
    seen = 0  # JSON arrays accounted for
    req = _members(doc)
    if req is None:
        return None
    for key, value in req.items():
        if key == "inputs" and isinstance(value, simdjson.Array):
            seen += 1
            tensors = []
            for item in value:
                entry = _members(item) if isinstance(item, simdjson.Object) else None
                if entry is None:
                    return None
                for k, v in entry.items():
                    if k == "data" and isinstance(v, simdjson.Array):
                        if entry.get("datatype") not in _FLOAT_TYPES:
                            return None
                        try:
                            entry[k] = np.frombuffer(v.as_buffer(of_type="d"), np.float64)
                        except (TypeError, ValueError):  # a string, bool, null or object
                            return None
                        seen += 1
                    else:
                        entry[k], arrays = _plain(v)
                        seen += arrays
                tensors.append(entry)
            req[key] = tensors
        else:
            req[key], arrays = _plain(value)
            seen += arrays
    if head.count(b"[") != seen:  # some data nests (or a string holds a "[")
        return None
    return req


def _members(obj: simdjson.Object) -> dict | None:
    """An object's members, values still simdjson's; None when a key repeats (simdjson would
    give the first, orjson the last)."""
    keys = list(obj)
    if len(set(keys)) != len(keys):
        return None
    return {k: obj[k] for k in keys}


def _plain(value: object) -> tuple[object, int]:
    """A simdjson value as Python objects, and how many JSON arrays it holds."""
    if isinstance(value, simdjson.Array):
        value = value.as_list()
    elif isinstance(value, simdjson.Object):
        value = value.as_dict()
    else:
        return value, 0
    return value, _arrays_in(value)


def _arrays_in(value: object) -> int:
    """Lists in ``value``, itself included (a loop: 1,024 levels are valid JSON)."""
    count, todo = 0, [value]
    while todo:
        v = todo.pop()
        if isinstance(v, list):
            count += 1
            todo.extend(x for x in v if isinstance(x, (list, dict)))
        elif isinstance(v, dict):
            todo.extend(x for x in v.values() if isinstance(x, (list, dict)))
    return count


def decode(body: bytes, header_length: int | None, inputs: list[TensorSpec],
           limits: Limits) -> Decoded:
    """Turn a request body into named, shape- and dtype-checked numpy arrays."""
    if header_length is not None:
        if header_length < 0 or header_length > len(body):
            raise _malformed(f"inference-header-content-length {header_length} is outside "
                             f"the body ({len(body)} bytes)")
        head, rest = body[:header_length], memoryview(body)[header_length:]
    else:
        head, rest = body, memoryview(b"")
    req = _fast_load(head) if len(head) >= FAST_JSON_MIN_BYTES else None
    if req is None:
        try:
            req = orjson.loads(head)  # strict JSON; nesting deeper than 1024 is an error here
        except orjson.JSONDecodeError as exc:
            req = _lenient_json(head, exc)
    if not isinstance(req, dict):
        raise _malformed(f"request must be a JSON object with 'inputs' (got {_shown(req)})")
    raw_inputs = req.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _malformed("request needs 'inputs': a non-empty list of tensors")
    specs = {s.name: s for s in inputs}
    feeds: dict[str, np.ndarray] = {}
    offset = 0
    nonfinite = False
    for i, item in enumerate(raw_inputs):
        if not isinstance(item, dict):
            raise _malformed(f"inputs[{i}] must be an object (got {_shown(item)})")
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
                raise _malformed(f"inputs[{i}].parameters.binary_data_size needs the "
                                 "inference-header-content-length header")
            if not isinstance(size, int) or size != count * dtype.itemsize:
                raise _bad(f"inputs[{i}].parameters.binary_data_size: shape {shape} of "
                           f"{datatype} needs {count * dtype.itemsize} bytes (got {_shown(size)})")
            if offset + size > len(rest):
                raise _malformed(f"inputs[{i}]: binary data is truncated (need {size} bytes "
                                 f"at offset {offset}, {len(rest) - offset} left)")
            arr = np.frombuffer(rest[offset:offset + size], dtype=dtype).reshape(shape)
            offset += size
        else:
            arr = _from_json(i, item.get("data"), shape, count, datatype)
        arr = _cast(i, name, arr, datatype)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            if limits.nan_policy == "reject":
                raise RequestError(
                    400, f"inputs[{i}].data: input {name!r} contains NaN, infinity or a "
                         f"number beyond {datatype} range; this server rejects them "
                         "(--nan-policy reject)", "nonfinite", name, arr)
            nonfinite = True
        feeds[name] = arr
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise _bad(f"inputs: missing input(s) {', '.join(repr(m) for m in missing)}")
    if offset != len(rest):
        raise _malformed(f"binary data has {len(rest) - offset} trailing byte(s) no input claims")
    asked = req.get("outputs")
    names = None
    params = req.get("parameters")
    binary = bool(isinstance(params, dict) and params.get("binary_data_output") is True)
    per_output: dict[str, bool] = {}
    if asked is not None:
        if not isinstance(asked, list) or not all(isinstance(o, dict) for o in asked):
            raise _malformed(f"outputs: must be a list of objects with 'name' "
                             f"(got {_shown(asked)})")
        names = []
        for j, o in enumerate(asked):
            oname = o.get("name")
            if not isinstance(oname, str):
                raise _bad(f"outputs[{j}].name: must be a string (got {_shown(oname)})")
            names.append(oname)
            oparams = o.get("parameters")
            if isinstance(oparams, dict) and "binary_data" in oparams:
                flag = oparams["binary_data"]
                if not isinstance(flag, bool):
                    raise _bad(f"outputs[{j}].parameters.binary_data: must be true or false "
                               f"(got {_shown(flag)})")
                per_output[oname] = flag  # Triton: a per-output flag overrides the default
    rid = req.get("id")
    return Decoded(id=rid if isinstance(rid, str) else None, feeds=feeds, outputs=names,
                   binary_outputs=binary, binary=per_output or None, nonfinite_input=nonfinite)


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
                   f"{limits.max_batch} (--max-batch); split the request", 413, "limit")


def _from_json(i: int, data: object, shape: list[int], count: int, datatype: str) -> np.ndarray:
    if isinstance(data, np.ndarray):  # a flat list of numbers, read by _fast_load
        if data.size != count:
            raise _bad(f"inputs[{i}].data: shape {shape} needs {count} values "
                       f"(got {data.size})")
        with np.errstate(over="ignore"):  # beyond the type's range -> inf, refused later
            return data.astype(DTYPES[datatype]).reshape(shape)
    if not isinstance(data, list):
        raise _bad(f"inputs[{i}].data: must be a list of numbers (got {_shown(data)})")
    if (len(data) == count and datatype in _FLOAT_TYPES and data
            and type(data[0]) in (float, int)):
        # the common case, a flat list of numbers: straight into the tensor's dtype (a third
        # faster than np.asarray); nesting or non-numbers fall through to the general path
        try:
            with np.errstate(over="ignore"):
                return np.fromiter(data, DTYPES[datatype], count).reshape(shape)
        except (TypeError, ValueError, OverflowError):
            pass
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError, RecursionError, OverflowError):
        raise _bad(f"inputs[{i}].data: ragged or too deeply nested lists do not make a "
                   "tensor") from None
    if arr.dtype.kind not in "biuf":
        raise _bad(f"inputs[{i}].data: {datatype} needs numbers (got {arr.dtype.kind!r}-kind "
                   f"values such as {_shown(arr.ravel()[:1].tolist())})")
    if arr.size != count:
        raise _bad(f"inputs[{i}].data: shape {shape} needs {count} values (got {arr.size})")
    return arr.reshape(shape)


_FLOAT_TYPES = ("FP32", "FP64", "FP16")


def _cast(i: int, name: str, arr: np.ndarray, datatype: str) -> np.ndarray:
    """``arr`` as the input's dtype, refusing values that type cannot hold."""
    want = np.dtype(DTYPES[datatype])
    if arr.dtype == want:
        return arr
    kind = arr.dtype.kind
    if want.kind == "b":
        if kind != "b":
            raise _bad(f"inputs[{i}].data: input {name!r} is BOOL and needs true/false values")
        return arr.astype(want)
    if kind == "b":
        raise _bad(f"inputs[{i}].data: input {name!r} is {datatype} and needs numbers, "
                   "not true/false")
    if want.kind in "iu":
        if kind == "f":
            raise _bad(f"inputs[{i}].data: input {name!r} is {datatype} and needs integers "
                       f"(got a value such as {_shown(float(arr.ravel()[0]))})")
        info = np.iinfo(want)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise _bad(f"inputs[{i}].data: input {name!r} holds a value outside {datatype}'s "
                       f"range {info.min}..{info.max}")
        return arr.astype(want)
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(want)  # beyond the range -> inf, caught by the caller


def encode(model: str, version: str, req: Decoded, specs: list[TensorSpec],
           arrays: list[np.ndarray]) -> tuple[bytes, int | None]:
    """Response body, and the JSON header length when any output is sent binary.

    Outputs go binary when the request asked for ``binary_data_output``, unless that output's
    own ``parameters.binary_data`` says otherwise (Triton's binary tensor extension).
    Non-finite values cannot be JSON: a 400 when the input held them (``--nan-policy allow``),
    else a :class:`ValueError` (the model's fault: a 500).
    """
    by_name = {s.name: (s, a) for s, a in zip(specs, arrays)}
    names = req.outputs if req.outputs is not None else [s.name for s in specs]
    for n in names:
        if n not in by_name:
            raise _bad(f"outputs: unknown output {_shown(n)}; this model gives "
                       f"{', '.join(repr(s.name) for s in specs)}")
    outs = []
    blobs = []
    for n in names:
        spec, arr = by_name[n]
        entry: dict = {"name": n, "datatype": spec.datatype, "shape": list(arr.shape)}
        if req.binary_for(n):
            raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                if req.nonfinite_input:
                    raise _bad(f"output {n!r} holds NaN or infinity (the input did); JSON "
                               "cannot carry them: ask for binary outputs "
                               "(parameters.binary_data_output)")
                raise ValueError(f"output {n!r} holds NaN or infinity")
            entry["data"] = np.ascontiguousarray(arr).ravel()
        outs.append(entry)
    resp: dict = {"model_name": model, "model_version": version, "outputs": outs}
    if req.id is not None:
        resp["id"] = req.id
    head = orjson.dumps(resp, option=orjson.OPT_SERIALIZE_NUMPY)
    if blobs:
        return head + b"".join(blobs), len(head)
    return head, None
