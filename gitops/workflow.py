"""Run the DVC pipeline on Argo Workflows: ``modelops-gitops workflow render|submit|sweep``.

The stage graph comes from DVC itself (``Repo.index.graph``), so the Workflow's DAG has exactly
the stages and dependencies of ``dvc.yaml``. What comes back is what ``dvc repro`` gives:

- every task checks out the source commit (an Argo ``git`` input artifact, with the
  repository's credentials from a Secret when it is private) and receives the **results of its
  upstream tasks** as Argo artifacts: each upstream stage's new ``dvc.lock`` entry and its
  ``cache: false`` outputs. The task merges those entries into its ``dvc.lock``, so
  ``dvc repro --pull --single-item <stage>`` pulls the upstream outputs *at their new hashes*
  from the shared DVC remote and reruns the stage when they changed (a fresh clone alone would
  restore the committed, stale results). It then pushes its outputs and run-cache entry and
  hands its own result on (:mod:`modelops.gitops.workflow_task`);
- a last task applies every stage's result to a fresh clone and opens a pull request with the
  updated ``dvc.lock`` and the git-tracked outputs (metrics, compute records, card, plots)
  through the suite's one GitHub client, so git can name, pull and cost the model it trained;
- a sweep (``workflow.sweep``) fans the pipeline out over its points in parallel (``withItems``)
  and ends in one comparison report and one pull request for the best point (by the model's
  headline metric).

Around that: the DVC remote must exist in ``.dvc/config`` (render names the one it cannot find);
the pods run as the training image's user (``securityContext`` with ``fsGroup``); GPU stages and
the TensorRT compile stage run on the GPU pool (node selector and tolerations); images are
pinned by digest; only transient failures are retried (a retry ``expression``: pod errors and the
task runner's exit code 75); ``podGC``, ``ttlStrategy``, ``parallelism`` and a per-model mutex
keep a busy cluster tidy.

The manifest is built from Hera's models (``hera.workflows.models``): they are generated from the
Workflow schema and maintained in the Argo project's own organisation, so a misspelled field
fails when it is built; the result is a plain dict that is validated against the upstream CRD
in strict mode before anything is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, ExternalError, InputError, ValidationError
from modelops.fsutil import write_output
from modelops.git import git_text
from modelops.gitops import workflow_task
from modelops.gitops.dvcgraph import (
    _groups,
    _read_pipeline,
    _stage_name,
    ancestors,
    pipeline_commands,
    pipeline_graph,
    topological_order,
)
from modelops.gitops.sweep import sweep_points
from modelops.settings import load_settings
from modelops.settings.workflow import StageResources, WorkflowParams
from modelops.yamlio import dump_yaml

# Container paths, all under the working directory so every task command uses relative ones.
WORKDIR = "/work"
SRC = "src"
INPUTS = "in"
OUT = "out"
SECRETS = "secrets"
TASK_COMMAND = ["modelops-gitops", "workflow"]
MAX_DAG_TASKS = 200  # the Workflow CRD's maxItems for dag.tasks (and for spec.templates)
OPEN_PR = "modelops-open-pr"
COLLECT = "modelops-collect"
POINTS = "modelops-points"
COMPARE = "modelops-compare"
RESERVED = (OPEN_PR, COLLECT, POINTS, COMPARE)
_COMPILE_CMD = re.compile(r"modelops[.-]ci\"?'?\s+compile\b|modelops-ci\s+compile\b")


# --------------------------------------------------------------------------- the graph

def task_name(stage: str) -> str:
    """DVC stage names (``train``, ``eval@1``, ``dir/dvc.yaml:x``) as Argo task names."""
    name = re.sub(r"[^a-z0-9-]+", "-", stage.lower()).strip("-")
    if not name:
        raise InputError(f"stage name {stage!r} has no usable characters for an argo task name")
    if name[0].isdigit():
        name = f"s-{name}"  # Argo: a task name cannot begin with a digit when it has deps
    return name[:63].rstrip("-")


# --------------------------------------------------------------------------- render

@dataclass(frozen=True)
class WorkflowContext:
    """What the renderer needs beyond the settings; :func:`build` fills it from the repo."""

    model: str
    team: str
    source_commit: str
    params_hash: str
    env: str = "training"
    dvc_remote: str = ""        # resolved remote name ('' = the repository's default)
    compile_stage: str = ""     # the stage that runs on the GPU pool for TensorRT
    github_repo: str = ""       # OWNER/NAME the pull request goes to ('' = no pull request)
    points: list[dict[str, Any]] = field(default_factory=list)  # the sweep's points


def params_hash(params_file: str | Path) -> str:
    return hashlib.sha256(Path(params_file).read_bytes()).hexdigest()


def _m():
    from hera.workflows import models

    return models


def _stage_resources(stage: str, wf: WorkflowParams, ctx: WorkflowContext) -> StageResources:
    if stage in wf.stages:
        return wf.stages[stage]
    if stage == ctx.compile_stage:
        return wf.compile_resources
    return wf.default_resources


def _resources(res: StageResources) -> Any:
    m = _m()
    requests: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, Any] = {"memory": res.memory}
    if res.gpu:
        limits["nvidia.com/gpu"] = str(res.gpu)
        requests["nvidia.com/gpu"] = str(res.gpu)
    return m.ResourceRequirements(requests=requests, limits=limits)


def _need_image(wf: WorkflowParams, gpu: bool) -> str:
    image = (wf.gpu_image or wf.image) if gpu else wf.image
    if not image:
        key = "gpu_image" if gpu and not wf.image else "image"
        raise ConfigError("params.yaml", f"modelops.workflow.{key}", image,
                          "required to render a workflow: the training image, by digest",
                          hint="build docker/train.Dockerfile (and train-cuda.Dockerfile for "
                               "GPU stages) and set IMAGE@sha256:<digest>")
    return image


class _Builder:
    """Builds the templates of one Workflow (shared by the plain and the sweep layout)."""

    def __init__(self, graph: dict[str, list[str]], wf: WorkflowParams, ctx: WorkflowContext):
        self.graph, self.wf, self.ctx = graph, wf, ctx
        self.m = _m()
        self.names = {stage: task_name(stage) for stage in graph}
        if len(set(self.names.values())) != len(self.names):
            raise InputError("two dvc stages map to the same argo task name: "
                             f"{sorted(self.names.items(), key=lambda kv: kv[1])}")
        clash = sorted(set(self.names.values()) & set(RESERVED))
        if clash:
            raise InputError(f"dvc stage {clash[0]!r} has a name the workflow reserves",
                             hint="rename the stage")
        self.templates: dict[str, Any] = {}
        self.profile_slots: dict[str, int] = {}

    # -- shared pieces -----------------------------------------------------------------
    def env(self, extra: list[Any] | None = None) -> list[Any]:
        m = self.m
        return [
            m.EnvVar(name="MODELOPS_RUN_KIND", value="workflow"),
            m.EnvVar(name="MODELOPS_RUN_ID", value="{{workflow.uid}}"),
            m.EnvVar(name="MODELOPS_WORKFLOW", value="{{workflow.name}}"),
            m.EnvVar(name="MODELOPS_ENV", value=self.ctx.env),
            m.EnvVar(name="SOURCE_COMMIT", value="{{workflow.parameters.source-commit}}"),
            m.EnvVar(name="PARAMS_HASH", value="{{workflow.parameters.params-hash}}"),
            m.EnvVar(name="DVC_NO_ANALYTICS", value="1"),
            m.EnvVar(name="GIT_TERMINAL_PROMPT", value="0"),
            *(extra or []),
        ]

    def env_from(self) -> list[Any] | None:
        if not self.wf.credentials_secret:
            return None
        return [self.m.EnvFromSource(secret_ref=self.m.SecretEnvSource(
            name=self.wf.credentials_secret))]

    def source_artifact(self) -> Any:
        m, wf = self.m, self.wf
        secret = wf.git_credentials_secret
        return m.Artifact(
            name="source", path=f"{WORKDIR}/{SRC}",
            git=m.GitArtifact(
                repo=wf.source_repo, revision="{{workflow.parameters.source-commit}}",
                username_secret=m.SecretKeySelector(name=secret, key="username")
                if secret else None,
                password_secret=m.SecretKeySelector(name=secret, key="password")
                if secret else None))

    def mounts(self, *, git: bool = False, github: bool = False) -> list[Any]:
        m = self.m
        out = [m.VolumeMount(name="work", mount_path=WORKDIR)]
        if git and self.wf.git_credentials_secret:
            out.append(m.VolumeMount(name="git-credentials", mount_path=f"{WORKDIR}/{SECRETS}/git",
                                     read_only=True))
        if github:
            out.append(m.VolumeMount(name="github-token",
                                     mount_path=f"{WORKDIR}/{SECRETS}/github", read_only=True))
        return out

    def container(self, image: str, args: list[str], res: StageResources, *, git: bool = False,
                  github: bool = False, env: list[Any] | None = None) -> Any:
        m = self.m
        return m.Container(
            image=image, command=list(TASK_COMMAND), args=args, working_dir=WORKDIR,
            env=self.env(env), env_from=self.env_from(), resources=_resources(res),
            volume_mounts=self.mounts(git=git, github=github),
            security_context=m.SecurityContext(
                allow_privilege_escalation=False, run_as_non_root=True,
                capabilities=m.Capabilities(drop=["ALL"])))

    def retry(self) -> Any:
        r = self.wf.retry
        m = self.m
        # No retryPolicy: from Argo 3.5 on, an expression alone decides (docs/retries.md).
        return m.RetryStrategy(limit=r.limit, expression=r.expression,
                               backoff=m.Backoff(duration=r.backoff, factor=r.factor,
                                                 max_duration=r.max_duration))

    def placement(self, res: StageResources) -> tuple[dict[str, str] | None, list[Any] | None]:
        if not res.gpu:
            return (dict(res.node_selector) or None,
                    [self.m.Toleration(**t.as_k8s()) for t in res.tolerations] or None)
        selector = {**self.wf.gpu_pool.node_selector, **res.node_selector}
        tolerations = [*self.wf.gpu_pool.tolerations, *res.tolerations]
        return selector or None, [self.m.Toleration(**t.as_k8s()) for t in tolerations] or None

    def git_env(self) -> list[Any]:
        pr, m = self.wf.pull_request, self.m
        return [m.EnvVar(name="GIT_AUTHOR_NAME", value=pr.author_name),
                m.EnvVar(name="GIT_AUTHOR_EMAIL", value=pr.author_email),
                m.EnvVar(name="GIT_COMMITTER_NAME", value=pr.author_name),
                m.EnvVar(name="GIT_COMMITTER_EMAIL", value=pr.author_email)]

    # -- stage templates ---------------------------------------------------------------
    def profile(self, stage: str) -> str:
        if stage in self.wf.stages:
            return self.names[stage]
        return "compile" if stage == self.ctx.compile_stage else "default"

    def stage_template(self, profile: str, slots: int, sample_stage: str) -> Any:
        m, wf = self.m, self.wf
        res = _stage_resources(sample_stage, wf, self.ctx)
        selector, tolerations = self.placement(res)
        args = ["task", "--stage", "{{inputs.parameters.stage}}",
                "--overrides", "{{inputs.parameters.overrides}}",
                "--src", SRC, "--inputs", INPUTS, "--out", OUT]
        if self.ctx.dvc_remote:
            args += ["--remote", self.ctx.dvc_remote]
        return m.Template(
            name=f"stage-{profile}",
            inputs=m.Inputs(
                parameters=[m.Parameter(name="stage"),
                            m.Parameter(name="overrides", default="[]")],
                artifacts=[self.source_artifact()] + [
                    m.Artifact(name=f"up-{i}", path=f"{WORKDIR}/{INPUTS}/{i}", optional=True)
                    for i in range(slots)]),
            outputs=m.Outputs(artifacts=[m.Artifact(name="result", path=f"{WORKDIR}/{OUT}")]),
            container=self.container(_need_image(wf, bool(res.gpu)), args, res),
            node_selector=selector, tolerations=tolerations, retry_strategy=self.retry(),
            active_deadline_seconds=wf.stage_deadline_seconds)

    def stage_tasks(self, stages: list[str], *, outside: dict[str, str] | None = None,
                    overrides: str | None = None) -> list[Any]:
        """DAG tasks for ``stages``; an upstream stage outside the list comes from
        ``outside[stage]`` (an artifact reference) instead of a sibling task."""
        m = self.m
        inside = set(stages)
        tasks = []
        for stage in stages:
            ups = sorted(set(self.graph[stage]))
            profile = self.profile(stage)
            self.profile_slots[profile] = max(self.profile_slots.get(profile, 0), len(ups))
            self.templates.setdefault(profile, stage)
            arts = []
            for i, u in enumerate(ups):
                ref = (f"{{{{tasks.{self.names[u]}.outputs.artifacts.result}}}}" if u in inside
                       else (outside or {})[u])
                arts.append(m.Artifact(name=f"up-{i}", from_=ref))
            params = [m.Parameter(name="stage", value=stage)]
            if overrides is not None:
                params.append(m.Parameter(name="overrides", value=overrides))
            deps = [self.names[u] for u in ups if u in inside]
            tasks.append(m.DAGTask(name=self.names[stage], template=f"stage-{profile}",
                                   arguments=m.Arguments(parameters=params,
                                                         artifacts=arts or None),
                                   dependencies=deps or None))
        return tasks

    def built_stage_templates(self) -> list[Any]:
        return [self.stage_template(profile, self.profile_slots[profile], sample)
                for profile, sample in sorted(self.templates.items())]

    # -- the last tasks ----------------------------------------------------------------
    def results_inputs(self) -> list[Any]:
        m = self.m
        return [m.Artifact(name=f"r-{self.names[s]}", path=f"{WORKDIR}/{INPUTS}/{self.names[s]}")
                for s in topological_order(self.graph)]

    def pr_args(self) -> list[str]:
        pr = self.wf.pull_request
        args = ["--src", SRC, "--inputs", INPUTS, "--out", OUT,
                "--workflow", "{{workflow.name}}", "--base", pr.base,
                "--branch-prefix", pr.branch_prefix]
        if self.ctx.github_repo:
            args += ["--github-repo", self.ctx.github_repo, "--github-api-url",
                     pr.github_api_url, "--token-file", f"{SECRETS}/github/token"]
        if self.wf.git_credentials_secret:
            args += ["--git-credentials", f"{SECRETS}/git"]
        return args

    def small(self) -> StageResources:
        return StageResources(cpu="500m", memory="1Gi")

    def open_pr_template(self) -> Any:
        m = self.m
        return m.Template(
            name=OPEN_PR,
            inputs=m.Inputs(artifacts=[self.source_artifact(), *self.results_inputs()]),
            outputs=m.Outputs(artifacts=[m.Artifact(name="summary", path=f"{WORKDIR}/{OUT}")]),
            container=self.container(_need_image(self.wf, False), ["open-pr", *self.pr_args()],
                                     self.small(), git=True, github=bool(self.ctx.github_repo),
                                     env=self.git_env()),
            retry_strategy=self.retry(), active_deadline_seconds=self.wf.stage_deadline_seconds)

    def collect_template(self) -> Any:
        m = self.m
        args = ["collect", "--point", "{{inputs.parameters.point}}",
                "--overrides", "{{inputs.parameters.overrides}}", *self.pr_args()]
        return m.Template(
            name=COLLECT,
            inputs=m.Inputs(parameters=[m.Parameter(name="point"),
                                        m.Parameter(name="overrides")],
                            artifacts=[self.source_artifact(), *self.results_inputs()]),
            outputs=m.Outputs(parameters=[m.Parameter(
                name="result", value_from=m.ValueFrom(path=f"{WORKDIR}/{OUT}/result.json"))]),
            container=self.container(_need_image(self.wf, False), args, self.small(), git=True,
                                     env=self.git_env()),
            retry_strategy=self.retry(), active_deadline_seconds=self.wf.stage_deadline_seconds)

    def compare_template(self) -> Any:
        m = self.m
        args = ["compare", "--results", "{{inputs.parameters.results}}", *self.pr_args()]
        return m.Template(
            name=COMPARE,
            inputs=m.Inputs(parameters=[m.Parameter(name="results")],
                            artifacts=[self.source_artifact()]),
            outputs=m.Outputs(artifacts=[m.Artifact(name="report", path=f"{WORKDIR}/{OUT}")]),
            container=self.container(_need_image(self.wf, False), args, self.small(), git=True,
                                     github=bool(self.ctx.github_repo), env=self.git_env()),
            retry_strategy=self.retry(), active_deadline_seconds=self.wf.stage_deadline_seconds)

    def volumes(self, *, github: bool) -> list[Any]:
        m = self.m
        out = [m.Volume(name="work", empty_dir=m.EmptyDirVolumeSource())]
        if self.wf.git_credentials_secret:
            out.append(m.Volume(name="git-credentials", secret=m.SecretVolumeSource(
                secret_name=self.wf.git_credentials_secret, default_mode=0o440)))
        if github:
            out.append(m.Volume(name="github-token", secret=m.SecretVolumeSource(
                secret_name=self.wf.pull_request.token_secret, default_mode=0o440,
                items=[m.KeyToPath(key="token", path="token")])))
        return out


def render_workflow(graph: dict[str, list[str]], wf: WorkflowParams,
                    ctx: WorkflowContext) -> dict[str, Any]:
    """The Workflow (or WorkflowTemplate) dict for ``graph``.

    One DAG task per stage; stages with the same resources share one container template (the
    stage name is a parameter; its upstream results arrive in optional artifact slots
    ``up-0..``). A DAG holds at most 200 tasks (the CRD's limit), so larger pipelines are split,
    in dependency order, into nested DAGs; a group receives the results of upstream stages in
    other groups as its own input artifacts and hands all of its stages' results on. With
    ``ctx.points`` the pipeline runs once per point (``withItems``) and ends in a comparison.
    """
    m = _m()
    unknown = sorted(set(wf.stages) - set(graph))
    if unknown:
        raise ConfigError("params.yaml", f"modelops.workflow.stages.{unknown[0]}", unknown[0],
                          "names no stage of dvc.yaml",
                          hint=f"stages are: {', '.join(graph)}")
    if len(wf.stages) > MAX_DAG_TASKS - 10:
        raise ConfigError("params.yaml", "modelops.workflow.stages", f"{len(wf.stages)} entries",
                          f"at most {MAX_DAG_TASKS - 10} stages can have their own resources")
    order = topological_order(graph)
    b = _Builder(graph, wf, ctx)
    names = b.names
    pr_enabled = wf.pull_request.enabled
    templates: list[Any] = []
    main: list[Any] = []
    if ctx.points:
        if len(order) > MAX_DAG_TASKS - 1:
            raise InputError(f"a sweep of a {len(order)}-stage pipeline does not fit one DAG "
                             f"({MAX_DAG_TASKS - 1} stages at most)")
        items = [{"point": p["id"], "overrides": json.dumps(p["overrides"])} for p in ctx.points]
        inner = b.stage_tasks(order, overrides="{{inputs.parameters.overrides}}")
        inner.append(m.DAGTask(
            name=COLLECT, template=COLLECT, dependencies=[names[s] for s in order],
            arguments=m.Arguments(
                parameters=[m.Parameter(name="point", value="{{inputs.parameters.point}}"),
                            m.Parameter(name="overrides",
                                        value="{{inputs.parameters.overrides}}")],
                artifacts=[m.Artifact(name=f"r-{names[s]}",
                                      from_=f"{{{{tasks.{names[s]}.outputs.artifacts.result}}}}")
                           for s in order])))
        templates.append(m.Template(
            name="point", dag=m.DAGTemplate(tasks=inner),
            inputs=m.Inputs(parameters=[m.Parameter(name="point"),
                                        m.Parameter(name="overrides")]),
            outputs=m.Outputs(parameters=[m.Parameter(name="result", value_from=m.ValueFrom(
                parameter=f"{{{{tasks.{COLLECT}.outputs.parameters.result}}}}"))])))
        templates += [b.collect_template(), b.compare_template()]
        main = [m.DAGTask(name=POINTS, template="point", with_items=items,
                          arguments=m.Arguments(parameters=[
                              m.Parameter(name="point", value="{{item.point}}"),
                              m.Parameter(name="overrides", value="{{item.overrides}}")])),
                m.DAGTask(name=COMPARE, template=COMPARE, dependencies=[POINTS],
                          arguments=m.Arguments(parameters=[m.Parameter(
                              name="results",
                              value=f"{{{{tasks.{POINTS}.outputs.parameters.result}}}}")]))]
    else:
        groups = _groups(order, MAX_DAG_TASKS - 1)
        result_ref: dict[str, str] = {}
        if len(groups) == 1:
            main = b.stage_tasks(order)
            result_ref = {s: f"{{{{tasks.{names[s]}.outputs.artifacts.result}}}}" for s in order}
        else:
            group_of = {stage: i for i, group in enumerate(groups) for stage in group}
            for i, group in enumerate(groups):
                members = set(group)
                outside = sorted({u for s in group for u in graph[s] if u not in members})
                tasks = b.stage_tasks(group, outside={
                    u: f"{{{{inputs.artifacts.r-{names[u]}}}}}" for u in outside})
                templates.append(m.Template(
                    name=f"pipeline-part-{i + 1}", dag=m.DAGTemplate(tasks=tasks),
                    inputs=m.Inputs(artifacts=[
                        m.Artifact(name=f"r-{names[u]}") for u in outside]) if outside else None,
                    outputs=m.Outputs(artifacts=[
                        m.Artifact(name=f"r-{names[s]}",
                                   from_=f"{{{{tasks.{names[s]}.outputs.artifacts.result}}}}")
                        for s in group])))
                needs = sorted({group_of[u] for u in outside})
                main.append(m.DAGTask(
                    name=f"part-{i + 1}", template=f"pipeline-part-{i + 1}",
                    dependencies=[f"part-{j + 1}" for j in needs] or None,
                    arguments=m.Arguments(artifacts=[
                        m.Artifact(name=f"r-{names[u]}",
                                   from_=f"{{{{tasks.part-{group_of[u] + 1}.outputs.artifacts."
                                         f"r-{names[u]}}}}}") for u in outside]) if outside
                    else None))
            result_ref = {s: f"{{{{tasks.part-{group_of[s] + 1}.outputs.artifacts.r-{names[s]}}}}}"
                          for s in order}
        if pr_enabled:
            templates.append(b.open_pr_template())
            deps = sorted({t.name for t in main})
            main.append(m.DAGTask(name=OPEN_PR, template=OPEN_PR, dependencies=deps,
                                  arguments=m.Arguments(artifacts=[
                                      m.Artifact(name=f"r-{names[s]}", from_=result_ref[s])
                                      for s in order])))
    templates = [m.Template(name="main", dag=m.DAGTemplate(tasks=main)),
                 *b.built_stage_templates(), *templates]
    return _workflow(templates, wf, ctx, github=bool(ctx.github_repo) and pr_enabled, b=b)


def _workflow(templates: list[Any], wf: WorkflowParams, ctx: WorkflowContext, *, github: bool,
              b: _Builder) -> dict[str, Any]:
    m = _m()
    labels = {
        "app.kubernetes.io/part-of": "modelops-suite",
        "modelops.dev/model": ctx.model,
        "modelops.dev/team": ctx.team,
        "modelops.dev/env": ctx.env,
    }
    suffix = "sweep" if ctx.points else "pipeline"
    template_kind = wf.kind == "WorkflowTemplate"
    meta = m.ObjectMeta(
        name=f"{ctx.model}-{suffix}" if template_kind else None,
        generate_name=None if template_kind else f"{ctx.model}-{suffix}-",
        namespace=wf.namespace, labels=labels,
        annotations={"modelops.dev/source-commit": ctx.source_commit,
                     "modelops.dev/params-sha256": ctx.params_hash})
    spec = m.WorkflowSpec(
        entrypoint="main",
        service_account_name=wf.service_account,
        active_deadline_seconds=wf.active_deadline_seconds,
        parallelism=wf.parallelism,
        pod_gc=m.PodGC(strategy=wf.pod_gc),
        ttl_strategy=m.TTLStrategy(seconds_after_success=wf.ttl.seconds_after_success,
                                   seconds_after_failure=wf.ttl.seconds_after_failure),
        synchronization=m.Synchronization(mutexes=[m.Mutex(name=f"modelops-{ctx.model}")])
        if wf.mutex else None,
        security_context=m.PodSecurityContext(
            run_as_user=wf.run_as_user, run_as_group=wf.run_as_group, fs_group=wf.fs_group,
            run_as_non_root=True, seccomp_profile=m.SeccompProfile(type="RuntimeDefault")),
        pod_metadata=m.Metadata(labels=labels),
        arguments=m.Arguments(parameters=[
            m.Parameter(name="source-commit", value=ctx.source_commit),
            m.Parameter(name="params-hash", value=ctx.params_hash)]),
        volumes=b.volumes(github=github),
        templates=templates)
    cls = m.WorkflowTemplate if template_kind else m.Workflow
    doc = cls(api_version="argoproj.io/v1alpha1", kind=wf.kind, metadata=meta, spec=spec)
    return doc.model_dump(by_alias=True, exclude_none=True, mode="json")


def workflow_dag(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Stage task name -> the stage tasks it waits for, read back from a rendered Workflow.

    Nested groups are flattened: a stage in a group also waits for every stage of the groups
    that group depends on (that is what Argo will do), so the result can be compared with the
    dvc graph by reachability (see :func:`ancestors`). The last tasks (pull request, collect,
    compare) are not stages and are left out.
    """
    spec = doc["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    tasks = templates[spec["entrypoint"]]["dag"]["tasks"]
    if any(t["name"] == POINTS for t in tasks):
        tasks = templates["point"]["dag"]["tasks"]
    tasks = [t for t in tasks if t["name"] not in RESERVED]
    if all("dag" not in templates[t["template"]] for t in tasks):
        return {t["name"]: sorted(d for d in t.get("dependencies") or [] if d not in RESERVED)
                for t in tasks}
    members = {t["name"]: [x["name"] for x in templates[t["template"]]["dag"]["tasks"]]
               for t in tasks}
    out: dict[str, list[str]] = {}
    for t in tasks:
        outer = [s for dep in t.get("dependencies") or [] for s in members[dep]]
        for inner in templates[t["template"]]["dag"]["tasks"]:
            out[inner["name"]] = sorted(set(inner.get("dependencies") or []) | set(outer))
    return out


# --------------------------------------------------------------------------- resolution

def resolve_remote(root: Path, wanted: str) -> str:
    """The DVC remote the tasks use: ``wanted`` or the default; refused when undefined."""
    from dvc.config import Config
    from dvc.config import ConfigError as DvcConfigError

    dvc_dir = root / ".dvc"
    if not dvc_dir.is_dir():
        raise InputError(f"{root}: not a DVC repository (no .dvc/ folder)")
    try:
        # Only what a fresh clone has: the repository's own config, not config.local
        repo_level = Config(dvc_dir=str(dvc_dir), validate=True).load_one("repo")
        remotes = dict(repo_level.get("remote", {}))
        default = repo_level.get("core", {}).get("remote", "")
    except DvcConfigError as exc:
        raise ConfigError(dvc_dir / "config", "", str(exc), "DVC cannot read its configuration",
                          hint="`dvc config --list --show-origin` shows every level") from exc
    known = ", ".join(sorted(remotes)) or "none"
    name = wanted or default
    if not name:
        raise ConfigError("params.yaml", "modelops.workflow.dvc_remote", wanted,
                          f"no remote given and .dvc/config sets no default (remotes: {known})",
                          hint="name one of them here, or `dvc remote default <name>`")
    if name not in remotes:
        where = "modelops.workflow.dvc_remote" if wanted else "core.remote of .dvc/config"
        raise ConfigError("params.yaml" if wanted else dvc_dir / "config", where, name,
                          f"names a DVC remote that .dvc/config does not define (remotes: "
                          f"{known})",
                          hint=f"add it with `dvc remote add {name} <url>` and commit "
                               ".dvc/config, or name an existing remote (a remote only in "
                               "config.local is not in the pods' clone)")
    return name


def resolve_compile_stage(wf: WorkflowParams, settings: Any, cmds: dict[str, str]) -> str:
    """The stage to run on the GPU pool for TensorRT, or '' (none, or ONNX Runtime only)."""
    if wf.compile_stage:
        if wf.compile_stage not in cmds:
            raise ConfigError("params.yaml", "modelops.workflow.compile_stage", wf.compile_stage,
                              "names no stage of dvc.yaml", hint=f"stages are: {', '.join(cmds)}")
        stage = wf.compile_stage
    else:
        found = [s for s, cmd in cmds.items() if _COMPILE_CMD.search(cmd)]
        stage = found[0] if len(found) == 1 else ""
    steps = getattr(settings, "steps", None)
    backend = getattr(getattr(settings, "compile", None), "backend", "auto")
    if not stage or (steps is not None and not steps.compile) or backend == "onnxruntime":
        return ""
    return stage


def github_repo_of(wf: WorkflowParams) -> str:
    pr = wf.pull_request
    if not pr.enabled:
        return ""
    if pr.github_repo:
        return pr.github_repo
    match = re.match(r"^(?:https://github\.com/|git@github\.com:)([^/]+)/([^/]+?)(?:\.git)?/?$",
                     wf.source_repo)
    return f"{match.group(1)}/{match.group(2)}" if match else ""


# --------------------------------------------------------------------------- commands

def build(repo_root: str | Path = ".", params_file: str | Path = "params.yaml",
          *, source_commit: str | None = None, sweep: bool = False) -> dict[str, Any]:
    """Render and strictly validate the Workflow for the repository at ``repo_root``."""
    from modelops.gitops.crd import validate_strict

    root = Path(repo_root)
    params = load_settings(root / params_file)
    wf = params.workflow
    commit = source_commit or _head_commit(root)
    graph, cmds = _read_pipeline(root)
    points = sweep_points(wf) if sweep else []
    if sweep and not points:
        raise ConfigError(root / params_file, "modelops.workflow.sweep", None,
                          "no sweep is configured", hint="set sweep.grid or sweep.points")
    ctx = WorkflowContext(model=params.model.name, team=params.model.team,
                          source_commit=commit, params_hash=params_hash(root / params_file),
                          dvc_remote=resolve_remote(root, wf.dvc_remote),
                          compile_stage=resolve_compile_stage(wf, params, cmds),
                          github_repo=github_repo_of(wf), points=points)
    doc = render_workflow(graph, wf, ctx)
    problems = validate_strict(doc)
    if problems:
        raise ValidationError(f"rendered {doc['kind']} breaks the upstream schema: "
                              + "; ".join(problems[:5]))
    return doc


def _head_commit(root: Path) -> str:
    out = git_text(["rev-parse", "HEAD"], cwd=root)
    if out is None:
        raise InputError(f"{root}: not a git repository with a commit; pass --source-commit")
    return out.strip()


def _cmd_render(args) -> int:
    doc = build(args.repo, source_commit=args.source_commit, sweep=args.sweep)
    if write_output(args.out, dump_yaml(doc)):
        print(f"wrote {args.out}: {doc['kind']} with {len(workflow_dag(doc))} stage task(s)"
              + (" per sweep point" if args.sweep else ""))
    return 0


def _cmd_submit(args) -> int:
    from modelops.gitops.argo_server import ArgoServer

    doc = build(args.repo, source_commit=args.source_commit, sweep=args.sweep)
    token = os.environ.get(args.token_env)
    if not token:
        raise InputError(f"no argo server token: environment variable {args.token_env!r} is "
                         "empty", hint="export it, or name another with --token-env")
    server = ArgoServer(args.argo_server, token, verify_tls=not args.insecure)
    created = server.submit(doc)
    name = created["metadata"]["name"]
    namespace = created["metadata"].get("namespace") or doc["metadata"].get("namespace")
    print(f"submitted {doc['kind']} {namespace}/{name} to {args.argo_server}", flush=True)
    if doc["kind"] != "Workflow" or args.no_follow:
        return 0
    final = server.follow(namespace, name, poll=args.poll, deadline=args.deadline)
    phase = final["status"]["phase"]
    if phase != "Succeeded":
        message = final["status"].get("message", "")

        raise ExternalError(f"workflow {name} ended {phase}: {message}".rstrip(": "),
                            hint=f"see `argo logs -n {namespace} {name}`")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "workflow", help="run the DVC pipeline on Argo Workflows (render | submit | sweep)",
        description="Translate dvc.yaml's stage graph into an Argo Workflows Workflow (one DAG "
                    "task per stage, same dependencies, upstream results passed as artifacts, "
                    "a pull request at the end), validated against the upstream CRD schema in "
                    "strict mode. Knobs: params.yaml `modelops.workflow`.")
    wsub = p.add_subparsers(title="actions", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", default=".", help="model repository root (default: .)")
    common.add_argument("--source-commit", default=None,
                        help="commit the tasks check out (default: git HEAD of --repo)")
    common.add_argument("--sweep", action="store_true",
                        help="render the parameter sweep of modelops.workflow.sweep")
    r = wsub.add_parser("render", parents=[common], help="write the Workflow YAML")
    r.add_argument("--out", default="-", help="output file, or - for stdout (default)")
    r.set_defaults(handler=_cmd_render)
    s = wsub.add_parser("submit", parents=[common],
                        help="submit to an Argo Server and follow it to the end")
    s.add_argument("--argo-server", required=True, help="Argo Server base URL")
    s.add_argument("--token-env", default="ARGO_TOKEN",
                   help="environment variable holding the bearer token (default: %(default)s)")
    s.add_argument("--no-follow", action="store_true", help="return once submitted")
    s.add_argument("--poll", type=float, default=5.0, help="seconds between status polls")
    s.add_argument("--deadline", type=float, default=7200.0,
                   help="give up following after this many seconds")
    s.add_argument("--insecure", action="store_true", help="skip TLS verification")
    s.set_defaults(handler=_cmd_submit)
    workflow_task.register(wsub)
    p.set_defaults(handler=lambda _args: (p.print_help(), 0)[1])


__all__ = ["StageResources", "WorkflowContext", "WorkflowParams", "_read_pipeline", "_stage_name",
           "ancestors", "build", "pipeline_commands", "pipeline_graph", "render_workflow",
           "sweep_points", "task_name", "topological_order", "workflow_dag"]
