"""Out-of-band edits in managed folders are detected and reported before anything is
overwritten: a human hotfix committed into a published folder is never silently reverted by
the next publish, and a file a human added beside the managed ones is never silently deleted
by the next promote (or rollback). Each published folder's ``managed.json`` records what the
publisher wrote."""

from __future__ import annotations

import json
import subprocess

import pytest

from modelops.gitops.gitrepo import ensure_bare_remote
from modelops.gitops.publish import publish
from tests.conftest import ROOT
from tests.func.test_gitops_publish import (
    folder,
    gitops,
    head,
    quiet,
    rgit,
    trailers,
    tree_files,
    write_rendered,
)

PARAMS = str(ROOT / "params.yaml")


@pytest.fixture
def remote(tmp_path, git_env):
    remote = ensure_bare_remote(tmp_path / "remote.git")
    publish(str(remote), {"staging/m": folder("m", "v1"),
                          "production/m": folder("m", "v1", "production")},
            message="publish v1\n", log=quiet)
    return remote


def by_hand(remote, tmp_path, change, message="hotfix by hand"):
    """A human clones the GitOps repository, changes it and pushes (no modelops-gitops)."""
    work = tmp_path / "human"
    if not work.exists():
        subprocess.run(["git", "clone", "-q", str(remote), str(work)], check=True)
    else:
        subprocess.run(["git", "pull", "-q"], cwd=work, check=True)
    change(work)
    subprocess.run(["git", "add", "-A"], cwd=work, check=True)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=work, check=True)
    subprocess.run(["git", "push", "-q", "origin", "HEAD:main"], cwd=work, check=True)
    return head(remote)


def hotfix(work):
    path = work / "production" / "m" / "rollout.yaml"
    path.write_text(path.read_text().replace("replicas: 3\n", "replicas: 6\n", 1))


def publish_v2(remote, tmp_path, *extra):
    out = write_rendered(tmp_path / "v2", {"production/m": folder("m", "v2", "production")})
    return gitops("publish", "--rendered-dir", str(out), "--gitops-repo", str(remote), *extra,
                  cwd=tmp_path)


def test_managed_json_records_the_blob_of_every_file(remote):
    files = tree_files(remote, head(remote), "production/m", manifests=True)
    manifest = json.loads(files.pop("production/m/managed.json"))
    assert manifest["managed_by"] == "modelops-gitops"
    for path, data in files.items():
        blob = subprocess.run(["git", "hash-object", "--stdin"], input=data,
                              capture_output=True, check=True).stdout.decode().strip()
        assert manifest["files"][path.rsplit("/", 1)[1]] == blob
    assert set(manifest["files"]) == {p.rsplit("/", 1)[1] for p in files}


def test_a_hotfix_is_reported_not_reverted(remote, tmp_path):
    fixed = by_hand(remote, tmp_path, hotfix)
    proc = publish_v2(remote, tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "changed outside modelops-gitops" in proc.stderr
    assert "production/m: rollout.yaml edited" in proc.stderr
    assert "nothing was pushed" in proc.stderr and "--overwrite-manual-changes" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert head(remote) == fixed  # the hotfix stays
    assert b"replicas: 6" in tree_files(remote, fixed)["production/m/rollout.yaml"]
    # on purpose: the commit says what it replaced
    proc = publish_v2(remote, tmp_path, "--overwrite-manual-changes")
    assert proc.returncode == 0, proc.stderr
    assert "overwriting changes made outside modelops-gitops: rollout.yaml edited" in proc.stderr
    assert trailers(remote, head(remote))["Overwrote-Manual-Changes"] == "production/m"
    # and from then on the folder is managed again
    assert "changed outside" not in publish_v2(remote, tmp_path).stderr


def test_a_file_added_beside_is_reported_not_deleted_by_promote(remote, tmp_path):
    def add_hpa(work):
        (work / "production" / "m" / "hpa.yaml").write_text("kind: HorizontalPodAutoscaler\n")

    added = by_hand(remote, tmp_path, add_hpa, "add an HPA")
    stage = write_rendered(tmp_path / "stage", {"staging/m": folder("m", "v2")})
    assert gitops("publish", "--rendered-dir", str(stage), "--gitops-repo", str(remote),
                  cwd=tmp_path).returncode == 0
    staged = head(remote)
    assert staged != added
    proc = gitops("promote", "--from", "staging", "--to", "production", "--direct",
                  "--model", "m", "--params", PARAMS, "--gitops-repo", str(remote),
                  cwd=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "production/m: hpa.yaml added" in proc.stderr
    assert head(remote) == staged
    assert "production/m/hpa.yaml" in tree_files(remote, staged)


def test_a_removed_file_and_an_edited_manifest_are_reported(remote, tmp_path):
    def remove(work):
        (work / "production" / "m" / "services.yaml").unlink()
        (work / "production" / "m" / "managed.json").write_text("{}\n")

    by_hand(remote, tmp_path, remove)
    proc = publish_v2(remote, tmp_path)
    assert proc.returncode == 2 and "managed.json edited" in proc.stderr


def test_a_rollback_does_not_revert_a_hotfix_silently(remote, tmp_path):
    assert publish_v2(remote, tmp_path).returncode == 0
    fixed = by_hand(remote, tmp_path, hotfix)
    proc = gitops("rollback", "--env", "production", "--model", "m", "--gitops-repo",
                  str(remote), cwd=tmp_path)
    assert proc.returncode == 2 and "rollout.yaml edited" in proc.stderr
    assert head(remote) == fixed


def test_a_folder_published_before_managed_json_is_adopted(tmp_path, git_env):
    remote = ensure_bare_remote(tmp_path / "remote.git")
    by_hand(remote, tmp_path, lambda work: [
        (work / "production" / "m").mkdir(parents=True),
        *[(work / "production" / "m" / name).write_bytes(data)
          for name, data in folder("m", "v1", "production").items()]], "an older publish")
    proc = publish_v2(remote, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "production/m/managed.json" in tree_files(remote, head(remote), manifests=True)
    assert rgit(remote, "rev-list", "--count", "main") == "2"
