"""Which GitOps repository a command uses: --gitops-repo > deploy.gitops_repo > $GITOPS_REPO >
.gitops-remote/."""

from __future__ import annotations

import pytest

from modelops.errors import ConfigError, InputError
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


def test_a_relative_local_path_must_exist_and_resolves_under_base(tmp_path, params_file,
                                                                    monkeypatch):
    monkeypatch.delenv(ENV_REPO, raising=False)
    configured = configured_repo(params_file("ops/gitops.git"))
    with pytest.raises(InputError) as info:
        resolve_repo(None, configured, tmp_path)
    assert "modelops.deploy.gitops_repo: 'ops/gitops.git'" in info.value.message
    assert not (tmp_path / "ops").exists(), "nothing is created for a path that does not exist"
    (tmp_path / "ops" / "gitops.git").mkdir(parents=True)  # an empty folder made for it
    assert resolve_repo(None, configured, tmp_path) == str(tmp_path / "ops" / "gitops.git")
    assert (tmp_path / "ops" / "gitops.git" / "HEAD").is_file()


@pytest.mark.parametrize("url", ["github.com/x.git", "github.com/org/gitops.git",
                                 "gitlab.example.com:8443/ml/gitops.git", "no-such-folder"])
def test_a_url_without_a_scheme_is_refused_not_made_a_local_repository(tmp_path, url,
                                                                       monkeypatch):
    monkeypatch.delenv(ENV_REPO, raising=False)
    with pytest.raises(InputError) as info:
        resolve_repo(url, None, tmp_path)
    assert f"--gitops-repo: {url!r} is not a URL with a scheme" in info.value.message
    if "." in url.split("/")[0]:
        assert f"did you mean 'https://{url}'?" in info.value.hint
    assert list(tmp_path.iterdir()) == []


def test_urls_with_a_scheme_and_scp_like_urls_pass_through(tmp_path):
    for url in ("https://github.com/org/gitops.git", "ssh://git@host/org/gitops.git",
                "git://host/gitops.git", "git@github.com:org/gitops.git"):
        assert resolve_repo(url, None, tmp_path) == url
    assert list(tmp_path.iterdir()) == []


def test_an_existing_folder_that_is_not_a_repository_is_refused(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(InputError, match="exists but is not a git repository"):
        resolve_repo(str(tmp_path / "notes"), None, tmp_path)


def test_missing_params_file_means_not_configured(tmp_path):
    assert configured_repo(tmp_path / "nope.yaml") is None
    assert configured_repo(None) is None


def test_bad_gitops_repo_names_field_and_value(params_file):
    with pytest.raises(ConfigError) as info:
        configured_repo(params_file("https://x y"))
    assert info.value.path == "modelops.deploy.gitops_repo"
    assert "'https://x y'" in str(info.value)
