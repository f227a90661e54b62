"""Run the DVC pipeline on Argo Workflows: ``gitops workflow render|submit``.

The stage graph comes from DVC itself (``Repo.index.graph``), so the Workflow's DAG has exactly
the stages and dependencies of ``dvc.yaml``. Each task runs one stage in the training image:
it checks out the source commit (an Argo ``git`` input artifact), then
``dvc repro --pull --single-item <stage>`` (inputs and run-cache entries come from the shared DVC
remote, so a stage whose inputs did not change is restored instead of rerun) and
``dvc push --run-cache`` (so tasks on other nodes see its outputs).

The manifest is built with Hera (``hera.workflows``): it is maintained by the Argo project's own
community alongside Argo Workflows releases, typed with pydantic models generated from the
Workflow schema, and produces plain dicts we can validate, whereas the generated
``argo-workflows`` SDK mirrors the REST API with far more ceremony for the same output.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.errors import ConfigError, InputError
from modelops.git import git_text
from modelops.settings.workflow import StageResources, WorkflowParams

# --------------------------------------------------------------------------- the graph

def pipeline_graph(repo_root: str | Path) -> dict[str, list[str]]:
    """Stage name -> names of the stages it depends on, read through DVC's own API."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(repo_root)) as repo:
            graph = repo.index.graph
            names = {stage: _stage_name(stage, repo.root_dir) for stage in graph.nodes}
            deps: dict[str, list[str]] = {names[s]: [] for s in graph.nodes}
            # DVC's edges go from a stage to the stages producing its dependencies.
            for stage, upstream in graph.edges:
                deps[names[stage]].append(names[upstream])
    except DvcException as exc:
        raise InputError(f"{repo_root}: cannot read the dvc pipeline: {exc}",
                         hint="run `dvc status` there to see what dvc says") from exc
    return {name: sorted(ups) for name, ups in sorted(deps.items())}


def _stage_name(stage: Any, root: str) -> str:
    """``name`` for stages of the root dvc.yaml, ``sub/dvc.yaml:name`` for nested ones."""
    import os

    dvcfile = os.path.relpath(stage.path, root)
    name = getattr(stage, "name", None) or dvcfile
    return name if dvcfile == "dvc.yaml" else f"{dvcfile}:{name}"


def task_name(stage: str) -> str:
    """DVC stage names (``train``, ``eval@1``, ``dir/dvc.yaml:x``) as Argo task names."""
    name = re.sub(r"[^a-z0-9-]+", "-", stage.lower()).strip("-")
    if not name:
        raise InputError(f"stage name {stage!r} has no usable characters for an argo task name")
    return name[:63]


# --------------------------------------------------------------------------- render

@dataclass(frozen=True)
class WorkflowContext:
    model: str
    team: str
    source_commit: str
    params_hash: str
    env: str = "training"


def params_hash(params_file: str | Path) -> str:
    return hashlib.sha256(Path(params_file).read_bytes()).hexdigest()


def _resources(res: StageResources) -> dict[str, Any]:
    requests: dict[str, Any] = {"cpu": res.cpu, "memory": res.memory}
    limits: dict[str, Any] = {"memory": res.memory}
    if res.gpu:
        limits["nvidia.com/gpu"] = str(res.gpu)
        requests["nvidia.com/gpu"] = str(res.gpu)
    return {"requests": requests, "limits": limits}


STAGE_SCRIPT = (
    "set -eu\n"
    "cd /src\n"
    'dvc remote default "$DVC_REMOTE"\n'
    'echo "==> stage $STAGE at $SOURCE_COMMIT (params $PARAMS_HASH)"\n'
    'dvc repro --pull --single-item "$STAGE"\n'
    "dvc push --run-cache\n"
)


MAX_DAG_TASKS = 200  # the Workflow CRD's maxItems for dag.tasks (and for spec.templates)


def topological_order(graph: dict[str, list[str]]) -> list[str]:
    """Stages in dependency order (ties by name, so the output is stable)."""
    import heapq

    missing = sorted({u for ups in graph.values() for u in ups} - set(graph))
    if missing:
        raise InputError(f"stage graph names unknown stage {missing[0]!r}")
    waiting = {stage: len(set(ups)) for stage, ups in graph.items()}
    users: dict[str, list[str]] = {stage: [] for stage in graph}
    for stage, ups in graph.items():
        for u in set(ups):
            users[u].append(stage)
    ready = [stage for stage, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        stage = heapq.heappop(ready)
        order.append(stage)
        for user in users[stage]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(order) != len(graph):
        raise InputError("the stage graph has a cycle: "
                         + ", ".join(sorted(s for s, n in waiting.items() if n)))
    return order


def _groups(order: list[str], size: int) -> list[list[str]]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def render_workflow(graph: dict[str, list[str]], wf: WorkflowParams,
                    ctx: WorkflowContext) -> dict[str, Any]:
    """The Workflow (or WorkflowTemplate) dict for ``graph``: one DAG task per stage.

    Stages share one container template per resource profile (the stage name is a template
    input). A DAG holds at most 200 tasks (the CRD's limit), so larger pipelines are split, in
    dependency order, into nested DAGs of at most 200 stages; a group waits for the groups that
    hold its stages' upstream stages, so every dvc dependency is still honoured.
    """
    from hera.workflows import DAG, Container, Task, Workflow, WorkflowTemplate
    from hera.workflows import models as m

    unknown = sorted(set(wf.stages) - set(graph))
    if unknown:
        raise ConfigError("params.yaml", f"modelops.workflow.stages.{unknown[0]}", unknown[0],
                          "names no stage of dvc.yaml",
                          hint=f"stages are: {', '.join(graph)}")
    if len(wf.stages) > MAX_DAG_TASKS - 10:
        raise ConfigError("params.yaml", "modelops.workflow.stages", f"{len(wf.stages)} entries",
                          f"at most {MAX_DAG_TASKS - 10} stages can have their own resources")
    labels = {
        "app.kubernetes.io/part-of": "modelops-suite",
        "modelops.dev/model": ctx.model,
        "modelops.dev/team": ctx.team,
        "modelops.dev/env": ctx.env,
    }
    names = {stage: task_name(stage) for stage in graph}
    if len(set(names.values())) != len(names):
        raise InputError("two dvc stages map to the same argo task name: "
                         f"{sorted(names.items(), key=lambda kv: kv[1])}")
    order = topological_order(graph)
    retry = m.RetryStrategy(
        limit=m.IntOrString(wf.retry.limit),
        retry_policy="Always",
        backoff=m.Backoff(duration=wf.retry.backoff, factor=m.IntOrString(wf.retry.factor),
                          max_duration=wf.retry.max_duration),
    )
    cls = WorkflowTemplate if wf.kind == "WorkflowTemplate" else Workflow
    meta: dict[str, Any] = {"name": f"{ctx.model}-pipeline"} if wf.kind == "WorkflowTemplate" \
        else {"generate_name": f"{ctx.model}-pipeline-"}
    with cls(
        **meta,
        namespace=wf.namespace,
        entrypoint="pipeline",
        service_account_name=wf.service_account,
        active_deadline_seconds=wf.active_deadline_seconds,
        labels=labels,
        annotations={"modelops.dev/source-commit": ctx.source_commit,
                     "modelops.dev/params-sha256": ctx.params_hash},
        pod_metadata=m.Metadata(labels=labels),
        arguments=[m.Parameter(name="source-commit", value=ctx.source_commit),
                   m.Parameter(name="params-hash", value=ctx.params_hash)],
    ) as workflow:
        profiles: dict[str, Any] = {}

        def template_for(stage: str) -> Any:
            profile = names[stage] if stage in wf.stages else "default"
            if profile not in profiles:
                res = wf.stages.get(stage, wf.default_resources)
                profiles[profile] = Container(
                    name=f"stage-{profile}",
                    image=wf.gpu_image if res.gpu else wf.image,
                    command=["bash", "-c"],
                    args=[STAGE_SCRIPT],
                    env=[
                        m.EnvVar(name="STAGE", value="{{inputs.parameters.stage}}"),
                        m.EnvVar(name="DVC_REMOTE", value=wf.dvc_remote),
                        m.EnvVar(name="SOURCE_COMMIT",
                                 value="{{workflow.parameters.source-commit}}"),
                        m.EnvVar(name="PARAMS_HASH", value="{{workflow.parameters.params-hash}}"),
                    ],
                    env_from=[m.EnvFromSource(secret_ref=m.SecretEnvSource(
                        name=wf.credentials_secret))],
                    resources=m.ResourceRequirements(**_resources(res)),
                    node_selector=dict(res.node_selector) or None,
                    retry_strategy=retry,
                    active_deadline_seconds=wf.stage_deadline_seconds,
                    inputs=m.Inputs(
                        parameters=[m.Parameter(name="stage")],
                        artifacts=[m.Artifact(
                            name="source", path="/src",
                            git=m.GitArtifact(repo=wf.source_repo,
                                              revision="{{workflow.parameters.source-commit}}"))]),
                )
            return profiles[profile]

        def add_tasks(stages: list[str]) -> None:
            inside = set(stages)
            for stage in stages:
                deps = [names[u] for u in sorted(set(graph[stage])) if u in inside]
                Task(name=names[stage], template=template_for(stage),
                     arguments=[m.Parameter(name="stage", value=stage)],
                     dependencies=deps or None)

        groups = _groups(order, MAX_DAG_TASKS)
        if len(groups) == 1:
            with DAG(name="pipeline"):
                add_tasks(order)
        else:
            group_of = {stage: i for i, group in enumerate(groups) for stage in group}
            dags = []
            for i, group in enumerate(groups):
                with DAG(name=f"pipeline-part-{i + 1}") as dag:
                    add_tasks(group)
                dags.append(dag)
            with DAG(name="pipeline"):
                for i, group in enumerate(groups):
                    needs = sorted({group_of[u] for s in group for u in graph[s]} - {i})
                    Task(name=f"part-{i + 1}", template=dags[i],
                         dependencies=[f"part-{j + 1}" for j in needs] or None)
    return workflow.to_dict()


def workflow_dag(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Task name -> the tasks it waits for, read back from a rendered Workflow.

    Nested groups are flattened: a stage in a group also waits for every stage of the groups
    that group depends on (that is what Argo will do), so the result can be compared with the
    dvc graph by reachability (see :func:`ancestors`).
    """
    spec = doc["spec"]
    templates = {t["name"]: t for t in spec["templates"]}
    entry = templates[spec["entrypoint"]]
    tasks = entry["dag"]["tasks"]
    if all("dag" not in templates[t["template"]] for t in tasks):
        return {t["name"]: sorted(t.get("dependencies") or []) for t in tasks}
    members = {t["name"]: [x["name"] for x in templates[t["template"]]["dag"]["tasks"]]
               for t in tasks}
    out: dict[str, list[str]] = {}
    for t in tasks:
        outer = [s for dep in t.get("dependencies") or [] for s in members[dep]]
        for inner in templates[t["template"]]["dag"]["tasks"]:
            out[inner["name"]] = sorted(set(inner.get("dependencies") or []) | set(outer))
    return out


def ancestors(graph: dict[str, list[str]]) -> dict[str, set[str]]:
    """Every stage's transitive upstream stages."""
    memo: dict[str, set[str]] = {}
    for stage in topological_order(graph):
        memo[stage] = set(graph[stage]).union(*(memo[u] for u in graph[stage]))
    return memo


# --------------------------------------------------------------------------- commands

def build(repo_root: str | Path = ".", params_file: str | Path = "params.yaml",
          *, source_commit: str | None = None) -> dict[str, Any]:
    """Render and strictly validate the Workflow for the repository at ``repo_root``."""
    from modelops.gitops.crd import validate_strict
    from modelops.settings import load_settings

    root = Path(repo_root)
    params = load_settings(root / params_file)
    commit = source_commit or _head_commit(root)
    ctx = WorkflowContext(model=params.model.name, team=params.model.team,
                          source_commit=commit, params_hash=params_hash(root / params_file))
    doc = render_workflow(pipeline_graph(root), params.workflow, ctx)
    problems = validate_strict(doc)
    if problems:
        from modelops.errors import ValidationError

        raise ValidationError(f"rendered {doc['kind']} breaks the upstream schema: "
                              + "; ".join(problems[:5]))
    return doc


def _head_commit(root: Path) -> str:
    out = git_text(["rev-parse", "HEAD"], cwd=root)
    if out is None:
        raise InputError(f"{root}: not a git repository with a commit; pass --source-commit")
    return out.strip()


def _cmd_render(args) -> int:
    from modelops.fsutil import write_output
    from modelops.yamlio import dump_yaml

    doc = build(args.repo, source_commit=args.source_commit)
    if write_output(args.out, dump_yaml(doc)):
        print(f"wrote {args.out}: {doc['kind']} with {len(workflow_dag(doc))} stage task(s)")
    return 0


def _cmd_submit(args) -> int:
    import os

    from modelops.gitops.argo_server import ArgoServer

    doc = build(args.repo, source_commit=args.source_commit)
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
        from modelops.errors import ExternalError

        raise ExternalError(f"workflow {name} ended {phase}: {message}".rstrip(": "),
                            hint=f"see `argo logs -n {namespace} {name}`")
    return 0


def register(sub) -> None:
    import argparse

    p = sub.add_parser(
        "workflow", help="run the DVC pipeline on Argo Workflows (render | submit)",
        description="Translate dvc.yaml's stage graph into an Argo Workflows Workflow (one DAG "
                    "task per stage, same dependencies), validated against the upstream CRD "
                    "schema in strict mode. Knobs: params.yaml `workflow`.")
    wsub = p.add_subparsers(title="actions", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", default=".", help="model repository root (default: .)")
    common.add_argument("--source-commit", default=None,
                        help="commit the tasks check out (default: git HEAD of --repo)")
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
    p.set_defaults(handler=lambda _args: (p.print_help(), 0)[1])
