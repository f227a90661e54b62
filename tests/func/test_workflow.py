"""Pipeline -> Argo Workflow: the DAG matches dvc's graph, the output passes the upstream
schema in strict mode, and submit talks to a loopback Argo Server imitation."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest

from modelops.errors import ConfigError, ExternalError, InputError
from modelops.gitops.argo_server import ArgoServer
from modelops.gitops.crd import validate_strict
from modelops.gitops.workflow import (
    StageResources,
    WorkflowContext,
    WorkflowParams,
    ancestors,
    pipeline_graph,
    render_workflow,
    task_name,
    workflow_dag,
)
from modelops.yamlio import load_yaml_all
from tests.argo_server_imitation import ArgoServerImitation
from tests.conftest import PY, ROOT

CTX = WorkflowContext(model="digits-cnn", team="ml-platform", source_commit="a" * 40,
                      params_hash="b" * 64)
EXAMPLES = sorted((ROOT / "tests/data/argo-workflows/examples").glob("*.yaml"))


def _dvc_repo(tmp_path: Path, stages: dict[str, list[str]]) -> Path:
    """A dvc repo whose stages depend on each other through files, as ``stages`` says."""
    from modelops.yamlio import dump_yaml

    subprocess.run([PY, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True)
    doc = {"stages": {
        name: {"cmd": f"echo {name} > {name}.out",
               "deps": [f"{u}.out" for u in ups] or [f"{name}.in"],
               "outs": [f"{name}.out"]}
        for name, ups in stages.items()}}
    for name, ups in stages.items():
        if not ups:
            (tmp_path / f"{name}.in").write_text("x")
    (tmp_path / "dvc.yaml").write_text(dump_yaml(doc))
    return tmp_path


def _as_tasks(graph: dict[str, list[str]]) -> dict[str, list[str]]:
    return {task_name(s): sorted(task_name(u) for u in ups) for s, ups in graph.items()}


def test_example_pipeline_dag_matches_dvc_graph():
    graph = pipeline_graph(ROOT)
    assert {"ingest", "prepare", "train", "export", "evaluate"} <= set(graph)
    assert "ingest" in graph["prepare"] and "train" in graph["export"]
    doc = render_workflow(graph, WorkflowParams(), CTX)
    assert workflow_dag(doc) == _as_tasks(graph)
    assert validate_strict(doc) == []


def test_diamond_pipeline_dag_matches(tmp_path):
    stages = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}
    graph = pipeline_graph(_dvc_repo(tmp_path, stages))
    assert graph == {k: sorted(v) for k, v in stages.items()}
    doc = render_workflow(graph, WorkflowParams(), CTX)
    assert workflow_dag(doc) == graph
    assert validate_strict(doc) == []


def test_stage_resources_retries_labels_and_provenance():
    graph = {"prepare": [], "train": ["prepare"]}
    wf = WorkflowParams(stages={"train": StageResources(
        cpu="4", memory="8Gi", gpu=1, node_selector={"nvidia.com/gpu.present": "true"})})
    doc = render_workflow(graph, wf, CTX)
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    train = templates["stage-train"]
    tasks = {t["name"]: t for t in templates["pipeline"]["dag"]["tasks"]}
    assert tasks["train"]["template"] == "stage-train"
    assert tasks["prepare"]["template"] == "stage-default"
    assert tasks["train"]["arguments"]["parameters"] == [{"name": "stage", "value": "train"}]
    assert train["container"]["image"] == wf.gpu_image
    assert train["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert train["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert train["retryStrategy"]["limit"] == 2
    assert train["retryStrategy"]["backoff"] == {"duration": "30s", "factor": 2,
                                                 "maxDuration": "10m"}
    prepare = templates["stage-default"]
    assert prepare["container"]["image"] == wf.image
    assert "nodeSelector" not in prepare
    env = {e["name"]: e.get("value") for e in prepare["container"]["env"]}
    assert env["STAGE"] == "{{inputs.parameters.stage}}"
    assert 'dvc repro --pull --single-item "$STAGE"' in prepare["container"]["args"][0]
    assert "dvc push --run-cache" in prepare["container"]["args"][0]
    assert doc["spec"]["activeDeadlineSeconds"] == 7200
    assert doc["metadata"]["labels"]["modelops.dev/team"] == "ml-platform"
    assert doc["metadata"]["labels"]["modelops.dev/model"] == "digits-cnn"
    params = {p["name"]: p["value"] for p in doc["spec"]["arguments"]["parameters"]}
    assert params == {"source-commit": "a" * 40, "params-hash": "b" * 64}


def test_large_pipeline_is_split_into_valid_nested_dags_keeping_every_dependency():
    import random

    rng = random.Random(1)
    graph = {f"s{i}": sorted({f"s{rng.randrange(i)}" for _ in range(min(i, 2))})
             for i in range(450)}
    doc = render_workflow(graph, WorkflowParams(), CTX)
    assert validate_strict(doc) == []
    entry = next(t for t in doc["spec"]["templates"] if t["name"] == "pipeline")
    assert [t["name"] for t in entry["dag"]["tasks"]] == ["part-1", "part-2", "part-3"]
    flat = workflow_dag(doc)
    assert set(flat) == set(graph)
    want, got = ancestors(graph), ancestors(flat)
    for stage in graph:
        assert want[stage] <= got[stage], stage


def test_cycle_is_reported():
    with pytest.raises(InputError, match="cycle"):
        render_workflow({"a": ["b"], "b": ["a"]}, WorkflowParams(), CTX)


def test_workflow_template_kind_validates():
    doc = render_workflow({"x": []}, WorkflowParams(kind="WorkflowTemplate"), CTX)
    assert doc["kind"] == "WorkflowTemplate"
    assert doc["metadata"]["name"] == "digits-cnn-pipeline"
    assert validate_strict(doc) == []


def test_unknown_stage_override_is_a_config_error():
    wf = WorkflowParams(stages={"trian": StageResources()})
    with pytest.raises(ConfigError) as info:
        render_workflow({"train": []}, wf, CTX)
    assert "modelops.workflow.stages.trian" in str(info.value)


def test_bad_quantity_in_params_names_the_field():
    from modelops.settings import convert

    with pytest.raises(ConfigError) as info:
        convert(WorkflowParams, {"stages": {"train": {"cpu": "four"}}}, "modelops.workflow",
                "params.yaml")
    assert "modelops.workflow.stages.train.cpu" in str(info.value) and "'four'" in str(info.value)


def test_strict_mode_rejects_a_misspelled_field():
    doc = render_workflow({"x": []}, WorkflowParams(), CTX)
    stage = next(t for t in doc["spec"]["templates"] if t["name"] == "stage-default")
    stage["retryStrategy"]["limt"] = 3
    problems = validate_strict(doc)
    assert problems and "limt" in problems[0]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_upstream_examples_pass_the_same_validator(path):
    docs = load_yaml_all(path.read_text(), str(path))
    assert docs
    for doc in docs:
        assert validate_strict(doc) == []


# ----------------------------------------------------------------------------- submit

def _doc() -> dict:
    return render_workflow({"prepare": [], "train": ["prepare"]}, WorkflowParams(), CTX)


def test_submit_and_follow_to_success():
    with ArgoServerImitation() as argo:
        client = ArgoServer(argo.url, "good-token", sleep=lambda s: None)
        created = client.submit(_doc())
        name = created["metadata"]["name"]
        assert name.startswith("digits-cnn-pipeline-")
        out = io.StringIO()
        final = client.follow("ml-training", name, poll=0, out=out)
    assert final["status"]["phase"] == "Succeeded"
    log = out.getvalue()
    assert "Pending" in log and "Running" in log and "train: Succeeded" in log
    method, path, headers = argo.requests[0]
    assert (method, path) == ("POST", "/api/v1/workflows/ml-training")


def test_submit_bad_token_is_not_retried_and_not_printed():
    with ArgoServerImitation() as argo:
        client = ArgoServer(argo.url, "secret-wrong-token", sleep=lambda s: None)
        with pytest.raises(ExternalError) as info:
            client.submit(_doc())
        assert len(argo.requests) == 1
    assert info.value.retryable is False
    assert "401" in str(info.value)
    assert "secret-wrong-token" not in str(info.value)


def test_server_errors_are_retried_with_a_bound():
    with ArgoServerImitation() as argo:
        argo.fail_next = [502, 503]
        client = ArgoServer(argo.url, "good-token", sleep=lambda s: None)
        created = client.submit(_doc())
        assert created["metadata"]["name"]
        argo.fail_next = [500] * 10
        with pytest.raises(ExternalError) as info:
            client.submit(_doc())
    assert info.value.retryable is True
    assert "500" in str(info.value)


def test_server_rejects_a_schema_violation_as_bad_input():
    doc = _doc()
    doc["spec"]["entrypointt"] = "x"
    with ArgoServerImitation() as argo:
        client = ArgoServer(argo.url, "good-token", sleep=lambda s: None)
        with pytest.raises(InputError) as info:
            client.submit(doc)
    assert "entrypointt" in str(info.value)


def test_cli_submit_follows_and_fails_on_failed_workflow(tmp_path):
    with ArgoServerImitation() as argo:
        env = {"ARGO_TOKEN": "good-token"}
        ok = subprocess.run(
            [PY, "-m", "modelops.gitops", "workflow", "submit", "--repo", str(ROOT),
             "--argo-server",
             argo.url, "--poll", "0", "--source-commit", "c" * 40],
            capture_output=True, text=True, env={**_env(), **env}, cwd=ROOT, timeout=120)
        assert ok.returncode == 0, ok.stderr
        assert "Succeeded" in ok.stdout and "evaluate: Succeeded" in ok.stdout
        argo.final_phase = "Failed"
        bad = subprocess.run(
            [PY, "-m", "modelops.gitops", "workflow", "submit", "--repo", str(ROOT),
             "--argo-server",
             argo.url, "--poll", "0", "--source-commit", "c" * 40],
            capture_output=True, text=True, env={**_env(), **env}, cwd=ROOT, timeout=120)
        no_token = subprocess.run(
            [PY, "-m", "modelops.gitops", "workflow", "submit", "--repo", str(ROOT),
             "--argo-server",
             argo.url, "--source-commit", "c" * 40],
            capture_output=True, text=True, env={k: v for k, v in _env().items()
                                                 if k != "ARGO_TOKEN"}, cwd=ROOT, timeout=120)
    assert bad.returncode == 2 and "ended Failed" in bad.stderr
    assert no_token.returncode == 2 and "ARGO_TOKEN" in no_token.stderr


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
