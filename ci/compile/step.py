"""``compile``: build the serving artifact, check parity, measure latency, report.

Library function :func:`compile_model`; the CLI in :mod:`ci.compile.cli` is a thin wrapper.

Order of work: validate every input first (params, ONNX model, test split), build into a fresh
temporary directory, check parity against the ONNX Runtime reference, measure latency, and only
then move the artifact into place. A parity failure writes a ``fail`` report section and leaves
no artifact; bad input leaves neither artifact nor a section claiming success.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from modelops.ci.compile import latency, parity
from modelops.ci.compile.base import choose_backend, get_backend
from modelops.ci.compile.tensorrt import calibration_batches, onnx_io_shape
from modelops.errors import ConfigError, GateFailed, InputError, SuiteError
from modelops.fsutil import sha256_file, write_json
from modelops.settings import load_settings
from modelops.settings.compile import CompileParams

SECTION = "compile"
# Files a previous run may have left in the output directory; removed before each run so that
# nothing stale claims success.
ARTIFACT_NAMES = ("model.plan", "model.plan.json", "model.opt.onnx", "model.int8.onnx")


def _stderr(message: str) -> None:
    print(f"compile: {message}", file=sys.stderr, flush=True)


def check_onnx(model: Path, input_name: str, output_name: str) -> None:
    """A missing, truncated or corrupt ONNX file is one InputError naming it."""
    import onnx

    if not model.is_file():
        raise InputError(f"{model}: file not found",
                         hint="run `dvc repro` (or `dvc pull`) to produce the model first, or "
                              "fix modelops.model.artifact.path")
    try:
        proto = onnx.load(str(model), load_external_data=False)
        onnx.checker.check_model(proto)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ... untyped
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{model}: not a valid onnx model ({first})",
                         hint="the file is corrupt or truncated; reproduce the stage that "
                              "exports it (`dvc repro`)") from None
    outputs = [o.name for o in proto.graph.output]
    if output_name not in outputs:
        raise InputError(f"{model}: no output named {output_name!r} (outputs: "
                         f"{', '.join(outputs)})",
                         hint="set modelops.compile.output_name in params.yaml")
    onnx_io_shape(model, input_name)  # names the input when it is missing


REPRODUCE = "run the pipeline (`dvc repro`, or `dvc pull` its outputs) to produce it"


def load_split(path: Path, *, labels: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``x`` float32 [N,...] and ``y`` int64 [N] from an ``.npz`` file (``modelops.model.
    test_data``; ``labels=False`` for calibration data, which needs only ``x``)."""
    need = ("x", "y") if labels else ("x",)
    if not path.is_file():
        raise InputError(f"{path}: file not found", hint=REPRODUCE)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in need if k not in data.files]
            if missing:
                raise InputError(f"{path}: missing array {missing[0]!r} (needs "
                                 f"{' and '.join(repr(k) for k in need)})",
                                 hint="write the inputs as 'x' and the labels as 'y' "
                                      "(numpy.savez)")
            x = data["x"]
            y = data["y"] if labels else None
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})", hint=REPRODUCE) from None
    if y is None:
        if x.ndim < 2 or len(x) == 0:
            raise InputError(f"{path}: expected x [N, ...] with N > 0, got x {list(x.shape)}")
        return np.ascontiguousarray(x, dtype=np.float32), None
    if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
        raise InputError(f"{path}: expected x [N, ...] and y [N] with N > 0, got x "
                         f"{list(x.shape)} and y {list(y.shape)}")
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int64)


def effective_precision(backend: str, precision: str) -> tuple[str, str | None]:
    """The precision a backend builds for a requested one, and a note when they differ."""
    if backend == "onnxruntime" and precision == "fp16":
        return "fp32", "fp16 is built by tensorrt only; onnxruntime ran fp32"
    return precision, None


def compile_model(*, params: CompileParams, model: Path, test_data: Path, out_dir: Path,
                  cache_dir: Path, section_path: Path, report_path: Path | None = None,
                  calibration_data: Path | None = None,
                  reasons: dict[str, str | None] | None = None,
                  log: Callable[[str], None] = _stderr, timing: bool = True) -> dict[str, Any]:
    """Run the compile step; return the report section (also written to ``section_path``).

    ``timing`` off leaves out everything that differs from run to run (the latency table, the
    build time, the machine): what a DVC stage that compiles records, so its tracked output is
    the same bytes on every rerun (latency is measured by ``modelops-ci timing`` in CI, base
    against head on one runner).

    ``test_data`` is the ``.npz`` parity and latency run on (``x``, ``y``);
    ``calibration_data`` the ``.npz`` INT8 calibration samples (``x``; default ``test_data``).

    Raises InputError/ConfigError (exit 2) on bad input and GateFailed (exit 1) when parity is
    beyond the tolerances; in both cases no artifact is left in ``out_dir``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ARTIFACT_NAMES:  # nothing stale may claim success
        (out_dir / name).unlink(missing_ok=True)
    section_path.unlink(missing_ok=True)

    backend_name, skipped = choose_backend(params.backend, reasons)
    if backend_name in skipped:
        raise ConfigError("params.yaml", "modelops.compile.backend", params.backend,
                          f"is not usable on this runner: {skipped[backend_name]}",
                          hint="use backend: auto to fall back to onnxruntime")
    precision, note = effective_precision(backend_name, params.precision)
    tol = params.tolerances[precision]
    check_onnx(model, params.input_name, params.output_name)
    x_test, y_test = load_split(test_data)
    calib = None
    if precision == "int8":
        x_calib, _ = load_split(calibration_data or test_data, labels=False)
        c = params.calibration
        calib = calibration_batches(x_calib, c.samples, c.batch_size, c.seed)

    section: dict[str, Any] = {
        "status": "fail",
        "backend": backend_name,
        "requested_backend": params.backend,
        "precision": precision,
        "requested_precision": params.precision,
        "model": {"path": str(model), "sha256": sha256_file(model)},
        "skipped_backends": {k: f"skipped: {v}" for k, v in skipped.items()},
    }
    if note:
        section["precision_note"] = note
    if "tensorrt" in skipped:
        section["tensorrt"] = f"skipped: {skipped['tensorrt']}"

    try:
        return _build_and_check(section, params, backend_name, precision, tol, model, x_test,
                                y_test, calib, out_dir, cache_dir, section_path, report_path,
                                log, timing)
    except GateFailed:
        raise
    except SuiteError as exc:
        section["status"] = "fail"
        section["error"] = section["reason"] = exc.message
        _write_section(section, section_path, report_path)
        raise


def _build_and_check(section: dict[str, Any], params: CompileParams, backend_name: str,
                     precision: str, tol: Any, model: Path, x_test: np.ndarray,
                     y_test: np.ndarray, calib: list[np.ndarray] | None, out_dir: Path,
                     cache_dir: Path, section_path: Path, report_path: Path | None,
                     log: Callable[[str], None], timing: bool = True) -> dict[str, Any]:
    from modelops.ci.compile.onnxruntime import load_runner

    backend = get_backend(backend_name)
    with tempfile.TemporaryDirectory(prefix=".compile-", dir=out_dir) as tmp:
        work = Path(tmp)
        log(f"building with {backend_name} ({precision}) from {model}")
        built = backend.build(model, work, cache_dir, params, precision, calib, log)
        runner = backend.load(built.artifact, params)
        reference = load_runner(model, params, optimize=False,
                                provider_list=["CPUExecutionProvider"])
        log(f"parity on {len(x_test)} test samples against {reference.description}")
        ref_out = parity.run_in_batches(reference.infer, x_test, params.batch_profile.max)
        got = parity.run_in_batches(runner.infer, x_test, params.batch_profile.max)
        result = parity.compare(got, ref_out, y_test, tol)
        section.update({
            "runner": runner.description,
            "reference": reference.description,
            "build": built.metadata,
            "parity": result.as_dict(),
            "tolerance": dataclasses.asdict(tol),
        })
        if timing:
            section["build_seconds"] = round(built.build_seconds, 3)
        if not result.passed:
            section["error"] = "parity failed: " + "; ".join(result.failures)
            section["reason"] = section["error"]
            _write_section(section, section_path, report_path)
            raise GateFailed(f"{model}: {backend_name} {precision} parity failed: "
                             + "; ".join(result.failures),
                             hint="loosen compile.tolerances."
                                  f"{precision} only if the drift is acceptable, or build "
                                  "with a wider precision")

        if timing:
            baseline = _baseline(model, params, backend_name)
            section["baseline"] = baseline.description
            log(f"latency: {runner.description} vs {baseline.description}")
            section["latency"] = latency.compare_table(
                runner.infer, baseline.infer, x_test, params.batch_sizes, warmup=params.warmup,
                runs=params.runs, log=log)
            section["environment"] = latency.environment()

        final = out_dir / built.artifact.name
        for extra in built.extra_files:
            shutil.move(str(extra), str(out_dir / extra.name))
        shutil.move(str(built.artifact), str(final))
    section["engine"] = {"path": str(final), "bytes": final.stat().st_size,
                         "sha256": sha256_file(final)}
    section["status"] = "pass"
    section["summary"] = summarize(section)
    _write_section(section, section_path, report_path)
    log(f"ok: {final} ({final.stat().st_size} bytes), report section in {section_path}")
    return section


def summarize(section: dict[str, Any]) -> str:
    """One line for the report's section table: what was built and what it bought."""
    par = section["parity"]
    parts = [f"{section['backend']} {section['precision']}",
             f"parity ok (max abs {par['max_abs_error']:.2g}, top-1 {par['top1_agreement']:.3f})"]
    rows = section.get("latency") or []
    if rows:
        r = rows[0]
        speed = f", {r['speedup_p50']:.2f}x" if r.get("speedup_p50") else ""
        parts.append(f"p50 {r['compiled']['p50_ms']:.3f} ms at batch {r['batch']}{speed}")
    if section.get("tensorrt"):
        parts.append(f"tensorrt {section['tensorrt']}")
    return "; ".join(parts)


def _baseline(model: Path, params: CompileParams, backend_name: str):
    """ONNX Runtime on the model as exported. Against TensorRT: the best provider with default
    optimisation (what a server would otherwise run). Against the onnxruntime backend: the same
    provider with graph optimisation disabled, so the speedup is what the optimisation buys."""
    from modelops.ci.compile.onnxruntime import load_runner

    return load_runner(model, params, optimize=backend_name == "tensorrt")


def _write_section(section: dict[str, Any], section_path: Path,
                   report_path: Path | None) -> None:
    write_json(section_path, section)
    if report_path is None or not report_path.exists():
        return  # `modelops-ci report` picks the section file up when it writes the report
    try:
        from modelops.ci.reportfile import merge_section  # owned by the report step
    except ImportError:
        return
    merge_section(report_path, SECTION, section)


def skipped_section(reason: str, section_path: Path,
                    report_path: Path | None = None) -> dict[str, Any]:
    """Record that the compile step does not apply (``skipped: <reason>``), never a failure."""
    section = {"status": "skipped", "reason": reason}
    section_path.parent.mkdir(parents=True, exist_ok=True)
    _write_section(section, section_path, report_path)
    return section


def run_step(args_params: Path, **kwargs: Any) -> dict[str, Any]:
    """Load ``params.yaml`` then :func:`compile_model` with command-line overrides."""

    cfg: CompileParams = load_settings(args_params).compile
    overrides = {k: kwargs.pop(k, None) for k in ("backend", "precision", "runs", "warmup")}
    if overrides["runs"] is not None and overrides["runs"] < 1:
        raise InputError(f"--runs must be at least 1 (got {overrides['runs']})")
    if overrides["warmup"] is not None and overrides["warmup"] < 0:
        raise InputError(f"--warmup must be 0 or more (got {overrides['warmup']})")
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    start = time.monotonic()
    try:
        return compile_model(params=cfg, **kwargs)
    finally:
        kwargs.get("log", _stderr)(f"finished in {time.monotonic() - start:.1f}s")
