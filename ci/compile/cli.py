"""``modelops-ci compile``: thin CLI over :func:`ci.compile.step.compile_model`."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "build a TensorRT engine (GPU) or an optimised ONNX Runtime model, check parity, time it"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "compile", help=HELP,
        description="Compile models/model.onnx for serving. TensorRT when the runner has it and "
                    "a CUDA device, else ONNX Runtime (graph optimisation level all). Checks "
                    "parity on the held-out test split against the ONNX Runtime reference "
                    "(tolerances per precision in params.yaml compile.tolerances), measures "
                    "latency and throughput against an ONNX Runtime baseline, and writes the "
                    "report section 'compile'.",
        epilog="Exit codes: 0 ok; 1 parity beyond tolerance (no artifact is kept); 2 bad "
               "input (corrupt model, unsupported op, foreign engine, bad params).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file")
    p.add_argument("--model", type=Path, default=Path("models/model.onnx"), help="ONNX model")
    p.add_argument("--data", type=Path, default=Path("data/prepared"),
                   help="directory with test.npz (parity, latency) and train.npz (int8)")
    p.add_argument("--out", type=Path, default=Path("models/compiled"),
                   help="directory for the engine or optimised model")
    p.add_argument("--cache-dir", type=Path, default=Path(".cache/compile"),
                   help="persistent timing and calibration caches (keep between CI runs)")
    p.add_argument("--section", type=Path, default=Path("metrics/compile.json"),
                   help="where the report section is written (JSON)")
    p.add_argument("--report", default="reports/report.json",
                   help="report.json the section is also merged into when that file exists; "
                        "'' to skip")
    p.add_argument("--backend", choices=["auto", "tensorrt", "onnxruntime"],
                   help="override compile.backend")
    p.add_argument("--precision", choices=["fp32", "fp16", "int8"],
                   help="override compile.precision")
    p.add_argument("--runs", type=int, help="override compile.runs (timed runs per batch)")
    p.add_argument("--warmup", type=int, help="override compile.warmup")
    p.set_defaults(handler=_handle)


def _handle(args: argparse.Namespace) -> int:
    from modelops.ci.compile.markdown import render_compile_section
    from modelops.ci.compile.step import run_step

    section = run_step(args.params, backend=args.backend, precision=args.precision,
                       runs=args.runs, warmup=args.warmup,
                       model=args.model, data_dir=args.data, out_dir=args.out,
                       cache_dir=args.cache_dir, section_path=args.section,
                       report_path=Path(args.report) if args.report else None)
    print(render_compile_section(section))
    return 0
