"""A local executor for Argo Workflows manifests: an **emulation** of Argo's controller and
executor, for tests. It is not Argo; it holds to Argo's documented and coded semantics of the
parts it implements and refuses everything else by name, so a Workflow that needs more fails
here instead of being run wrongly.

It reads the Workflow as YAML (a dict) and shares no code with any renderer. Implemented, after
argo-workflows' ``workflow/controller`` (``dag.go``, ``operator.go``), ``workflow/common``
(``ProcessArgs``, ``SubstituteParams``) and ``util/template`` (``simple_template.go``):

- **DAG templates**: a task starts when every task in its ``dependencies`` has Succeeded; a
  failed task fails the DAG and, as with ``failFast`` (the default), no new task starts after
  it. ``withItems`` / ``withParam`` expand a task into children named ``name(i:desc)``
  (``generateNodeName``) with ``{{item}}`` / ``{{item.key}}`` substituted (``processItem``);
  their output parameters aggregate into JSON lists (``processAggregateNodeOutputs``,
  ``aggregatedJSONValueList``). A task may reference only its ancestors' outputs (validation).
  DAG templates have inputs and outputs (``valueFrom.parameter``, artifacts ``from``).
- **Parameters**: ``{{workflow.parameters.X}}``, ``{{workflow.name}}``, ``{{workflow.uid}}``,
  ``{{inputs.parameters.X}}``, ``{{tasks.T.outputs.parameters.P}}``, ``{{retries}}``; values
  are substituted into the JSON form of the template with Go's string escaping, as Argo does;
  defaults apply; a missing input is an error. Output parameters from ``valueFrom.path`` lose
  one trailing newline (``SaveParameters``).
- **Artifacts**: inputs from ``git`` (a clone at ``revision``, credentials from
  ``usernameSecret``/``passwordSecret``) or ``from`` an upstream output; ``optional`` inputs
  may be absent; outputs are copied from ``path`` when the container exits.
- **Containers**: ``command`` + ``args`` exactly as written (after substitution), ``env``
  (values and ``secretKeyRef``), ``envFrom`` secrets, ``workingDir``, ``emptyDir`` and
  ``secret`` volumes (``items``, files per key); ``activeDeadlineSeconds``; ``retryStrategy``
  (``limit``, ``retryPolicy``, ``expression`` over ``lastRetry.status``/``exitCode``: Argo 3.5+
  semantics, the policy and the expression must both allow a retry); ``spec.parallelism``.

What it maps, and how: the image is not pulled; each pod runs on this machine with the
``base_env`` the test gives (the training image's tools on ``PATH``) in a fresh folder that
stands for the container's filesystem. Container paths map into that folder; so that commands
see the same layout without rewriting them, every path a template declares (artifacts, output
parameters, volume mounts) must lie under its ``workingDir``, and the executor refuses one that
does not. Not emulated (refused): ``depends``, ``when``, ``continueOn``, ``inline``,
``withSequence``, expression tags ``{{=...}}``, ``steps``, ``script``, ``resource``, hooks and
``onExit``. Not checked: ``securityContext``, node placement, ``synchronization``, ``podGC``
and ``ttlStrategy`` (one workflow, one machine).
"""

from __future__ import annotations

import ast
import copy
import json
import os
import re
import secrets
import shutil
import string
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TAG = re.compile(r"\{\{(.*?)\}\}")
REFUSED_TASK_KEYS = ("depends", "when", "continueOn", "inline", "withSequence", "hooks",
                     "onExit", "templateRef")
REFUSED_TEMPLATE_KEYS = ("steps", "script", "resource", "containerSet", "data", "http",
                         "plugin", "suspend")


class EmulationError(Exception):
    """The Workflow uses something this emulation does not implement, or breaks a rule."""


@dataclass
class Node:
    name: str
    phase: str = "Pending"          # Succeeded | Failed | Error | Omitted
    exit_code: int | None = None
    message: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)
    children: list[Node] = field(default_factory=list)
    attempts: int = 0
    log: str = ""
    expanded: bool = False  # a withItems / withParam task: its children are the items


@dataclass
class Run:
    phase: str
    nodes: dict[str, Node]
    name: str

    def node(self, suffix: str) -> Node:
        found = [n for k, n in self.nodes.items() if k.endswith(suffix)]
        if len(found) != 1:
            raise KeyError(f"{suffix!r}: {len(found)} nodes match of {sorted(self.nodes)}")
        return found[0]

    def logs(self) -> str:
        return "\n".join(f"--- {k} [{n.phase}]\n{n.log}" for k, n in self.nodes.items() if n.log)


# --------------------------------------------------------------------------- Argo's rules

def go_quote_inner(value: str) -> str:
    """``strconv.Quote(s)`` without the surrounding quotes (what simple_template.go inserts
    into the JSON of a template); JSON's escaping reads back the same."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def substitute(text: str, scope: dict[str, str], *, allow_unresolved: bool) -> str:
    def repl(match: re.Match) -> str:
        tag = match.group(1).strip()
        if tag.startswith("="):
            raise EmulationError(f"expression tag {{{{{tag}}}}} is not emulated")
        if tag in scope:
            return go_quote_inner(scope[tag])
        if allow_unresolved:
            return match.group(0)
        raise EmulationError(f"failed to resolve {{{{{tag}}}}}")
    return TAG.sub(repl, text)


def substitute_value(value: str, scope: dict[str, str]) -> str:
    """A tag inside one string field, substituted the way Argo does it: in the field's JSON
    form (escaped), then read back."""
    return json.loads(substitute(json.dumps(value), scope, allow_unresolved=False))


def substitute_obj(obj: Any, scope: dict[str, str], *, allow_unresolved: bool) -> Any:
    return json.loads(substitute(json.dumps(obj), scope, allow_unresolved=allow_unresolved))


def item_string(value: Any) -> str:
    """``Item.String()``: JSON with the quotes of a plain string removed."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def generate_node_name(name: str, index: int, desc: Any) -> str:
    clean = str(desc).replace("(", "").replace(")", "")
    return f"{name}({index}:{clean})"


def _go_format(value: Any) -> str:
    """``fmt.Sprintf("%v", item)`` of a wfv1.Item (numbers and bools print as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return item_string(value)


def process_item(task: dict[str, Any], index: int, item: Any, scope: dict[str, str]
                 ) -> dict[str, Any]:
    """One child of a ``withItems`` / ``withParam`` task (operator.go ``processItem``)."""
    local = dict(scope)
    if isinstance(item, dict):
        vals = []
        for key, value in item.items():
            local[f"item.{key}"] = _go_format(value)
            vals.append(f"{key}:{_go_format(value)}")
        local["item"] = json.dumps(item, separators=(",", ":"), sort_keys=True)
        name = generate_node_name(task["name"], index, ",".join(sorted(vals)))
    elif isinstance(item, list):
        local["item"] = json.dumps(item, separators=(",", ":"))
        name = generate_node_name(task["name"], index, item_string(item))
    elif isinstance(item, (str, int, float, bool)):
        local["item"] = _go_format(item)
        name = generate_node_name(task["name"], index, _go_format(item))
    else:
        raise EmulationError(f"withItems[{index}] expected string, number, list, or map")
    body = {k: v for k, v in task.items() if k not in ("withItems", "withParam")}
    child = substitute_obj(body, local, allow_unresolved=True)
    child["name"] = name
    return child


def aggregated_json_value_list(values: list[str]) -> str:
    """operator.go ``aggregatedJSONValueList``: a JSON list of the values, holding maps and
    lists as JSON when every value is one, else as strings."""
    parsed = []
    for value in values:
        try:
            v = json.loads(value)
        except ValueError:
            parsed = None
            break
        if not isinstance(v, (list, dict)):
            parsed = None
            break
        parsed.append(v)
    if parsed is not None:
        return json.dumps(parsed, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return json.dumps(values, separators=(",", ":"), ensure_ascii=False)


_EXPR_NAMES = {"asInt": int, "asFloat": float, "string": str}


def eval_retry_expression(expression: str, last: dict[str, str]) -> bool:
    """The subset of expr-lang retry expressions use: ``lastRetry.x``, string and number
    literals, lists, ``== != < <= > >= in``, ``&& || !`` (``and or not``), ``asInt`` ..."""
    text = re.sub(r"&&", " and ", expression)
    text = re.sub(r"\|\|", " or ", text)
    text = re.sub(r"!(?!=)", " not ", text)
    tree = ast.parse(text.strip(), mode="eval")

    def ev(node: ast.AST) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.BoolOp):
            values = [ev(v) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return not ev(node.operand)
        if isinstance(node, ast.Compare):
            left = ev(node.left)
            for op, right_node in zip(node.ops, node.comparators):
                right = ev(right_node)
                ok = {ast.Eq: lambda a, b: a == b, ast.NotEq: lambda a, b: a != b,
                      ast.Lt: lambda a, b: a < b, ast.LtE: lambda a, b: a <= b,
                      ast.Gt: lambda a, b: a > b, ast.GtE: lambda a, b: a >= b,
                      ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
                      }[type(op)](left, right)
                if not ok:
                    return False
                left = right
            return True
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "lastRetry":
            return last[node.attr]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in _EXPR_NAMES and len(node.args) == 1:
            return _EXPR_NAMES[node.func.id](ev(node.args[0]))
        if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float)):
            return node.value
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        raise EmulationError(f"retry expression {expression!r}: {ast.dump(node)} is not "
                             "emulated")

    return bool(ev(tree))


def should_retry(strategy: dict[str, Any] | None, attempt: int, phase: str, exit_code: int | None,
                 message: str, duration: float) -> bool:
    if not strategy:
        return False
    limit = int(strategy.get("limit", 0) or 0)
    if attempt > limit:
        return False
    policy = strategy.get("retryPolicy")
    expression = strategy.get("expression")
    if policy is None:
        policy = "Always" if expression else "OnFailure"  # Argo 3.5 and later
    allowed = {"Always": phase in ("Failed", "Error"), "OnFailure": phase == "Failed",
               "OnError": phase == "Error", "OnTransientError": False}[policy]
    if not allowed:
        return False
    if expression:
        last = {"status": phase, "exitCode": str(exit_code if exit_code is not None else -1),
                "duration": str(int(duration)), "message": message}
        return eval_retry_expression(expression, last)
    return True


# --------------------------------------------------------------------------- the executor

class LocalArgo:
    """Run one Workflow dict here. ``secrets``: Secret name -> {key: value} (what the cluster
    holds); ``base_env``: the environment every container starts from (the image's)."""

    def __init__(self, doc: dict[str, Any], workdir: Path, *, base_env: dict[str, str],
                 secrets: dict[str, dict[str, str]] | None = None, name: str | None = None):
        if doc.get("kind") != "Workflow":
            raise EmulationError(f"only kind Workflow runs (got {doc.get('kind')!r})")
        self.doc = copy.deepcopy(doc)
        self.spec = self.doc["spec"]
        self.workdir = workdir
        self.base_env = dict(base_env)
        self.secrets = secrets or {}
        meta = self.doc.get("metadata", {})
        suffix = "".join(secrets_choice(string.ascii_lowercase + string.digits, 5))
        self.name = name or meta.get("name") or f"{meta.get('generateName', 'wf-')}{suffix}"
        self.uid = str(uuid.uuid4())
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.nodes: dict[str, Node] = {}
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(int(self.spec.get("parallelism") or 64))
        self.counter = 0
        for key in ("onExit", "hooks", "workflowTemplateRef"):
            if key in self.spec:
                raise EmulationError(f"spec.{key} is not emulated")
        self.globals = {"workflow.name": self.name, "workflow.uid": self.uid,
                        "workflow.namespace": meta.get("namespace", "default")}
        for p in (self.spec.get("arguments") or {}).get("parameters") or []:
            self.globals[f"workflow.parameters.{p['name']}"] = str(p.get("value", ""))

    def run(self) -> Run:
        node = self.execute(self.spec["entrypoint"], {"parameters": {}, "artifacts": {}},
                            self.name)
        return Run(phase=node.phase, nodes=dict(self.nodes), name=self.name)

    # -- templates ---------------------------------------------------------------------
    def execute(self, template_name: str, args: dict[str, Any], node_name: str) -> Node:
        tmpl = self.templates.get(template_name)
        if tmpl is None:
            raise EmulationError(f"template {template_name!r} is not defined")
        for key in REFUSED_TEMPLATE_KEYS:
            if key in tmpl:
                raise EmulationError(f"templates.{template_name}.{key} is not emulated")
        node = Node(node_name)
        with self.lock:
            self.nodes[node_name] = node
        try:
            params, artifacts = self.process_args(tmpl, args)
            if "dag" in tmpl:
                self.run_dag(tmpl, params, artifacts, node)
            elif "container" in tmpl:
                self.run_container(tmpl, params, artifacts, node)
            else:
                raise EmulationError(f"template {template_name!r}: no dag or container")
        except EmulationError:
            raise
        except Exception as exc:  # an artifact that could not be placed, ...: Argo says Error
            node.phase, node.message = "Error", f"{type(exc).__name__}: {exc}"
        return node

    def process_args(self, tmpl: dict[str, Any], args: dict[str, Any]
                     ) -> tuple[dict[str, str], dict[str, Any]]:
        """common.ProcessArgs: input parameters from arguments or defaults, artifacts."""
        inputs = tmpl.get("inputs") or {}
        params: dict[str, str] = {}
        for p in inputs.get("parameters") or []:
            name = p["name"]
            if name in args["parameters"]:
                params[name] = args["parameters"][name]
            elif "value" in p:
                params[name] = str(p["value"])
            elif "default" in p:
                params[name] = str(p["default"])
            else:
                raise EmulationError(f"inputs.parameters.{name} was not supplied")
        artifacts: dict[str, Any] = {}
        for a in inputs.get("artifacts") or []:
            name = a["name"]
            if name in args["artifacts"]:
                artifacts[name] = {**a, "source": args["artifacts"][name]}
            elif "git" in a or "raw" in a:
                artifacts[name] = a
            elif a.get("optional"):
                continue
            else:
                raise EmulationError(f"inputs.artifacts.{name} was not supplied")
        return params, artifacts

    def scope_for(self, params: dict[str, str]) -> dict[str, str]:
        scope = dict(self.globals)
        scope.update({f"inputs.parameters.{k}": v for k, v in params.items()})
        return scope

    # -- DAG ---------------------------------------------------------------------------
    def run_dag(self, tmpl: dict[str, Any], params: dict[str, str],
                artifacts: dict[str, Any], node: Node) -> None:
        tasks = tmpl["dag"]["tasks"]
        by_name = {t["name"]: t for t in tasks}
        for t in tasks:
            for key in REFUSED_TASK_KEYS:
                if key in t:
                    raise EmulationError(f"dag task {t['name']!r}: {key} is not emulated")
            for dep in t.get("dependencies") or []:
                if dep not in by_name:
                    raise EmulationError(f"task {t['name']!r}: dependency {dep!r} not defined")
        ancestry = self._ancestry(by_name)
        scope = self.scope_for(params)
        done: dict[str, Node] = {}
        running: dict[str, threading.Thread] = {}
        results: dict[str, Node] = {}
        failed = False
        cond = threading.Condition()

        def start(task: dict[str, Any]) -> None:
            def body() -> None:
                try:
                    result = self.run_task(task, scope, artifacts, done, node.name,
                                           ancestry[task["name"]])
                except EmulationError as exc:
                    result = Node(f"{node.name}.{task['name']}", phase="Error",
                                  message=f"emulation: {exc}")
                    self.emulation_error = exc
                with cond:
                    results[task["name"]] = result
                    cond.notify_all()
            thread = threading.Thread(target=body, daemon=True)
            running[task["name"]] = thread
            thread.start()

        with cond:
            while True:
                for name, result in list(results.items()):
                    done[name] = result
                    running.pop(name, None)
                    del results[name]
                    if result.phase != "Succeeded":
                        failed = True
                if not failed:
                    for t in tasks:
                        name = t["name"]
                        if name in done or name in running:
                            continue
                        deps = t.get("dependencies") or []
                        if all(d in done and done[d].phase == "Succeeded" for d in deps):
                            start(t)
                if not running:
                    break
                cond.wait()
        if getattr(self, "emulation_error", None):
            raise self.emulation_error
        node.children = list(done.values())
        if failed or len(done) != len(tasks):
            bad = sorted(k for k, v in done.items() if v.phase != "Succeeded")
            node.phase, node.message = "Failed", f"task(s) {', '.join(bad)} did not succeed"
            return
        dag_scope = dict(scope)
        for name, result in done.items():
            self._task_scope(dag_scope, name, result)
        outputs = tmpl.get("outputs") or {}
        for p in outputs.get("parameters") or []:
            source = (p.get("valueFrom") or {}).get("parameter")
            if source is None:
                raise EmulationError(f"dag output parameter {p['name']!r}: only "
                                     "valueFrom.parameter is emulated")
            node.parameters[p["name"]] = substitute_value(source, dag_scope)
        for a in outputs.get("artifacts") or []:
            node.artifacts[a["name"]] = self.resolve_artifact(a.get("from", ""), done, artifacts,
                                                              set(done))
        node.phase = "Succeeded"

    @staticmethod
    def _ancestry(by_name: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
        memo: dict[str, set[str]] = {}

        def up(name: str, seen: tuple[str, ...] = ()) -> set[str]:
            if name in seen:
                raise EmulationError(f"dependency cycle through {name!r}")
            if name not in memo:
                deps = by_name[name].get("dependencies") or []
                memo[name] = set(deps).union(*(up(d, (*seen, name)) for d in deps))
            return memo[name]

        for name in by_name:
            up(name)
        return memo

    @staticmethod
    def _task_scope(scope: dict[str, str], name: str, result: Node) -> None:
        for key, value in result.parameters.items():
            scope[f"tasks.{name}.outputs.parameters.{key}"] = value
        if result.expanded:
            kids = [c for c in result.children if c.phase == "Succeeded"]
            maps = [c.parameters for c in kids if c.parameters]
            scope[f"tasks.{name}.outputs.parameters"] = json.dumps(
                maps, separators=(",", ":"), sort_keys=True)
            names = sorted({k for c in kids for k in c.parameters})
            for key in names:
                scope[f"tasks.{name}.outputs.parameters.{key}"] = aggregated_json_value_list(
                    [c.parameters[key] for c in kids if key in c.parameters])

    def run_task(self, task: dict[str, Any], scope: dict[str, str], dag_artifacts: dict,
                 done: dict[str, Node], parent: str, ancestors: set[str]) -> Node:
        local = dict(scope)
        for name, result in done.items():
            if name in ancestors:
                self._task_scope(local, name, result)
        text = json.dumps(task)
        for ref in re.findall(r"\{\{\s*tasks\.([^.}\s]+)\.", text):
            if ref not in ancestors:
                raise EmulationError(f"task {task['name']!r} references {ref!r}, which is not "
                                     "one of its dependencies (directly or transitively)")
        if "withItems" in task or "withParam" in task:
            if "withItems" in task:
                items = task["withItems"]
            else:
                raw = substitute_value(task["withParam"], local)
                try:
                    items = json.loads(raw)
                except ValueError as exc:
                    raise EmulationError(f"withParam value could not be parsed as a JSON list: "
                                         f"{raw}") from exc
            group = Node(f"{parent}.{task['name']}", expanded=True)
            children = [process_item(task, i, item, local) for i, item in enumerate(items)]
            threads, kids = [], []
            for child in children:
                holder: list[Node] = []
                th = threading.Thread(target=lambda c=child, h=holder: h.append(
                    self.run_single(c, local, dag_artifacts, done, parent, ancestors)),
                    daemon=True)
                th.start()
                threads.append(th)
                kids.append(holder)
            for th in threads:
                th.join()
            group.children = [h[0] for h in kids]
            with self.lock:
                self.nodes[group.name] = group
            ok = all(c.phase == "Succeeded" for c in group.children)
            group.phase = "Succeeded" if ok else "Failed"
            return group
        return self.run_single(task, local, dag_artifacts, done, parent, ancestors)

    def run_single(self, task: dict[str, Any], scope: dict[str, str], dag_artifacts: dict,
                   done: dict[str, Node], parent: str, ancestors: set[str]) -> Node:
        arguments = task.get("arguments") or {}
        params = {}
        for p in arguments.get("parameters") or []:
            params[p["name"]] = substitute_value(str(p.get("value", "")), scope)
        arts = {}
        for a in arguments.get("artifacts") or []:
            arts[a["name"]] = self.resolve_artifact(a.get("from", ""), done, dag_artifacts,
                                                    ancestors)
        return self.execute(task["template"], {"parameters": params, "artifacts": arts},
                            f"{parent}.{task['name']}")

    def resolve_artifact(self, ref: str, done: dict[str, Node], dag_artifacts: dict,
                         ancestors: set[str]) -> Path:
        match = re.fullmatch(r"\{\{\s*tasks\.([^.]+)\.outputs\.artifacts\.([^}\s]+)\s*\}\}", ref)
        if match:
            task, name = match.groups()
            if task not in ancestors:
                raise EmulationError(f"artifact {ref} is not from an ancestor")
            result = done.get(task)
            if result is None or name not in result.artifacts:
                raise EmulationError(f"artifact {ref} was not produced")
            return result.artifacts[name]
        match = re.fullmatch(r"\{\{\s*inputs\.artifacts\.([^}\s]+)\s*\}\}", ref)
        if match:
            spec = dag_artifacts.get(match.group(1))
            if spec is None or "source" not in spec:
                raise EmulationError(f"artifact {ref} was not supplied")
            return spec["source"]
        raise EmulationError(f"artifact reference {ref!r} is not emulated")

    # -- containers --------------------------------------------------------------------
    def _map(self, pod: Path, workdir: str, path: str, what: str) -> Path:
        if not path.startswith("/"):
            raise EmulationError(f"{what}: container path {path!r} must be absolute")
        norm = os.path.normpath(path)
        if norm != workdir and not norm.startswith(workdir.rstrip("/") + "/"):
            raise EmulationError(f"{what}: {path!r} is outside the workingDir {workdir!r}; this "
                                 "emulation maps container paths under the workingDir only")
        return pod / norm.lstrip("/")

    def run_container(self, tmpl: dict[str, Any], params: dict[str, str],
                      artifacts: dict[str, Any], node: Node) -> None:
        strategy = tmpl.get("retryStrategy")
        attempt = 0
        while True:
            started = time.monotonic()
            phase, code, message, log = self._attempt(tmpl, params, artifacts, node, attempt)
            node.attempts = attempt + 1
            node.log += log
            duration = time.monotonic() - started
            if phase == "Succeeded":
                node.phase, node.exit_code = phase, code
                return
            attempt += 1
            if not should_retry(strategy, attempt, phase, code, message, duration):
                node.phase, node.exit_code, node.message = phase, code, message
                return

    def _attempt(self, tmpl: dict[str, Any], params: dict[str, str], artifacts: dict[str, Any],
                 node: Node, attempt: int) -> tuple[str, int | None, str, str]:
        scope = self.scope_for(params)
        scope["retries"] = str(attempt)
        resolved = substitute_obj({k: v for k, v in tmpl.items() if k != "inputs"}, scope,
                                  allow_unresolved=True)
        container = resolved["container"]
        for key in ("command", "args"):
            for arg in container.get(key) or []:
                if TAG.search(arg):
                    raise EmulationError(f"unresolved {TAG.search(arg).group(0)} in {key}")
        workdir = container.get("workingDir")
        if not workdir:
            raise EmulationError(f"template {tmpl['name']!r}: the emulation needs a workingDir")
        with self.lock:
            self.counter += 1
            label = re.sub(r"[^\w.-]", "_", node.name)[-80:]
            pod = self.workdir / "pods" / f"{self.counter:03d}-{label}"
        shutil.rmtree(pod, ignore_errors=True)
        cwd = self._map(pod, workdir, workdir, "workingDir")
        cwd.mkdir(parents=True)
        home = pod / "home"
        home.mkdir()
        volumes = {v["name"]: v for v in [*(self.spec.get("volumes") or []),
                                         *(tmpl.get("volumes") or [])]}
        for mount in container.get("volumeMounts") or []:
            volume = volumes.get(mount["name"])
            if volume is None:
                raise EmulationError(f"volumeMount {mount['name']!r}: no such volume")
            target = self._map(pod, workdir, mount["mountPath"], f"volumeMount {mount['name']}")
            target.mkdir(parents=True, exist_ok=True)
            if "secret" in volume:
                data = self.secrets.get(volume["secret"]["secretName"])
                if data is None:
                    return "Error", None, f"secret {volume['secret']['secretName']!r} not found", ""
                items = volume["secret"].get("items")
                pairs = [(i["key"], i["path"]) for i in items] if items else \
                    [(k, k) for k in data]
                for key, rel in pairs:
                    (target / rel).write_text(data[key])
                    os.chmod(target / rel, int(volume["secret"].get("defaultMode", 0o644)))
            elif "emptyDir" not in volume:
                raise EmulationError(f"volume {mount['name']!r}: only emptyDir and secret")
        for name, spec in artifacts.items():
            target = self._map(pod, workdir, spec["path"], f"input artifact {name}")
            if "source" in spec:
                src = spec["source"]
                if src.is_dir():
                    shutil.copytree(src, target, dirs_exist_ok=True)
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, target)
            elif "git" in spec:
                self._git_artifact(substitute_obj(spec["git"], scope, allow_unresolved=False),
                                   target)
            else:
                raise EmulationError(f"input artifact {name!r}: only git and from are emulated")
        env = {**self.base_env, "HOME": str(home)}
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref is None:
                raise EmulationError("envFrom: only secretRef is emulated")
            data = self.secrets.get(ref["name"])
            if data is None:
                if ref.get("optional"):
                    continue
                return "Error", None, f"secret {ref['name']!r} not found", ""
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        for var in container.get("env") or []:
            if "value" in var:
                env[var["name"]] = var["value"]
            elif "valueFrom" in var and "secretKeyRef" in var["valueFrom"]:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self.secrets[ref["name"]][ref["key"]]
            else:
                env[var["name"]] = ""
        cmd = [*(container.get("command") or []), *(container.get("args") or [])]
        if not cmd:
            raise EmulationError("a container without command: the image's entrypoint is "
                                 "not known here")
        deadline = resolved.get("activeDeadlineSeconds")
        with self.slots:
            try:
                proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                                      timeout=float(deadline) if deadline else None)
            except subprocess.TimeoutExpired as exc:
                return ("Failed", None, "Pod was active on the node longer than the specified "
                        "deadline", (exc.stdout or "") + (exc.stderr or ""))
            except FileNotFoundError as exc:
                return "Error", None, f"executable not found: {exc}", ""
        log = proc.stdout + proc.stderr
        outputs = resolved.get("outputs") or {}
        node.parameters, node.artifacts = {}, {}
        for a in outputs.get("artifacts") or []:
            path = self._map(pod, workdir, a["path"], f"output artifact {a['name']}")
            if not path.exists():
                if a.get("optional"):
                    continue
                if proc.returncode == 0:
                    return "Error", proc.returncode, f"output artifact {a['name']} not found", log
                continue
            store = self.workdir / "artifacts" / f"{pod.name}-{a['name']}"
            if path.is_dir():
                shutil.copytree(path, store)
            else:
                store.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, store)
            node.artifacts[a["name"]] = store
        for p in outputs.get("parameters") or []:
            path = (p.get("valueFrom") or {}).get("path")
            if path is None:
                raise EmulationError(f"output parameter {p['name']!r}: only valueFrom.path")
            file = self._map(pod, workdir, path, f"output parameter {p['name']}")
            if file.exists():
                value = file.read_text()
                node.parameters[p["name"]] = value[:-1] if value.endswith("\n") else value
            elif "default" in (p.get("valueFrom") or {}):
                node.parameters[p["name"]] = str(p["valueFrom"]["default"])
            elif proc.returncode == 0:
                return "Error", 0, f"output parameter {p['name']} not found", log
        if proc.returncode != 0:
            return "Failed", proc.returncode, f"exit code {proc.returncode}", log
        return "Succeeded", 0, "", log

    def _git_artifact(self, spec: dict[str, Any], target: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"})
        user_ref, pass_ref = spec.get("usernameSecret"), spec.get("passwordSecret")
        config = []
        if user_ref and pass_ref:
            import base64

            user = self.secrets[user_ref["name"]][user_ref["key"]]
            password = self.secrets[pass_ref["name"]][pass_ref["key"]]
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            config = ["-c", f"http.extraHeader=Authorization: Basic {token}"]
        target.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", *config, "clone", "-q", spec["repo"], str(target)], check=True,
                       env=env, capture_output=True)
        if spec.get("revision"):
            subprocess.run(["git", "checkout", "-q", spec["revision"]], cwd=target, check=True,
                           env=env, capture_output=True)


def secrets_choice(alphabet: str, n: int) -> list[str]:
    return [secrets.choice(alphabet) for _ in range(n)]
