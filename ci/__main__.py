"""``modelops-ci``: pull-request time commands for contributors and reviewers."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from modelops.cli import run_main

# Modules that add subcommands: each exposes register(subparsers). One line per module.
COMMAND_MODULES: list[str] = [
    "modelops.ci.compile.cli",
    "modelops.ci.report",
    "modelops.ci.comment",
    "modelops.ci.retrain",
    "modelops.ci.cost",
    "modelops.ci.plots",
    "modelops.ci.reproduce",
    "modelops.ci.drift_report",
]


def _cmd_params(args: argparse.Namespace) -> int:
    from modelops.settings import load_settings

    params = load_settings(args.params)
    print(f"{args.params}: ok ({', '.join(params.sections)})")
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

    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, argv, prog="modelops-ci")


if __name__ == "__main__":
    sys.exit(main())
