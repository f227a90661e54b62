"""Open Inference Protocol decoding/encoding and the drift metric, without a server."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelops.serve import protocol
from modelops.serve.backends import TensorSpec
from modelops.serve.metrics import DriftWindow, RoleSource, ServingMetrics, psi
from modelops.serve.protocol import Decoded, Limits, RequestError, decode, encode

SPEC = [TensorSpec("input", "FP32", (-1, 1, 8, 8))]


@pytest.fixture(autouse=True)
def _fast_path_for_every_size(monkeypatch):
    """The server reads only bodies of FAST_JSON_MIN_BYTES and more through simdjson; here
    every body goes that way when it can, so each test checks the fast path too."""
    monkeypatch.setattr(protocol, "FAST_JSON_MIN_BYTES", 0)


def test_small_bodies_are_read_by_orjson_large_ones_by_simdjson(monkeypatch):
    monkeypatch.undo()  # the server's own threshold
    calls = []
    real = protocol._fast_load
    monkeypatch.setattr(protocol, "_fast_load", lambda head: calls.append(len(head)) or
                        real(head))
    small = _req(shape=(1, 1, 8, 8), data=[0.5] * 64)
    large = _req(shape=(32, 1, 8, 8), data=[0.5] * 2048)
    assert len(small) < protocol.FAST_JSON_MIN_BYTES <= len(large)
    for body in (small, large):
        decode(body, None, SPEC, Limits())
    assert calls == [len(large)]
OUT = [TensorSpec("logits", "FP32", (-1, 10))]


def _req(shape=(2, 1, 8, 8), data=None, **extra) -> bytes:
    n = int(np.prod(shape))
    item = {"name": "input", "shape": list(shape), "datatype": "FP32",
            "data": list(range(n)) if data is None else data, **extra}
    return json.dumps({"inputs": [item]}).encode()


def _error(body: bytes, header_length=None, limits: Limits | None = None) -> RequestError:
    with pytest.raises(RequestError) as exc:
        decode(body, header_length, SPEC, limits or Limits())
    return exc.value


def test_json_tensor_decodes_to_shaped_float32():
    req = decode(_req(), None, SPEC, Limits())
    arr = req.feeds["input"]
    assert arr.dtype == np.float32 and arr.shape == (2, 1, 8, 8)
    assert arr[1, 0, 7, 7] == 127.0


def test_nested_data_is_accepted_row_major():
    x = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8)
    req = decode(_req(shape=(1, 1, 8, 8), data=x.tolist()), None, SPEC, Limits())
    np.testing.assert_array_equal(req.feeds["input"], x)


@pytest.mark.parametrize("body, status, words", [
    (b"\xff\xfe garbage", 400, "not valid json"),
    (b"[1, 2]", 400, "json object"),
    (b'{"inputs": []}', 400, "non-empty list"),
    (_req(shape=(1, 1, 8, 7), data=[0] * 56), 400, "shape[3]"),
    (_req(shape=(1, 8, 8), data=[0] * 64), 400, "has 4 dimensions"),
    (_req(shape=(1, 1, 8, 8), data=[0] * 63), 400, "needs 64 values (got 63)"),
    (_req(shape=(1, 1, 8, 8), data=["a"] * 64), 400, "needs numbers"),
    (_req(shape=(0, 1, 8, 8), data=[]), 400, "at least 1"),
    (json.dumps({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32",
                             "data": [1]}]}).encode(), 400, "unknown input 'x'"),
    (json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "INT64",
                             "data": [1] * 64}]}).encode(), 400, "takes 'fp32'"),
    (_req(shape=(2000, 1, 8, 8), data=[0]), 413, "--max-batch"),
])
def test_bad_tensors_get_one_clear_4xx(body, status, words):
    err = _error(body)
    assert err.status == status
    assert words.lower() in err.message.lower()


def test_nan_is_rejected_by_default_and_allowed_on_request():
    data = [0.0] * 63 + [float("nan")]
    body = _req(shape=(1, 1, 8, 8), data=data)
    assert "nan" in _error(body).message.lower()
    req = decode(body, None, SPEC, Limits(nan_policy="allow"))
    assert math.isnan(req.feeds["input"].ravel()[-1])


def test_binary_tensor_extension_round_trip():
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": [3, 1, 8, 8], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "parameters": {"binary_data_output": True}}).encode()
    req = decode(head + x.tobytes(), len(head), SPEC, Limits())
    np.testing.assert_array_equal(req.feeds["input"], x)
    assert req.binary_outputs
    logits = np.arange(30, dtype=np.float32).reshape(3, 10)
    body, hl = encode("m", "1", req, OUT, [logits])
    meta = json.loads(body[:hl])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 120
    np.testing.assert_array_equal(np.frombuffer(body[hl:], np.float32).reshape(3, 10), logits)


def test_binary_size_mismatch_and_truncation_are_400():
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 256}}]}).encode()
    assert "truncated" in _error(head + b"\0" * 100, len(head)).message
    head2 = head.replace(b"256", b"255")
    assert "needs 256 bytes" in _error(head2 + b"\0" * 255, len(head2)).message
    assert "outside the body" in _error(head, len(head) + 5).message


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.one_of(st.none(), st.integers(-5, 400)))
def test_garbage_never_escapes_as_anything_but_a_request_error(body, hl):
    try:
        decode(body, hl, SPEC, Limits())
    except RequestError as exc:
        assert 400 <= exc.status < 500


def test_json_response_has_kserve_shape():
    logits = np.ones((2, 10), np.float32)
    req = Decoded(id="req-1", feeds={}, outputs=None, binary_outputs=False)
    body, hl = encode("digits-cnn", "3", req, OUT, [logits])
    assert hl is None
    out = json.loads(body)
    assert out["model_name"] == "digits-cnn" and out["model_version"] == "3"
    assert out["id"] == "req-1"
    assert out["outputs"][0] == {"name": "logits", "datatype": "FP32", "shape": [2, 10],
                                 "data": [1.0] * 20}


def test_psi_is_zero_for_the_baseline_and_grows_with_shift():
    base = [0.1] * 10
    assert psi(base, [10] * 10) == pytest.approx(0.0)
    mild = psi(base, [12, 8] * 5)
    severe = psi(base, [50, 0, 0, 0, 0, 0, 0, 0, 0, 50])
    assert 0 < mild < 0.1 < 2 < severe
    assert math.isnan(psi(base, [0] * 10))


def test_drift_window_slides_and_is_nan_until_min_samples():
    w = DriftWindow([0.5, 0.5], window=10, min_samples=4)
    w.add([0, 1, 0])
    assert math.isnan(w.value())
    w.add([1])
    assert w.value() == pytest.approx(0.0)
    w.add([0] * 10)  # the window now holds only class 0
    assert w.value() == pytest.approx(psi([0.5, 0.5], [10, 0]))


def test_exposition_has_exactly_the_contract_names_and_labels(tmp_path):
    m = ServingMetrics("digits-cnn", "7", "canary", DriftWindow([0.5, 0.5], 10, 1))
    m.request(400)
    m.predictions([1, 1, 0])
    m.duration.observe(0.002)
    text = m.exposition().decode()
    names = {line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE")}
    assert names == {"model_request_duration_seconds", "model_requests_total",
                     "model_predictions_total", "model_prediction_psi"}
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert samples and all('model="digits-cnn"' in s and 'version="7"' in s
                           and 'role="canary"' in s for s in samples)
    assert any(s.startswith("model_requests_total{") and 'code="400"' in s and s.endswith(" 1.0")
               for s in samples)
    assert any(s.startswith("model_predictions_total{") and 'class="1"' in s
               and s.endswith(" 2.0") for s in samples)
    assert not any("_created" in s for s in samples)


def test_role_follows_the_downward_api_labels_file(tmp_path):
    labels = tmp_path / "labels"
    labels.write_text('app="x"\nmodelops.io/role="canary"\n')
    role = RoleSource("stable", labels)
    m = ServingMetrics("digits-cnn", "7", role, DriftWindow(None, 10, 1))
    assert 'role="canary"' in m.exposition().decode()
    labels.write_text('modelops.io/role="stable"\n')
    import os
    os.utime(labels, (1, 1))  # a new mtime, as the kubelet's atomic swap gives
    assert 'role="stable"' in m.exposition().decode()
    assert 'role="canary"' not in m.exposition().decode()


@pytest.mark.parametrize("value", [1e39, -3.5e38, 1.7e308, float("inf")])
def test_values_beyond_fp32_are_a_400_not_a_nan_inside_the_model(value):
    err = _error(_req(shape=(1, 1, 8, 8), data=[value] + [0.0] * 63))
    assert err.status == 400 and "beyond fp32 range" in err.message.lower()


def test_deep_nesting_and_odd_json_are_400():
    assert _error(b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}").status == 400
    assert _error(b'{"inputs": [{"name": "input", "shape": [1,1,8,8], "datatype": "FP32", '
                  b'"data": [1e400' + b", 0" * 63 + b"]}]}").status == 400
    int_spec = [TensorSpec("input", "INT8", (-1, 4))]
    for data, words in (([1.5, 0, 0, 0], "needs integers"), ([300, 0, 0, 0], "range"),
                        ([True, False, True, False], "not true/false")):
        with pytest.raises(RequestError, match=words):
            decode(json.dumps({"inputs": [{"name": "input", "shape": [1, 4],
                                           "datatype": "INT8", "data": data}]}).encode(),
                   None, int_spec, Limits())


def test_a_per_output_binary_data_false_overrides_binary_data_output():
    """Triton's binary extension: the request-level flag is the default for every output, an
    output's own parameters.binary_data wins."""
    specs = [TensorSpec("logits", "FP32", (-1, 10)), TensorSpec("probs", "FP32", (-1, 10))]
    body = json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32",
                                   "data": [0.0] * 64}],
                       "parameters": {"binary_data_output": True},
                       "outputs": [{"name": "logits", "parameters": {"binary_data": False}},
                                   {"name": "probs"}]}).encode()
    req = decode(body, None, SPEC, Limits())
    a, b = np.zeros((1, 10), np.float32), np.ones((1, 10), np.float32)
    payload, hl = encode("m", "1", req, specs, [a, b])
    head = json.loads(payload[:hl])
    logits, probs = head["outputs"]
    assert logits["data"] == [0.0] * 10 and "parameters" not in logits
    assert probs["parameters"]["binary_data_size"] == 40
    np.testing.assert_array_equal(np.frombuffer(payload[hl:], np.float32), b.ravel())


def test_non_finite_outputs_are_the_model_s_fault_unless_the_input_had_them():
    req = decode(_req(shape=(1, 1, 8, 8), data=[0.0] * 64), None, SPEC, Limits())
    with pytest.raises(ValueError):
        encode("m", "1", req, OUT, [np.full((1, 10), np.nan, np.float32)])
    body = _req(shape=(1, 1, 8, 8), data=[float("nan")] + [0.0] * 63)
    req = decode(body, None, SPEC, Limits(nan_policy="allow"))
    with pytest.raises(RequestError) as info:
        encode("m", "1", req, OUT, [np.full((1, 10), np.nan, np.float32)])
    assert info.value.status == 400 and "binary" in info.value.message


def test_metrics_families_share_one_registry_and_the_role_label():
    m = ServingMetrics("digits-cnn", "7", "canary", DriftWindow(None, 10, 1))
    from prometheus_client import Counter

    extra = m.family(Counter, "model_input_rows", "Rows seen.", ("feature",))
    extra.labels(**m.labels(feature="f1")).inc(3)
    text = m.exposition().decode()
    assert 'model_input_rows_total{feature="f1",model="digits-cnn",role="canary",version="7"} ' \
           '3.0' in text


def test_drift_window_counts_equal_a_plain_sliding_window():
    """The vectorised ring buffer holds exactly the last ``window`` valid classes."""
    import collections
    import random

    rng = random.Random(0)
    for _ in range(200):
        window, n = rng.randint(1, 30), rng.randint(1, 6)
        w = DriftWindow([1 / n] * n, window, 1)
        ref: collections.deque = collections.deque(maxlen=window)
        for _ in range(rng.randint(1, 15)):
            batch = [rng.randint(-1, n) for _ in range(rng.randint(0, 40))]
            w.add(np.array(batch))
            ref.extend(c for c in batch if 0 <= c < n)
            assert w.value() == pytest.approx(psi([1 / n] * n,
                                                  [ref.count(i) for i in range(n)]),
                                              nan_ok=True)


# ----------------------------------------------------------------------------------------
# The fast JSON path (simdjson, data straight into a buffer) against the general one (orjson,
# Python floats): whatever the body, the same tensors or the same error.

def _outcome(body: bytes, specs: list[TensorSpec], limits: Limits | None = None):
    limits = limits or Limits()
    try:
        req = decode(body, None, specs, limits)
    except RequestError as exc:
        return ("error", exc.status, exc.reason, exc.message)
    return ("ok", req.id, req.outputs, req.binary_outputs, req.binary, req.nonfinite_input,
            {k: (v.dtype.str, v.shape, v.tobytes()) for k, v in req.feeds.items()})


def _general(body: bytes, specs: list[TensorSpec], limits: Limits | None = None, *,
             monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(protocol, "_fast_load", lambda head: None)
        return _outcome(body, specs, limits)


FLOAT_SPECS = {t: [TensorSpec("input", t, (-1, 4))] for t in ("FP32", "FP64", "FP16")}


def _tensor_body(data, datatype="FP32", shape=(1, 4), **extra) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": list(shape),
                                   "datatype": datatype, "data": data}], **extra}).encode()


def test_the_fast_path_reads_the_common_request():
    """A flat list of numbers for a float input is read without orjson (the bench's body)."""
    body = _req(shape=(32, 1, 8, 8), data=[i / 7 for i in range(2048)])
    fast = protocol._fast_load(body)
    assert fast is not None and isinstance(fast["inputs"][0]["data"], np.ndarray)
    req = decode(body, None, SPEC, Limits())
    np.testing.assert_array_equal(req.feeds["input"].ravel(),
                                  np.array([i / 7 for i in range(2048)], np.float32))


@pytest.mark.parametrize("body", [
    _tensor_body([[1], 2, [3], 4]),  # ragged: flattening would hide it
    _tensor_body([1, [], [2, 3], 4]),
    _tensor_body([[1, 2], [3, 4]]),  # nested and rectangular: accepted, by the general path
    _tensor_body([1, 2, 3, True]),
    _tensor_body([1, 2, 3, None]),
    _tensor_body([1, 2, 3, "4"]),
    _tensor_body([1, 2, 3, {"a": 1}]),
    _tensor_body([1, 2, 3]),
    _tensor_body([]),
    _tensor_body([1e39, 0, 0, 0]),
    _tensor_body([-3.5e38, 0, 0, 0]),
    _tensor_body([1, 2, 3, 10 ** 20]),  # beyond 64 bits: orjson reads a float
    _tensor_body([1, 2, 3, 2 ** 64 - 1]),
    _tensor_body([1, 2, 3, -2 ** 63]),
    _tensor_body([16777217, 2 ** 53 + 1, 0.1, -0.0]),
    _tensor_body([1, 2, 3, 4], id="[not an array]"),  # a "[" inside a string
    _tensor_body([1, 2, 3, 4], id="x", outputs=[{"name": "logits"}],
                 parameters={"binary_data_output": False, "list": [1, [2]]}),
    _tensor_body([1, 2, 3, 4], datatype="FP64"),
    _tensor_body([1, 2, 3, 4], datatype="INT64"),
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
    b'"data": [1, 2, 3, 4], "data": [5, 6, 7, 8]}]}',  # repeated keys: the last wins
    b'{"id": "a", "id": "b", "inputs": [{"name": "input", "shape": [1, 4], '
    b'"datatype": "FP32", "data": [1, 2, 3, 4]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "INT64", '
    b'"datatype": "FP32", "data": [1, 2, 3, 4]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
    b'"data": [1, 2, 3, 4]}], "inputs": [{"name": "input", "shape": [1, 4], '
    b'"datatype": "FP32", "data": [1, 2, [3], 4]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
    b'"data": [1, 2, 3, NaN]}]}',
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
    b'"data": [1, 2, 3, 1e400]}]}',
    b'\xef\xbb\xbf{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
    b'"data": [1, 2, 3, 4]}]}',  # a byte order mark
    b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", '
    b'"data": [1, 2, 3, 4],}]}',
    b'{"id": "\\ud800", "inputs": []}',
    b'{"inputs": ' + b"[" * 1100 + b"]" * 1100 + b"}",
    b'{"parameters": {"deep": ' + b"[" * 1020 + b"]" * 1020 + b'}, "inputs": [{"name": '
    b'"input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}',
    b'[{"inputs": []}]',
])
def test_the_fast_path_answers_what_the_general_path_answers(body, monkeypatch):
    for datatype, specs in FLOAT_SPECS.items():
        typed = body.replace(b'"FP32"', f'"{datatype}"'.encode())
        for limits in (Limits(), Limits(nan_policy="allow")):
            assert _outcome(typed, specs, limits) == _general(typed, specs, limits,
                                                              monkeypatch=monkeypatch)


_numbers = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64),
                     st.floats(allow_nan=False, allow_infinity=False, width=32),
                     st.integers(-2 ** 70, 2 ** 70))
_elements = st.one_of(_numbers, st.lists(_numbers, max_size=3), st.booleans(), st.none(),
                      st.text(max_size=3))


@settings(max_examples=300, deadline=None)
@given(data=st.one_of(st.lists(_numbers, min_size=3, max_size=5),
                      st.lists(_elements, min_size=3, max_size=5)),
       datatype=st.sampled_from(sorted(FLOAT_SPECS)),
       rows=st.integers(1, 2), ident=st.one_of(st.none(), st.text(max_size=4)))
def test_fast_and_general_paths_agree_on_generated_bodies(data, datatype, rows, ident):
    body = json.dumps({"id": ident, "inputs": [{"name": "input", "shape": [rows, 4],
                                                "datatype": datatype, "data": data * rows}]}
                      ).encode()
    specs = FLOAT_SPECS[datatype]
    fast = _outcome(body, specs)
    saved = protocol._fast_load
    protocol._fast_load = lambda head: None  # hypothesis runs this body many times
    try:
        assert fast == _outcome(body, specs)
    finally:
        protocol._fast_load = saved


def test_predicted_classes_reach_their_counters_at_each_export_whatever_the_classes():
    """Classes are gathered per request in one array and counted at the export: with and
    without a baseline, beyond the baseline's classes, and negative ones as given."""
    def counts(m):
        return {s.split('class="')[1].split('"')[0]: float(s.rsplit(" ", 1)[1])
                for s in m.exposition().decode().splitlines()
                if s.startswith("model_predictions_total{")}

    bare = ServingMetrics("m", "1", "stable", DriftWindow(None, 10, 1))
    bare.predictions(np.array([3, 3, 7]))
    assert {k: v for k, v in counts(bare).items() if v} == {"3": 2.0, "7": 1.0}
    bare.predictions([3])
    assert counts(bare)["3"] == 3.0 and counts(bare)["7"] == 1.0  # nothing counted twice
    two = ServingMetrics("m", "1", "stable", DriftWindow([0.5, 0.5], 10, 1))
    two.predictions(np.array([0, 5, 1]))
    two.predictions(np.array([-1]))
    assert counts(two) == {"0": 1.0, "1": 1.0, "2": 0.0, "3": 0.0, "4": 0.0, "5": 1.0,
                           "-1": 1.0}
    assert two.drift.value() == pytest.approx(psi([0.5, 0.5], [1, 1]))  # 5 and -1 left out


def test_answers_are_counted_in_bulk_before_each_export_and_the_queue_stays_short():
    m = ServingMetrics("m", "1", "stable", DriftWindow([0.5, 0.5], 1000, 1))
    m.answered(np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]], np.float32))
    m.answered(np.array([0.5, 0.5], np.float32))  # not class scores: not predictions
    m.answered(np.array([[1.0], [2.0]], np.float32))
    text = m.exposition().decode()
    assert 'class="1",model="m",role="stable",version="1"} 2.0' in text
    assert 'class="0",model="m",role="stable",version="1"} 1.0' in text
    assert m.drift.value() == pytest.approx(psi([0.5, 0.5], [1, 2]))
    for _ in range(ServingMetrics.SETTLE_EVERY * 3):
        m.answered(np.array([[0.0, 1.0]], np.float32))
        assert len(m._answered) < ServingMetrics.SETTLE_EVERY  # counted with no thread
    m.settle()
    m.answered(np.array([[0.0, 1.0]], np.float32))
    m.answered(np.array([[0.0, 1.0, 0.0]], np.float32))  # another class count: one by one
    text = m.exposition().decode()
    assert f'class="1",model="m",role="stable",version="1"}} {2.0 + 3 * 256 + 2}' in text
