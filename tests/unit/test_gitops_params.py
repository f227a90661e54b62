"""The deploy section: canary steps in Argo's spelling, environments, thresholds."""

from __future__ import annotations

import copy

import pytest

from modelops.errors import ConfigError
from modelops.settings import load_settings, parse_settings
from modelops.settings.deploy import STEP_VALIDATORS
from modelops.yamlio import load_yaml_file
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def raw():
    return load_yaml_file(ROOT / "params.yaml")


def _with_steps(raw, steps):
    data = copy.deepcopy(raw)
    data["modelops"]["deploy"]["canary"]["steps"] = steps
    return data


def test_repository_deploy_section_loads():
    deploy = load_settings(ROOT / "params.yaml").deploy
    assert deploy.canary.steps[-1] == {"setWeight": 100}
    assert set(deploy.environments) == {"staging", "production"}
    assert deploy.environments["staging"].sync == "automated"


@pytest.mark.parametrize(("steps", "path", "problem"), [
    ([{"setWeight": 10, "pause": {}}, {"setWeight": 100}], "modelops.deploy.canary.steps[0]",
     "exactly one key"),
    ([{"setWeight": 150}, {"setWeight": 100}], "modelops.deploy.canary.steps[0].setWeight",
     "between 0 and 100"),
    ([{"setWeight": 10}, {"pause": {"duration": "5m"}}],
     "modelops.deploy.canary.steps[0].setWeight",
     "last setWeight must be 100"),
    ([{"pause": {"duration": "5m"}}], "modelops.deploy.canary.steps", "no setWeight step"),
    ([{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "error-rat"}]}},
      {"setWeight": 100}], "modelops.deploy.canary.steps[1].analysis.templates[0].templateName",
     "no such analysis template"),
    ([{"setWieght": 10}, {"setWeight": 100}], "modelops.deploy.canary.steps[0].setWieght",
     "unknown step kind"),
    ([{"pause": {"duration": "5 minutes"}}, {"setWeight": 100}],
     "modelops.deploy.canary.steps[0].pause.duration", "duration"),
    ([{"setCanaryScale": {"weight": 10, "replicas": 2}}, {"setWeight": 100}],
     "modelops.deploy.canary.steps[0].setCanaryScale", "exactly one of"),
    ([], "modelops.deploy.canary.steps", "non-empty list"),
])
def test_bad_canary_steps_name_path_and_value(raw, steps, path, problem):
    with pytest.raises(ConfigError) as info:
        parse_settings(_with_steps(raw, steps), "params.yaml")
    assert info.value.path == path
    assert problem in info.value.problem
    assert "params.yaml" in str(info.value)


def test_step_kinds_come_from_the_registry(raw):
    steps = [{"setCanaryScale": {"matchTrafficWeight": True}}, {"setWeight": 30},
             {"pause": {}}, {"setWeight": 100}]
    assert {next(iter(s)) for s in steps} <= set(STEP_VALIDATORS)
    parsed = parse_settings(_with_steps(raw, steps)).deploy.canary.steps
    assert list(parsed) == steps


def test_unknown_environment_is_one_clear_error():
    deploy = load_settings(ROOT / "params.yaml").deploy
    with pytest.raises(ConfigError) as info:
        deploy.environment("qa")
    assert info.value.path == "modelops.deploy.environments"
    assert info.value.value == "qa"
    assert "staging" in str(info.value)


@pytest.mark.parametrize(("section", "key", "value", "path"), [
    ("environments", "Staging", {"namespace": "x"}, "modelops.deploy.environments.Staging"),
    ("analysis", "error_rate_max", 1.5, "modelops.deploy.analysis.error_rate_max"),
    ("analysis", "interval", "often", "modelops.deploy.analysis.interval"),
    ("prometheus", "address", "prometheus:9090", "modelops.deploy.prometheus.address"),
])
def test_bad_deploy_values(raw, section, key, value, path):
    data = copy.deepcopy(raw)
    data["modelops"]["deploy"][section][key] = value
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    assert info.value.path == path


@pytest.mark.parametrize("image", ["ghcr.io/x/serve:1\n---", "ghcr.io/x/serve:1---\nkind: x",
                                   "Ghcr.io/X/Serve", "serve:tag with space", ""])
def test_bad_image_in_params(raw, image):
    data = copy.deepcopy(raw)
    data["modelops"]["deploy"]["image"] = image
    with pytest.raises(ConfigError) as info:
        parse_settings(data)
    assert info.value.path == "modelops.deploy.image"
    assert info.value.value == image
