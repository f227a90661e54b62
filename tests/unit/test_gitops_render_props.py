"""Property tests: hostile strings in every templated field cannot add keys or documents.

Values enter templates only through the JSON filter; whatever a field holds, the parsed
manifests hold exactly that value, the same documents and the same keys.
"""

from __future__ import annotations

import dataclasses
import json

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from modelops.errors import ValidationError
from modelops.gitops.release import OPTIONAL_FIELDS, Release
from modelops.gitops.render import (
    BASELINE_KEY,
    dump_manifests,
    render_docs,
    render_template,
)
from modelops.gitops.templating import to_json
from modelops.settings import load_settings
from modelops.yamlio import load_yaml_all
from tests.conftest import ROOT
from tests.unit.test_gitops_release import example_release

PARAMS = load_settings(ROOT / "params.yaml")
HOSTILE = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.sampled_from(["---", "\n---\nkind: Secret", "a: b", "{x: 1}", "[1]", "yes", "on", "~",
                     "null", "0x10", "1e3", "'", '"', "\\", "#c", "&a *a", "!!python/object",
                     "{{args.model}}", "{% raw %}", "\u2028", "\x85", "\ufeff", "\t", "\r\n"]),
)
# string fields; the structured optional ones (drift_baseline, compute) have their own tests
FIELDS = [f.name for f in dataclasses.fields(Release) if f.name not in OPTIONAL_FIELDS]


def _shape(node):
    if isinstance(node, dict):
        return {k: _shape(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_shape(v) for v in node]
    return type(node).__name__


@settings(max_examples=100, deadline=None)
@given(HOSTILE)
def test_json_filter_round_trips_any_string(value):
    (doc,) = load_yaml_all(f"a: {to_json(value)}\nb: 1\n")
    assert doc == {"a": value, "b": 1}


BASELINE = {name: docs for name, docs in render_docs(example_release(), PARAMS, "staging").items()}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(FIELDS), value=HOSTILE)
def test_hostile_release_fields_cannot_change_structure(field, value):
    release = dataclasses.replace(example_release(), **{field: value})
    rendered = render_docs(release, PARAMS, "staging")  # no field checks: worst case
    for name, docs in rendered.items():
        try:
            text = dump_manifests(docs, name).decode()
        except ValidationError:  # a value YAML cannot carry: refused, never written changed
            assume(False)
        parsed = load_yaml_all(text)
        assert parsed == docs  # written bytes read back as exactly these values
        assert len(parsed) == len(BASELINE[name])
        if field != "model":  # the model name is also a dict-free name component
            assert _shape(parsed) == _shape(BASELINE[name])
    (rollout,) = rendered["rollout.yaml"]
    pod = rollout["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in
           pod["containers"][0]["env"] + pod["initContainers"][0]["env"]}
    expected = {"model": env["MODEL_NAME"], "version": env["MODEL_VERSION"],
                "sha256": env["MODEL_SHA256"], "artifact_uri": env["MODEL_URI"],
                "image": pod["containers"][0]["image"],
                "source_repo": rollout["metadata"]["annotations"]["modelops.io/source-repo"],
                "source_commit": rollout["metadata"]["annotations"]["modelops.io/source-commit"],
                "dvc_md5": rollout["metadata"]["annotations"]["modelops.io/dvc-md5"],
                "dvc_lock_sha256":
                    rollout["metadata"]["annotations"]["modelops.io/dvc-lock-sha256"]}
    assert expected[field] == value


@settings(max_examples=40, deadline=None)
@given(value=HOSTILE)
def test_hostile_values_in_every_template_variable(value):
    # Every context value of the kustomization template replaced by a hostile string.
    docs = render_template("kustomization.yaml.j2", {"kustomize_resources": [value, value]})
    assert docs == [{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                     "resources": [value, value]}]


def _replace_params(field: str, value: str):
    """PARAMS with one string knob of deploy/model set to ``value`` (bypassing its checks)."""
    deploy, model = PARAMS.deploy, PARAMS.model
    if field == "team":
        model = dataclasses.replace(model, team=value)
    elif field in ("address",):
        deploy = dataclasses.replace(
            deploy, prometheus=dataclasses.replace(deploy.prometheus, address=value))
    elif field in ("repo_url", "target_revision", "project"):
        deploy = dataclasses.replace(
            deploy, argocd=dataclasses.replace(deploy.argocd, **{field: value}))
    elif field in ("namespace", "cluster"):
        envs = dict(deploy.environments)
        envs["staging"] = dataclasses.replace(envs["staging"], **{field: value})
        deploy = dataclasses.replace(deploy, environments=envs)
    elif field in ("interval", "rate_window"):
        deploy = dataclasses.replace(
            deploy, analysis=dataclasses.replace(deploy.analysis, **{field: value}))
    sections = {**PARAMS.sections, "deploy": deploy, "model": model}
    return dataclasses.replace(PARAMS, sections=sections)


PARAM_FIELDS = ["team", "address", "repo_url", "target_revision", "project", "namespace",
                "cluster", "interval"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(PARAM_FIELDS), value=HOSTILE)
def test_hostile_params_values_cannot_change_structure(field, value):
    rendered = render_docs(example_release(), _replace_params(field, value), "staging")
    for name, docs in rendered.items():
        try:
            text = dump_manifests(docs, name).decode()
        except ValidationError:
            assume(False)
        parsed = load_yaml_all(text)
        assert parsed == docs
        assert len(parsed) == len(BASELINE[name])
        assert _shape(parsed) == _shape(BASELINE[name])
    flat = repr(rendered)
    assert repr(value)[1:-1] in flat or value == ""


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=HOSTILE)
def test_hostile_strings_in_the_drift_baseline_stay_inside_its_configmap(value):
    baseline = {**example_release().drift_baseline, "split": value, "classes": [value] * 10}
    release = dataclasses.replace(example_release(), drift_baseline=baseline)
    docs = render_docs(release, PARAMS, "staging")["drift-baseline.yaml"]
    try:
        text = dump_manifests(docs, "drift-baseline.yaml").decode()
    except ValidationError:
        assume(False)
    parsed = load_yaml_all(text)
    assert _shape(parsed) == _shape(BASELINE["drift-baseline.yaml"])
    assert json.loads(parsed[0]["data"][BASELINE_KEY]) == baseline
