"""The compile step end to end on tiny ONNX models: real onnxruntime, real files, real CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelops.ci.compile.step import compile_model, run_step
from modelops.errors import ConfigError, GateFailed, InputError
from tests.conftest import PY, ROOT, run
from tests.func.compile_models import linear_model, splits, write_params

NO_TRT = {"tensorrt": "tensorrt not installed", "onnxruntime": None}


@pytest.fixture
def repo(tmp_path):
    """A working directory with params.yaml, models/model.onnx and data/prepared."""
    (tmp_path / "models").mkdir()
    model = linear_model(tmp_path / "models" / "model.onnx")
    splits(tmp_path / "data" / "prepared", model)
    write_params(tmp_path / "params.yaml")
    return tmp_path


def _kwargs(repo, **over):
    kw = {"model": repo / "models/model.onnx", "test_data": repo / "data/prepared/test.npz",
          "calibration_data": repo / "data/prepared/train.npz",
          "out_dir": repo / "models/compiled", "cache_dir": repo / ".cache/compile",
          "section_path": repo / "reports/compile.json", "report_path": None,
          "reasons": NO_TRT, "log": lambda _m: None}
    kw.update(over)
    return kw


def test_onnxruntime_path_builds_checks_and_reports(repo):
    section = run_step(repo / "params.yaml", **_kwargs(repo))
    artifact = repo / "models/compiled/model.opt.onnx"
    assert artifact.is_file()
    on_disk = json.loads((repo / "reports/compile.json").read_text())
    assert on_disk == json.loads(json.dumps(section))
    assert section["status"] == "pass" and section["backend"] == "onnxruntime"
    assert section["precision"] == "fp32"
    assert section["tensorrt"] == "skipped: tensorrt not installed"
    assert section["parity"]["top1_agreement"] == 1.0 and section["parity"]["accuracy"] == 1.0
    assert section["parity"]["n"] == 64
    assert [r["batch"] for r in section["latency"]] == [1, 8, 32]
    for row in section["latency"]:
        for side in ("compiled", "baseline"):
            assert 0 < row[side]["p50_ms"] <= row[side]["p99_ms"]
            assert row[side]["throughput_per_s"] > 0
        assert row["speedup_p50"] == pytest.approx(row["baseline"]["p50_ms"]
                                                   / row["compiled"]["p50_ms"])
    assert "graph optimisation all" in section["runner"]
    assert "graph optimisation disabled" in section["baseline"]
    from modelops.fsutil import sha256_file

    assert section["engine"]["sha256"] == sha256_file(artifact)
    assert section["environment"]["libraries"]["onnxruntime"]
    # the optimised model is a loadable ONNX model that gives the same answers
    import onnxruntime as ort

    x = np.load(repo / "data/prepared/test.npz")["x"][:4]
    got = ort.InferenceSession(str(artifact)).run(None, {"input": x})[0]
    want = ort.InferenceSession(str(repo / "models/model.onnx")).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert not list((repo / "models/compiled").glob(".compile-*"))  # no temp dir left


def test_fp16_request_on_onnxruntime_runs_fp32_and_says_so(repo):
    write_params(repo / "params.yaml", precision="fp16")
    section = run_step(repo / "params.yaml", **_kwargs(repo))
    assert section["requested_precision"] == "fp16" and section["precision"] == "fp32"
    assert "tensorrt only" in section["precision_note"]


def test_int8_is_calibrated_on_the_training_split(repo):
    section = run_step(repo / "params.yaml", precision="int8", **_kwargs(repo))
    assert section["status"] == "pass" and section["precision"] == "int8"
    import onnx

    ops = {n.op_type for n in onnx.load(str(repo / "models/compiled/model.int8.onnx")).graph.node}
    assert "QuantizeLinear" in ops  # QDQ quantisation really happened
    assert section["parity"]["max_abs_error"] > 0  # and it is not the fp32 model


def test_parity_failure_exits_1_and_leaves_no_artifact(repo):
    write_params(repo / "params.yaml", int8_atol=0.0, int8_rtol=0.0, int8_top1=1.0)
    stale = repo / "models/compiled/model.opt.onnx"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"from an earlier run")
    with pytest.raises(GateFailed, match=r"onnxruntime int8 parity failed: \d+ of 640 logits"):
        run_step(repo / "params.yaml", precision="int8", **_kwargs(repo))
    assert not stale.exists()
    assert sorted(p.name for p in (repo / "models/compiled").iterdir()) == []
    section = json.loads((repo / "reports/compile.json").read_text())
    assert section["status"] == "fail" and "parity failed" in section["error"]
    assert "engine" not in section and "latency" not in section


def test_explicit_tensorrt_without_it_is_a_config_error(repo):
    with pytest.raises(ConfigError,
                       match=r"modelops.compile.backend: is not usable on this runner: "
                                          r"tensorrt not installed"):
        run_step(repo / "params.yaml", backend="tensorrt", **_kwargs(repo))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "missing"])
def test_bad_onnx_is_named(repo, damage):
    model = repo / "models/model.onnx"
    if damage == "truncated":
        model.write_bytes(model.read_bytes()[:300])
    elif damage == "garbage":
        model.write_bytes(b"\x00\xffnot a model at all" * 10)
    else:
        model.unlink()
    with pytest.raises(InputError, match=str(model).replace("\\", "\\\\")):
        run_step(repo / "params.yaml", **_kwargs(repo))
    assert not (repo / "models/compiled/model.opt.onnx").exists()
    assert not (repo / "reports/compile.json").exists()


def test_bad_split_is_named(repo):
    np.savez(repo / "data/prepared/test.npz", x=np.zeros((3, 1, 8, 8), np.float32))
    with pytest.raises(InputError, match=r"test\.npz: missing array 'y'"):
        run_step(repo / "params.yaml", **_kwargs(repo))


def test_model_with_fixed_input_name_mismatch(repo):
    from dataclasses import replace

    from modelops.settings import load_settings

    cfg = replace(load_settings(repo / "params.yaml").compile, input_name="images")
    with pytest.raises(InputError, match=r"no input named 'images' \(inputs: input\)"):
        compile_model(params=cfg, **_kwargs(repo))


@pytest.mark.slow
def test_cli_exit_codes_and_output(repo):
    cmd = [PY, "-m", "modelops.ci", "compile", "--backend", "onnxruntime",
           "--out", "models/compiled"]
    env = {"PYTHONPATH": str(ROOT)}
    ok = run(cmd, cwd=repo, env=env)
    assert "### ✅ Compile: onnxruntime fp32" in ok.stdout
    assert "| 32 |" in ok.stdout and "speedup" in ok.stdout
    # the model and the data came from modelops.model; the section went to the default place
    assert json.loads((repo / "reports/compile.json").read_text())["model"]["path"] == \
        "models/model.onnx"

    (repo / "params.yaml").write_text((repo / "params.yaml").read_text().replace(
        "{min: 1, opt: 8, max: 32}", "{min: 64, opt: 8, max: 32}"))
    bad = run(cmd, cwd=repo, env=env, check=False)
    assert bad.returncode == 2
    assert "params.yaml: modelops.compile.batch_profile.min: must not exceed" in bad.stderr
    assert "Traceback" not in bad.stderr

    write_params(repo / "params.yaml", int8_atol=0.0, int8_rtol=0.0, int8_top1=1.0)
    gate = run(cmd + ["--precision", "int8"], cwd=repo, env=env, check=False)
    assert gate.returncode == 1, gate.stderr
    assert "parity failed" in gate.stderr
    assert not (repo / "models/compiled/model.opt.onnx").exists()

    (repo / "models/model.onnx").write_bytes(b"garbage")
    broken = run(cmd, cwd=repo, env=env, check=False)
    assert broken.returncode == 2 and "models/model.onnx: not a valid onnx model" in broken.stderr

    help_ = run([PY, "-m", "modelops.ci", "compile", "--help"], cwd=repo, env=env)
    assert "--precision" in help_.stdout and "Exit codes" in help_.stdout


@pytest.mark.parametrize("change, reason", [
    (("    artifact: {path: models/model.onnx}\n", ""),
     "the model has no ONNX artifact (modelops.model.artifact.path is '')"),
    (("    test_data: data/prepared/test.npz\n", ""),
     "no test data to check parity on (modelops.model.test_data is '')"),
    (("  compile:\n", "  steps: {compile: false}\n  compile:\n"),
     "turned off (modelops.steps.compile: false)"),
])
def test_a_step_that_does_not_apply_is_skipped_with_its_reason(repo, change, reason):
    params = repo / "params.yaml"
    params.write_text(params.read_text().replace(*change))
    report = repo / "reports" / "report.json"
    report.parent.mkdir()
    report.write_text(json.dumps({
        "schema_version": 1, "model": {"name": "digits-cnn"}, "verdict": "pass",
        "revisions": {"base": {"rev": "main", "sha": None}, "head": {"rev": "w", "sha": None}},
        "sections": {"evaluate": {"status": "pass"},
                     "compile": {"status": "skipped", "reason": "pending"}}}))
    proc = run([PY, "-m", "modelops.ci", "compile", "--report", str(report)], cwd=repo,
               env={"PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and f"compile: skipped: {reason}" in proc.stdout
    assert json.loads(report.read_text())["sections"]["compile"] == {"status": "skipped",
                                                                     "reason": reason}
    assert not (repo / "build").exists()


def test_unsupported_op_is_named_and_nothing_is_left(repo):
    linear_model(repo / "models/model.onnx", op="FancyOp")
    with pytest.raises(InputError, match=r"model\.onnx: onnxruntime cannot load the model.*"
                                         r"com\.example:FancyOp"):
        run_step(repo / "params.yaml", **_kwargs(repo))
    assert not (repo / "models/compiled/model.opt.onnx").exists()
    section = json.loads((repo / "reports/compile.json").read_text())
    assert section["status"] == "fail" and "FancyOp" in section["error"]


def test_section_is_merged_into_an_existing_report(repo):
    report = repo / "reports/report.json"
    report.parent.mkdir()
    report.write_text(json.dumps({
        "schema_version": 1, "model": {"name": "digits-cnn"},
        "revisions": {"base": {"rev": "main", "sha": None}, "head": {"rev": "HEAD", "sha": None}},
        "verdict": "pass",
        "sections": {"evaluate": {"status": "pass"},
                     "compile": {"status": "skipped", "reason": "pending"}}}))
    run_step(repo / "params.yaml", **_kwargs(repo, report_path=report))
    merged = json.loads(report.read_text())
    assert merged["sections"]["compile"]["status"] == "pass"
    assert merged["sections"]["compile"]["summary"].startswith("onnxruntime fp32; parity ok")
    assert merged["verdict"] == "pass"

    write_params(repo / "params.yaml", int8_atol=0.0, int8_rtol=0.0, int8_top1=1.0)
    with pytest.raises(GateFailed):
        run_step(repo / "params.yaml", precision="int8", **_kwargs(repo, report_path=report))
    merged = json.loads(report.read_text())
    assert merged["sections"]["compile"]["status"] == "fail"
    assert merged["sections"]["compile"]["reason"].startswith("parity failed")
    assert merged["verdict"] == "fail"
