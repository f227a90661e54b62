"""In GitHub Actions an error of the suite's CLIs is also an ``::error`` workflow command on the
file (and line) it names, so a bad ``params.yaml`` is marked on that file in the pull request."""

from __future__ import annotations

import argparse

from modelops.cli import annotation, run_main
from modelops.errors import ConfigError, InputError


def test_a_config_error_is_annotated_on_its_file():
    exc = ConfigError("params.yaml", "modelops.gates.acuracy", "acuracy", "no such metric",
                      hint="did you mean 'accuracy'?")
    line = annotation(exc, "modelops-ci")
    assert line.startswith("::error file=params.yaml,title=modelops-ci::params.yaml: ")
    assert "\n" not in line and "%0A  hint: did you mean 'accuracy'?" in line


def test_a_yaml_syntax_error_names_the_line_and_data_is_escaped():
    exc = InputError("params.yaml: not valid YAML: in line 7, column 3: 100% wrong")
    assert annotation(exc, "modelops-ci") == (
        "::error file=params.yaml,line=7,title=modelops-ci::params.yaml: not valid YAML: in "
        "line 7, column 3: 100%25 wrong")
    assert annotation(InputError("--pull 'x' is bad"), "p") == "::error title=p::--pull 'x' is bad"
    odd = annotation(ConfigError("a,b:c.yaml", "", 1, "bad"), "p")
    assert odd.startswith("::error file=a%2Cb%3Ac.yaml,title=p::")


def _parser(exc: Exception):
    def build() -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog="t")

        def handler(_args):
            raise exc
        p.set_defaults(handler=handler)
        return p
    return build


def test_run_main_annotates_only_in_github_actions(monkeypatch, capsys):
    exc = ConfigError("params.yaml", "modelops.model.name", "", "must not be empty")
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert run_main(_parser(exc), [], prog="t") == 2
    assert "::error" not in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert run_main(_parser(exc), [], prog="t") == 2
    err = capsys.readouterr().err
    assert err.startswith("t: error: params.yaml: modelops.model.name: must not be empty")
    assert "::error file=params.yaml,title=t::params.yaml: modelops.model.name" in err
