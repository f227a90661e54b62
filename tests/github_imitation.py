"""A GitHub REST API imitation for tests: a real HTTP server on 127.0.0.1.

github3.py talks to it in GitHub Enterprise mode (``github3.enterprise_login(url=api.url)``
appends ``/api/v3``; ``GITHUB_API_URL`` is ``api.api_url``). Every request and every response is
validated against GitHub's own OpenAPI description (``tests/data/github/openapi-subset.json``,
see ORIGIN.md there), so the imitation cannot drift from GitHub: a request to an operation that is
not in the subset, a missing required field, a wrong type, all land in ``api.violations`` and the
``github_api`` fixture fails the test.

What it imitates:

- issue comments (list with real ``Link`` pagination, ``per_page`` up to 100; create, get,
  update, delete), pull requests (list, create, get), commit statuses (create, combined status),
  check runs (create, update), ``GET /repos/{owner}/{repo}`` and ``GET /rate_limit``;
- tokens with permissions: an unknown token gets 401 "Bad credentials"; a read-only token gets
  403 "Resource not accessible by integration" on every write (what a fork PR's token gets);
- injected faults (:meth:`GitHubImitation.inject`): any status with any headers (403, 429 with
  ``retry-after``, 403 with ``x-ratelimit-remaining: 0`` + ``x-ratelimit-reset``, 502, ...), a
  delay before answering, and optionally performing the operation anyway (a POST that times out
  on the client but was done on the server);
- a log of every request (:attr:`GitHubImitation.requests`) so tests can count them.

Other parts of the suite import the fixture: ``from tests.github_imitation import github_api``.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import html
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

DATA = Path(__file__).resolve().parent / "data" / "github"
SPEC_PATH = DATA / "openapi-subset.json"
WEBHOOKS = DATA / "webhooks"
SPEC_HOST = "https://api.github.com"  # the spec's server; our /api/v3 prefix maps onto it
INTEGRATION_403 = "Resource not accessible by integration"
DOCS = "https://docs.github.com/rest"


@lru_cache(maxsize=1)
def spec_dict() -> dict:
    return json.loads(SPEC_PATH.read_text())


@lru_cache(maxsize=1)
def _openapi():
    from openapi_core import OpenAPI

    return OpenAPI.from_dict(spec_dict())


def example(name: str) -> dict | list:
    """A deep copy of ``components/examples/<name>`` of the spec (used as response templates)."""
    return copy.deepcopy(spec_dict()["components"]["examples"][name]["value"])


def webhook_payload(name: str) -> dict:
    """A real webhook payload, e.g. ``webhook_payload("pull_request.opened")``."""
    return json.loads((WEBHOOKS / f"{name}.json").read_text())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Token:
    """``write``: True (all), False (read-only, a fork PR's token) or the set of permissions
    that may write, named as in a workflow's ``permissions:`` (``issues``, ``pull-requests``,
    ``statuses``, ``checks``, ``contents``)."""

    login: str
    write: bool | frozenset = True
    user_type: str = "Bot"

    def can_write(self, needs: tuple[str, ...]) -> bool:
        if isinstance(self.write, bool):
            return self.write
        return any(n in self.write for n in needs)


def _permission(rest: list[str]) -> tuple[str, ...]:
    """Which write permission a repository path needs (any one of them is enough)."""
    head = rest[0] if rest else ""
    return {"issues": ("issues", "pull-requests"), "pulls": ("pull-requests",),
            "statuses": ("statuses",), "check-runs": ("checks",),
            "dispatches": ("contents",), "contents": ("contents",)}.get(head, ("admin",))


@dataclass
class Fault:
    method: str
    path: str  # fnmatch pattern on the path after /api/v3, e.g. "/repos/*/comments"
    status: int = 502
    headers: dict = field(default_factory=dict)
    message: str = "Server Error"
    times: int = 1
    delay: float = 0.0
    perform: bool = False  # do the operation anyway, then answer with the fault
    on_hit: Callable[[], None] | None = None  # change the state when the fault fires
    hits: int = 0


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    status: int
    body: object = None
    authorization: str | None = None  # only "present"/None: tests check the scheme, not secrets


@dataclass
class Repo:
    owner: str
    name: str
    id: int
    comments: dict = field(default_factory=dict)  # issue number -> [comment dict]
    statuses: dict = field(default_factory=dict)  # sha -> [status dict]
    check_runs: dict = field(default_factory=dict)  # id -> check run dict
    pulls: list = field(default_factory=list)
    labels: dict = field(default_factory=dict)  # issue number -> [label name]
    dispatches: list = field(default_factory=list)  # repository_dispatch bodies


class _Answer(Exception):
    def __init__(self, status: int, body=None, headers: dict | None = None):
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, message: str, headers: dict | None = None) -> _Answer:
    return _Answer(status, {"message": message, "documentation_url": DOCS}, headers)


class GitHubImitation:
    """The server plus its state. Start with :meth:`start`, stop with :meth:`stop`."""

    def __init__(self, *, validate: bool = True):
        self.validate = validate
        self.repos: dict[str, Repo] = {}
        self.tokens: dict[str, Token] = {}
        self.faults: list[Fault] = []
        self.requests: list[Recorded] = []
        self.violations: list[str] = []
        self.rate_limit = 5000
        self._next_id = 1000
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> GitHubImitation:
        # Build the OpenAPI validator before the first request, not while answering it: that
        # takes about a second, which a client with a short read timeout would see as a stall
        # of the imitation (a retry the test did not ask for).
        _openapi()
        imitation = self

        class Handler(_Handler):
            api = imitation

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        """The enterprise URL github3.py wants (``enterprise_login(url=...)``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """What ``GITHUB_API_URL`` holds for this server."""
        return self.url + "/api/v3"

    @property
    def server_url(self) -> str:
        """What ``GITHUB_SERVER_URL`` holds (html links)."""
        return self.url

    # -- state set-up ----------------------------------------------------------------------
    def add_repo(self, full_name: str) -> Repo:
        owner, name = full_name.split("/")
        with self._lock:
            repo = self.repos.setdefault(full_name, Repo(owner, name, self._new_id()))
        return repo

    def add_token(self, token: str, login: str, *, write: bool | set[str] = True,
                  user_type: str = "Bot") -> None:
        """``write``: True, False, or a set of permissions such as ``{"issues", "statuses"}``."""
        self.tokens[token] = Token(login, write if isinstance(write, bool)
                                   else frozenset(write), user_type)

    def add_comment(self, full_name: str, number: int, login: str, body: str) -> dict:
        with self._lock:
            return self._new_comment(self.add_repo(full_name), number, login, body)

    def comments(self, full_name: str, number: int) -> list[dict]:
        return list(self.repos[full_name].comments.get(number, []))

    def inject(self, method: str, path: str, status: int = 502, *, times: int = 1,
               headers: dict | None = None, message: str | None = None, delay: float = 0.0,
               perform: bool = False, on_hit: Callable[[], None] | None = None) -> Fault:
        """Answer the next ``times`` requests matching ``method`` and ``path`` with a fault."""
        default = {403: "Forbidden", 429: "API rate limit exceeded",
                   502: "Server Error"}.get(status, "Server Error")
        fault = Fault(method.upper(), path, status, dict(headers or {}), message or default,
                      times, delay, perform, on_hit)
        self.faults.append(fault)
        return fault

    def count(self, method: str | None = None, path: str | None = None) -> int:
        """How many requests were made, optionally filtered by method and path pattern."""
        return sum(1 for r in self.requests
                   if (method is None or r.method == method.upper())
                   and (path is None or fnmatch.fnmatchcase(r.path, path)))

    def reset_log(self) -> None:
        self.requests.clear()

    # -- objects ---------------------------------------------------------------------------
    def _new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def _user(self, login: str, user_type: str = "User") -> dict:
        api = self.api_url
        return {
            "login": login, "id": abs(hash(login)) % 10**7 + 1, "node_id": "MDQ6VXNlcjE=",
            "avatar_url": f"{self.url}/avatars/{login}", "gravatar_id": "",
            "url": f"{api}/users/{login}", "html_url": f"{self.url}/{login}",
            "followers_url": f"{api}/users/{login}/followers",
            "following_url": f"{api}/users/{login}/following{{/other_user}}",
            "gists_url": f"{api}/users/{login}/gists{{/gist_id}}",
            "starred_url": f"{api}/users/{login}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/users/{login}/subscriptions",
            "organizations_url": f"{api}/users/{login}/orgs",
            "repos_url": f"{api}/users/{login}/repos",
            "events_url": f"{api}/users/{login}/events{{/privacy}}",
            "received_events_url": f"{api}/users/{login}/received_events",
            "type": "Bot" if login.endswith("[bot]") else user_type, "site_admin": False,
        }

    def _new_comment(self, repo: Repo, number: int, login: str, body: str) -> dict:
        cid = self._new_id()
        full = f"{repo.owner}/{repo.name}"
        now = _now()
        comment = {
            "id": cid, "node_id": f"IC_{cid}",
            "url": f"{self.api_url}/repos/{full}/issues/comments/{cid}",
            "html_url": f"{self.url}/{full}/pull/{number}#issuecomment-{cid}",
            "body": body, "user": self._user(login),
            "created_at": now, "updated_at": now,
            "issue_url": f"{self.api_url}/repos/{full}/issues/{number}",
            "author_association": "NONE", "pin": None, "minimized": None,
        }
        repo.comments.setdefault(number, []).append(comment)
        return comment

    def _find_comment(self, repo: Repo, cid: int) -> tuple[list, dict]:
        for items in repo.comments.values():
            for c in items:
                if c["id"] == cid:
                    return items, c
        raise _error(404, "Not Found")

    # -- request handling ------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, headers, body: bytes):
        """Return (status, json body or None, extra headers). Runs under the server thread."""
        if not path.startswith("/api/v3/") and path != "/api/v3":
            raise _error(404, "Not Found")
        path = path[len("/api/v3"):]
        auth = headers.get("Authorization")
        token = None
        if auth:
            scheme, _, secret = auth.partition(" ")
            token = self.tokens.get(secret) if scheme.lower() in ("token", "bearer") else None
            if token is None:
                raise _error(401, "Bad credentials")
        data = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                raise _error(400, "Problems parsing JSON") from None
        with self._lock:
            fault = next((f for f in self.faults if f.hits < f.times and f.method == method
                          and fnmatch.fnmatchcase(path, f.path)), None)
            if fault:
                fault.hits += 1
        if fault:
            done = None
            if fault.on_hit:
                with self._lock:
                    fault.on_hit()
            if fault.perform:  # GitHub did the work; only the answer is slow or an error
                with contextlib.suppress(_Answer):
                    done = self._route(method, path, query, data, token)
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status < 400:  # a slow answer, not an error
                return done or self._route(method, path, query, data, token)
            raise _error(fault.status, fault.message, fault.headers)
        return self._route(method, path, query, data, token)

    def _route(self, method, path, query, data, token):
        parts = path.strip("/").split("/")
        if method != "GET" and token is None:
            raise _error(401, "Requires authentication")
        if method != "GET" and not token.can_write(_permission(parts[3:])):
            raise _error(403, INTEGRATION_403)
        if parts == ["rate_limit"]:
            return 200, self._rate_limit_body(), {}
        if len(parts) < 3 or parts[0] != "repos":
            raise _error(404, "Not Found")
        full = f"{parts[1]}/{parts[2]}"
        repo = self.repos.get(full)
        if repo is None:
            raise _error(404, "Not Found")
        rest = parts[3:]
        with self._lock:
            if not rest and method == "GET":
                return 200, self._repo_body(repo), {}
            if rest[:1] == ["issues"] and len(rest) == 3 and rest[2] == "comments":
                number = int(rest[1])
                if method == "GET":
                    return self._list(repo.comments.get(number, []), query, path)
                if method == "POST":
                    return 201, self._new_comment(repo, number, token.login, data["body"]), {}
            if rest[:2] == ["issues", "comments"] and len(rest) == 3:
                items, comment = self._find_comment(repo, int(rest[2]))
                if method == "GET":
                    return 200, comment, {}
                if method == "PATCH":
                    if comment["user"]["login"] != token.login:
                        raise _error(403, INTEGRATION_403)
                    comment["body"] = data["body"]
                    comment["updated_at"] = _now()
                    return 200, comment, {}
                if method == "DELETE":
                    items.remove(comment)
                    return 204, None, {}
            if rest[:1] == ["issues"] and rest[2:] == ["labels"] and method == "POST":
                labels = data["labels"] if isinstance(data, dict) else data
                names = [x["name"] if isinstance(x, dict) else x for x in labels]
                store = repo.labels.setdefault(int(rest[1]), [])
                store.extend(n for n in names if n not in store)
                return 200, [self._label(repo, n) for n in store], {}
            if rest == ["dispatches"] and method == "POST":
                repo.dispatches.append(data)
                return 204, None, {}
            if rest[:1] == ["statuses"] and len(rest) == 2 and method == "POST":
                return 201, self._new_status(repo, rest[1], data, token), {}
            if rest[:1] == ["commits"] and rest[2:] == ["status"] and method == "GET":
                return 200, self._combined(repo, rest[1]), {}
            if rest == ["check-runs"] and method == "POST":
                return 201, self._new_check_run(repo, data), {}
            if rest[:1] == ["check-runs"] and len(rest) == 2 and method == "PATCH":
                run = repo.check_runs.get(int(rest[1]))
                if run is None:
                    raise _error(404, "Not Found")
                self._apply_check(run, data)
                return 200, run, {}
            if rest == ["pulls"] and method == "GET":
                state = query.get("state", "open")
                items = [p for p in repo.pulls
                         if (state == "all" or p["state"] == state)
                         and (not query.get("head") or
                              f"{p['head']['user']['login']}:{p['head']['ref']}" == query["head"])
                         and (not query.get("base") or p["base"]["ref"] == query["base"])]
                return self._list([self._simple_pull(p) for p in items], query, path)
            if rest == ["pulls"] and method == "POST":
                return 201, self._new_pull(repo, data, token), {}
            if rest[:1] == ["pulls"] and len(rest) == 2 and method == "GET":
                for p in repo.pulls:
                    if p["number"] == int(rest[1]):
                        return 200, p, {}
        raise _error(404, "Not Found")

    def _list(self, items: list, query: dict, base: str):
        try:
            per_page = min(int(query.get("per_page", 30)), 100)
            page = max(int(query.get("page", 1)), 1)
        except ValueError:
            raise _error(422, "Validation Failed") from None
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page: page * per_page]
        links = []

        def link(n: int, rel: str) -> str:
            q = {k: v for k, v in query.items() if k not in ("page", "per_page")}
            q.update(per_page=per_page, page=n)
            return f'<{self.url}/api/v3{base}?{urlencode(q)}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        return 200, chunk, ({"Link": ", ".join(links)} if links else {})

    def _label(self, repo: Repo, name: str) -> dict:
        return {"id": abs(hash(name)) % 10**8, "node_id": "LA_1", "name": name,
                "url": f"{self.api_url}/repos/{repo.owner}/{repo.name}/labels/{name}",
                "description": None, "color": "ededed", "default": False}

    def _rate_limit_body(self) -> dict:
        body = example("rate-limit-overview")
        return body

    def _repo_body(self, repo: Repo) -> dict:
        body = example("full-repository-default-response")
        full = f"{repo.owner}/{repo.name}"
        body.update(id=repo.id, name=repo.name, full_name=full,
                    url=f"{self.api_url}/repos/{full}", html_url=f"{self.url}/{full}")
        body["owner"] = self._user(repo.owner)
        body.setdefault("language", None)  # optional in the spec, but github3.py reads it
        for key in ("source", "parent", "template_repository"):  # not a fork, not templated
            body.pop(key, None)
        return body

    def _new_status(self, repo: Repo, sha: str, data: dict, token: Token) -> dict:
        sid = self._new_id()
        now = _now()
        status = {
            "url": f"{self.api_url}/repos/{repo.owner}/{repo.name}/statuses/{sha}",
            "avatar_url": None, "id": sid, "node_id": f"SC_{sid}", "state": data["state"],
            "description": data.get("description"), "target_url": data.get("target_url"),
            "context": data.get("context", "default"), "created_at": now, "updated_at": now,
            "creator": self._user(token.login),
        }
        repo.statuses.setdefault(sha, []).append(status)
        return status

    def _combined(self, repo: Repo, ref: str) -> dict:
        latest: dict[str, dict] = {}
        for s in repo.statuses.get(ref, []):
            latest[s["context"]] = s
        states = [s["state"] for s in latest.values()]
        if any(s in ("error", "failure") for s in states):
            state = "failure"
        elif states and all(s == "success" for s in states):
            state = "success"
        else:
            state = "pending"
        body = example("combined-commit-status")
        full = f"{repo.owner}/{repo.name}"
        body.update(state=state, sha=ref, total_count=len(latest),
                    statuses=[{k: v for k, v in s.items() if k != "creator"}
                              | {"avatar_url": s["avatar_url"] or ""}
                              for s in latest.values()],
                    commit_url=f"{self.api_url}/repos/{full}/commits/{ref}",
                    url=f"{self.api_url}/repos/{full}/commits/{ref}/status")
        body["repository"]["full_name"] = full
        return body

    def _new_check_run(self, repo: Repo, data: dict) -> dict:
        run = example("check-run")
        rid = self._new_id()
        full = f"{repo.owner}/{repo.name}"
        run.update(id=rid, head_sha=data["head_sha"], name=data["name"],
                   url=f"{self.api_url}/repos/{full}/check-runs/{rid}",
                   html_url=f"{self.url}/{full}/runs/{rid}", details_url=None,
                   status="queued", conclusion=None, completed_at=None,
                   output={"title": None, "summary": None, "text": None,
                           "annotations_count": 0, "annotations_url": run["output"]
                           ["annotations_url"]})
        self._apply_check(run, data)
        repo.check_runs[rid] = run
        return run

    @staticmethod
    def _apply_check(run: dict, data: dict) -> None:
        for key in ("name", "details_url", "external_id", "status", "conclusion",
                    "started_at", "completed_at"):
            if key in data:
                run[key] = data[key]
        if data.get("conclusion") and "status" not in data:
            run["status"] = "completed"
        if run["status"] == "completed" and not run.get("completed_at"):
            run["completed_at"] = _now()
        if "output" in data:
            for key in ("title", "summary", "text"):
                if key in data["output"]:
                    run["output"][key] = data["output"][key]

    def _new_pull(self, repo: Repo, data: dict, token: Token) -> dict:
        full = f"{repo.owner}/{repo.name}"
        head = data["head"].split(":")[-1]
        for p in repo.pulls:
            if p["state"] == "open" and p["head"]["ref"] == head and \
                    p["base"]["ref"] == data["base"]:
                raise _Answer(422, {"message": "Validation Failed", "documentation_url": DOCS,
                                    "errors": [{"resource": "PullRequest", "code": "custom",
                                                "message": "A pull request already exists for "
                                                           f"{repo.owner}:{head}."}]})
        pr = example("pull-request")
        number = len(repo.pulls) + 1
        pid = self._new_id()
        pr.update(id=pid, number=number, title=data.get("title", ""), body=data.get("body"),
                  state="open", draft=bool(data.get("draft", False)),
                  url=f"{self.api_url}/repos/{full}/pulls/{number}",
                  html_url=f"{self.url}/{full}/pull/{number}", merged=False,
                  created_at=_now(), updated_at=_now(), closed_at=None, merged_at=None,
                  requested_teams=[], requested_reviewers=[], assignees=[], assignee=None,
                  labels=[], milestone=None, locked=False, active_lock_reason=None,
                  merged_by=None, merge_commit_sha=None)
        pr["user"] = self._user(token.login)
        for side, ref in (("head", head), ("base", data["base"])):
            pr[side]["ref"] = ref
            pr[side]["label"] = f"{repo.owner}:{ref}"
            pr[side]["user"] = self._user(repo.owner)
            pr[side]["repo"]["full_name"] = full
            pr[side]["repo"]["name"] = repo.name
        repo.pulls.append(pr)
        return pr

    @staticmethod
    def _simple_pull(pr: dict) -> dict:
        simple = example("pull-request-simple-items")[0]
        for key in simple:
            if key in pr:
                simple[key] = copy.deepcopy(pr[key])
        return simple

    # -- validation ------------------------------------------------------------------------
    def check_request(self, method, path, query, headers, body) -> bool:
        from openapi_core.testing import MockRequest

        req = MockRequest(SPEC_HOST, method, path[len("/api/v3"):], args=query,
                          headers=dict(headers), data=body or None,
                          content_type=(headers.get("Content-Type") or "application/json"))
        try:
            _openapi().validate_request(req)
        except Exception as exc:  # noqa: BLE001 - any failure is a contract violation
            self.violations.append(f"request {method} {path}: {_why(exc)}")
            return False
        return True

    def check_response(self, method, path, query, headers, body, status, out_headers,
                       payload: bytes) -> None:
        from openapi_core.testing import MockRequest, MockResponse

        spec_path = path[len("/api/v3"):]
        req = MockRequest(SPEC_HOST, method, spec_path, args=query, headers=dict(headers),
                          data=body or None,
                          content_type=(headers.get("Content-Type") or "application/json"))
        if not self._declared(method, spec_path, status):
            # GitHub answers faults (429, 502, 401 ...) on every operation, but the description
            # only lists some: those bodies must still be a GitHub basic error.
            if status >= 400:
                self._check_basic_error(method, path, status, payload)
            return
        resp = MockResponse(payload, status_code=status, headers=out_headers)
        try:
            _openapi().validate_response(req, resp)
        except Exception as exc:  # noqa: BLE001
            self.violations.append(f"response {status} to {method} {path}: {_why(exc)}")

    @staticmethod
    def _declared(method: str, spec_path: str, status: int) -> bool:
        for template, ops in spec_dict()["paths"].items():
            pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(pattern, spec_path) and method.lower() in ops:
                return str(status) in ops[method.lower()]["responses"]
        return False

    def _check_basic_error(self, method, path, status, payload: bytes) -> None:
        from openapi_schema_validator import OAS30Validator

        schema = spec_dict()["components"]["schemas"]["basic-error"]
        errors = list(OAS30Validator(schema).iter_errors(json.loads(payload or b"null")))
        if errors:
            self.violations.append(f"error body {status} to {method} {path}: {errors[0].message}")


def _media(payload, accept: str):
    """Shape comment bodies the way GitHub does for the requested media type
    (``application/vnd.github.v3.full+json``: ``body``, ``body_text`` and ``body_html``)."""
    match = re.search(r"vnd\.github(?:\.v3)?\.(raw|text|html|full)\+json", accept)
    if not match or match.group(1) == "raw":
        return payload
    kind = match.group(1)

    def shape(item):
        if not isinstance(item, dict) or "issue_url" not in item or \
                not isinstance(item.get("body"), str):
            return item
        item = dict(item)
        text = item["body"]
        if kind in ("text", "full"):
            item["body_text"] = text
        if kind in ("html", "full"):
            item["body_html"] = "<p>" + html.escape(text) + "</p>"
        if kind != "full":
            del item["body"]
        return item

    return [shape(i) for i in payload] if isinstance(payload, list) else shape(payload)


def _why(exc: Exception) -> str:
    """A short reason: the schema errors (with their paths) rather than the whole value."""
    reasons = [type(exc).__name__]
    cause = exc
    while cause is not None and len(reasons) < 6:
        for err in list(getattr(cause, "schema_errors", None) or [])[:3]:
            where = "/".join(str(p) for p in err.absolute_path)
            reasons.append(f"at {where or '(root)'}: {err.message[:200]}")
        cause = cause.__cause__ or cause.__context__
    if len(reasons) == 1:
        reasons.append(str(exc)[:300])
    return "; ".join(reasons)


class _Handler(BaseHTTPRequestHandler):
    api: GitHubImitation
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - quiet server
        pass

    def _serve(self) -> None:
        try:
            self._answer()
        except Exception as exc:  # noqa: BLE001 - a bug of the imitation fails the test
            import traceback

            self.api.violations.append(f"imitation crashed on {self.command} {self.path}: "
                                       f"{exc!r}\n{traceback.format_exc()}")
            raise

    def _answer(self) -> None:
        api = self.api
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = Recorded(self.command, split.path[len("/api/v3"):], query, 0, None,
                          "present" if self.headers.get("Authorization") else None)
        with api._lock:  # logged on arrival: a request the client gave up on still counts
            api.requests.append(record)
        valid = not api.validate or api.check_request(self.command, split.path, query,
                                                      self.headers, body)
        try:
            if not valid:  # GitHub answers 422 (or 404 for an unknown path); recorded above
                raise _error(422, "Invalid request.")
            status, payload, extra = api.handle(self.command, split.path, query, self.headers,
                                                body)
        except _Answer as answer:
            status, payload, extra = answer.status, answer.body, answer.headers
        except Exception as exc:  # noqa: BLE001 - a bug of the imitation fails the test
            api.violations.append(f"imitation crashed on {self.command} {split.path}: {exc!r}")
            status, payload, extra = 500, {"message": "Server Error"}, {}
        payload = _media(payload, self.headers.get("Accept") or "")
        raw = b"" if payload is None else json.dumps(payload).encode()
        reset = int(time.time()) + 3600
        out = {"Content-Type": "application/json; charset=utf-8",
               "X-RateLimit-Limit": str(api.rate_limit),
               "X-RateLimit-Remaining": str(api.rate_limit - 1),
               "X-RateLimit-Reset": str(reset), "X-RateLimit-Resource": "core",
               "X-GitHub-Request-Id": f"IMIT:{len(api.requests)}"}
        for key, value in extra.items():  # injected headers replace the defaults
            for old in [k for k in out if k.lower() == key.lower()]:
                del out[old]
            out[key] = str(value)
        record.status, record.body = status, payload
        if api.validate and valid:
            api.check_response(self.command, split.path, query, self.headers, body, status,
                               out, raw)
        self.send_response(status)
        for k, v in out.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up
            self.wfile.write(raw)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve


@pytest.fixture
def github_api():
    """A started :class:`GitHubImitation`; the test fails if any request or response broke the
    OpenAPI description. Tokens: ``"write-token"`` (``github-actions[bot]``, can write) and
    ``"read-token"`` (same bot, read-only, like a fork PR's token); repo ``octo/models``."""
    api = GitHubImitation().start()
    api.add_token("write-token", "github-actions[bot]")
    api.add_token("read-token", "github-actions[bot]", write=False)
    api.add_repo("octo/models")
    try:
        yield api
    finally:
        api.stop()
    assert not api.violations, "GitHub imitation saw contract violations:\n" + \
        "\n".join(api.violations)
