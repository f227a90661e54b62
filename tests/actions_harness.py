"""Run composite actions and workflow jobs locally, the way the GitHub runner does.

What is faithful to the runner:

- ``${{ <expr> }}`` in ``run:``, ``env:``, ``with:``, ``if:``, input defaults and action outputs
  is evaluated against the contexts ``github`` (built from a real webhook payload), ``env``,
  ``inputs``, ``steps``, ``runner``, ``job``, ``secrets``, ``vars``, ``needs``; the result is
  pasted into the text *before* the shell sees it, exactly like the runner does. So a workflow
  that puts ``${{ github.event.pull_request.title }}`` inside ``run:`` is injectable here too,
  and a test with a hostile title proves ours are not.
- ``run:`` steps run as ``bash --noprofile --norc -eo pipefail <script>`` (``shell: bash``;
  a workflow step without ``shell:`` gets the runner's default ``bash -e <script>``), in
  ``working-directory`` (default ``$GITHUB_WORKSPACE``).
- ``GITHUB_OUTPUT``, ``GITHUB_ENV``, ``GITHUB_PATH``, ``GITHUB_STEP_SUMMARY`` are files, fresh per
  step; ``name=value`` and ``name<<DELIM`` heredoc forms are parsed after each step.
- ``if:`` supports the status functions (``success()``, ``failure()``, ``always()``,
  ``cancelled()``), ``==``/``!=``/``<``/``>``/``<=``/``>=``, ``&&``/``||``/``!``, parentheses and
  ``contains``/``startsWith``/``endsWith``/``format``/``join``/``toJSON``/``fromJSON``; a step
  without ``if:`` runs only while nothing failed; ``continue-on-error`` is honoured.
- ``uses: ./actions/x`` runs that composite action (nested, its own ``inputs``/``steps`` scope);
  composite ``outputs.<name>.value`` are evaluated in the action's scope.
- ``uses: <owner>/<repo>/<path>@<ref>`` runs a composite action of a repository registered with
  ``Runner(repositories={"<owner>/<repo>": <folder>})`` the way the runner gets it: the files
  of the repository at that ref are put under ``<runner root>/_actions/<owner>/<repo>/<ref>/``,
  outside the workspace, and the action runs from there, with ``github.action_path``,
  ``github.action_repository`` and ``github.action_ref`` set in its expressions and
  ``GITHUB_ACTION_PATH``, ``GITHUB_ACTION_REPOSITORY``, ``GITHUB_ACTION_REF`` in its steps'
  environment (the runner's ``_work/_actions/<owner>/<repo>/<ref>`` layout). A registered
  folder that is a git work tree contributes what git would check out of it (its tracked and
  untracked, not ignored, files), so uncommitted work is what runs.
- Reusable workflows: a job with ``uses: ./.github/workflows/x.yml`` (the caller's repository)
  or ``uses: <owner>/<repo>/.github/workflows/x.yml@<ref>`` (a registered repository) runs the
  called workflow's jobs with ``inputs`` from ``with:`` (declared defaults, ``required``
  checked, booleans and numbers typed), ``secrets`` from ``secrets:`` (or ``inherit``), the
  caller's ``github`` context, and the called workflow's ``on.workflow_call.outputs``
  (``jobs.<id>.outputs.<name>``) as the calling job's outputs. :meth:`Runner.run_workflow`
  runs every job of a workflow in ``needs`` order, each in a fresh clone of the workspace (a
  fresh machine, as each job on GitHub), sharing only the artifact store; a job's ``if:``
  sees ``needs.<id>.result``/``outputs`` and the status functions judge the needed jobs.

Local equivalents for third-party actions (these are JavaScript actions on the runner; here they
get their inputs as ``INPUT_<NAME>`` like a JavaScript action does):

- ``actions/checkout``: the workspace already holds the repository; with ``ref`` it runs
  ``git checkout <ref>``; with ``fetch-depth`` 0 nothing else (the test repo has full history).
  With ``repository`` naming another registered repository it puts that repository's files
  into ``path`` (relative to the workspace, as the real action requires), honouring
  ``sparse-checkout`` patterns (``sparse-checkout-cone-mode: false``: git's non-cone patterns;
  cone mode: the listed folders plus the files at the top).
- ``actions/setup-python``: a fresh virtual environment per job (the runner's tool cache puts a
  Python on ``PATH``, with ``pythonLocation`` set), made afresh at the same path for each
  runner given the same ``toolcache`` folder (the runner image's tool cache, so a cached
  ``pythonLocation`` restores where it was saved; runners used one after the other, as
  machines of the same image are), whose ``sys.path`` also holds the test
  interpreter's site-packages: the runner's network is not here, so every distribution a job
  would download from the index must already be installed in the test environment. Steps'
  ``pip`` is told so (``PIP_NO_INDEX``, no build isolation, no machine pip config); what
  ``pip install`` installs goes into the job's environment and shadows the test one, so the
  suite a job installs from an action's checkout is the one its commands import.
- ``actions/cache``: a directory store under the harness root keyed by ``key``; ``cache-hit``
  (``true`` on the exact key only); ``restore-keys`` prefixes restore the newest entry whose
  key starts with one. As the real action, a miss saves the paths at the end of the job (its
  post step), not when the step runs.
- ``actions/upload-artifact`` / ``actions/download-artifact``: copy into / out of
  ``<harness root>/artifacts/<name>``, keeping paths relative to the least common ancestor of
  the ``path`` lines as the real action does; ``overwrite``; paths holding no file (missing,
  or empty folders) are "No files were found with the provided path" and handled as
  ``if-no-files-found`` says (``warn``, the default: no artifact; ``error``: the step fails),
  as the real action does; download ignores ``run-id`` and ``github-token`` (one store shared
  by the runners made with the same root).

Composite ``run:`` steps do **not** get ``INPUT_*`` variables (the runner does not set them for
composite actions either); actions pass inputs through ``env:``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelops.yamlio import load_yaml_file

EXPR = re.compile(r"\$\{\{(.*?)\}\}", re.S)


class HarnessError(Exception):
    """The action or workflow uses something this harness does not support."""


# --------------------------------------------------------------------------- expressions

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>-?\d+(?:\.\d+)?)
     |(?P<str>'(?:[^']|'')*')
     |(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\],.*])
     |(?P<name>[A-Za-z_][A-Za-z0-9_-]*)
    )""", re.X)


def _tokens(text: str) -> list[tuple[str, Any]]:
    out, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise HarnessError(f"cannot parse expression {text!r} at {text[pos:]!r}")
        pos = m.end()
        if m.group("num") is not None:
            out.append(("lit", float(m.group("num")) if "." in m.group("num")
                        else int(m.group("num"))))
        elif m.group("str") is not None:
            out.append(("lit", m.group("str")[1:-1].replace("''", "'")))
        elif m.group("op") is not None:
            out.append(("op", m.group("op")))
        else:
            name = m.group("name")
            lits = {"true": True, "false": False, "null": None}
            out.append(("lit", lits[name]) if name in lits else ("name", name))
    return out


def to_str(value: Any) -> str:
    """How the runner turns a value into text when it is pasted into a string."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2)
    return str(value)


def truthy(value: Any) -> bool:
    return value not in (None, False, 0, "", 0.0)


def _coerce_num(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    if v is None:
        return 0
    if isinstance(v, str):
        try:
            return float(v) if v.strip() else 0
        except ValueError:
            return float("nan")
    return v


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()  # the runner compares strings case-insensitively
    if type(a) is type(b) or (isinstance(a, int | float) and isinstance(b, int | float)):
        return a == b
    if isinstance(a, dict | list) or isinstance(b, dict | list):
        return a is b
    return _coerce_num(a) == _coerce_num(b)


class _Parser:
    def __init__(self, text: str, ctx: dict, status: str):
        self.toks = _tokens(text)
        self.i = 0
        self.ctx = ctx
        self.status = status
        self.text = text

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, op: str | None = None) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None or (op is not None and tok != ("op", op)):
            raise HarnessError(f"expression {self.text!r}: expected {op or 'more'}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.or_()
        if self.peek() is not None:
            raise HarnessError(f"expression {self.text!r}: unexpected {self.peek()[1]!r}")
        return value

    def or_(self) -> Any:
        left = self.and_()
        while self.peek() == ("op", "||"):
            self.take()
            right = self.and_()
            left = left if truthy(left) else right
        return left

    def and_(self) -> Any:
        left = self.cmp()
        while self.peek() == ("op", "&&"):
            self.take()
            right = self.cmp()
            left = right if truthy(left) else left
        return left

    def cmp(self) -> Any:
        left = self.unary()
        tok = self.peek()
        if tok and tok[0] == "op" and tok[1] in ("==", "!=", "<", ">", "<=", ">="):
            self.take()
            right = self.unary()
            op = tok[1]
            if op == "==":
                return _equal(left, right)
            if op == "!=":
                return not _equal(left, right)
            a, b = _coerce_num(left), _coerce_num(right)
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        return left

    def unary(self) -> Any:
        if self.peek() == ("op", "!"):
            self.take()
            return not truthy(self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        value = self.primary()
        while True:
            tok = self.peek()
            if tok == ("op", "."):
                self.take()
                kind, name = self.take()
                if kind == "op" and name == "*":
                    raise HarnessError("object filters (.*) are not supported")
                value = _index(value, name)
            elif tok == ("op", "["):
                self.take()
                key = self.or_()
                self.take("]")
                value = _index(value, key)
            else:
                return value

    def primary(self) -> Any:
        kind, val = self.take()
        if kind == "lit":
            return val
        if kind == "op" and val == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "name":
            if self.peek() == ("op", "("):
                self.take()
                args = []
                while self.peek() != ("op", ")"):
                    args.append(self.or_())
                    if self.peek() == ("op", ","):
                        self.take()
                self.take(")")
                return self.call(val, args)
            if val not in self.ctx:
                raise HarnessError(f"unknown context {val!r} in {self.text!r}")
            return self.ctx[val]
        raise HarnessError(f"expression {self.text!r}: unexpected {val!r}")

    def call(self, name: str, args: list) -> Any:
        fn = name.lower()
        if fn == "success":
            return self.status == "success"
        if fn == "failure":
            return self.status == "failure"
        if fn == "always":
            return True
        if fn == "cancelled":
            return False
        if fn == "contains":
            hay, needle = args
            if isinstance(hay, list):
                return any(_equal(x, needle) for x in hay)
            return to_str(needle).lower() in to_str(hay).lower()
        if fn == "startswith":
            return to_str(args[0]).lower().startswith(to_str(args[1]).lower())
        if fn == "endswith":
            return to_str(args[0]).lower().endswith(to_str(args[1]).lower())
        if fn == "format":
            fmt, rest = to_str(args[0]), args[1:]
            return re.sub(r"\{(\d+)\}", lambda m: to_str(rest[int(m.group(1))]), fmt)
        if fn == "join":
            sep = to_str(args[1]) if len(args) > 1 else ","
            return sep.join(to_str(x) for x in args[0]) if isinstance(args[0], list) \
                else to_str(args[0])
        if fn == "tojson":
            return json.dumps(args[0], indent=2)
        if fn == "hashfiles":
            return _hash_files(Path(self.ctx["github"]["workspace"]), [to_str(a) for a in args])
        if fn == "fromjson":
            return json.loads(to_str(args[0]))
        raise HarnessError(f"function {name!r} is not supported by the harness")


def _hash_files(workspace: Path, patterns: list[str]) -> str:
    import hashlib

    files = sorted({p for pat in patterns if pat for p in workspace.glob(pat)
                    if p.is_file()})
    if not files:
        return ""
    outer = hashlib.sha256()
    for p in files:
        outer.update(hashlib.sha256(p.read_bytes()).digest())
    return outer.hexdigest()


def _index(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        if isinstance(key, str):
            for k, v in value.items():  # property access is case-insensitive
                if k.lower() == key.lower():
                    return v
        return None
    if isinstance(value, list) and isinstance(key, int | float) and not isinstance(key, bool):
        idx = int(key)
        return value[idx] if 0 <= idx < len(value) else None
    return None


def evaluate(expr: str, ctx: dict, status: str = "success") -> Any:
    """Evaluate the inside of one ``${{ }}``."""
    return _Parser(expr, ctx, status).parse()


def interpolate(text: Any, ctx: dict, status: str = "success") -> Any:
    """Replace every ``${{ expr }}`` in ``text`` (non-strings pass through unchanged)."""
    if not isinstance(text, str):
        return text
    whole = EXPR.fullmatch(text.strip())
    if whole:
        return to_str(evaluate(whole.group(1), ctx, status))
    return EXPR.sub(lambda m: to_str(evaluate(m.group(1), ctx, status)), text)


def condition(text: Any, ctx: dict, status: str) -> bool:
    """An ``if:``: a bare expression, or one wrapped in ``${{ }}``; no ``if`` means success()."""
    if text is None:
        return status == "success"
    if isinstance(text, bool):
        return text and status == "success"
    expr = str(text).strip()
    m = EXPR.fullmatch(expr)
    if m:
        expr = m.group(1)
    uses_status = re.search(r"\b(success|failure|always|cancelled)\s*\(", expr)
    if not uses_status:
        expr = f"success() && ({expr})"
    return truthy(evaluate(expr, ctx, status))


# --------------------------------------------------------------------------- command files

def parse_command_file(path: Path) -> dict[str, str]:
    """Parse ``GITHUB_OUTPUT``/``GITHUB_ENV``: ``name=value`` lines and ``name<<DELIM`` blocks."""
    result: dict[str, str] = {}
    if not path.exists():
        return result
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delim = line.split("<<", 1)
            body = []
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise HarnessError(f"{path.name}: heredoc for {name!r} never ends with {delim!r}")
            i += 1
            result[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            result[name] = value
        else:
            raise HarnessError(f"{path.name}: invalid line {line!r}")
    return result


# --------------------------------------------------------------------------- runner

@dataclass
class StepResult:
    id: str
    name: str
    outcome: str  # success | failure | skipped
    conclusion: str
    outputs: dict[str, str] = field(default_factory=dict)
    stdout: str = ""
    returncode: int | None = None
    seconds: float = 0.0


@dataclass
class RunResult:
    status: str  # success | failure | skipped
    outputs: dict[str, str]
    steps: list[StepResult]
    log: str
    summary: str
    jobs: dict[str, RunResult] = field(default_factory=dict)  # of a called workflow

    def step(self, step_id: str) -> StepResult:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(step_id)


@dataclass
class WorkflowResult:
    status: str  # success | failure
    jobs: dict[str, RunResult]
    outputs: dict[str, str]  # a called workflow's on.workflow_call.outputs


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _triggers(doc: dict) -> dict:
    on = doc.get("on", doc.get(True))  # YAML 1.1 readers may turn `on` into True
    if isinstance(on, str):
        return {on: {}}
    if isinstance(on, list):
        return {k: {} for k in on}
    return {k: (v or {}) for k, v in (on or {}).items()}


def _job_order(jobs: dict, wanted: list[str] | None) -> list[str]:
    """Jobs in an order that respects ``needs`` (declaration order among equals)."""
    todo = list(jobs) if wanted is None else []
    if wanted is not None:
        def add(j: str) -> None:
            for n in _as_list(jobs[j].get("needs")):
                add(n)
            if j not in todo:
                todo.append(j)
        for j in wanted:
            add(j)
    order: list[str] = []
    while todo:
        ready = [j for j in todo if all(n in order for n in _as_list(jobs[j].get("needs"))
                                        if n in todo or n in jobs)]
        if not ready:
            raise HarnessError(f"jobs {todo} need each other (a cycle)")
        order.append(ready[0])
        todo.remove(ready[0])
    return order


def _call_inputs(call: dict, given: dict, source: str) -> dict:
    """``inputs`` of a ``workflow_call``: declared defaults, given values typed, required ones
    checked, unknown ones refused (as GitHub refuses the caller's workflow)."""
    declared = call.get("inputs") or {}
    unknown = set(given) - set(declared)
    if unknown:
        raise HarnessError(f"{source}: unexpected inputs {sorted(unknown)}")
    out: dict[str, Any] = {}
    for name, spec in declared.items():
        spec = spec or {}
        kind = spec.get("type", "string")
        if name in given:
            value = given[name]
        elif spec.get("required"):
            raise HarnessError(f"{source}: input {name!r} is required")
        else:
            value = spec.get("default", {"boolean": False, "number": 0}.get(kind, ""))
        if kind == "boolean":
            value = value if isinstance(value, bool) else str(value).lower() == "true"
        elif kind == "number":
            value = float(value) if not isinstance(value, int | float) else value
        else:
            value = to_str(value)
        out[name] = value
    return out


def copy_repository(src: Path, dest: Path, patterns: list[str] | None = None,
                    cone: bool = True) -> None:
    """The files of the repository at ``src`` into ``dest``: what git would check out (tracked
    and untracked, not ignored, files of a work tree), restricted to sparse-checkout
    ``patterns`` when given."""
    src = Path(src)
    if (src / ".git").exists():
        listed = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"],
                                cwd=src, check=True, capture_output=True).stdout
        files = sorted({f for f in listed.decode().split("\0") if f})
    else:
        files = sorted(str(p.relative_to(src)) for p in src.rglob("*")
                       if p.is_file() and ".git" not in p.relative_to(src).parts)
    if patterns:
        files = [f for f in files if _sparse_match(f, patterns, cone)]
    for rel in files:
        path = src / rel
        if not path.is_file() and not path.is_symlink():
            continue  # deleted in the work tree but still tracked
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target, follow_symlinks=False)
    dest.mkdir(parents=True, exist_ok=True)


def _sparse_match(path: str, patterns: list[str], cone: bool) -> bool:
    import fnmatch

    if cone:  # the listed folders, and every file at the top
        return "/" not in path or any(path.startswith(p.strip("/") + "/") for p in patterns)
    keep = False
    for raw in patterns:
        negate = raw.startswith("!")
        pat = raw[1:] if negate else raw
        anchored = pat.startswith("/")
        pat = pat.strip("/") if pat.endswith("/") else pat.lstrip("/")
        is_dir = raw.rstrip().endswith("/")
        candidates = [path] if anchored else [path, *["/".join(path.split("/")[i:])
                                                      for i in range(1, path.count("/") + 1)]]
        hit = any((c == pat or c.startswith(pat + "/")) if is_dir else fnmatch.fnmatch(c, pat)
                  for c in candidates)
        if hit:
            keep = not negate
    return keep


def github_context(event_name: str, payload: dict, workspace: Path, *, token: str = "",
                   api_url: str = "https://api.github.com", run_id: int = 4242) -> dict:
    """The ``github`` context the runner would build for ``payload``."""
    repo = payload.get("repository") or {}
    pr = payload.get("pull_request") or {}
    if event_name in ("pull_request", "pull_request_target"):
        ref = f"refs/pull/{payload.get('number', pr.get('number'))}/merge"
        sha = pr.get("head", {}).get("sha", "")
        head_ref, base_ref = pr.get("head", {}).get("ref", ""), pr.get("base", {}).get("ref", "")
    else:
        ref = payload.get("ref") or f"refs/heads/{repo.get('default_branch', 'main')}"
        sha = payload.get("after") or payload.get("workflow_run", {}).get("head_sha") or "0" * 40
        head_ref = base_ref = ""
    return {
        "event_name": event_name, "event": payload, "repository": repo.get("full_name", ""),
        "repository_owner": (repo.get("owner") or {}).get("login", ""),
        "ref": ref, "ref_name": ref.rsplit("/", 1)[-1], "sha": sha,
        "head_ref": head_ref, "base_ref": base_ref,
        "actor": (payload.get("sender") or {}).get("login", ""),
        "run_id": str(run_id), "run_number": "1", "run_attempt": "1", "job": "",
        "workspace": str(workspace), "token": token, "server_url": "https://github.com",
        "api_url": api_url, "workflow": "test", "action_path": "",
    }


class Runner:
    """One simulated job: a workspace, a ``github`` context and a base environment."""

    def __init__(self, workspace: Path, root: Path, github: dict, *, env: dict | None = None,
                 secrets: dict | None = None, vars: dict | None = None, timeout: float = 600,
                 repositories: dict[str, Path] | None = None, toolcache: Path | None = None):
        self.workspace = Path(workspace)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        # the runner image's tool cache: each job's Python is made afresh at the same path
        self.toolcache = Path(toolcache) if toolcache is not None else self.root / "toolcache"
        self.post_saves: list[tuple[Path, str, list[Path]]] = []  # actions/cache post steps
        self.nested = False
        self.github = github
        self.base_env = dict(env or {})
        self.secrets = dict(secrets or {})
        self.vars = dict(vars or {})
        self.timeout = timeout
        # "owner/repo" -> a folder standing for that GitHub repository (any ref)
        self.repositories = {k.lower(): Path(v) for k, v in (repositories or {}).items()}
        self.python: Path | None = None  # this job's interpreter (actions/setup-python)
        self.path_prepend: list[str] = []
        self.job_env: dict[str, str] = {}
        self.log: list[str] = []
        self.summary_parts: list[str] = []
        self.artifacts = self.root / "artifacts"
        self.cache = self.root / "cache"
        self.temp = self.root / "runner-temp"
        self.temp.mkdir(exist_ok=True)

    # -- environment -----------------------------------------------------------------

    def _process_env(self, step_env: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("GITHUB_", "INPUT_", "RUNNER_"))}
        env.update(self.base_env)
        env.update({
            "CI": "true", "GITHUB_ACTIONS": "true",
            "GITHUB_WORKSPACE": str(self.workspace),
            "GITHUB_EVENT_NAME": self.github["event_name"],
            "GITHUB_EVENT_PATH": str(self._event_path()),
            "GITHUB_REPOSITORY": self.github["repository"],
            "GITHUB_REPOSITORY_OWNER": self.github["repository_owner"],
            "GITHUB_SHA": self.github["sha"], "GITHUB_REF": self.github["ref"],
            "GITHUB_REF_NAME": self.github["ref_name"],
            "GITHUB_HEAD_REF": self.github["head_ref"], "GITHUB_BASE_REF": self.github["base_ref"],
            "GITHUB_RUN_ID": self.github["run_id"], "GITHUB_ACTOR": self.github["actor"],
            "GITHUB_API_URL": self.github["api_url"],
            "GITHUB_SERVER_URL": self.github["server_url"],
            "RUNNER_TEMP": str(self.temp), "RUNNER_OS": "Linux",
        })
        # no network here: pip finds every distribution in the job's environment already
        for key in [k for k in env if k.startswith("PIP_")]:
            del env[key]
        env.update({"PIP_NO_INDEX": "1", "PIP_NO_BUILD_ISOLATION": "0",
                    "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        env.update(self.job_env)
        env.update(step_env)
        if self.path_prepend:
            env["PATH"] = os.pathsep.join([*reversed(self.path_prepend), env.get("PATH", "")])
        return env

    def _event_path(self) -> Path:
        path = self.root / "event.json"
        if not path.exists():
            path.write_text(json.dumps(self.github["event"]), encoding="utf-8")
        return path

    def context(self, scope: dict | None = None) -> dict:
        """The expression contexts for ``scope`` (default: an empty job scope)."""
        return self._context(scope or {"steps": {}})

    def _context(self, scope: dict) -> dict:
        env = {**self.base_env, **self.job_env, **scope.get("env", {})}
        return {
            "github": {**self.github, "action_path": scope.get("action_path", ""),
                       "action_repository": scope.get("action_repository", ""),
                       "action_ref": scope.get("action_ref", "")},
            "env": env, "inputs": scope.get("inputs", {}), "steps": scope["steps"],
            "runner": {"os": "Linux", "arch": "X64", "temp": str(self.temp),
                       "tool_cache": str(self.root / "tool-cache"), "name": "harness"},
            "job": {"status": scope.get("status", "success")}, "secrets": self.secrets,
            "vars": self.vars, "needs": scope.get("needs", {}), "matrix": {}, "strategy": {},
        }

    # -- actions and jobs ------------------------------------------------------------

    def run_action(self, action: str | Path, inputs: dict | None = None) -> RunResult:
        """Run a composite action: a directory, ``./actions/x`` (relative to the workspace), or
        ``<owner>/<repo>/<path>@<ref>`` of a registered repository (run from the runner's
        ``_actions`` folder, outside the workspace)."""
        remote = self._remote_action(str(action)) if isinstance(action, str) else None
        if remote is not None:
            action_dir, repository, ref = remote
            result = self._run_action_dir(action_dir, inputs, repository, ref)
        else:
            action_dir = Path(action)
            if not action_dir.is_absolute():
                action_dir = self.workspace / action_dir
            result = self._run_action_dir(action_dir, inputs, "", "")
        if not self.nested:  # an action run on its own is the whole job: its post steps
            self.run_post_steps(result.status)
        return result

    def run_post_steps(self, status: str = "success") -> None:
        """The end of the job: ``actions/cache`` saves what its missed keys name, when the job
        succeeded (its ``post-if: success()``); a key that exists by then is kept as it is, as
        the real action does."""
        pending, self.post_saves[:] = list(self.post_saves), []
        if status != "success":
            return
        for store, key, paths in pending:
            if store.exists():
                continue
            tmp = store.with_name(store.name + ".saving")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for i, src in enumerate(paths):
                if src.exists():
                    _copy_entries(src, tmp / str(i))
            (tmp / "key").write_text(key, encoding="utf-8")
            tmp.rename(store)

    def _run_action_dir(self, action_dir: Path, inputs: dict | None, repository: str,
                        ref: str) -> RunResult:
        meta = load_yaml_file(action_dir / "action.yml")
        runs = meta.get("runs") or {}
        if runs.get("using") != "composite":
            raise HarnessError(f"{action_dir}: only composite actions are supported")
        given = {k.lower(): v for k, v in (inputs or {}).items()}
        declared = meta.get("inputs") or {}
        unknown = set(given) - {k.lower() for k in declared}
        if unknown:
            raise HarnessError(f"{action_dir.name}: unexpected inputs {sorted(unknown)}")
        scope: dict[str, Any] = {"steps": {}, "inputs": {}, "action_path": str(action_dir),
                                 "action_repository": repository, "action_ref": ref,
                                 "env": {}}
        ctx = self._context(scope)
        for name, spec in declared.items():
            spec = spec or {}
            if name.lower() in given:
                value = to_str(given[name.lower()])
            elif spec.get("required") and "default" not in spec:
                raise HarnessError(f"{action_dir.name}: input {name!r} is required")
            else:
                value = interpolate(to_str(spec.get("default", "")), ctx)
            scope["inputs"][name] = value
        status, results = self._run_steps(runs.get("steps") or [], scope)
        ctx = self._context({**scope, "status": status})
        outputs = {name: to_str(interpolate(spec.get("value", ""), ctx, status))
                   for name, spec in (meta.get("outputs") or {}).items()}
        return RunResult(status, outputs, results, "\n".join(self.log),
                         "\n".join(self.summary_parts))

    def run_job(self, workflow: str | Path, job_id: str, *, needs: dict | None = None,
                inputs: dict | None = None) -> RunResult:
        """Run one job of a workflow file (its ``if:``, ``env:`` and steps, or the reusable
        workflow its ``uses:`` calls). ``needs`` is ``{job: {"result", "outputs"}}``;
        ``inputs`` those of a ``workflow_call``."""
        wf = load_yaml_file(Path(workflow))
        job = (wf.get("jobs") or {})[job_id]
        if "strategy" in job:
            raise HarnessError(f"job {job_id!r}: strategy/matrix is not supported")
        called = inputs is not None
        inputs = dict(inputs or {})
        if not called and self.github["event_name"] == "workflow_dispatch":
            declared = ((wf.get("on") or {}).get("workflow_dispatch") or {}).get("inputs") or {}
            inputs = {k: (v or {}).get("default", "") for k, v in declared.items()}
            inputs.update(self.github["event"].get("inputs") or {})
            missing = [k for k, v in declared.items() if (v or {}).get("required")
                       and inputs.get(k) in (None, "")]
            if missing:
                raise HarnessError(f"workflow_dispatch: required inputs {missing} not given")
        scope: dict[str, Any] = {"steps": {}, "inputs": inputs, "env": {},
                                 "needs": needs or {}}
        self.job_env = {k: to_str(v) for k, v in (wf.get("env") or {}).items()}
        ctx = self._context(scope)
        needs_status = "failure" if any((n or {}).get("result") not in ("success", None)
                                        for n in (needs or {}).values()) else "success"
        if not condition(job.get("if"), ctx, needs_status):
            self.log.append(f"job {job_id}: skipped by its if:")
            return RunResult("skipped", {}, [], "\n".join(self.log), "")
        if "uses" in job:  # a reusable workflow
            path, _ref = self._workflow_file(str(job["uses"]))
            with_ = {k: interpolate(v, ctx) if isinstance(v, str) else v
                     for k, v in (job.get("with") or {}).items()}
            given = job.get("secrets")
            secrets = dict(self.secrets) if given == "inherit" else {
                k: to_str(interpolate(v, ctx)) for k, v in (given or {}).items()}
            self.log.append(f"job {job_id}: calls {job['uses']}")
            called_result = self.run_workflow(path, inputs=with_, secrets=secrets)
            return RunResult(called_result.status, called_result.outputs, [],
                             "\n".join(self.log), "\n".join(self.summary_parts),
                             jobs=called_result.jobs)
        for k, v in (job.get("env") or {}).items():
            self.job_env[k] = to_str(interpolate(v, self._context(scope)))
        status, results = self._run_steps(job.get("steps") or [], scope)
        self.run_post_steps(status)
        ctx = self._context({**scope, "status": status})
        outputs = {k: to_str(interpolate(v, ctx, status))
                   for k, v in (job.get("outputs") or {}).items()}
        return RunResult(status, outputs, results, "\n".join(self.log),
                         "\n".join(self.summary_parts))

    def _run_steps(self, steps: list[dict], scope: dict) -> tuple[str, list[StepResult]]:
        status = "success"
        results: list[StepResult] = []
        for index, step in enumerate(steps):
            step_id = str(step.get("id") or f"__step{index}")
            name = str(step.get("name") or step.get("uses") or f"step {index}")
            ctx = self._context({**scope, "status": status})
            if not condition(step.get("if"), ctx, status):
                res = StepResult(step_id, name, "skipped", "skipped")
                self.log.append(f"::step {name}: skipped")
            else:
                start = time.perf_counter()
                res = self._run_one(step, step_id, name, scope, status)
                res.seconds = time.perf_counter() - start
                if res.outcome == "failure" and not truthy(
                        interpolate(step.get("continue-on-error", False), ctx, status)):
                    status = "failure"
                elif res.outcome == "failure":
                    res.conclusion = "success"
            scope["steps"][step_id] = {"outputs": res.outputs, "outcome": res.outcome,
                                       "conclusion": res.conclusion}
            results.append(res)
        return status, results

    def _run_one(self, step: dict, step_id: str, name: str, scope: dict,
                 status: str) -> StepResult:
        ctx = self._context({**scope, "status": status})
        step_env = {k: to_str(interpolate(v, ctx, status))
                    for k, v in (step.get("env") or {}).items()}
        if scope.get("action_path"):  # set by the runner for a composite action's steps
            step_env.update({"GITHUB_ACTION_PATH": scope["action_path"],
                             "GITHUB_ACTION_REPOSITORY": scope.get("action_repository", ""),
                             "GITHUB_ACTION_REF": scope.get("action_ref", "")})
        self.log.append(f"::step {name}")
        if "run" in step:
            shell = step.get("shell")
            if shell not in ("bash", None):
                raise HarnessError(f"step {name!r}: shell {shell!r} is not supported")
            if scope.get("action_path") and shell is None:
                raise HarnessError(f"step {name!r}: composite run steps need shell:")
            # an explicit `shell: bash` adds pipefail; a workflow step without shell does not
            flags = ["--noprofile", "--norc", "-eo", "pipefail"] if shell else ["-e"]
            script = interpolate(str(step["run"]), ctx, status)
            cwd = interpolate(step.get("working-directory", str(self.workspace)), ctx, status)
            return self._bash(script, Path(self.workspace, cwd), step_env, step_id, name, flags)
        uses = str(step.get("uses", ""))
        with_ = {k: to_str(interpolate(v, ctx, status))
                 for k, v in (step.get("with") or {}).items()}
        for key in ("GITHUB_ACTION_PATH", "GITHUB_ACTION_REPOSITORY", "GITHUB_ACTION_REF"):
            step_env.pop(key, None)  # the nested action gets its own
        if uses.startswith("./") or self._remote_action(uses) is not None:
            sub = Runner.__new__(Runner)
            sub.__dict__.update(self.__dict__)
            sub.nested = True  # its post steps are the job's (the list is shared)
            sub.job_env = {**self.job_env, **step_env}
            result = sub.run_action(uses, with_)
            self.path_prepend = sub.path_prepend
            self.python = sub.python
            self.job_env.update({k: v for k, v in sub.job_env.items() if k not in step_env})
            return StepResult(step_id, name, result.status, result.status, result.outputs)
        return self._builtin(uses, with_, step_env, step_id, name)

    # -- repositories other than the workspace's ---------------------------------------

    def _repository(self, name: str) -> Path:
        src = self.repositories.get(name.lower())
        if src is None:
            raise HarnessError(f"repository {name!r} is not registered with the harness "
                               "(Runner(repositories={...}))")
        return src

    def _remote_action(self, uses: str) -> tuple[Path, str, str] | None:
        """``(action dir, owner/repo, ref)`` for ``<owner>/<repo>[/<path>]@<ref>`` of a
        registered repository, materialised as the runner does: the repository's files at that
        ref under ``<root>/_actions/<owner>/<repo>/<ref>``."""
        m = re.fullmatch(r"([^/@\s]+)/([^/@\s]+)((?:/[^@\s]+)?)@([^@\s]+)", uses)
        if not m or f"{m.group(1)}/{m.group(2)}".lower() not in self.repositories:
            return None
        owner, repo, sub, ref = m.group(1), m.group(2), m.group(3).lstrip("/"), m.group(4)
        dest = self.root / "_actions" / owner / repo / ref
        if not dest.exists():
            copy_repository(self._repository(f"{owner}/{repo}"), dest)
        return dest / sub, f"{owner}/{repo}", ref

    # -- workflows ---------------------------------------------------------------------

    def _workflow_file(self, uses: str) -> tuple[Path, str]:
        """A reusable workflow's file: ``./.github/workflows/x.yml`` in the workspace, or
        ``<owner>/<repo>/.github/workflows/x.yml@<ref>`` of a registered repository."""
        if uses.startswith("./"):
            return self.workspace / uses[2:], ""
        m = re.fullmatch(r"([^/@\s]+)/([^/@\s]+)/(\.github/workflows/[^@\s]+)@([^@\s]+)", uses)
        if not m:
            raise HarnessError(f"{uses!r} is not a reusable workflow reference")
        src = self._repository(f"{m.group(1)}/{m.group(2)}")
        return src / m.group(3), m.group(4)

    def run_workflow(self, workflow: str | Path, *, inputs: dict | None = None,
                     secrets: dict | None = None, jobs: list[str] | None = None,
                     fresh: bool = True) -> WorkflowResult:
        """Run the jobs of a workflow in ``needs`` order (all, or ``jobs`` and what they
        need), each in a fresh clone of the workspace when ``fresh`` (a job gets a fresh
        machine), sharing the artifact store. ``inputs``/``secrets`` are those of a
        ``workflow_call`` (given by a calling job)."""
        wf = load_yaml_file(Path(workflow))
        all_jobs = wf.get("jobs") or {}
        order = _job_order(all_jobs, jobs)
        call = _triggers(wf).get("workflow_call") if inputs is not None else None
        if call is not None or inputs is not None:
            inputs = _call_inputs(call or {}, inputs or {}, str(workflow))
        results: dict[str, RunResult] = {}
        needs_ctx: dict[str, dict] = {}
        for job_id in order:
            job = all_jobs[job_id]
            needed = _as_list(job.get("needs"))
            # a job that calls a workflow is no machine: its called jobs get the fresh ones
            runner = self._job_runner(job_id) if fresh and "uses" not in job else self
            if secrets is not None:
                runner.secrets = dict(secrets)
            result = runner.run_job(Path(workflow), job_id,
                                    needs={n: needs_ctx[n] for n in needed if n in needs_ctx},
                                    inputs=inputs)
            results[job_id] = result
            needs_ctx[job_id] = {"result": result.status, "outputs": result.outputs}
        outputs: dict[str, str] = {}
        if call is not None:
            ctx = self._context({"steps": {}, "inputs": inputs or {}})
            ctx["jobs"] = {j: {"result": r.status, "outputs": r.outputs}
                           for j, r in results.items()}
            outputs = {name: to_str(interpolate((spec or {}).get("value", ""), ctx))
                       for name, spec in (call.get("outputs") or {}).items()}
        failed = any(r.status == "failure" for r in results.values())
        return WorkflowResult("failure" if failed else "success", results, outputs)

    def _job_runner(self, job_id: str) -> Runner:
        """A fresh machine for one job: a clone of the workspace, its own temp and PATH."""
        ws = self.root / "jobs" / f"{job_id}-{uuid.uuid4().hex[:6]}" / "workspace"
        ws.parent.mkdir(parents=True)
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(self.workspace), str(ws)],
                       check=True, capture_output=True)
        runner = Runner(ws, self.root / "jobs" / ws.parent.name, self.github,
                        env=self.base_env, secrets=self.secrets, vars=self.vars,
                        timeout=self.timeout, repositories=self.repositories)
        runner.artifacts, runner.cache = self.artifacts, self.cache
        runner.log = self.log
        runner.summary_parts = self.summary_parts
        return runner

    def _files(self) -> dict[str, Path]:
        tag = uuid.uuid4().hex[:8]
        files = {k: self.temp / f"{k.lower()}_{tag}" for k in
                 ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_PATH", "GITHUB_STEP_SUMMARY")}
        for p in files.values():
            p.write_text("", encoding="utf-8")
        return files

    def _collect(self, files: dict[str, Path]) -> dict[str, str]:
        self.job_env.update(parse_command_file(files["GITHUB_ENV"]))
        for line in files["GITHUB_PATH"].read_text(encoding="utf-8").splitlines():
            if line.strip():
                self.path_prepend.append(line.strip())
        summary = files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8")
        if summary:
            self.summary_parts.append(summary)
        return parse_command_file(files["GITHUB_OUTPUT"])

    def _bash(self, script: str, cwd: Path, step_env: dict, step_id: str,
              name: str, flags: list[str]) -> StepResult:
        files = self._files()
        script_path = self.temp / f"script_{uuid.uuid4().hex[:8]}.sh"
        script_path.write_text(script, encoding="utf-8")
        env = self._process_env(step_env)
        env.update({k: str(v) for k, v in files.items()})
        proc = subprocess.run(["bash", *flags, str(script_path)], cwd=cwd, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=self.timeout)
        self.log.append(proc.stdout)
        outputs = self._collect(files)
        outcome = "success" if proc.returncode == 0 else "failure"
        if outcome == "failure":
            self.log.append(f"::error step {name!r} exited {proc.returncode}")
        return StepResult(step_id, name, outcome, outcome, outputs, proc.stdout, proc.returncode)

    # -- local equivalents of third-party actions -------------------------------------

    def _setup_python(self) -> Path:
        """This job's interpreter: a fresh virtual environment whose ``sys.path`` ends with
        the test interpreter's site-packages (what the network would otherwise provide)."""
        if self.python is not None:
            return self.python
        venv = self.toolcache / "Python" / ".".join(map(str, sys.version_info[:3])) / "x64"
        shutil.rmtree(venv, ignore_errors=True)  # a fresh machine: the image's own Python
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                       capture_output=True)
        python = venv / "bin" / "python"
        purelib = subprocess.run([str(python), "-c", "import sysconfig; "
                                  "print(sysconfig.get_paths()['purelib'])"],
                                 check=True, capture_output=True, text=True).stdout.strip()
        Path(purelib, "zz-harness-network.pth").write_text(
            "".join(f"{p}\n" for p in _site_packages()), encoding="utf-8")
        self.python = python
        return python

    def _cache_by_prefix(self, prefixes: list[str]) -> Path | None:
        """The newest saved entry whose key starts with the first prefix that matches any."""
        if not self.cache.is_dir():
            return None
        saved = [(p, (p / "key").read_text(encoding="utf-8")) for p in self.cache.iterdir()
                 if (p / "key").is_file()]
        for prefix in prefixes:
            found = _newest([p for p, key in saved if key.startswith(prefix)])
            if found is not None:
                return found
        return None

    def _builtin(self, uses: str, with_: dict, step_env: dict, step_id: str,
                 name: str) -> StepResult:
        action = uses.split("@", 1)[0]
        if "@" not in uses:
            raise HarnessError(f"step {name!r}: {uses!r} has no version")
        inputs_env = {f"INPUT_{k.upper().replace(' ', '_')}": v for k, v in with_.items()}
        outputs: dict[str, str] = {}
        if action == "actions/checkout":
            repository = with_.get("repository", "")
            rel = with_.get("path", "")
            own = not repository or repository.lower() == str(self.github["repository"]).lower()
            if rel or not own:
                dest = (self.workspace / rel).resolve()
                if not rel or not dest.is_relative_to(self.workspace.resolve()) \
                        or dest == self.workspace.resolve():
                    raise HarnessError(f"step {name!r}: checkout path {rel!r} must be a folder "
                                       "under the workspace")
                patterns = [line.strip() for line in with_.get("sparse-checkout", "")
                            .splitlines() if line.strip()]
                cone = with_.get("sparse-checkout-cone-mode", "true").lower() != "false"
                src = self.workspace if own and repository.lower() not in self.repositories \
                    else self._repository(repository or str(self.github["repository"]))
                copy_repository(src, dest, patterns or None, cone)
            else:
                ref = with_.get("ref", "")
                if ref:
                    subprocess.run(["git", "checkout", "-q", ref], cwd=self.workspace,
                                   check=True, env=self._process_env({**step_env, **inputs_env}))
        elif action == "actions/setup-python":
            python = self._setup_python()
            self.path_prepend.append(str(python.parent))
            self.job_env["pythonLocation"] = str(python.parent.parent)
            outputs["python-version"] = ".".join(map(str, sys.version_info[:3]))
            outputs["python-path"] = str(python)
        elif action == "actions/cache":
            key = with_.get("key", "")
            store = self.cache / re.sub(r"[^A-Za-z0-9._-]", "_", key)
            # relative to the workspace (``~`` stays a folder there: the machine's own home
            # is not the runner's); absolute paths (``pythonLocation``) as they are
            paths = [self.workspace / p.strip()
                     for p in with_.get("path", "").splitlines() if p.strip()]
            hit = store.exists()
            found = store if hit else self._cache_by_prefix(
                [p.strip() for p in with_.get("restore-keys", "").splitlines() if p.strip()])
            if found is not None:
                for i, p in enumerate(paths):
                    if (found / str(i)).exists():
                        _copy_entries(found / str(i), p)
                outputs["cache-matched-key"] = (found / "key").read_text(encoding="utf-8")
            if not hit:  # saved by the action's post step, at the end of the job
                self.post_saves.append((store, key, paths))
            outputs["cache-hit"] = "true" if hit else "false"
        elif action == "actions/upload-artifact":
            dest = self.artifacts / with_["name"]
            if dest.exists() and with_.get("overwrite", "false") != "true":
                self.log.append(f"::error artifact {with_['name']!r} already exists")
                return StepResult(step_id, name, "failure", "failure", {})
            paths = [Path(self.workspace, p.strip()) for p in with_.get("path", "").splitlines()
                     if p.strip()]
            found = [p for p in paths if p.exists()]
            # like the real action, a folder counts by the files in it: an empty one is
            # "no files", handled as if-no-files-found says (warn: no artifact at all)
            files = [f for p in found for f in ([p] if p.is_file() else p.rglob("*"))
                     if f.is_file()]
            if not files:
                mode = with_.get("if-no-files-found", "warn")
                text = ("No files were found with the provided path: "
                        + ", ".join(with_.get("path", "").split()) + ". No artifacts will be "
                        "uploaded.")
                if mode == "error":
                    self.log.append(f"::error {text}")
                    return StepResult(step_id, name, "failure", "failure", {})
                if mode == "warn":
                    self.log.append(f"::warning {text}")
                return StepResult(step_id, name, "success", "success", {})
            shutil.rmtree(dest, ignore_errors=True)
            # like the real action: paths relative to the least common ancestor
            root = Path(os.path.commonpath([p if p.is_dir() else p.parent for p in found]))
            for p in found:
                _copy(p, dest / p.relative_to(root))
            outputs["artifact-id"] = "1"
        elif action == "actions/download-artifact":
            src = self.artifacts / with_["name"]
            if not src.exists():
                self.log.append(f"::error artifact {with_['name']!r} not found")
                return StepResult(step_id, name, "failure", "failure", {})
            _copy(src, Path(self.workspace, with_.get("path", ".")))
            outputs["download-path"] = str(Path(self.workspace, with_.get("path", ".")))
        else:
            raise HarnessError(f"step {name!r}: no local equivalent for {uses!r}")
        self.log.append(f"::step {name}: local equivalent of {action}")
        return StepResult(step_id, name, "success", "success", outputs)


def _site_packages() -> list[str]:
    import sysconfig

    return list(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))


def _newest(stores: list[Path]) -> Path | None:
    return max(stores, key=lambda p: p.stat().st_mtime_ns, default=None)


def _copy_entries(src: Path, dest: Path) -> None:
    """``src`` onto ``dest`` the way tar extracts an archive: links stay links (a venv's
    ``bin/python`` points at the interpreter, which must never be written through), and an
    entry already at ``dest`` is replaced."""
    if src.is_symlink() or not src.is_dir():
        if dest.is_symlink() or dest.is_file():
            dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            os.symlink(os.readlink(src), dest)
        else:
            shutil.copy2(src, dest)
        return
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    for child in src.iterdir():
        _copy_entries(child, dest / child.name)


def _copy(src: Path, dest: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dest, dirs_exist_ok=True)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
