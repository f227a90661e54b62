"""``python -m gitops``: merge-time commands for release managers."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ci.cli import run_main

# Modules that add subcommands: each exposes register(subparsers). One line per module.
COMMAND_MODULES: list[str] = [
    "gitops.publish", "gitops.promote", "gitops.history",
    "gitops.workflow", "gitops.retrain",
    "gitops.render_cli",
    "gitops.analysis",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m gitops",
        description="Release the model into the GitOps repository: render Argo Rollouts and "
                    "Argo CD manifests, validate, publish, promote, roll back, show history.",
        epilog="Exit codes: 0 ok, 2 bad input or config, 3 internal error.")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(build_parser, argv, prog="gitops")


if __name__ == "__main__":
    sys.exit(main())
