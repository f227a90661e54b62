"""``modelops-ci``: pull-request time commands for contributors and reviewers."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from modelops.cli import run_main

# Modules that add subcommands: each exposes register(subparsers). One line per module, with
# the commands it adds (tests/unit/test_cli_lazy.py holds the two equal): a command run as
# `modelops-ci COMMAND ...` imports its own module only, not all ten (0.1 s of every call).
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "modelops.ci.compile.cli": ("compile",),
    "modelops.ci.compile.timing": ("timing",),
    "modelops.ci.report": ("compare", "gate", "card", "report"),
    "modelops.ci.comment": ("comment",),
    "modelops.ci.retrain": ("retrain",),
    "modelops.ci.cost": ("cost", "cost-upload"),
    "modelops.ci.plots": ("plots",),
    "modelops.ci.reproduce": ("reproduce", "dvc-remote"),
    "modelops.ci.evaluate": ("evaluate",),
    "modelops.ci.drift_report": ("drift-report",),
}


BUILT_IN = ("check-params", "steps")  # the commands this module adds itself


def _cmd_params(args: argparse.Namespace) -> int:
    from modelops.settings import load_settings

    params = load_settings(args.params)
    print(f"{args.params}: ok ({', '.join(params.sections)})")
    return 0


def _cmd_steps(args: argparse.Namespace) -> int:
    from modelops.settings import load_settings
    from modelops.settings.model import step_skipped

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


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (``command``: one of :data:`COMMAND_MODULES`' commands or of
    :data:`BUILT_IN`) one with only the module that adds ``command`` imported and registered
    (none for a built-in one)."""
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

    for module, commands in COMMAND_MODULES.items():
        if command is None or command in commands:
            importlib.import_module(module).register(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, when it names one a module adds (``modelops-ci`` itself takes
    no option but ``--help``, so the first word that is no option is the command)."""
    first = next((a for a in argv if not a.startswith("-")), None)
    known = {*BUILT_IN, *(c for commands in COMMAND_MODULES.values() for c in commands)}
    return first if first in known else None


def main(argv: Sequence[str] | None = None) -> int:
    command = _command_of(sys.argv[1:] if argv is None else argv)
    return run_main(lambda: build_parser(command), argv, prog="modelops-ci")


if __name__ == "__main__":
    sys.exit(main())
