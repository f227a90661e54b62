"""``modelops-ci compile``: thin CLI over :func:`modelops.ci.compile.step.compile_model`.

The model, the test data and the calibration data default to the repository's
self-description (``modelops.model.artifact.path``, ``test_data``, ``calibration_data``). When
the step does not apply (no ONNX artifact, no test data, ``modelops.steps.compile: false``) it
records ``skipped: <reason>`` in the report and exits 0.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from modelops.cli import DefaultsHelpFormatter
from modelops.settings import load_settings
from modelops.settings.model import step_skipped

HELP = "build a TensorRT engine (GPU) or an optimised ONNX Runtime model, check parity, time it"
DEFAULT_SECTION = Path("reports") / "compile.json"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compile", help=HELP,
        description="Compile the model's ONNX artifact (modelops.model.artifact.path) for "
                    "serving. TensorRT when the runner has it and a CUDA device, else ONNX "
                    "Runtime (graph optimisation level all). Checks parity on the test data "
                    "(modelops.model.test_data: an .npz with x and y) against the ONNX Runtime "
                    "reference (tolerances per precision in modelops.compile.tolerances), "
                    "measures latency and throughput against an ONNX Runtime baseline, and "
                    "writes the report section 'compile'. A repository without an ONNX "
                    "artifact or test data, or with modelops.steps.compile: false, gets the "
                    "section 'skipped' with the reason.",
        epilog="Exit codes: 0 ok or skipped; 1 parity beyond tolerance (no artifact is kept); "
               "2 bad input (corrupt model, unsupported op, foreign engine, bad params).",
        formatter_class=DefaultsHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    p.add_argument("--model", type=Path, default=None,
                   help="ONNX model (default: modelops.model.artifact.path)")
    p.add_argument("--test-data", type=Path, default=None,
                   help=".npz with x and y for parity and latency (default: "
                        "modelops.model.test_data)")
    p.add_argument("--calibration-data", type=Path, default=None,
                   help=".npz with x for int8 calibration (default: "
                        "modelops.model.calibration_data, else the test data)")
    p.add_argument("--out", type=Path, default=Path("build/compiled"),
                   help="directory for the engine or optimised model")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/compile"),
                   help="persistent timing and calibration caches (keep between CI runs)")
    p.add_argument("--section", type=Path, default=None,
                   help="where the report section is written as JSON (default: "
                        "modelops.compile.section_file, else reports/compile.json)")
    p.add_argument("--report", default="reports/report.json",
                   help="report.json the section is also merged into when that file exists; "
                        "'' to skip")
    p.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime"],
                   help="override modelops.compile.backend")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"],
                   help="override modelops.compile.precision")
    p.add_argument("--runs", type=int, help="override modelops.compile.runs (timed runs per "
                                            "batch)")
    p.add_argument("--warmup", type=int, help="override modelops.compile.warmup")
    p.add_argument("--no-timing", action="store_true",
                   help="no latency table, build time nor machine in the section: the same "
                        "bytes on every rerun (for a DVC stage whose output git tracks; CI times "
                        "the model with `modelops-ci timing`)")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from modelops.ci.compile.markdown import render_compile_section
    from modelops.ci.compile.step import run_step, skipped_section

    settings = load_settings(args.params)
    model = settings.model
    section_path = args.section or Path(settings.compile.section_file or DEFAULT_SECTION)
    report = Path(args.report) if args.report else None
    reason = None if args.model else step_skipped(model, settings.steps, "compile")
    if reason is None and not (args.test_data or model.test_data):
        reason = "no test data to check parity on (modelops.model.test_data is '')"
    if reason:
        skipped_section(reason, section_path, report)
        print(f"compile: skipped: {reason}")
        return 0
    calibration = args.calibration_data or (Path(model.calibration_data)
                                            if model.calibration_data else None)
    section = run_step(args.params, backend=args.backend, precision=args.precision,
                       runs=args.runs, warmup=args.warmup,
                       model=args.model or Path(model.artifact.path),
                       test_data=args.test_data or Path(model.test_data),
                       calibration_data=calibration, out_dir=args.out,
                       cache_dir=args.cache_dir, section_path=section_path,
                       report_path=report, timing=not args.no_timing)
    print(render_compile_section(section))
    return 0
