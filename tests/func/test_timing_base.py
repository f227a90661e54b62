"""The timing section against the base revision, on a real DVC repository: an artifact the
base's dvc.lock already records is not fetched nor timed; a changed one is timed against the
base's, fetched from the DVC cache."""

from __future__ import annotations

import shutil
import sys

import pytest

from modelops.ci.compile.timing import base_lock_md5, timing_section
from tests.conftest import PY, run
from tests.func.compile_models import linear_model, splits, write_params

DVC_YAML = """\
stages:
  export:
    cmd: {py} -c "import shutil; shutil.copy('src/model.onnx', 'models/model.onnx')"
    deps: [src/model.onnx]
    outs: [models/model.onnx]
"""


@pytest.fixture
def repo(tmp_path, git_env):
    """main: a DVC repository whose export stage outputs models/model.onnx (seed 0)."""
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    run([PY, "-m", "dvc", "init", "-q"], tmp_path)
    run([PY, "-m", "dvc", "config", "core.analytics", "false"], tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "models").mkdir()
    linear_model(tmp_path / "src" / "model.onnx", seed=0)
    splits(tmp_path / "data" / "prepared", tmp_path / "src" / "model.onnx")
    write_params(tmp_path / "params.yaml")
    with (tmp_path / "params.yaml").open("a") as f:
        f.write("    timing: {batch_sizes: [1], rounds: 2, runs: 5, warmup: 1}\n")
    (tmp_path / "dvc.yaml").write_text(DVC_YAML.format(py=sys.executable))
    run([PY, "-m", "dvc", "repro", "-q"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-q", "-m", "base model"], tmp_path)
    run(["git", "checkout", "-q", "-b", "pr"], tmp_path)
    return tmp_path


def test_an_artifact_the_base_lock_records_is_not_fetched(repo):
    """Without the DVC cache the base's bytes cannot be read at all; the base's dvc.lock still
    says the workspace's artifact is the base's."""
    shutil.rmtree(repo / ".dvc" / "cache")
    logs: list[str] = []
    section = timing_section(repo, "main", log=logs.append)
    assert section["compared"] == "same-artifact", section
    assert section["rows"] == []
    assert section["base"]["sha256"] == section["model"]["sha256"]
    assert "dvc.lock records the same md5" in logs[0]


def test_a_changed_artifact_is_timed_against_the_base_from_the_cache(repo):
    linear_model(repo / "src" / "model.onnx", seed=1)
    run([PY, "-m", "dvc", "repro", "-q"], repo)
    section = timing_section(repo, "main", log=lambda _m: None)
    assert section["compared"] == "base-and-head", section
    assert section["base"]["sha256"] != section["model"]["sha256"]
    assert [row["batch"] for row in section["rows"]] == [1]
    assert {"base", "head", "ratio_p50"} <= set(section["rows"][0])


def test_a_hand_edited_artifact_is_not_taken_for_the_base(repo):
    """The same path, other bytes, dvc.lock untouched: the md5s differ, the base is fetched."""
    (repo / "models" / "model.onnx").unlink()
    linear_model(repo / "models" / "model.onnx", seed=2)
    section = timing_section(repo, "main", log=lambda _m: None)
    assert section["compared"] == "base-and-head", section


def test_base_lock_md5_reads_only_file_outputs_with_dvc3_hashes(repo):
    assert len(base_lock_md5(repo, "models/model.onnx", "main") or "") == 32
    assert base_lock_md5(repo, "./models/model.onnx", "main") is not None
    assert base_lock_md5(repo, "models/other.onnx", "main") is None
    lock = (repo / "dvc.lock").read_text()
    (repo / "dvc.lock").write_text(lock.replace("hash: md5\n", ""))  # a DVC 2 lock
    run(["git", "commit", "-q", "-am", "an old lock"], repo)
    assert base_lock_md5(repo, "models/model.onnx", "HEAD") is None
