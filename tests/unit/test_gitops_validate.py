"""The validator: strict CRD schemas, core kinds, naming rules, cross references; upstream
examples pass it (proof it is not too strict)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from modelops.gitops.crd import CRD_FILES, load_crd_schema, strict_schema, validate_strict
from modelops.gitops.validate import image_problem, validate_document, validate_manifests
from modelops.yamlio import load_yaml_all
from tests.conftest import ROOT

UPSTREAM = ROOT / "tests" / "data" / "gitops" / "upstream"


def _docs(folder: Path):
    docs, sources = [], []
    for f in sorted(folder.rglob("*.yaml")):
        for d in load_yaml_all(f.read_text(), str(f)):
            docs.append(d)
            sources.append(f.relative_to(UPSTREAM).as_posix())
    return docs, sources


@pytest.mark.parametrize("project", ["argo-rollouts", "argo-cd"])
def test_upstream_examples_pass_every_document_check(project):
    docs, sources = _docs(UPSTREAM / project)
    assert len(docs) >= 3
    assert validate_manifests(docs, sources, cross_refs=False) == []


def test_upstream_rollout_examples_cross_references():
    # Every template the examples name is defined among them; only the appmesh example's
    # Services live in a file upstream keeps elsewhere, and the check says exactly that.
    docs, sources = _docs(UPSTREAM / "argo-rollouts")
    problems = [p for p in validate_manifests(docs, sources) if p.message]
    assert sorted(p.path for p in problems) == ["spec.strategy.canary.canaryService",
                                                "spec.strategy.canary.stableService"]
    assert all("appmesh" in p.where for p in problems)


def _rollout():
    (doc,) = load_yaml_all((UPSTREAM / "argo-rollouts" / "rollout-canary.yaml").read_text())
    return doc


def test_strict_mode_rejects_a_misspelled_field():
    doc = _rollout()
    doc["spec"]["strategy"]["canary"]["stepz"] = doc["spec"]["strategy"]["canary"].pop("steps")
    problems = validate_strict(doc)
    assert any(p.startswith("spec.strategy.canary:") and "'stepz'" in p for p in problems)


def test_int_or_string_fields_accept_both_and_nothing_else():
    doc = _rollout()
    doc["spec"]["strategy"]["canary"]["maxSurge"] = "25%"
    assert validate_strict(doc) == []
    doc["spec"]["strategy"]["canary"]["maxSurge"] = 1
    assert validate_strict(doc) == []
    doc["spec"]["strategy"]["canary"]["maxSurge"] = [1]
    assert any("maxSurge" in p for p in validate_strict(doc))


def test_preserve_unknown_fields_subtrees_stay_open():
    schema = strict_schema({"type": "object", "properties": {
        "a": {"type": "object", "properties": {"x": {"type": "string"}}},
        "b": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
              "properties": {"x": {"type": "string"}}},
        "c": {"type": "object", "additionalProperties": {"type": "string"}}}})
    assert schema["additionalProperties"] is False
    assert schema["properties"]["a"]["additionalProperties"] is False
    assert "additionalProperties" not in schema["properties"]["b"]
    assert schema["properties"]["c"]["additionalProperties"] == {"type": "string"}


def test_crd_registry_loads_every_kind():
    for kind in CRD_FILES:
        assert load_crd_schema(kind)["properties"]["spec"]["type"] == "object"


def test_core_kinds_are_checked_strictly():
    docs = load_yaml_all((UPSTREAM / "argo-rollouts" / "rollout-canary-preview.yaml").read_text())
    service = copy.deepcopy(next(d for d in docs if d["kind"] == "Service"))
    assert validate_document(service) == []
    service["spec"]["ports"][0]["bogus"] = 1
    problems = validate_document(service)
    assert problems and "bogus" in problems[0].message


@pytest.mark.parametrize(("mutate", "path"), [
    (lambda d: d["metadata"].update(name="Bad_Name"), "metadata.name"),
    (lambda d: d["metadata"].update(name="a" * 254), "metadata.name"),
    (lambda d: d["metadata"].update(labels={"team": "a: b"}), "metadata.labels.team"),
    (lambda d: d["metadata"].update(labels={"bad key!": "x"}), "metadata.labels.bad key!"),
    (lambda d: d["metadata"].update(namespace="Prod"), "metadata.namespace"),
    (lambda d: d["spec"]["selector"]["matchLabels"].update(app="a: b"),
     "spec.selector.matchLabels.app"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].update(image="x:1\n---"),
     "spec.template.spec.containers[0].image"),
])
def test_naming_rules(mutate, path):
    doc = _rollout()
    mutate(doc)
    problems = validate_document(doc)
    assert path in [p.path for p in problems], problems


def test_cross_reference_missing_template_and_args():
    docs = load_yaml_all((UPSTREAM / "argo-rollouts" / "rollout-secret.yaml").read_text())
    assert validate_manifests(docs) == []
    rollout = next(d for d in docs if d["kind"] == "Rollout")
    step = next(s for s in rollout["spec"]["strategy"]["canary"]["steps"] if "analysis" in s)
    step["analysis"]["templates"][0]["templateName"] = "missing"
    problems = validate_manifests(docs)
    assert [p.path for p in problems] == [
        "spec.strategy.canary.steps[1].analysis.templates[0].templateName"]
    assert "'missing'" in problems[0].message


@pytest.mark.parametrize(("image", "ok"), [
    ("nginx", True), ("ghcr.io/org/serve:0.1.0", True), ("localhost:5000/a/b:v1", True),
    ("ghcr.io/org/serve@sha256:" + "a" * 64, True), ("ghcr.io/org/serve:1@sha256:" + "0" * 64,
                                                     True),
    ("ghcr.io/org/Serve:1", False), ("serve:1\n---", False), ("serve:---", False),
    ("serve@sha256:abc", False), ("", False), ("serve: x", False),
])
def test_image_references(image, ok):
    assert (image_problem(image) is None) is ok


def test_fast_crd_loader_reads_the_same_data():
    from modelops.gitops.crd import SCHEMA_DIR
    from modelops.yamlio import load_yaml, load_yaml_large

    text = (SCHEMA_DIR / CRD_FILES["AnalysisTemplate"]).read_text()
    assert load_yaml_large(text) == load_yaml(text)


def _rendered_docs():
    from modelops.gitops.render import render_docs
    from modelops.settings import load_settings
    from tests.unit.test_gitops_release import example_release

    rendered = render_docs(example_release(), load_settings(ROOT / "params.yaml"), "staging")
    return copy.deepcopy([d for name in ("drift-baseline.yaml", "rollout.yaml", "services.yaml",
                                         "analysis-templates.yaml")
                          for d in rendered[name]])


def test_the_baseline_configmap_must_be_there_and_fit():
    docs = _rendered_docs()
    assert validate_manifests(docs) == []
    # the Rollout's pods mount a ConfigMap the folder does not hold: they would never start
    missing = [d for d in docs if d["kind"] != "ConfigMap"]
    problems = validate_manifests(missing)
    assert [p.path for p in problems] == ["spec.template.spec.volumes[1].configMap.name"]
    assert "which is not in the manifests" in problems[0].message
    # over the 1 MiB a ConfigMap holds; applied server-side, no 256 KiB annotation copy counts
    big = copy.deepcopy(docs[0])
    big["data"]["drift_baseline.json"] = "x" * (1024 * 1024)
    messages = [p.message for p in validate_document(big)]
    assert any("above the 1 MiB a ConfigMap can hold" in m for m in messages)
    assert not any("last-applied" in m for m in messages)
    client_side = copy.deepcopy(docs[0])
    client_side["data"]["drift_baseline.json"] = "x" * (300 * 1024)
    del client_side["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]
    assert any("last-applied-configuration" in p.message
               for p in validate_document(client_side))
