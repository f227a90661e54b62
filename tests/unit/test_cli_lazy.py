"""``modelops-ci COMMAND`` imports only the module that adds COMMAND: the map it uses to find
that module says exactly what each module registers, and a command parses the same whether
the parser holds every command or only its own."""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys

import pytest

from modelops.ci.__main__ import COMMAND_MODULES, _command_of, build_parser


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


@pytest.mark.parametrize("module", sorted(COMMAND_MODULES))
def test_the_map_names_exactly_the_commands_each_module_registers(module):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    importlib.import_module(module).register(sub)
    assert tuple(sub.choices) == COMMAND_MODULES[module]


def test_one_command_parser_holds_that_command_and_the_built_in_ones():
    full = set(_subparsers(build_parser()).choices)
    one = set(_subparsers(build_parser("dvc-remote")).choices)
    assert one == {"check-params", "steps", "reproduce", "dvc-remote"}
    assert one < full and "comment" in full and "evaluate" in full
    assert set(_subparsers(build_parser("steps")).choices) == {"check-params", "steps"}


@pytest.mark.parametrize(("argv", "command"), [
    (["comment", "--report", "r.json"], "comment"),
    (["--help"], None),
    ([], None),
    (["check-params", "--params", "p.yaml"], "check-params"),
    (["no-such-command"], None),       # argparse lists every command in its error
    (["cost-upload", "x"], "cost-upload"),
])
def test_the_command_is_the_first_word_that_is_no_option(argv, command):
    assert _command_of(argv) == command


def test_a_command_run_as_a_process_imports_no_other_command_module():
    code = ("import sys; from modelops.ci.__main__ import main\n"
            "try:\n    main(['dvc-remote', '--help'])\nexcept SystemExit:\n    pass\n"
            "print(','.join(m for m in sys.modules if m.startswith('modelops.ci.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    loaded = set(out.split(","))
    assert "modelops.ci.reproduce" in loaded
    assert not loaded & {"modelops.ci.comment", "modelops.ci.report", "modelops.ci.evaluate",
                         "modelops.ci.compile.cli", "modelops.ci.drift_report"}, loaded


def test_an_unknown_command_is_refused_naming_the_known_ones(capsys):
    from modelops.ci.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["no-such-command"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "no-such-command" in err and "evaluate" in err and "comment" in err


def test_the_comment_job_renders_without_the_settings_or_the_cost_ledger():
    """The comment job (base package) reads a report and renders it: the modules it imports,
    section renderers included, load neither the settings (and their YAML parsers) nor the
    compute ledger."""
    from modelops.ci.markdown import SECTION_RENDERERS

    modules = ["modelops.ci.comment", "modelops.ci.reportfile", "modelops.ci.markdown",
               *sorted({module for module, _ in SECTION_RENDERERS.values()})]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "print(','.join(m for m in ('modelops.settings', 'modelops.compute', "
            "'ruamel.yaml', 'yaml', 'psutil') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"imported: {out}"
