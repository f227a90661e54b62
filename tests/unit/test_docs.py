"""The documentation matches the code.

- ``docs/reference/cli.md`` and ``docs/reference/settings.md`` are what ``scripts/reference.py``
  generates from the console scripts and the settings schema (regenerate with
  ``python -m scripts.reference --write``; never in CI), and every settings field has a
  description;
- every relative link and ``#anchor`` of README.md, docs/ and the actions' READMEs resolves;
- every command in a ``bash`` block of README.md and docs/ is listed in :data:`EXERCISED` with
  what runs it (a test, the demo, a Makefile target or a benchmark, each checked to exist), and
  every ``modelops-*`` command line parses with the real command-line parser, so a renamed
  option or subcommand shows up here.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import sys
from pathlib import Path

import pytest

from scripts import reference
from tests.conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")),
         *sorted((ROOT / "actions").glob("*/README.md"))]
PROSE = [p for p in PAGES if "reference" not in p.relative_to(ROOT).parts]
FENCE = re.compile(r"^(`{3,}|~{3,})([^\n]*)\n(.*?)^\1[ \t]*$", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")

# --------------------------------------------------------------------------- reference pages


def test_the_reference_pages_are_current():
    generated = reference.pages()
    cli = reference.CLI_PAGE.read_text(encoding="utf-8")
    layout = re.search(r"argparse layout of Python (\d+\.\d+)", cli)
    if layout and layout.group(1) == reference.PYTHON:
        assert reference.stale(generated) == [], \
            "stale reference: run `python -m scripts.reference --write` and commit the pages"
    else:  # another Python lays argparse's help out differently: compare what it says
        assert reference.stale({reference.SETTINGS_PAGE: generated[reference.SETTINGS_PAGE]}) \
            == []
        for command, _ in reference._walk("modelops-ci", reference.parser_for(
                "modelops.ci.__main__")):
            assert f"## {command}\n" in cli


def test_an_undescribed_settings_field_is_reported():
    @dataclasses.dataclass(frozen=True)
    class Example:
        documented: int = 1
        """Has a description."""
        commented: int = 2  # says what it is
        bare: int = 3

    missing: list[str] = []
    lines = reference._dataclass_section(Example, "modelops.example", {}, [], missing)
    assert [m.split(" ")[0].rsplit(".", 1)[-1] for m in missing] == ["bare"]
    assert any("| `commented` | integer | `2` | – | says what it is |" in line for line in lines)


# --------------------------------------------------------------------------- links


def slugs(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings (a repeated one gets -1, -2, ...)."""
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    out = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        base = reference.slug(heading.replace("`", ""))
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans are not links
    return LINK.findall(text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    problems = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            shown = dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest
            problems.append(f"{target}: {shown} does not exist")
            continue
        if anchor and dest.suffix == ".md" and anchor not in slugs(dest):
            problems.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert problems == [], f"{page.relative_to(ROOT)}:\n  " + "\n  ".join(problems)


def test_the_link_checker_catches_a_broken_anchor(tmp_path):
    page = tmp_path / "a.md"
    page.write_text("# A title\n\n[ok](#a-title) [bad](#nope) `[code](x.md)`\n")
    assert links(page) == ["#a-title", "#nope"]
    assert slugs(page) == {"a-title"}


# --------------------------------------------------------------------------- commands

# command (program and subcommand) -> what runs it. Kinds: "tests/...::name" (that test),
# "demo" (scripts/demo.py runs it), "Makefile:<target>" (the target exists; what it runs is
# exercised by the tests named beside it), "bench/<file>" (a benchmark, run by hand, not a test).
EXERCISED: dict[str, list[str]] = {
    "modelops-ci cost": ["tests/unit/test_compute.py::test_cli_summarises_this_repository",
                         "tests/unit/test_compute.py::"
                         "test_serving_cost_is_replicas_times_requests_times_time_per_environment",
                         "demo"],
    "modelops-gitops workflow sweep": ["tests/func/test_workflow_sweep.py::"
                                       "test_sweep_here_in_parallel_processes"],
    "make demo": ["Makefile:demo", "scripts/demo.py"],
    "make test": ["Makefile:test", "tests/unit/test_make.py::test_make_test_sets_up_and_runs"],
    "make lint-actions": ["Makefile:lint-actions",
                          "tests/unit/test_workflows.py::test_zizmor_offline_reports_nothing",
                          "tests/unit/test_workflows.py::test_actionlint_reports_nothing"],
    "make gpu-check": ["Makefile:gpu-check", "tests/func/test_compile_gpu.py::"
                       "test_tensorrt_engine_builds_passes_parity_and_is_timed"],
    "make bench-compile": ["Makefile:bench-compile", "bench/compile.py"],
    "zizmor": ["tests/unit/test_workflows.py::test_zizmor_offline_reports_nothing"],
    "npm": ["tests/unit/test_make.py::test_make_test_sets_up_and_runs"],
    "node": ["tests/unit/test_workflows.py::test_actionlint_reports_nothing"],
    # the suite installed from a checkout of it, as pip installs a git URL
    "pip install": ["tests/func/test_adopt.py::"
                    "test_a_remote_action_installs_the_suite_from_its_own_checkout"],
    "modelops-ci check-params": ["tests/unit/test_install_extras.py::"
                                 "test_the_command_line_itself_needs_only_the_base_package",
                                 "demo"],
    "modelops-ci steps": ["tests/unit/test_install_extras.py::"
                          "test_the_command_line_itself_needs_only_the_base_package",
                          "tests/func/test_other_shape.py::"
                          "test_dvc_tracked_metrics_have_a_baseline_and_no_onnx_means_skipped_not_failed"],
    "modelops-ci report": ["tests/func/test_compare.py::"
                           "test_change_that_lowers_accuracy_fails_the_regression_gate", "demo"],
    "modelops-ci compare": ["tests/func/test_other_shape.py::"
                            "test_compare_command_names_every_metrics_file"],
    "modelops-ci gate": ["tests/func/test_compare.py::"
                         "test_change_that_lowers_accuracy_fails_the_regression_gate", "demo"],
    "modelops-ci plots": ["tests/unit/test_plots.py::"
                          "test_cli_writes_the_folder_and_exits_2_on_bad_input"],
    "modelops-ci comment": ["tests/func/test_comment.py::"
                            "test_without_token_writes_and_prints_the_preview",
                            "tests/func/test_comment.py::"
                            "test_pr_event_posts_then_edits_one_comment_and_sets_status"],
    "modelops-ci compile": ["tests/func/test_compile.py::test_cli_exit_codes_and_output"],
    "modelops-ci drift-report": ["tests/func/test_drift_report.py::"
                                 "test_the_rescaled_feature_is_the_one_drifted_feature",
                                 "tests/func/test_drift_report.py::"
                                 "test_parquet_and_logged_requests_give_the_same_statistic"],
    "dvc repro": ["tests/func/test_pipeline.py::"
                  "test_second_repro_is_a_noop_and_one_train_param_reruns_four_stages"],
    "dvc remote": ["tests/func/test_pipeline.py::test_s3_remote_round_trip_against_moto"],
    "dvc push": ["tests/func/test_pipeline.py::test_s3_remote_round_trip_against_moto"],
    "git": ["demo"],
    "modelops-gitops publish": ["tests/func/test_gitops_publish.py::"
                                "test_first_publish_creates_default_remote_and_one_commit_with_"
                                "trailers", "demo"],
    "modelops-gitops promote": ["tests/func/test_gitops_promote.py::"
                                "test_promote_direct_copies_the_exact_release",
                                "tests/func/test_gitops_promote.py::test_promote_to_production_"
                                "opens_one_pull_request_and_merge_starts_history"],
    "modelops-gitops history": ["tests/func/test_gitops_promote.py::"
                                "test_promote_then_rollback_restores_exact_bytes_and_history_"
                                "follows"],
    "modelops-gitops rollback": ["tests/func/test_gitops_promote.py::"
                                 "test_promote_then_rollback_restores_exact_bytes_and_history_"
                                 "follows"],
    "modelops-gitops workflow render": ["tests/func/test_workflow.py::"
                                        "test_example_pipeline_dag_matches_dvc_graph", "demo"],
    "modelops-gitops workflow submit": ["tests/func/test_workflow.py::"
                                        "test_cli_submit_follows_and_fails_on_failed_workflow"],
    "modelops-serve": ["tests/func/test_serve.py::"
                       "test_health_metadata_and_inference_match_onnxruntime"],
    "curl": ["tests/func/test_serve.py::test_health_metadata_and_inference_match_onnxruntime"],
    "python": ["tests/func/test_serve.py::test_health_metadata_and_inference_match_onnxruntime"],
}
SUITE_PARSERS = {"modelops-ci": "modelops.ci.__main__", "modelops-gitops":
                 "modelops.gitops.__main__", "modelops-serve": "modelops.serve.__main__"}
SHELL_BLOCKS = {"bash", "sh", "shell", "console"}


OPERATORS = {"&&", "||", ";", "|", "&", ">", ">>", "<", "(", ")"}


def _tokens(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|<>()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def commands(page: Path) -> list[str]:
    """The commands of a page's shell blocks: continuations and quoted newlines joined,
    prompts and comments dropped, ``&&``/``|``/``;`` chains split (shell-aware, so nothing
    inside quotes is split); redirections are left out."""
    out = []
    for m in FENCE.finditer(page.read_text(encoding="utf-8")):
        if m.group(2).strip().split(" ")[0] not in SHELL_BLOCKS:
            continue
        pending = ""
        for raw in m.group(3).splitlines():
            line = raw.strip().removeprefix("$ ")
            pending = f"{pending}\n{line}" if pending else line
            if pending.endswith("\\"):
                pending = pending[:-1].rstrip() + " "
                continue
            try:
                tokens = _tokens(pending)
            except ValueError:  # an open quote: the command goes on
                continue
            pending = ""
            current: list[str] = []
            skip_next = False
            for tok in [*tokens, ";"]:
                if skip_next:
                    skip_next = False
                    continue
                if tok in (">", ">>", "<"):
                    skip_next = True  # the file of a redirection
                    continue
                if tok in OPERATORS:
                    if current:
                        out.append(shlex.join(current))
                    current = []
                    continue
                current.append(tok)
    return out


def key(command: str) -> tuple[str, list[str]]:
    """``(registry key, arguments)`` of one command."""
    words, optional = [], False
    for word in shlex.split(command):  # `[--to VERSION]`: an optional part, left out
        if word.startswith("["):
            optional = True
        if not optional:
            words.append(word)
        if word.endswith("]"):
            optional = False
    while words and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", words[0]):  # VAR=value prefixes
        words.pop(0)
    program = Path(words[0]).name
    args = words[1:]
    positional = [a for a in args if not a.startswith("-")]
    if program == "modelops-gitops" and positional[:1] == ["workflow"]:
        return f"{program} {' '.join(positional[:2])}", args
    if program in ("make", "pip", "dvc") or program in SUITE_PARSERS and positional and \
            positional[0] in _subcommands(program):
        return f"{program} {positional[0]}", args
    return program, args


def _subcommands(program: str) -> set[str]:
    parser = reference.parser_for(SUITE_PARSERS[program])
    return {name for name, _ in reference._subcommands(parser)}


def _exists(ref: str) -> bool:
    if ref == "demo":
        return True  # checked per command below
    if ref.startswith("Makefile:"):
        text = (ROOT / "Makefile").read_text(encoding="utf-8")
        return re.search(rf"^{re.escape(ref.split(':', 1)[1])}:", text, re.M) is not None
    if "::" in ref:
        path, name = ref.split("::")
        return re.search(rf"^def {re.escape(name)}\(", (ROOT / path).read_text(
            encoding="utf-8"), re.M) is not None
    return (ROOT / ref).is_file()


ALL = sorted({(str(p.relative_to(ROOT)), c) for p in PROSE for c in commands(p)})


@pytest.mark.parametrize(("page", "command"), ALL, ids=[f"{p}:{c[:50]}" for p, c in ALL])
def test_every_documented_command_is_exercised(page, command):
    name, args = key(command)
    assert name in EXERCISED, f"{page}: `{command}` ({name!r}) is exercised by nothing " \
                              "listed in EXERCISED"
    for ref in EXERCISED[name]:
        assert _exists(ref), f"{name}: {ref} does not exist"
        if ref == "demo":
            demo = (ROOT / "scripts" / "demo.py").read_text(encoding="utf-8")
            for word in name.split(" ")[1:] or [name]:
                assert f'"{word}"' in demo or f" {word} " in demo, \
                    f"the demo does not run {name!r}"
    program = name.split(" ")[0]
    if program in SUITE_PARSERS:  # the spelling is the parser's
        parser = reference.parser_for(SUITE_PARSERS[program])
        try:
            parser.parse_args(args)
        except SystemExit:
            pytest.fail(f"{page}: `{command}` does not parse with {program}'s own parser")


def test_the_command_extractor_sees_chains_continuations_and_prompts(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```bash\n$ make demo   # comment\nFOO=1 modelops-ci gate \\\n  --report "
                    "r.json && node x.cjs a\npython -c 'a; b\nc' > out.json | wc -l\n```\n\n"
                    "```text\nnot a command\n```\n")
    assert commands(page) == ["make demo", "FOO=1 modelops-ci gate --report r.json",
                              "node x.cjs a", "python -c 'a; b\nc'", "wc -l"]
    assert key("FOO=1 modelops-ci gate --report r.json") == (
        "modelops-ci gate", ["gate", "--report", "r.json"])
    assert sys.modules.get("modelops.ci.__main__") is not None


# --------------------------------------------------------------------------- snippets


def yaml_blocks(page: Path) -> list[str]:
    return [m.group(3) for m in FENCE.finditer(page.read_text(encoding="utf-8"))
            if m.group(2).strip() == "yaml"]


def test_the_front_page_shows_the_adopt_page_s_workflow():
    from tests.func.test_adopt import snippet

    readme = yaml_blocks(ROOT / "README.md")
    assert snippet("workflow") in readme


@pytest.mark.parametrize("page", PROSE, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_modelops_section_shown_is_valid(page):
    """A `modelops:` block in the docs parses with the suite's own settings loader."""
    from modelops.settings import parse_settings
    from modelops.yamlio import load_yaml

    for block in yaml_blocks(page):
        if block.startswith("modelops:"):
            parse_settings(load_yaml(block, str(page)), page.name)
