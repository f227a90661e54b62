"""``gitops publish --env ...`` end to end in a model repository: the release comes from
``dvc.lock`` and ``params.yaml``, the renderer writes both environments, one commit carries the
provenance, and an artifact that does not match ``dvc.lock`` is refused before any git work."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest

from modelops.gitops.gitrepo import ensure_bare_remote
from modelops.gitops.publish import format_message, publish
from modelops.yamlio import dump_yaml
from tests.conftest import ROOT
from tests.func.test_gitops_publish import folder, gitops, head, quiet, rgit, tree_files
from tests.unit.test_gitops_release import BASELINE

pytestmark = pytest.mark.slow


@pytest.fixture
def model_repo(tmp_path, git_env):
    repo = tmp_path / "models-repo"
    (repo / "models").mkdir(parents=True)
    shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    onnx = bytes(range(256)) * 64
    (repo / "models" / "model.onnx").write_bytes(onnx)
    (repo / "metrics").mkdir()
    baseline = (json.dumps(BASELINE) + "\n").encode()
    (repo / "metrics" / "drift_baseline.json").write_bytes(baseline)
    lock = {"schema": "2.0", "stages": {"export": {
        "cmd": "sh pipeline/run.sh export",
        "outs": [{"path": "models/model.onnx", "hash": "md5",
                  "md5": hashlib.md5(onnx).hexdigest(), "size": len(onnx)}]}, "evaluate": {
        "cmd": "sh pipeline/run.sh evaluate",
        "outs": [{"path": "metrics/drift_baseline.json", "hash": "md5",
                  "md5": hashlib.md5(baseline).hexdigest(), "size": len(baseline)}]}}}
    (repo / "dvc.lock").write_text(dump_yaml(lock))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "model"]):
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


def test_publish_renders_release_from_dvc_lock_into_both_envs_in_one_commit(model_repo,
                                                                          tmp_path):
    remote = ensure_bare_remote(tmp_path / "gitops.git")
    args = ("publish", "--env", "staging", "--env", "production", "--artifact-uri",
            "s3://models/files/md5/ab/cdef", "--gitops-repo", str(remote))
    proc = gitops(*args, cwd=model_repo)
    assert proc.returncode == 0, proc.stderr
    main = head(remote)
    source = rgit(model_repo, "rev-parse", "HEAD")
    onnx_sha = hashlib.sha256((model_repo / "models" / "model.onnx").read_bytes()).hexdigest()
    lock_sha = hashlib.sha256((model_repo / "dvc.lock").read_bytes()).hexdigest()
    message = rgit(remote, "log", "-1", "--format=%B", main)
    assert message.splitlines()[0] == f"publish digits-cnn {source[:12]} to production, staging"
    for line in ("Model: digits-cnn", "Environment: production", "Environment: staging",
                 f"Model-Version: {source[:12]}", f"Model-Sha256: {onnx_sha}",
                 f"Dvc-Lock-Sha256: {lock_sha}", f"Source-Commit: {source}",
                 "Gitops-Action: publish"):
        assert line in message.splitlines()
    files = tree_files(remote, main)
    for env in ("staging", "production"):
        rel = json.loads(files[f"{env}/digits-cnn/release.json"])
        assert (rel["sha256"], rel["source_commit"]) == (onnx_sha, source)
        assert f"{env}/digits-cnn/rollout.yaml" in files
    assert rgit(remote, "rev-list", "--count", main) == "1"

    again = gitops(*args, cwd=model_repo)
    assert again.returncode == 0 and "no change" in again.stdout
    assert head(remote) == main


def test_artifact_not_matching_dvc_lock_is_refused_before_any_git_work(model_repo, tmp_path):
    with open(model_repo / "models" / "model.onnx", "ab") as fh:
        fh.write(b"tampered")
    remote = ensure_bare_remote(tmp_path / "gitops.git")
    proc = gitops("publish", "--env", "staging", "--artifact-uri", "s3://m/x", "--gitops-repo",
                  str(remote), cwd=model_repo)
    assert proc.returncode == 2, proc.stderr
    assert "does not match dvc.lock" in proc.stderr and "Traceback" not in proc.stderr
    assert head(remote) is None
    unknown = gitops("publish", "--env", "qa", "--artifact-uri", "s3://m/x", "--gitops-repo",
                     str(remote), cwd=model_repo)
    assert unknown.returncode == 2 and "unknown environment" in unknown.stderr


def test_message_names_only_the_folders_that_change(tmp_path, git_env):
    remote = ensure_bare_remote(tmp_path / "gitops.git")
    publish(str(remote), {"staging/a": folder("a", "v1"), "staging/b": folder("b", "v1")},
            message="seed\n", log=quiet)
    seen = []

    def message(todo):
        seen.append(todo)
        return format_message(f"publish {', '.join(todo)}", [])

    result = publish(str(remote), {"staging/a": folder("a", "v1"),
                                   "staging/b": folder("b", "v2")}, message=message, log=quiet)
    assert result.changed == ["staging/b"] and result.unchanged == ["staging/a"]
    assert seen == [["staging/b"]]
    assert rgit(remote, "log", "-1", "--format=%s") == "publish staging/b"


def test_publish_to_another_branch_renders_applications_that_follow_it(model_repo, tmp_path):
    """`publish --branch release` writes targetRevision: release, not the default main."""
    from modelops.yamlio import load_yaml_all

    remote = ensure_bare_remote(tmp_path / "gitops.git")
    proc = gitops("publish", "--env", "staging", "--artifact-uri", "s3://m/x", "--branch",
                  "release", "--gitops-repo", str(remote), cwd=model_repo)
    assert proc.returncode == 0, proc.stderr
    app = rgit(remote, "show", "release:staging/digits-cnn/application.yaml")
    (doc,) = load_yaml_all(app)
    assert doc["spec"]["source"]["targetRevision"] == "release"
    assert rgit(remote, "for-each-ref", "--format=%(refname)") == "refs/heads/release"
