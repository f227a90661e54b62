"""``modelops-gitops``: merge-time commands for release managers."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from modelops.cli import run_main

# Modules that add subcommands: each exposes register(subparsers). One line per module.
COMMAND_MODULES: list[str] = [
    "modelops.gitops.publish", "modelops.gitops.promote", "modelops.gitops.history",
    "modelops.gitops.workflow", "modelops.gitops.retrain",
    "modelops.gitops.render_cli",
    "modelops.gitops.analysis",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelops-gitops",
        description="Release the model into the GitOps repository: render Argo Rollouts and "
                    "Argo CD manifests, validate, publish, promote, roll back, show history.",
        epilog="Exit codes: 0 ok, 2 bad input or config, 3 internal error.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, argv, prog="modelops-gitops")


if __name__ == "__main__":
    sys.exit(main())
