"""Which GitOps repository a command uses: --gitops-repo > deploy.gitops_repo > $GITOPS_REPO >
.gitops-remote/."""

from __future__ import annotations

import pytest

from modelops.errors import ConfigError
from modelops.gitops.publish import DEFAULT_REMOTE_DIR, ENV_REPO, configured_repo, resolve_repo
from modelops.yamlio import dump_yaml, load_yaml_file
from tests.conftest import ROOT


@pytest.fixture
def params_file(tmp_path):
    def write(value: str):
        raw = load_yaml_file(ROOT / "params.yaml")
        raw["modelops"]["deploy"]["gitops_repo"] = value
        path = tmp_path / "params.yaml"
        path.write_text(dump_yaml(raw))
        return path
    return write


def test_precedence_flag_params_env_default(tmp_path, params_file, monkeypatch):
    monkeypatch.setenv(ENV_REPO, "https://git.example.com/from-env.git")
    configured = configured_repo(params_file("https://git.example.com/from-params.git"))
    assert configured == "https://git.example.com/from-params.git"
    assert resolve_repo("https://git.example.com/flag.git", configured, tmp_path) == \
        "https://git.example.com/flag.git"
    assert resolve_repo(None, configured, tmp_path) == configured
    unset = configured_repo(params_file(""))
    assert unset is None
    assert resolve_repo(None, unset, tmp_path) == "https://git.example.com/from-env.git"
    monkeypatch.delenv(ENV_REPO)
    default = resolve_repo(None, unset, tmp_path)
    assert default == str(tmp_path / DEFAULT_REMOTE_DIR)
    assert (tmp_path / DEFAULT_REMOTE_DIR / "HEAD").is_file()  # a bare repository, created


def test_relative_local_path_in_params_is_created_under_base(tmp_path, params_file,
                                                              monkeypatch):
    monkeypatch.delenv(ENV_REPO, raising=False)
    url = resolve_repo(None, configured_repo(params_file("ops/gitops.git")), tmp_path)
    assert url == str(tmp_path / "ops" / "gitops.git")
    assert (tmp_path / "ops" / "gitops.git" / "HEAD").is_file()


def test_missing_params_file_means_not_configured(tmp_path):
    assert configured_repo(tmp_path / "nope.yaml") is None
    assert configured_repo(None) is None


def test_bad_gitops_repo_names_field_and_value(params_file):
    with pytest.raises(ConfigError) as info:
        configured_repo(params_file("https://x y"))
    assert info.value.path == "modelops.deploy.gitops_repo"
    assert "'https://x y'" in str(info.value)
