"""The comment template's compiled code is cached beside it (jinja2's file bytecode cache): a
second process renders without compiling, a changed template or option compiles again, and a
folder that cannot be written only costs the compile."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from modelops.ci import markdown
from modelops.ci.markdown import ENV_OPTIONS, _BytecodeCache


@pytest.fixture
def compiled(monkeypatch) -> list[str]:
    """The names of the templates jinja2 compiles from source."""
    names: list[str] = []
    real = jinja2.Environment.compile

    def counting(self, source, name=None, filename=None, raw=False, defer_init=False):
        names.append(name)
        return real(self, source, name, filename, raw, defer_init)

    monkeypatch.setattr(jinja2.Environment, "compile", counting)
    return names


def _render(folder: Path, cache_dir: Path | None = None) -> str:
    """A fresh environment, as a new process has."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),  # noqa: S701
                             bytecode_cache=_BytecodeCache(cache_dir or folder / "__pycache__"),
                             **ENV_OPTIONS)
    return env.get_template("t.j2").render(who="reviewer")


def test_a_second_process_renders_from_the_cache(tmp_path, compiled):
    (tmp_path / "t.j2").write_text("hello {{ who }}\n")
    assert _render(tmp_path) == "hello reviewer\n"
    assert compiled == ["t.j2"] and len(list((tmp_path / "__pycache__").iterdir())) == 1
    assert _render(tmp_path) == "hello reviewer\n"
    assert compiled == ["t.j2"], "the cached code was compiled again"


def test_a_changed_template_is_compiled_again(tmp_path, compiled):
    (tmp_path / "t.j2").write_text("hello {{ who }}\n")
    _render(tmp_path)
    (tmp_path / "t.j2").write_text("bye {{ who }}\n")
    assert _render(tmp_path) == "bye reviewer\n"
    assert compiled == ["t.j2", "t.j2"]


def test_other_options_use_another_cache_file(tmp_path, monkeypatch):
    first = _BytecodeCache(tmp_path).pattern
    monkeypatch.setitem(ENV_OPTIONS, "trim_blocks", False)
    assert _BytecodeCache(tmp_path).pattern != first


def test_a_folder_that_cannot_be_written_only_costs_the_compile(tmp_path, compiled):
    (tmp_path / "t.j2").write_text("hello {{ who }}\n")
    (tmp_path / "a-file").write_text("")  # the cache folder cannot be made inside a file
    unwritable = tmp_path / "a-file" / "__pycache__"
    assert _render(tmp_path, unwritable) == "hello reviewer\n"
    assert _render(tmp_path, unwritable) == "hello reviewer\n"
    assert compiled == ["t.j2", "t.j2"]


def test_a_cache_file_that_cannot_be_read_only_costs_the_compile(tmp_path, compiled):
    (tmp_path / "t.j2").write_text("hello {{ who }}\n")
    _render(tmp_path)
    (entry,) = (tmp_path / "__pycache__").iterdir()
    entry.write_bytes(b"not a cache entry")
    assert _render(tmp_path) == "hello reviewer\n"
    assert compiled == ["t.j2", "t.j2"]


def test_the_comment_environment_uses_the_cache_beside_its_templates():
    env = markdown._env()
    assert isinstance(env.bytecode_cache, _BytecodeCache)
    assert Path(env.bytecode_cache.directory) == markdown.TEMPLATES / "__pycache__"
