"""The real TensorRT build. Runs only where ``tensorrt`` imports and a CUDA device exists
(``make gpu-check`` / scripts/gpu-check.sh); everywhere else it is reported as skipped."""

from __future__ import annotations

import json

import pytest

from modelops.ci.compile.base import get_backend
from modelops.ci.compile.step import run_step
from modelops.errors import InputError
from tests.func.compile_models import linear_model, splits, write_params

pytestmark = pytest.mark.gpu

_REASON = get_backend("tensorrt").unavailable_reason()
needs_trt = pytest.mark.skipif(_REASON is not None, reason=f"not run: {_REASON}")


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "models").mkdir()
    model = linear_model(tmp_path / "models" / "model.onnx")
    splits(tmp_path / "data" / "prepared", model)
    return tmp_path


def _kwargs(repo):
    return {"model": repo / "models/model.onnx", "test_data": repo / "data/prepared/test.npz",
            "calibration_data": repo / "data/prepared/train.npz",
            "out_dir": repo / "models/compiled", "cache_dir": repo / ".cache/compile",
            "section_path": repo / "reports/compile.json", "report_path": None}


@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_tensorrt_engine_builds_passes_parity_and_is_timed(repo, precision):
    write_params(repo / "params.yaml", backend="tensorrt", precision=precision)
    section = run_step(repo / "params.yaml", **_kwargs(repo))
    engine = repo / "models/compiled/model.plan"
    sidecar = json.loads((repo / "models/compiled/model.plan.json").read_text())
    assert section["status"] == "pass" and section["backend"] == "tensorrt"
    assert sidecar["precision"] == precision and sidecar["profile"]["max"][0] == 32
    assert section["engine"]["sha256"] == sidecar["engine_sha256"] and engine.is_file()
    assert list((repo / ".cache/compile").glob("timing-trt*.cache"))
    if precision == "int8":
        assert list((repo / ".cache/compile").glob("calibration-*.cache"))
    assert all(r["compiled"]["p50_ms"] > 0 for r in section["latency"])


@needs_trt
def test_tensorrt_refuses_an_engine_from_another_version(repo):
    write_params(repo / "params.yaml", backend="tensorrt", precision="fp32")
    run_step(repo / "params.yaml", **_kwargs(repo))
    engine = repo / "models/compiled/model.plan"
    side = engine.with_name("model.plan.json")
    data = json.loads(side.read_text())
    side.write_text(json.dumps({**data, "tensorrt_version": "8.0.0"}))
    from modelops.settings import load_settings

    with pytest.raises(InputError, match="built with tensorrt '8.0.0'"):
        get_backend("tensorrt").load(engine, load_settings(repo / "params.yaml").compile)


@needs_trt
def test_tensorrt_names_the_unsupported_node(repo):
    linear_model(repo / "models/model.onnx", op="FancyOp")
    write_params(repo / "params.yaml", backend="tensorrt", precision="fp32")
    with pytest.raises(InputError, match=r"custom_1 \(FancyOp\)"):
        run_step(repo / "params.yaml", **_kwargs(repo))
    assert not (repo / "models/compiled/model.plan").exists()
