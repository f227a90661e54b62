"""Pure logic of the compile step: params, TensorRT configuration, parity, latency, comment.

None of these need TensorRT or a GPU; the real build is tests/func/test_compile_gpu.py.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from modelops.ci.compile import latency, parity
from modelops.ci.compile.base import AUTO_ORDER, BACKENDS, choose_backend
from modelops.ci.compile.markdown import render_compile_section
from modelops.ci.compile.step import effective_precision
from modelops.ci.compile.tensorrt import (
    CudaDevice,
    builder_flags,
    cache_names,
    calibration_batches,
    check_engine_compatible,
    cuda_devices,
    format_parse_failure,
    make_sidecar,
    profile_shapes,
    read_sidecar,
    unsupported_nodes,
)
from modelops.errors import ConfigError, InputError
from modelops.settings import convert, load_settings
from modelops.settings.compile import BatchProfile, CompileParams, Tolerance
from tests.conftest import ROOT

# --------------------------------------------------------------------------- params


def test_repository_params_have_a_valid_compile_section():
    cfg = load_settings(ROOT / "params.yaml").compile
    assert cfg.backend in ("auto", "tensorrt", "onnxruntime")
    assert set(cfg.tolerances) == {"fp32", "fp16", "int8"}
    assert all(cfg.batch_profile.min <= b <= cfg.batch_profile.max for b in cfg.batch_sizes)


def test_profile_min_above_max_names_the_field():
    with pytest.raises(ConfigError) as err:
        convert(CompileParams, {"batch_profile": {"min": 64, "opt": 32, "max": 16}},
                "compile", "params.yaml")
    msg = str(err.value)
    assert "params.yaml: compile.batch_profile.min" in msg and "64" in msg
    assert "compile.batch_profile.max" in msg


def test_profile_opt_outside_range_is_refused():
    with pytest.raises(ConfigError, match=r"compile\.batch_profile\.opt"):
        convert(CompileParams, {"batch_profile": {"min": 1, "opt": 500, "max": 128}},
                "compile", "params.yaml")


def test_batch_size_outside_profile_is_refused():
    with pytest.raises(ConfigError, match=r"compile\.batch_sizes\[1\].*256"):
        convert(CompileParams, {"batch_sizes": [1, 256]}, "compile", "params.yaml")


def test_tolerances_need_every_precision():
    raw = {"tolerances": {"fp32": {"atol": 1e-4}}}
    with pytest.raises(ConfigError, match="no entry for 'fp16'"):
        convert(CompileParams, raw, "compile", "params.yaml")


def test_unknown_precision_and_key_are_refused():
    with pytest.raises(ConfigError, match=r"compile\.precision"):
        convert(CompileParams, {"precision": "bf16"}, "compile", "params.yaml")
    with pytest.raises(ConfigError, match=r"(?s)compile\.workspace\b.*did you mean 'workspace_mb'"):
        convert(CompileParams, {"workspace": 10}, "compile", "params.yaml")


# --------------------------------------------------------------------------- profile shapes


def test_profile_shapes_for_dynamic_batch():
    shapes = profile_shapes(["batch", 1, 8, 8], BatchProfile(min=1, opt=32, max=128))
    assert shapes == ((1, 1, 8, 8), (32, 1, 8, 8), (128, 1, 8, 8))


def test_profile_shapes_refuse_dynamic_non_batch_axis():
    with pytest.raises(InputError, match=r"m\.onnx: input 'input' axis 2 is dynamic \('h'\)"):
        profile_shapes(["batch", 1, "h", 8], BatchProfile(), model="m.onnx")


def test_profile_shapes_refuse_fixed_batch_outside_profile():
    with pytest.raises(InputError, match="fixed batch of 1"):
        profile_shapes([1, 1, 8, 8], BatchProfile(min=1, opt=32, max=128))
    assert profile_shapes([4, 3], BatchProfile(min=4, opt=4, max=4)) == ((4, 3),) * 3


def test_profile_shapes_refuse_unordered_profile():
    # BatchProfile.check guards params.yaml; the pure function guards direct callers too
    with pytest.raises(InputError, match="min <= opt <= max"):
        profile_shapes(["b", 3], BatchProfile(min=8, opt=4, max=2))


# --------------------------------------------------------------------------- precision flags


@pytest.mark.parametrize(("precision", "flags"), [
    ("fp32", []), ("fp16", ["FP16"]), ("int8", ["INT8", "FP16"])])
def test_builder_flags(precision, flags):
    assert builder_flags(precision) == flags


def test_builder_flags_respect_the_hardware():
    assert builder_flags("int8", fast_fp16=False) == ["INT8"]
    with pytest.raises(InputError, match="no fast fp16"):
        builder_flags("fp16", fast_fp16=False)
    with pytest.raises(InputError, match="no fast int8"):
        builder_flags("int8", fast_int8=False)


def test_fast_kernels_by_compute_capability():
    from modelops.ci.compile.tensorrt import fast_kernels

    assert fast_kernels("9.0") == (True, True)
    assert fast_kernels("6.1") == (False, True)
    assert fast_kernels("5.2") == (False, False)
    with pytest.raises(InputError, match="unreadable compute capability"):
        fast_kernels("sm_90")


# --------------------------------------------------------------------------- calibration


def test_calibration_batches_are_seeded_whole_and_without_replacement():
    x = np.arange(100 * 4, dtype=np.float32).reshape(100, 4)
    a = calibration_batches(x, samples=70, batch_size=16, seed=3)
    b = calibration_batches(x, samples=70, batch_size=16, seed=3)
    c = calibration_batches(x, samples=70, batch_size=16, seed=4)
    assert [len(t) for t in a] == [16, 16, 16, 16]          # 70 rounded down to whole batches
    assert all(np.array_equal(p, q) for p, q in zip(a, b))  # same seed, same batches
    assert not all(np.array_equal(p, q) for p, q in zip(a, c))
    rows = np.concatenate(a)[:, 0]
    assert len(set(rows.tolist())) == 64                     # no sample twice
    assert all(t.dtype == np.float32 and t.flags.c_contiguous for t in a)


def test_calibration_batches_capped_by_data_and_refused_when_too_few():
    x = np.zeros((10, 2), dtype=np.float32)
    assert [len(t) for t in calibration_batches(x, 1000, 4, 0)] == [4, 4]
    with pytest.raises(InputError, match="at least one batch of 32"):
        calibration_batches(x, 1000, 32, 0)


def test_cache_names_are_keyed_by_version_gpu_and_model():
    dev = CudaDevice("NVIDIA H100", "9.0")
    from modelops.settings.compile import Calibration

    timing, calib = cache_names("10.3.0", dev, "ab" * 32, Calibration(512, 32, 0))
    assert timing == "timing-trt10.3.0-sm90.cache"
    assert calib == f"calibration-{'ab' * 8}-n512-b32-s0.cache"


# --------------------------------------------------------------------------- parser errors


class _TrtError:
    """The accessors of TensorRT's ParserError (node_name/node_operator since 8.6)."""

    def __init__(self, desc, node=-1, name="", op=""):
        self._d, self._n, self._name, self._op = desc, node, name, op

    def desc(self):
        return self._d

    def node(self):
        return self._n

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op


class _OldTrtError:
    """Before 8.6: only desc() and node()."""

    def __init__(self, desc, node):
        self._d, self._n = desc, node

    def desc(self):
        return self._d

    def node(self):
        return self._n


def test_unsupported_nodes_are_named():
    errors = [_TrtError("No importer registered for op: FancyOp", 1, "fancy_1", "FancyOp"),
              _OldTrtError("unsupported", 2)]
    nodes = unsupported_nodes(errors, ["conv", "fancy_1", "weird_2"], ["Conv", "FancyOp", "W"])
    assert [(n.name, n.op) for n in nodes] == [("fancy_1", "FancyOp"), ("weird_2", "W")]
    msg = format_parse_failure("models/model.onnx", nodes)
    assert msg.startswith("models/model.onnx: tensorrt cannot build node(s) fancy_1 (FancyOp)")
    assert "weird_2 (W): unsupported" in msg


def test_unsupported_nodes_without_node_fall_back_to_graph():
    nodes = unsupported_nodes([_TrtError("bad graph")], ["a"], ["Relu"])
    assert nodes[0].name == "<graph>" and nodes[0].message == "bad graph"
    assert "no error details" in format_parse_failure("m.onnx", [])
    many = unsupported_nodes([_TrtError("x", i, f"n{i}", "Op") for i in range(7)])
    assert format_parse_failure("m.onnx", many).endswith("and 2 more")


# --------------------------------------------------------------------------- sidecar


def _engine(tmp_path, content=b"engine-bytes"):
    engine = tmp_path / "model.plan"
    engine.write_bytes(content)
    dev = CudaDevice("NVIDIA A10G", "8.6")
    sidecar = make_sidecar(engine=engine, tensorrt_version="10.3.0", device=dev,
                           precision="fp16", shapes=((1, 1, 8, 8), (32, 1, 8, 8), (128, 1, 8, 8)),
                           input_name="input", build_seconds=1.23456, onnx_sha256="f" * 64,
                           workspace_mb=512)
    (tmp_path / "model.plan.json").write_text(json.dumps(sidecar))
    return engine, sidecar, dev


def test_sidecar_records_what_the_engine_needs(tmp_path):
    engine, sidecar, _ = _engine(tmp_path)
    assert sidecar["tensorrt_version"] == "10.3.0"
    assert sidecar["gpu"] == "NVIDIA A10G" and sidecar["compute_capability"] == "8.6"
    assert sidecar["precision"] == "fp16"
    assert sidecar["profile"] == {"input": "input", "min": [1, 1, 8, 8], "opt": [32, 1, 8, 8],
                                  "max": [128, 1, 8, 8]}
    assert sidecar["build_seconds"] == 1.235
    import hashlib

    assert sidecar["engine_sha256"] == hashlib.sha256(b"engine-bytes").hexdigest()
    assert sidecar["engine_bytes"] == len(b"engine-bytes")
    assert read_sidecar(engine) == sidecar


def test_engine_from_same_version_and_gpu_is_accepted(tmp_path):
    engine, sidecar, dev = _engine(tmp_path)
    check_engine_compatible(engine, sidecar, tensorrt_version="10.3.0",
                            device=CudaDevice("NVIDIA A40", "8.6"))  # same architecture


def test_foreign_engines_are_refused(tmp_path):
    engine, sidecar, dev = _engine(tmp_path)
    with pytest.raises(InputError, match=r"built with tensorrt '10.3.0'.*has tensorrt '10.4.0'"):
        check_engine_compatible(engine, sidecar, tensorrt_version="10.4.0", device=dev)
    with pytest.raises(InputError, match=r"compute capability 8.6.*'NVIDIA H100'.*9.0"):
        check_engine_compatible(engine, sidecar, tensorrt_version="10.3.0",
                                device=CudaDevice("NVIDIA H100", "9.0"))
    with pytest.raises(InputError, match="no CUDA device"):
        check_engine_compatible(engine, sidecar, tensorrt_version="10.3.0", device=None)
    engine.write_bytes(b"replaced")
    with pytest.raises(InputError, match="does not match its sidecar"):
        check_engine_compatible(engine, sidecar, tensorrt_version="10.3.0", device=dev)


def test_missing_or_broken_sidecar_is_refused(tmp_path):
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"x")
    with pytest.raises(InputError, match="no sidecar model.plan.json"):
        read_sidecar(engine)
    (tmp_path / "model.plan.json").write_text("{not json")
    with pytest.raises(InputError, match="model.plan.json: not valid JSON"):
        read_sidecar(engine)
    (tmp_path / "model.plan.json").write_text(json.dumps({"engine_sha256": "x"}))
    with pytest.raises(InputError, match="missing field 'tensorrt_version'"):
        read_sidecar(engine)


def test_no_cuda_driver_means_no_device():
    assert cuda_devices("libcuda-that-does-not-exist.so") == []


# --------------------------------------------------------------------------- backend choice


def test_params_backend_choices_match_the_registry():
    import typing

    hints = typing.get_type_hints(CompileParams)
    assert set(typing.get_args(hints["backend"])) == {"auto", *BACKENDS}
    assert set(AUTO_ORDER) == set(BACKENDS)


def test_auto_prefers_tensorrt_and_says_why_not():
    assert choose_backend("auto", {"tensorrt": None, "onnxruntime": None}) == ("tensorrt", {})
    name, skipped = choose_backend("auto", {"tensorrt": "no CUDA device", "onnxruntime": None})
    assert name == "onnxruntime" and skipped == {"tensorrt": "no CUDA device"}
    name, skipped = choose_backend("tensorrt", {"tensorrt": "tensorrt not installed",
                                                "onnxruntime": None})
    assert name == "tensorrt" and skipped["tensorrt"] == "tensorrt not installed"


def test_effective_precision():
    assert effective_precision("onnxruntime", "fp16")[0] == "fp32"
    assert effective_precision("onnxruntime", "int8") == ("int8", None)
    assert effective_precision("tensorrt", "fp16") == ("fp16", None)


# --------------------------------------------------------------------------- parity


def _logits(n=50, seed=0):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(n, 10)).astype(np.float32)
    return ref, ref.argmax(axis=1)


def test_parity_identical_outputs_pass():
    ref, y = _logits()
    r = parity.compare(ref.copy(), ref, y, Tolerance())
    assert r.passed and r.max_abs_error == 0 and r.top1_agreement == 1 and r.accuracy == 1


def test_parity_small_drift_within_tolerance_passes_and_large_fails():
    ref, y = _logits()
    tol = Tolerance(atol=1e-3, rtol=0.0, min_top1_agreement=0.0, max_accuracy_drop=1.0)
    assert parity.compare(ref + 5e-4, ref, y, tol).passed
    bad = ref.copy()
    bad[3, 4] += 0.01
    r = parity.compare(bad, ref, y, tol)
    assert not r.passed and r.mismatched_elements == 1
    assert r.max_abs_error == pytest.approx(0.01, rel=1e-3)
    assert "1 of 500 logits differ" in r.failures[0]


def test_parity_top1_and_accuracy_gates():
    ref, y = _logits()
    swapped = ref.copy()
    swapped[0] = -swapped[0]  # flips the argmax of row 0
    loose = Tolerance(atol=100, rtol=0, min_top1_agreement=0.99, max_accuracy_drop=0.0)
    r = parity.compare(swapped, ref, y, loose)
    assert r.top1_agreement == pytest.approx(49 / 50) and r.accuracy == pytest.approx(49 / 50)
    assert any("top-1 agreement" in f for f in r.failures)
    assert any("accuracy dropped" in f for f in r.failures)
    ok = replace(loose, min_top1_agreement=0.98, max_accuracy_drop=0.02)
    assert parity.compare(swapped, ref, y, ok).passed


def test_parity_nan_fails():
    ref, y = _logits()
    bad = ref.copy()
    bad[0, 0] = np.nan
    r = parity.compare(bad, ref, y, Tolerance(atol=1e9))
    assert not r.passed


def test_run_in_batches_respects_max_batch():
    seen = []

    def infer(x):
        seen.append(len(x))
        return x * 2

    out = parity.run_in_batches(infer, np.ones((10, 3), dtype=np.float32), 4)
    assert seen == [4, 4, 2] and out.shape == (10, 3) and float(out.sum()) == 60


# --------------------------------------------------------------------------- latency


def test_measure_percentiles_and_throughput_with_a_fake_clock():
    ticks = iter(np.cumsum([0.0] + [0.001, 0.0] * 50 + [0.0]).tolist())
    # each timed call: start tick, end tick 1 ms later (then the next start at the same time)
    calls = []
    out = latency.measure(calls.append, np.zeros((8, 2), dtype=np.float32), warmup=3, runs=50,
                          clock=lambda: next(ticks))
    assert len(calls) == 53
    assert out["p50_ms"] == pytest.approx(1.0) and out["p99_ms"] == pytest.approx(1.0)
    assert out["throughput_per_s"] == pytest.approx(8 / 0.001)


def test_make_batch_repeats_short_data():
    x = np.arange(3, dtype=np.float32).reshape(3, 1)
    assert latency.make_batch(x, 7)[:, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]


def test_environment_records_libraries():
    env = latency.environment()
    assert "onnxruntime" in env["libraries"] and env["cpu"]
    assert isinstance(env["gpu"], list)


# --------------------------------------------------------------------------- comment


def test_comment_block_escapes_and_says_what_was_skipped():
    section = {
        "status": "fail", "backend": "onnxruntime", "precision": "fp32",
        "skipped_backends": {"tensorrt": "skipped: tensorrt not installed"},
        "error": "parity failed: node <b>|x",
        "parity": {"max_abs_error": 0.5, "max_rel_error": 2.0, "mismatched_elements": 3,
                   "top1_agreement": 0.9, "accuracy": 0.8, "reference_accuracy": 0.9},
        "tolerance": {"atol": 1e-4, "rtol": 1e-3, "min_top1_agreement": 1.0,
                      "max_accuracy_drop": 0.0},
    }
    md = render_compile_section(section)
    assert md.startswith("### ❌ Compile: onnxruntime fp32")
    assert "- tensorrt: skipped: tensorrt not installed" in md
    assert "&lt;b&gt;\\|x" in md and "<b>" not in md
    assert "| top-1 agreement | 0.9000 |" in md
    assert "Latency" not in md  # nothing measured, nothing shown


def test_comment_block_latency_table():
    row = {"p50_ms": 2.0, "p90_ms": 2.5, "p95_ms": 3.0, "p99_ms": 4.0, "throughput_per_s": 500}
    fast = {**row, "p50_ms": 1.0}
    md = render_compile_section({"status": "pass", "backend": "tensorrt", "precision": "fp16",
                                 "runner": "tensorrt 10", "baseline": "onnxruntime",
                                 "latency": [{"batch": 8, "compiled": fast, "baseline": row,
                                              "speedup_p50": 2.0}]})
    assert "| 8 | 1.000 | 3.000 | 4.000 | 500 | 2.000 | 3.000 | 500 | 2.00x |" in md
