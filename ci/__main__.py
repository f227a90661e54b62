"""``modelops-ci``: pull-request time commands for contributors and reviewers."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from modelops.cli import run_main
from modelops.settings import load_settings
from modelops.settings.model import step_skipped

# Modules that add subcommands: each exposes register(subparsers). One line per module.
COMMAND_MODULES: list[str] = [
    "modelops.ci.compile.cli",
    "modelops.ci.compile.timing",
    "modelops.ci.report",
    "modelops.ci.comment",
    "modelops.ci.retrain",
    "modelops.ci.cost",
    "modelops.ci.plots",
    "modelops.ci.reproduce",
    "modelops.ci.evaluate",
    "modelops.ci.drift_report",
]


def _cmd_params(args: argparse.Namespace) -> int:
    params = load_settings(args.params)
    print(f"{args.params}: ok ({', '.join(params.sections)})")
    return 0


def _cmd_steps(args: argparse.Namespace) -> int:
    settings = load_settings(args.params)
    if args.compile_inputs:  # the files the compile step reads, one a line
        model = settings.model
        if step_skipped(model, settings.steps, "compile") is None:
            files = [model.artifact.path, model.test_data, model.calibration_data]
            print("\n".join(dict.fromkeys(f for f in files if f)))
        return 0
    lines = [f"model={settings.model.name}"]
    for step in ("card", "compile", "deploy"):
        reason = step_skipped(settings.model, settings.steps, step)
        print(f"{step}: {'applies' if reason is None else 'skipped: ' + reason}")
        lines += [f"{step}={'false' if reason else 'true'}", f"{step}-reason={reason or ''}"]
    output = os.environ.get("GITHUB_OUTPUT") if args.github_output else None
    if args.github_output and not output:
        print("steps: --github-output given but GITHUB_OUTPUT is not set; printed only")
    if output:
        with open(output, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{line}\n" for line in lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelops-ci",
        description="Pull-request evaluation of the model repository: check params, compare "
                    "with the base branch, gate, compile, report and comment.",
        epilog="Exit codes: 0 ok, 1 a gate said no, 2 bad input or config, 3 internal error.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    p = sub.add_parser("check-params", help="validate params.yaml (unknown keys, types, ranges)")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.set_defaults(handler=_cmd_params)

    p = sub.add_parser(
        "steps", help="say which steps apply to this repository (card, compile, deploy)",
        description="Print, for the card, compile and deploy steps, whether they apply to this "
                    "repository or why not (modelops.steps turns one off; a model without an "
                    "ONNX artifact has nothing to compile or deploy). With --github-output, "
                    "also append model=, card=, compile=, deploy= (true/false) and <step>-reason= "
                    "to $GITHUB_OUTPUT for the jobs that follow. Always exit 0 on valid settings.")
    p.add_argument("--params", default="params.yaml", help="params file (default: %(default)s)")
    p.add_argument("--github-output", action="store_true",
                   help="also write the answers to $GITHUB_OUTPUT")
    p.add_argument("--compile-inputs", action="store_true",
                   help="print only the files the compile step reads (the ONNX artifact, the "
                        "test and calibration data), one a line; nothing when it is skipped")
    p.set_defaults(handler=_cmd_steps)

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, argv, prog="modelops-ci")


if __name__ == "__main__":
    sys.exit(main())
