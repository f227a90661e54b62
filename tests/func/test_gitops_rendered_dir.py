"""``publish --rendered-dir`` applies exactly the checks ``render`` applies: parse (the exact
form the renderer writes), strict CRD validation, semantic checks, only the rendered files,
a valid release.json; symbolic links and stray files are refused; what ``render --out`` leaves
behind when killed is tolerated. Each refusal exits 2, names the file, and pushes nothing."""

from __future__ import annotations

import os
import shutil

import pytest

from modelops.gitops.gitrepo import ensure_bare_remote
from modelops.gitops.render import write_env
from modelops.yamlio import dump_yaml_all, load_yaml_all_fast
from tests.func.test_gitops_publish import folder, gitops, head, rgit, tree_files, write_rendered

FOLDER = "staging/digits-cnn"


@pytest.fixture
def remote(tmp_path, git_env):
    return ensure_bare_remote(tmp_path / "remote.git")


@pytest.fixture
def rendered(tmp_path):
    """DIR/staging/digits-cnn/ as `render --out DIR` writes it."""
    return write_rendered(tmp_path / "out", {FOLDER: folder("digits-cnn", "v1")})


def publish_dir(root, remote, tmp_path, *extra):
    return gitops("publish", "--rendered-dir", str(root), "--gitops-repo", str(remote), *extra,
                  cwd=tmp_path)


def refused(proc, remote, *fragments):
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    assert head(remote) is None, "something was pushed"


def test_a_rendered_folder_publishes(rendered, remote, tmp_path):
    proc = publish_dir(rendered, remote, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert {k.split("/", 2)[2]: v for k, v in tree_files(remote, head(remote)).items()} == \
        folder("digits-cnn", "v1")


def _edit_docs(path, edit):
    docs = load_yaml_all_fast(path.read_text())
    edit(docs)
    path.write_text(dump_yaml_all(docs))


def test_an_extra_secret_document_is_refused(rendered, remote, tmp_path):
    path = rendered / FOLDER / "services.yaml"
    _edit_docs(path, lambda docs: docs.append({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x",
                                                           "namespace": "ml-staging"},
        "stringData": {"token": "s3cret"}}))
    refused(publish_dir(rendered, remote, tmp_path), remote,
            "services.yaml: holds a 'Secret', but the renderer writes only Service, Ingress there")


def test_an_object_the_renderer_would_not_name_is_refused(rendered, remote, tmp_path):
    def extra(docs):
        service = {**docs[0], "metadata": {**docs[0]["metadata"], "name": "backdoor"}}
        docs.append(service)

    _edit_docs(rendered / FOLDER / "services.yaml", extra)
    refused(publish_dir(rendered, remote, tmp_path), remote, "Service/backdoor")


def test_an_unknown_rollout_field_is_refused(rendered, remote, tmp_path):
    _edit_docs(rendered / FOLDER / "rollout.yaml",
               lambda docs: docs[0]["spec"].update(replicaz=3))
    refused(publish_dir(rendered, remote, tmp_path), remote, "rollout.yaml (Rollout/digits-cnn)",
            "'replicaz' was unexpected")


def test_broken_yaml_is_refused(rendered, remote, tmp_path):
    (rendered / FOLDER / "rollout.yaml").write_text("apiVersion: [unclosed\n")
    refused(publish_dir(rendered, remote, tmp_path), remote, "rollout.yaml: not valid YAML")


def test_a_hand_edit_in_another_yaml_spelling_is_refused(rendered, remote, tmp_path):
    path = rendered / FOLDER / "rollout.yaml"
    path.write_text(path.read_text().replace("replicas: 1\n", "replicas: 1  # hotfix\n"))
    refused(publish_dir(rendered, remote, tmp_path), remote, "rollout.yaml: line ",
            "not in the form modelops-gitops writes")


@pytest.mark.parametrize("content", [b"not json", b"[]", b'{"format": 1}'])
def test_a_bad_release_json_is_refused(rendered, remote, tmp_path, content):
    (rendered / FOLDER / "release.json").write_bytes(content)
    refused(publish_dir(rendered, remote, tmp_path), remote, "release.json")


def test_a_release_json_of_another_model_is_refused(rendered, remote, tmp_path):
    other = folder("other-model", "v1")
    (rendered / FOLDER / "release.json").write_bytes(other["release.json"])
    refused(publish_dir(rendered, remote, tmp_path), remote,
            "release.json: model: 'other-model' is not the folder's model 'digits-cnn'")


def test_a_symlink_is_refused_and_its_target_never_published(rendered, remote, tmp_path):
    key = tmp_path / "id_ed25519"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    (rendered / FOLDER / "rollout.yaml").unlink()
    os.symlink(key, rendered / FOLDER / "rollout.yaml")
    refused(publish_dir(rendered, remote, tmp_path), remote, "rollout.yaml: a symbolic link")


def test_a_symlinked_model_folder_is_refused(rendered, remote, tmp_path):
    shutil.move(str(rendered / FOLDER), str(tmp_path / "elsewhere"))
    os.symlink(tmp_path / "elsewhere", rendered / FOLDER)
    refused(publish_dir(rendered, remote, tmp_path), remote, "a symbolic link")


@pytest.mark.parametrize(("stray", "named"), [
    ("staging/digits-cnn/notes.txt", "notes.txt: not a file modelops-gitops renders"),
    ("staging/README.md", "README.md: a file outside"), ("README.md", "README.md: a file outside"),
    ("staging/digits-cnn/sub/x.yaml", "sub: not a regular file"),
    ("staging/digits-cnn/managed.json", "managed.json: not a file modelops-gitops renders")])
def test_stray_files_are_refused(rendered, remote, tmp_path, stray, named):
    path = rendered / stray
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x: 1\n")
    refused(publish_dir(rendered, remote, tmp_path), remote, named)


def test_a_missing_file_is_refused(rendered, remote, tmp_path):
    (rendered / FOLDER / "services.yaml").unlink()
    kust = rendered / FOLDER / "kustomization.yaml"
    kust.write_text(kust.read_text().replace("- services.yaml\n", ""))
    refused(publish_dir(rendered, remote, tmp_path), remote, "services.yaml: missing")


def test_what_a_killed_render_leaves_is_tolerated(rendered, remote, tmp_path):
    env_dir = rendered / "staging"
    shutil.copytree(env_dir / "digits-cnn", env_dir / ".digits-cnn.old")  # killed in rmtree
    (env_dir / ".digits-cnn.tmp-abc123").mkdir()  # killed while writing
    (env_dir / ".digits-cnn.tmp-abc123.lock").write_text("")
    proc = publish_dir(rendered, remote, tmp_path)
    assert proc.returncode == 0, proc.stderr
    # and the next render into the folder cleans them up
    write_env(folder("digits-cnn", "v2"), rendered, "staging", "digits-cnn")
    assert sorted(p.name for p in env_dir.iterdir()) == ["digits-cnn"]


def test_an_interrupted_swap_is_refused(rendered, remote, tmp_path):
    env_dir = rendered / "staging"
    (env_dir / "digits-cnn").rename(env_dir / ".digits-cnn.old")
    refused(publish_dir(rendered, remote, tmp_path), remote, ".digits-cnn.old",
            "interrupted")


def test_an_application_following_another_branch_is_refused(rendered, remote, tmp_path):
    proc = publish_dir(rendered, remote, tmp_path, "--branch", "release")
    refused(proc, remote, "targetRevision: 'main' but the folder is published to branch "
                          "'release'")
    ok = write_rendered(tmp_path / "for-release",
                        {FOLDER: folder("digits-cnn", "v1", branch="release")})
    proc = publish_dir(ok, remote, tmp_path, "--branch", "release")
    assert proc.returncode == 0, proc.stderr
    assert rgit(remote, "rev-parse", "--verify", "--quiet", "refs/heads/release")


def test_render_then_publish_is_the_documented_two_step_path(tmp_path, remote):
    """render --out writes exactly what publish --rendered-dir accepts."""
    from tests.unit.test_gitops_release import example_release

    release = tmp_path / "release.json"
    release.write_bytes(example_release().to_json())
    out = tmp_path / "manifests"
    from tests.conftest import ROOT

    proc = gitops("render", "--release", str(release), "--out", str(out), "--params",
                  str(ROOT / "params.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = publish_dir(out, remote, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert rgit(remote, "ls-tree", "--name-only", "main:staging/digits-cnn").splitlines() == [
        "analysis-templates.yaml", "application.yaml", "dashboard.yaml", "drift-baseline.yaml",
        "kustomization.yaml", "managed.json", "pod-monitor.yaml", "prometheus-rules.yaml",
        "release.json", "rollout.yaml", "services.yaml"]


# --------------------------------------------------------------------------- across folders

def _params_with(environments):
    import copy

    from modelops.settings import parse_settings
    from modelops.yamlio import load_yaml_file
    from tests.conftest import ROOT

    raw = copy.deepcopy(load_yaml_file(ROOT / "params.yaml"))
    raw["modelops"]["deploy"]["environments"] = environments
    return parse_settings(raw)


def _render(model, env, params):
    from modelops.gitops.render import render_env
    from tests.func.test_gitops_publish import make_release

    return render_env(make_release(model, "v1"), params, env)


def test_two_folders_producing_one_application_name_are_refused(remote, tmp_path):
    """model a in environment b-c and model a-b in environment c both make 'a-b-c'."""
    params = _params_with({"b-c": {"namespace": "ns-one"}, "c": {"namespace": "ns-two"}})
    both = write_rendered(tmp_path / "both", {"b-c/a": _render("a", "b-c", params),
                                              "c/a-b": _render("a-b", "c", params)})
    refused(publish_dir(both, remote, tmp_path), remote,
            "'b-c/a' and 'c/a-b' both produce the Argo CD Application 'a-b-c'")
    # one at a time: the second is checked against what the repository already holds
    first = write_rendered(tmp_path / "first", {"b-c/a": _render("a", "b-c", params)})
    assert publish_dir(first, remote, tmp_path).returncode == 0
    published = head(remote)
    second = write_rendered(tmp_path / "second", {"c/a-b": _render("a-b", "c", params)})
    proc = publish_dir(second, remote, tmp_path)
    assert proc.returncode == 2 and "both produce the Argo CD Application 'a-b-c'" in proc.stderr
    assert head(remote) == published


def test_two_environments_of_a_model_in_one_namespace_are_refused(remote, tmp_path):
    """Each rendered with valid settings of its own, but both land in ml-shared."""
    staging = _render("digits-cnn", "staging",
                      _params_with({"staging": {"namespace": "ml-shared"}}))
    production = _render("digits-cnn", "production",
                         _params_with({"production": {"namespace": "ml-shared"}}))
    out = write_rendered(tmp_path / "shared", {"staging/digits-cnn": staging,
                                               "production/digits-cnn": production})
    refused(publish_dir(out, remote, tmp_path), remote,
            "both deploy model 'digits-cnn' into namespace 'ml-shared'")
