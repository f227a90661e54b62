"""Pipeline -> Argo Workflow: the DAG matches dvc's graph, the output passes the upstream
schema in strict mode, and submit talks to a loopback Argo Server imitation."""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import replace
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
                      params_hash="b" * 64, github_repo="octo/models")
IMAGE = "ghcr.io/example/modelops-train@sha256:" + "1" * 64
GPU_IMAGE = "ghcr.io/example/modelops-train-cuda@sha256:" + "2" * 64
WF = WorkflowParams(image=IMAGE, gpu_image=GPU_IMAGE)
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
    doc = render_workflow(graph, WF, CTX)
    assert workflow_dag(doc) == _as_tasks(graph)
    assert validate_strict(doc) == []


def test_diamond_pipeline_dag_matches(tmp_path):
    stages = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"], "e": []}
    graph = pipeline_graph(_dvc_repo(tmp_path, stages))
    assert graph == {k: sorted(v) for k, v in stages.items()}
    doc = render_workflow(graph, WF, CTX)
    assert workflow_dag(doc) == graph
    assert validate_strict(doc) == []


def test_stage_resources_retries_labels_and_provenance():
    graph = {"prepare": [], "train": ["prepare"]}
    wf = replace(WF, stages={"train": StageResources(cpu="4", memory="8Gi", gpu=1)})
    doc = render_workflow(graph, wf, CTX)
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    train = templates["stage-train"]
    tasks = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    assert tasks["train"]["template"] == "stage-train"
    assert tasks["prepare"]["template"] == "stage-default"
    assert tasks["train"]["arguments"]["parameters"] == [{"name": "stage", "value": "train"}]
    # the upstream result arrives as an artifact from the upstream task
    assert tasks["train"]["arguments"]["artifacts"] == [
        {"name": "up-0", "from": "{{tasks.prepare.outputs.artifacts.result}}"}]
    assert train["container"]["image"] == wf.gpu_image
    assert train["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    # GPU stages land on the GPU pool and tolerate its taint
    assert train["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert train["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                     "effect": "NoSchedule"}]
    # only transient failures are retried: pod errors and the task runner's exit 75
    retry = train["retryStrategy"]
    assert "retryPolicy" not in retry and retry["limit"] == 2
    assert retry["expression"] == ('lastRetry.status == "Error" || (lastRetry.status == '
                                   '"Failed" && asInt(lastRetry.exitCode) in [75])')
    assert retry["backoff"] == {"duration": "30s", "factor": 2, "maxDuration": "10m"}
    prepare = templates["stage-default"]
    assert prepare["container"]["image"] == wf.image
    assert "nodeSelector" not in prepare and "tolerations" not in prepare
    assert prepare["container"]["command"] == ["modelops-gitops", "workflow"]
    assert prepare["container"]["args"][:3] == ["task", "--stage", "{{inputs.parameters.stage}}"]
    assert prepare["container"]["workingDir"] == "/work"
    assert doc["spec"]["activeDeadlineSeconds"] == 7200
    assert doc["metadata"]["labels"]["modelops.dev/team"] == "ml-platform"
    assert doc["metadata"]["labels"]["modelops.dev/model"] == "digits-cnn"
    params = {p["name"]: p["value"] for p in doc["spec"]["arguments"]["parameters"]}
    assert params == {"source-commit": "a" * 40, "params-hash": "b" * 64}
    # the last task gets every stage's result and opens the pull request
    assert tasks["modelops-open-pr"]["dependencies"] == ["prepare", "train"]
    assert [a["name"] for a in tasks["modelops-open-pr"]["arguments"]["artifacts"]] == [
        "r-prepare", "r-train"]


def test_pods_run_as_the_image_user_and_the_cluster_stays_tidy():
    doc = render_workflow({"a": []}, WF, CTX)
    spec = doc["spec"]
    assert spec["securityContext"] == {"runAsUser": 10001, "runAsGroup": 10001,
                                       "fsGroup": 10001, "runAsNonRoot": True,
                                       "seccompProfile": {"type": "RuntimeDefault"}}
    assert spec["podGC"] == {"strategy": "OnPodSuccess"}
    assert spec["ttlStrategy"] == {"secondsAfterSuccess": 86400, "secondsAfterFailure": 604800}
    assert spec["parallelism"] == 4
    assert spec["synchronization"] == {"mutexes": [{"name": "modelops-digits-cnn"}]}
    stage = next(t for t in spec["templates"] if t["name"] == "stage-default")
    sc = stage["container"]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert validate_strict(doc) == []


def test_a_private_repository_gets_credentials_from_a_secret_never_the_command_line():
    wf = replace(WF, git_credentials_secret="model-repo-git")
    doc = render_workflow({"a": []}, wf, CTX)
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    source = templates["stage-default"]["inputs"]["artifacts"][0]
    assert source["git"]["usernameSecret"] == {"name": "model-repo-git", "key": "username"}
    assert source["git"]["passwordSecret"] == {"name": "model-repo-git", "key": "password"}
    pr = templates["modelops-open-pr"]
    mounts = {m["name"]: m for m in pr["container"]["volumeMounts"]}
    assert mounts["git-credentials"] == {"name": "git-credentials",
                                         "mountPath": "/work/secrets/git", "readOnly": True}
    assert mounts["github-token"]["mountPath"] == "/work/secrets/github"
    volumes = {v["name"]: v for v in doc["spec"]["volumes"]}
    assert volumes["git-credentials"]["secret"]["secretName"] == "model-repo-git"
    args = pr["container"]["args"]
    assert "--git-credentials" in args and "secrets/git" in args
    assert "--token-file" in args and "secrets/github/token" in args
    assert validate_strict(doc) == []


def test_compile_runs_on_the_gpu_pool_unless_the_backend_is_onnxruntime():
    from modelops.gitops.workflow import pipeline_commands, resolve_compile_stage
    from modelops.settings import load_settings

    params = load_settings(ROOT / "params.yaml")
    cmds = pipeline_commands(ROOT)
    assert resolve_compile_stage(params.workflow, params, cmds) == "compile"
    ctx = replace(CTX, compile_stage="compile")
    doc = render_workflow(pipeline_graph(ROOT), WF, ctx)
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    compile_tmpl = templates["stage-compile"]
    assert compile_tmpl["container"]["image"] == GPU_IMAGE
    assert compile_tmpl["container"]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert compile_tmpl["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    task = next(t for t in templates["main"]["dag"]["tasks"] if t["name"] == "compile")
    assert task["template"] == "stage-compile"
    onnx = replace(params, sections={**params.sections, "compile": replace(
        params.compile, backend="onnxruntime")})
    assert resolve_compile_stage(params.workflow, onnx, cmds) == ""


def test_images_must_be_pinned_by_digest():
    from modelops.settings import convert

    with pytest.raises(ConfigError) as info:
        convert(WorkflowParams, {"image": "ghcr.io/x/train:latest"}, "modelops.workflow",
                "params.yaml")
    assert "modelops.workflow.image" in str(info.value) and "digest" in str(info.value)
    assert "ghcr.io/x/train:latest" in str(info.value)
    ok = convert(WorkflowParams, {"image": "ghcr.io/x/train:1.0@sha256:" + "f" * 64},
                 "modelops.workflow", "params.yaml")
    assert ok.image.endswith("f" * 64)
    with pytest.raises(ConfigError, match="modelops.workflow.image"):
        render_workflow({"a": []}, WorkflowParams(), CTX)


def test_render_refuses_a_remote_that_dvc_config_does_not_define(tmp_path):
    from modelops.gitops.workflow import resolve_remote

    repo = _dvc_repo(tmp_path, {"a": []})
    subprocess.run([PY, "-m", "dvc", "remote", "add", "-d", "local", str(tmp_path / "r")],
                   cwd=repo, check=True)
    assert resolve_remote(repo, "") == "local"
    assert resolve_remote(repo, "local") == "local"
    with pytest.raises(ConfigError) as info:
        resolve_remote(repo, "s3")
    assert "'s3'" in str(info.value) and "remotes: local" in str(info.value)
    assert "modelops.workflow.dvc_remote" in str(info.value)
    # a remote only in config.local is not in the pods' clone
    subprocess.run([PY, "-m", "dvc", "remote", "add", "--local", "mine", str(tmp_path / "m")],
                   cwd=repo, check=True)
    with pytest.raises(ConfigError, match="'mine'"):
        resolve_remote(repo, "mine")


def test_a_sweep_renders_one_workflow_with_a_parallel_task_per_point():
    from modelops.gitops.workflow import sweep_points
    from modelops.settings.workflow import SweepParams

    wf = replace(WF, sweep=SweepParams(grid={"train.lr": [0.1, 0.2], "train.seed": [0, 1]}))
    points = sweep_points(wf)
    assert [p["overrides"] for p in points] == [
        ["train.lr=0.1", "train.seed=0"], ["train.lr=0.1", "train.seed=1"],
        ["train.lr=0.2", "train.seed=0"], ["train.lr=0.2", "train.seed=1"]]
    doc = render_workflow({"a": [], "b": ["a"]}, wf, replace(CTX, points=points))
    assert validate_strict(doc) == []
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    main = {t["name"]: t for t in templates["main"]["dag"]["tasks"]}
    fan = main["modelops-points"]
    assert len(fan["withItems"]) == 4 and fan["template"] == "point"
    assert fan["withItems"][0] == {"point": "p0",
                                   "overrides": '["train.lr=0.1", "train.seed=0"]'}
    assert main["modelops-compare"]["dependencies"] == ["modelops-points"]
    assert main["modelops-compare"]["arguments"]["parameters"][0]["value"] == \
        "{{tasks.modelops-points.outputs.parameters.result}}"
    point = {t["name"]: t for t in templates["point"]["dag"]["tasks"]}
    assert set(point) == {"a", "b", "modelops-collect"}
    assert workflow_dag(doc) == {"a": [], "b": ["a"]}


def test_sweep_settings_are_checked():
    from modelops.settings import convert
    from modelops.settings.workflow import SweepParams

    for raw, where in (({"grid": {"modelops.x": [1]}}, "grid.modelops.x"),
                       ({"grid": {"train.lr": []}}, "grid.train.lr"),
                       ({"grid": {"train.lr": [float("nan")]}}, "grid.train.lr[0]"),
                       ({"grid": {"a": [1]}, "points": [{"a": 2}]}, "points"),
                       ({"grid": {"a": list(range(9)), "b": list(range(9))}, "max_points": 50},
                        "sweep")):
        with pytest.raises(ConfigError) as info:
            convert(SweepParams, raw, "modelops.workflow.sweep", "params.yaml")
        assert where in str(info.value), (raw, str(info.value))


def test_large_pipeline_is_split_into_valid_nested_dags_keeping_every_dependency():
    import random

    rng = random.Random(1)
    graph = {f"s{i}": sorted({f"s{rng.randrange(i)}" for _ in range(min(i, 2))})
             for i in range(450)}
    doc = render_workflow(graph, WF, CTX)
    assert validate_strict(doc) == []
    entry = next(t for t in doc["spec"]["templates"] if t["name"] == "main")
    assert [t["name"] for t in entry["dag"]["tasks"]] == ["part-1", "part-2", "part-3",
                                                         "modelops-open-pr"]
    flat = workflow_dag(doc)
    assert set(flat) == set(graph)
    want, got = ancestors(graph), ancestors(flat)
    for stage in graph:
        assert want[stage] <= got[stage], stage


def test_cycle_is_reported():
    with pytest.raises(InputError, match="cycle"):
        render_workflow({"a": ["b"], "b": ["a"]}, WF, CTX)


def test_workflow_template_kind_validates():
    doc = render_workflow({"x": []}, replace(WF, kind="WorkflowTemplate"), CTX)
    assert doc["kind"] == "WorkflowTemplate"
    assert doc["metadata"]["name"] == "digits-cnn-pipeline"
    assert validate_strict(doc) == []


def test_unknown_stage_override_is_a_config_error():
    wf = replace(WF, stages={"trian": StageResources()})
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
    doc = render_workflow({"x": []}, WF, CTX)
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
    return render_workflow({"prepare": [], "train": ["prepare"]}, WF, CTX)


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


def test_pod_commands_exit_75_only_for_what_a_retry_can_fix():
    from modelops.gitops.workflow_task import EXIT_TRANSIENT, Transient, _transient_on_retryable

    def fails(retryable: bool):
        def handler(args):
            raise ExternalError("github said 502", retryable=retryable)
        return _transient_on_retryable(handler)

    with pytest.raises(Transient) as info:
        fails(True)(None)
    assert info.value.exit_code == EXIT_TRANSIENT == 75
    with pytest.raises(ExternalError) as info:
        fails(False)(None)
    assert not isinstance(info.value, Transient) and info.value.exit_code == 2


def test_the_git_credential_helper_reads_files_and_holds_no_secret(tmp_path):
    from modelops.gitops.workflow_task import credential_env

    (tmp_path / "username").write_text("x-access-token")
    (tmp_path / "password").write_text("very-secret-token")
    env = credential_env(tmp_path)
    assert "very-secret-token" not in json.dumps(env)
    assert str(tmp_path / "password") in env["GIT_CONFIG_VALUE_1"]
    (tmp_path / "password").unlink()
    with pytest.raises(InputError, match="password"):
        credential_env(tmp_path)
