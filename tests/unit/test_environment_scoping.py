"""What keeps two environments apart in one Prometheus and one Grafana: the namespace matcher
of every query, and a dashboard uid per environment."""

from __future__ import annotations

import pytest

from modelops import contracts
from modelops.gitops.dashboard import dashboard_uid


def test_the_selector_puts_the_namespace_first_and_the_extra_matchers_last():
    assert contracts.selector("m") == '{model="m"}'
    assert contracts.selector("m", "ml-prod") == '{namespace="ml-prod",model="m"}'
    assert contracts.selector("m", "ml-prod", 'code!~"2.."', 'le="0.6"') == \
        '{namespace="ml-prod",model="m",code!~"2..",le="0.6"}'


@pytest.mark.parametrize(("model", "env"), [
    ("digits-cnn", "production"), ("m" * 63, "production"), ("a" * 20, "b" * 11),
    ("a" * 20, "b" * 10)])
def test_a_dashboard_uid_per_environment_within_grafanas_40_characters(model, env):
    uids = {dashboard_uid(model, e) for e in (env, "staging", None)}
    assert len(uids) == 3 and all(0 < len(u) <= 40 for u in uids)
    assert dashboard_uid(model, env) == dashboard_uid(model, env)  # stable across renders
    short = f"modelops-{model}-{env}"
    assert (dashboard_uid(model, env) == short) == (len(short) <= 40)


def test_placeholder_defaults_are_named_before_they_reach_a_cluster():
    from modelops.settings.deploy import DEFAULT_GITOPS_URL, DEFAULT_IMAGE, DeployParams

    deploy = DeployParams()
    warnings = deploy.placeholders()
    assert len(warnings) == 2
    assert DEFAULT_IMAGE in warnings[0] and "modelops.deploy.image" in warnings[0]
    assert DEFAULT_GITOPS_URL in warnings[1] and "argocd.repo_url" in warnings[1]
    # a release built with --image is not the placeholder
    assert len(deploy.placeholders("registry.acme.io/serve:1.2")) == 1
