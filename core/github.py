"""The suite's one GitHub client, on github3.py: the pull-request report's sticky comment and
its commit status or check run, ``repository_dispatch`` events, and the pull requests that
promotion (``modelops-gitops promote``) and retraining (``modelops-ci retrain``) open.

- :class:`GitHubPolicy` says how long to wait and how often to retry; every delay goes through
  its ``sleep`` so tests inject a fake clock.
- :class:`GitHub` wraps a github3.py session whose transport retries idempotent requests on 5xx,
  timeouts and connection errors (exponential backoff), and waits out rate limits (429, or 403
  with ``x-ratelimit-remaining: 0``; ``retry-after`` / ``x-ratelimit-reset``) up to a bound.
- :meth:`GitHub.upsert_comment` finds the sticky comment by its hidden marker **and** the bot's
  login across all pages (``per_page=100``) and edits it in place; a POST is never retried blindly:
  after a failed POST the comments are listed again, so a retry cannot duplicate. Requests per
  upsert without faults: ``max(1, ceil(n/100)) + 1`` for ``n`` existing comments.
- :meth:`GitHub.open_pull_request` works the same way: after a failed POST (or 422, "already
  exists") the open pull requests are listed first, so a lost answer never opens a second one.
- 403 "Resource not accessible by integration" (fork PR, read-only token) raises
  :class:`CommentForbidden`, which callers turn into a neutral message.
- The token is never printed: it lives only in the auth object (whose ``repr`` hides it) and every
  message built from a response passes through :func:`redact`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import github3
import requests
from github3 import exceptions as gh_exc
from github3.issues.comment import IssueComment
from github3.pulls import ShortPullRequest
from github3.session import GitHubSession

from modelops.errors import ExternalError, InputError
from modelops.retry import RetryPolicy

LOG = logging.getLogger("modelops.github")
DEFAULT_API_URL = "https://api.github.com"
APP_BOT_LOGIN = "github-actions[bot]"
MAX_COMMENT_CHARS = 65536  # GitHub rejects longer comment bodies
INTEGRATION_403 = "resource not accessible by integration"
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"})
STATUS_STATES = ("success", "failure", "error", "pending")
CHECK_CONCLUSIONS = ("success", "failure", "neutral", "cancelled", "skipped", "timed_out",
                     "action_required")


class CommentForbidden(ExternalError):
    """The token may not write here (a fork PR's read-only token): not a crash, a notice."""


class RateLimited(ExternalError):
    """The rate limit resets later than we are willing to wait."""


@dataclass
class GitHubPolicy(RetryPolicy):
    """The suite's retry policy (:class:`modelops.retry.RetryPolicy`) plus what HTTP needs: the
    longest total wait for rate limits in one request, and connect/read timeouts. Pauses are
    not jittered by default (one client per job) and the clock is wall time, because GitHub's
    rate-limit resets are epoch seconds."""

    jitter: bool = False
    max_wait: float = 300.0
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    clock: Callable[[], float] = field(default=time.time, repr=False)


def redact(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` replaced (belt and braces for messages)."""
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text


def rate_limit_delay(resp: requests.Response, now: float) -> float | None:
    """Seconds to wait when ``resp`` says the rate limit is hit, else None."""
    if resp.status_code not in (403, 429):
        return None
    retry_after = resp.headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if resp.headers.get("x-ratelimit-remaining") == "0":
        try:
            return max(0.0, float(resp.headers.get("x-ratelimit-reset", "")) - now) + 1.0
        except ValueError:
            return 60.0
    if resp.status_code == 429 or "rate limit" in _message(resp).lower():
        return 60.0  # a secondary limit without headers: GitHub asks for at least a minute
    return None


def _message(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    return str(data.get("message", "")) if isinstance(data, dict) else ""


class _TokenAuth(requests.auth.AuthBase):
    """Adds the token; its ``repr`` shows nothing of it (github3's shows the first characters)."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, request):
        request.headers["Authorization"] = f"token {self._token}"
        return request

    def __repr__(self) -> str:
        return "<token hidden>"


class RetryingSession(GitHubSession):
    """github3.py's session with retries at the transport level.

    Idempotent methods are retried on 5xx, connection errors and timeouts with exponential
    backoff; every method waits out a rate limit (GitHub rejects those before doing anything).
    A POST that got a 5xx or timed out is *not* retried here: the caller decides (it lists again
    first, since GitHub may have done the POST anyway).
    """

    def __init__(self, policy: GitHubPolicy):
        super().__init__(default_connect_timeout=policy.connect_timeout,
                         default_read_timeout=policy.read_timeout)
        self.policy = policy
        self.attempts_made = 0  # HTTP requests sent, retries included

    def request(self, method, url, *args, **kwargs):
        policy = self.policy
        waited = 0.0
        method = method.upper()
        for attempt in range(policy.attempts):
            last = attempt == policy.attempts - 1
            self.attempts_made += 1
            try:
                resp = super().request(method, url, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if method not in IDEMPOTENT or last:
                    raise
                delay = policy.delay(attempt)
                LOG.warning("github: %s %s failed (%s); retry %d/%d in %.1fs", method,
                            _path(url), type(exc).__name__, attempt + 1, policy.attempts - 1,
                            delay)
                policy.sleep(delay)
                continue
            wait = rate_limit_delay(resp, policy.clock())
            if wait is not None:
                if last or waited + wait > policy.max_wait:
                    raise RateLimited(
                        f"github rate limit hit on {method} {_path(url)}; it resets in "
                        f"{wait:.0f}s, more than the {policy.max_wait:.0f}s this step may wait",
                        hint="rerun the job later, or use a token with its own rate limit",
                        retryable=True)
                LOG.warning("github: rate limited on %s %s; waiting %.1fs", method, _path(url),
                            wait)
                policy.sleep(wait)
                waited += wait
                continue
            if resp.status_code >= 500 and method in IDEMPOTENT and not last:
                delay = policy.delay(attempt)
                LOG.warning("github: %d on %s %s; retry %d/%d in %.1fs", resp.status_code,
                            method, _path(url), attempt + 1, policy.attempts - 1, delay)
                policy.sleep(delay)
                continue
            return resp
        return resp  # pragma: no cover - the loop always returns or raises on its last turn


def _path(url: str) -> str:
    return requests.utils.urlparse(url).path


@dataclass
class UpsertResult:
    action: str  # "created" | "updated" | "unchanged"
    comment_id: int
    url: str
    requests: int  # HTTP requests this upsert sent (retries included)


class GitHub:
    """A small GitHub client for the PR report, on top of github3.py."""

    def __init__(self, token: str, api_url: str | None = None, *,
                 policy: GitHubPolicy | None = None):
        if not token:
            raise ValueError("a token is required")
        self._token = token
        self.policy = policy or GitHubPolicy()
        self.session = RetryingSession(self.policy)
        api_url = (api_url or DEFAULT_API_URL).rstrip("/")
        if api_url.endswith("/api/v3"):  # GitHub Enterprise Server (and the test imitation)
            self.gh = github3.GitHubEnterprise(api_url[: -len("/api/v3")], session=self.session)
        else:
            self.gh = github3.GitHub(session=self.session)
            self.session.base_url = api_url
        self.session.auth = _TokenAuth(token)

    def __repr__(self) -> str:
        return f"<GitHub {self.session.base_url}>"

    # -- helpers ---------------------------------------------------------------------------
    def _url(self, *parts: object) -> str:
        return self.gh._build_url(*[str(p) for p in parts])

    def _fail(self, what: str, exc: Exception) -> ExternalError:
        """Turn a github3/requests error into one clear, token-free ExternalError."""
        if isinstance(exc, ExternalError):
            return exc
        if isinstance(exc, gh_exc.GitHubError) and exc.code is not None:
            message = str(getattr(exc, "msg", "") or "")
            if exc.code == 403 and INTEGRATION_403 in message.lower():
                return CommentForbidden(
                    f"github refused to {what}: 403 {message!r} (the token is read-only, as for "
                    "a pull request from a fork)",
                    hint="the report is still in the job summary and the comment file")
            text = f"github refused to {what}: {exc.code} {message!r}"
            hint = {401: "check that GITHUB_TOKEN is set to a valid token",
                    403: "give the workflow 'pull-requests: write' and 'statuses: write'",
                    404: "check --repo and --pr (and that the token can see the repository)",
                    }.get(exc.code, "rerun the job; if it keeps failing, check githubstatus.com")
            return ExternalError(redact(text, self._token), hint=hint,
                                 retryable=exc.code >= 500)
        return ExternalError(redact(f"github request to {what} failed: {exc}", self._token),
                             hint="check the network and GITHUB_API_URL, then rerun",
                             retryable=True)

    def _back_off(self, error: ExternalError, attempt: int, failed: str, then: str) -> None:
        """Raise ``error`` when it is final (not retryable, or the last attempt); else log and
        wait the policy's delay before the caller's next round."""
        if not error.retryable or attempt == self.policy.attempts - 1:
            raise error
        delay = self.policy.delay(attempt)
        LOG.warning("github: %s (%s); %s in %.1fs", failed, error.message, then, delay)
        self.policy.sleep(delay)

    def _json(self, resp: requests.Response, expected: int, what: str):
        if resp.status_code != expected:
            raise self._fail(what, gh_exc.error_for(resp))
        return resp.json() if resp.content else None

    # -- comments --------------------------------------------------------------------------
    def iter_comments(self, repo: str, number: int) -> Iterator[IssueComment]:
        """Every comment of issue/PR ``number``, 100 per page, following ``Link: rel=next``."""
        url = self._url("repos", *repo.split("/"), "issues", number, "comments")
        return iter(self.gh._iter(-1, url, IssueComment, params={"per_page": 100}))

    def find_sticky(self, repo: str, number: int, marker: str,
                    bot_login: str) -> IssueComment | None:
        """The bot's own comment whose body starts with ``marker``; others' are ignored."""
        want = bot_login.lower()
        for comment in self.iter_comments(repo, number):
            login = (comment.user.login if comment.user else "") or ""
            body = comment.body or ""
            if login.lower() == want and body.lstrip().startswith(marker):
                return comment
        return None

    def upsert_comment(self, repo: str, number: int, body: str, *, marker: str,
                       bot_login: str = APP_BOT_LOGIN) -> UpsertResult:
        """Create or edit the one sticky comment; never leaves two."""
        if not body.lstrip().startswith(marker):
            raise ValueError("the comment body must start with its marker")
        if len(body) > MAX_COMMENT_CHARS:
            raise InputError(f"the comment has {len(body)} characters, more than GitHub's "
                             f"{MAX_COMMENT_CHARS}",
                             hint="render it with ci.markdown.render_comment, which cuts it")
        start = self.session.attempts_made
        what = f"comment on {repo}#{number}"
        for attempt in range(self.policy.attempts):
            try:
                existing = self.find_sticky(repo, number, marker, bot_login)
                if existing is not None:
                    if (existing.body or "") == body:
                        action = "unchanged"
                    else:
                        resp = self.gh._patch(existing._api, json={"body": body})
                        if resp.status_code == 404 and attempt < self.policy.attempts - 1:
                            LOG.warning("github: comment %s was deleted while we edited it; "
                                        "listing again", existing.id)
                            continue
                        self._json(resp, 200, f"edit the {what}")
                        action = "updated"
                    return UpsertResult(action, existing.id, existing.html_url,
                                        self.session.attempts_made - start)
            except (gh_exc.GitHubException, requests.RequestException) as exc:
                raise self._fail(f"read the {what}s", exc) from None
            url = self._url("repos", *repo.split("/"), "issues", number, "comments")
            try:
                resp = self.gh._post(url, data={"body": body})
                if resp.status_code == 201:
                    created = resp.json()
                    return UpsertResult("created", created["id"], created["html_url"],
                                        self.session.attempts_made - start)
                error = self._fail(f"post the {what}", gh_exc.error_for(resp))
            except (gh_exc.GitHubException, requests.RequestException) as exc:
                error = self._fail(f"post the {what}", exc)
            self._back_off(error, attempt, "posting the comment failed", "listing again")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- pull requests ---------------------------------------------------------------------
    def list_pulls(self, repo: str, *, state: str = "open", head: str | None = None,
                   base: str | None = None) -> list[ShortPullRequest]:
        """Pull requests of ``repo`` (``head`` as ``owner:branch``), every page of 100."""
        params: dict[str, object] = {"state": state, "per_page": 100}
        if head:
            params["head"] = head
        if base:
            params["base"] = base
        url = self._url("repos", *repo.split("/"), "pulls")
        try:
            return list(self.gh._iter(-1, url, ShortPullRequest, params=params))
        except (gh_exc.GitHubException, requests.RequestException) as exc:
            raise self._fail(f"list the {state} pull requests of {repo}", exc) from None

    def find_open_pull(self, repo: str, head: str, base: str) -> tuple[int, str] | None:
        """(number, html url) of the open pull request from branch ``head`` into ``base``."""
        for pr in self.list_pulls(repo, head=f"{repo.split('/')[0]}:{head}", base=base):
            return pr.number, pr.html_url
        return None

    def open_pull_request(self, repo: str, head: str, base: str, title: str,
                          body: str) -> tuple[int, str]:
        """Open the pull request ``head`` -> ``base`` (branches of ``repo``), or find the one
        already open: (number, html url). Never opens two: after a failed POST, or GitHub's 422
        for a pull request that exists, the open ones are listed before anything else."""
        what = f"open the pull request {head!r} -> {base!r} on {repo}"
        url = self._url("repos", *repo.split("/"), "pulls")
        for attempt in range(self.policy.attempts):
            try:
                resp = self.gh._post(url, data={"title": title, "head": head, "base": base,
                                                "body": body})
                if resp.status_code == 201:
                    created = resp.json()
                    return created["number"], created["html_url"]
                error = self._fail(what, gh_exc.error_for(resp))
                exists = resp.status_code == 422
            except (gh_exc.GitHubException, requests.RequestException) as exc:
                error, exists = self._fail(what, exc), False
            if exists or error.retryable:
                found = self.find_open_pull(repo, head, base)
                if found is not None:
                    return found
            if exists:
                raise ExternalError(f"{error.message}; no open pull request {head!r} -> "
                                    f"{base!r} either", hint="check that both branches exist")
            self._back_off(error, attempt, "opening the pull request failed", "retrying")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- verdicts --------------------------------------------------------------------------
    def set_status(self, repo: str, sha: str, state: str, *, context: str, description: str,
                   target_url: str | None = None) -> dict:
        """A commit status (needs ``statuses: write``; works with the Actions token)."""
        if state not in STATUS_STATES:
            raise ValueError(f"unknown status state {state!r}")
        data = {"state": state, "context": context, "description": description[:140]}
        if target_url:
            data["target_url"] = target_url
        try:
            resp = self.gh._post(self._url("repos", *repo.split("/"), "statuses", sha),
                                 data=data)
            return self._json(resp, 201, f"set the commit status on {sha[:12]}")
        except (gh_exc.GitHubException, requests.RequestException) as exc:
            raise self._fail(f"set the commit status on {sha[:12]}", exc) from None

    def create_check_run(self, repo: str, sha: str, *, name: str, conclusion: str, title: str,
                         summary: str, details_url: str | None = None) -> dict:
        """A completed check run (an app token, e.g. the Actions one, with ``checks: write``)."""
        if conclusion not in CHECK_CONCLUSIONS:
            raise ValueError(f"unknown check conclusion {conclusion!r}")
        data = {"name": name, "head_sha": sha, "status": "completed", "conclusion": conclusion,
                "output": {"title": title[:255], "summary": summary[:65535]}}
        if details_url:
            data["details_url"] = details_url
        try:
            resp = self.gh._post(self._url("repos", *repo.split("/"), "check-runs"), data=data)
            return self._json(resp, 201, f"create the check run on {sha[:12]}")
        except (gh_exc.GitHubException, requests.RequestException) as exc:
            raise self._fail(f"create the check run on {sha[:12]}", exc) from None

    # -- events ----------------------------------------------------------------------------
    def dispatch(self, repo: str, event_type: str, client_payload: dict) -> None:
        """A ``repository_dispatch`` event (needs ``contents: write``); GitHub answers 204.

        Not retried: a lost answer to a dispatch GitHub did accept would start a second run."""
        data = {"event_type": event_type, "client_payload": client_payload}
        try:
            resp = self.gh._post(self._url("repos", *repo.split("/"), "dispatches"), data=data)
            self._json(resp, 204, f"send the {event_type} dispatch")
        except (gh_exc.GitHubException, requests.RequestException) as exc:
            raise self._fail(f"send the {event_type} dispatch", exc) from None


def max_requests(n_comments: int) -> int:
    """The budget per upsert the project promises: ``ceil(n/100) + 2``."""
    return math.ceil(n_comments / 100) + 2
