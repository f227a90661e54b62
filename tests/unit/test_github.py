"""modelops.github against the GitHub imitation (a real HTTP server validated against GitHub's
OpenAPI
description): sticky-comment upsert, pagination, forged markers, faults, token secrecy."""

from __future__ import annotations

import json
import logging
import math

import pytest

from modelops.errors import ExternalError
from modelops.github import (
    APP_BOT_LOGIN,
    CommentForbidden,
    GitHub,
    GitHubPolicy,
    RateLimited,
    max_requests,
)
from tests.github_imitation import GitHubImitation, github_api  # noqa: F401 - fixture

REPO = "octo/models"
MARKER = "<!-- modelops-suite:sticky:digits-cnn -->"
TOKEN = "write-token"


def body(text: str) -> str:
    return f"{MARKER}\n## digits-cnn\n{text}\n"


class FakeClock:
    """Sleeps without sleeping; records every wait."""

    def __init__(self):
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


def client(api: GitHubImitation, clock: FakeClock, token: str = TOKEN, **kw) -> GitHub:
    policy = GitHubPolicy(sleep=clock.sleep, clock=clock.time, **kw)
    return GitHub(token, api.api_url, policy=policy)


def test_posted_twice_is_edited_not_duplicated(github_api, clock):  # noqa: F811
    gh = client(github_api, clock)
    first = gh.upsert_comment(REPO, 7, body("accuracy 0.95"), marker=MARKER)
    second = gh.upsert_comment(REPO, 7, body("accuracy 0.97"), marker=MARKER)
    comments = github_api.comments(REPO, 7)
    assert [first.action, second.action] == ["created", "updated"]
    assert len(comments) == 1 and first.comment_id == second.comment_id == comments[0]["id"]
    assert "0.97" in comments[0]["body"] and comments[0]["user"]["login"] == APP_BOT_LOGIN
    assert second.requests == 2 == github_api.count("PATCH") + github_api.count("POST")
    third = gh.upsert_comment(REPO, 7, body("accuracy 0.97"), marker=MARKER)
    assert third.action == "unchanged" and third.requests == 1


def test_sticky_on_page_three_of_250_is_found_and_edited(github_api, clock):  # noqa: F811
    for i in range(210):
        github_api.add_comment(REPO, 3, f"user{i % 7}", f"comment {i}")
    sticky = github_api.add_comment(REPO, 3, APP_BOT_LOGIN, body("old"))
    for i in range(39):
        github_api.add_comment(REPO, 3, "alice", f"later {i}")
    github_api.reset_log()
    result = client(github_api, clock).upsert_comment(REPO, 3, body("new"), marker=MARKER)
    comments = github_api.comments(REPO, 3)
    assert result.action == "updated" and result.comment_id == sticky["id"]
    assert len(comments) == 250 and comments[210]["body"] == body("new")
    pages = [r.query.get("page", "1") for r in github_api.requests if r.method == "GET"]
    assert pages == ["1", "2", "3"]  # followed Link rel=next, 100 per page
    assert github_api.requests[0].query["per_page"] == "100"
    assert result.requests <= max_requests(250) == 5


def test_forged_marker_in_someone_elses_comment_is_ignored(github_api, clock):  # noqa: F811
    forged = github_api.add_comment(REPO, 5, "mallory", body("fake: all gates pass"))
    result = client(github_api, clock).upsert_comment(REPO, 5, body("real"), marker=MARKER)
    comments = github_api.comments(REPO, 5)
    assert result.action == "created" and result.comment_id != forged["id"]
    assert comments[0]["body"] == body("fake: all gates pass")  # untouched
    assert comments[1]["body"] == body("real") and comments[1]["user"]["login"] == APP_BOT_LOGIN


def test_marker_must_start_the_body_and_other_models_are_separate(github_api, clock):  # noqa: F811
    github_api.add_comment(REPO, 5, APP_BOT_LOGIN, "quoting " + MARKER)
    other = "<!-- modelops-suite:sticky:other-model -->"
    github_api.add_comment(REPO, 5, APP_BOT_LOGIN, other + "\nother model")
    result = client(github_api, clock).upsert_comment(REPO, 5, body("x"), marker=MARKER)
    assert result.action == "created" and len(github_api.comments(REPO, 5)) == 3


@pytest.mark.parametrize("n", [0, 100, 250])
def test_request_budget(github_api, clock, n):  # noqa: F811
    for i in range(n):
        github_api.add_comment(REPO, 9, "bob", f"c{i}")
    github_api.add_comment(REPO, 9, APP_BOT_LOGIN, body("old")) if n else None
    github_api.reset_log()
    result = client(github_api, clock).upsert_comment(REPO, 9, body("new"), marker=MARKER)
    total = n + (1 if n else 0)
    assert github_api.count() == result.requests
    assert result.requests <= math.ceil(total / 100) + 2


def test_read_only_token_gets_forbidden_not_a_crash(github_api, clock):  # noqa: F811
    gh = client(github_api, clock, token="read-token")
    with pytest.raises(CommentForbidden) as err:
        gh.upsert_comment(REPO, 7, body("x"), marker=MARKER)
    assert "resource not accessible by integration" in str(err.value).lower()
    assert github_api.comments(REPO, 7) == [] and clock.sleeps == []  # no retry of a 403


def test_502_on_list_is_retried_with_backoff(github_api, clock):  # noqa: F811
    github_api.inject("GET", "/repos/octo/models/issues/7/comments", 502, times=2)
    result = client(github_api, clock, backoff=0.5).upsert_comment(REPO, 7, body("x"),
                                                                   marker=MARKER)
    assert result.action == "created" and clock.sleeps == [0.5, 1.0]
    assert github_api.count("GET") == 3 and len(github_api.comments(REPO, 7)) == 1


def test_502_that_never_ends_gives_a_retryable_error(github_api, clock):  # noqa: F811
    github_api.inject("GET", "/repos/octo/models/issues/7/comments", 502, times=99)
    with pytest.raises(ExternalError) as err:
        client(github_api, clock, attempts=3).upsert_comment(REPO, 7, body("x"), marker=MARKER)
    assert err.value.retryable and "502" in str(err.value)
    assert github_api.count("GET") == 3 and github_api.count("POST") == 0


def test_failed_post_lists_again_and_never_duplicates(github_api, clock):  # noqa: F811
    # GitHub created the comment but answered 502: the retry must find it, not post again.
    github_api.inject("POST", "/repos/octo/models/issues/7/comments", 502, perform=True)
    result = client(github_api, clock).upsert_comment(REPO, 7, body("x"), marker=MARKER)
    assert len(github_api.comments(REPO, 7)) == 1
    assert result.action == "unchanged" and github_api.count("POST") == 1
    assert github_api.count("GET") == 2


def test_failed_post_not_done_is_posted_again(github_api, clock):  # noqa: F811
    github_api.inject("POST", "/repos/octo/models/issues/7/comments", 502)
    result = client(github_api, clock).upsert_comment(REPO, 7, body("x"), marker=MARKER)
    assert result.action == "created" and len(github_api.comments(REPO, 7)) == 1
    assert github_api.count("POST") == 2 and github_api.count("GET") == 2


def test_sticky_deleted_while_editing_is_created_again(github_api, clock):  # noqa: F811
    sticky = github_api.add_comment(REPO, 7, APP_BOT_LOGIN, body("old"))
    # someone deletes the comment between our list and our edit: the edit gets a 404
    github_api.inject("PATCH", f"/repos/{REPO}/issues/comments/{sticky['id']}", 404,
                      message="Not Found", on_hit=github_api.repos[REPO].comments[7].clear)
    result = client(github_api, clock).upsert_comment(REPO, 7, body("new"), marker=MARKER)
    assert result.action == "created" and len(github_api.comments(REPO, 7)) == 1
    assert [r.method for r in github_api.requests] == ["GET", "PATCH", "GET", "POST"]


def test_slow_post_times_out_then_is_found(github_api, clock):  # noqa: F811
    github_api.inject("POST", "/repos/octo/models/issues/7/comments", 201, delay=6.0,
                      perform=True)
    gh = client(github_api, clock, read_timeout=3.0)  # the other answers come well within it
    result = gh.upsert_comment(REPO, 7, body("x"), marker=MARKER)
    assert len(github_api.comments(REPO, 7)) == 1  # the slow POST landed; no second one
    assert result.action == "unchanged" and github_api.count("POST") == 1


def test_slow_get_is_retried(github_api, clock):  # noqa: F811
    # the slow GET outlasts the read timeout; every other answer comes within it even on a
    # loaded machine (a POST that timed out too would land and be found: "unchanged")
    github_api.inject("GET", "/repos/octo/models/issues/7/comments", 200, delay=6.0)
    result = client(github_api, clock, read_timeout=3.0).upsert_comment(REPO, 7, body("x"),
                                                                       marker=MARKER)
    assert result.action == "created" and len(clock.sleeps) == 1
    assert github_api.count("GET") == 2 and github_api.count("POST") == 1


def test_429_retry_after_is_waited_out(github_api, clock):  # noqa: F811
    github_api.inject("GET", "/repos/octo/models/issues/7/comments", 429,
                      headers={"retry-after": "7"})
    result = client(github_api, clock).upsert_comment(REPO, 7, body("x"), marker=MARKER)
    assert result.action == "created" and clock.sleeps == [7.0]


def test_primary_rate_limit_waits_until_reset(github_api, clock):  # noqa: F811
    reset = int(clock.now) + 20
    github_api.inject("POST", "/repos/octo/models/issues/7/comments", 403,
                      message="API rate limit exceeded for installation ID 1.",
                      headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)})
    result = client(github_api, clock).upsert_comment(REPO, 7, body("x"), marker=MARKER)
    assert result.action == "created" and clock.sleeps == [21.0]
    assert len(github_api.comments(REPO, 7)) == 1


def test_secondary_rate_limit_without_headers_waits_a_minute(github_api, clock):  # noqa: F811
    github_api.inject("PATCH", "/repos/octo/models/issues/comments/*", 403,
                      message="You have exceeded a secondary rate limit. Please wait a few "
                              "minutes before you try again.")
    github_api.add_comment(REPO, 7, APP_BOT_LOGIN, body("old"))
    result = client(github_api, clock).upsert_comment(REPO, 7, body("new"), marker=MARKER)
    assert result.action == "updated" and clock.sleeps == [60.0]
    assert github_api.count("PATCH") == 2


def test_rate_limit_beyond_the_bound_fails_clearly(github_api, clock):  # noqa: F811
    github_api.inject("GET", "/repos/octo/models/issues/7/comments", 403,
                      message="API rate limit exceeded",
                      headers={"x-ratelimit-remaining": "0",
                               "x-ratelimit-reset": str(int(clock.now) + 3600)})
    with pytest.raises(RateLimited) as err:
        client(github_api, clock, max_wait=60).upsert_comment(REPO, 7, body("x"), marker=MARKER)
    assert "rate limit" in str(err.value) and "60s" in str(err.value)
    assert clock.sleeps == [] and github_api.comments(REPO, 7) == []


def test_bad_token_says_what_to_do(github_api, clock):  # noqa: F811
    with pytest.raises(ExternalError) as err:
        client(github_api, clock, token="nope-" * 8).upsert_comment(REPO, 7, body("x"),
                                                                   marker=MARKER)
    assert "401" in str(err.value) and "GITHUB_TOKEN" in str(err.value)
    assert not err.value.retryable and "nope-" not in str(err.value)


def test_token_never_appears_in_logs_or_errors(github_api, clock, caplog, capsys):  # noqa: F811
    secret = "ghs_" + "S3cr3tT0k3n" * 3
    github_api.add_token(secret, APP_BOT_LOGIN)
    github_api.inject("GET", "/repos/octo/models/issues/7/comments", 502)
    github_api.inject("POST", "/repos/octo/models/issues/7/comments", 502)
    caplog.set_level(logging.DEBUG)
    gh = client(github_api, clock, token=secret)
    gh.upsert_comment(REPO, 7, body("x"), marker=MARKER)
    gh.set_status(REPO, "a" * 40, "success", context="modelops/digits-cnn", description="ok")
    with pytest.raises(ExternalError) as err:
        GitHub(secret, "http://127.0.0.1:9/api/v3", policy=GitHubPolicy(
            sleep=clock.sleep, attempts=1)).upsert_comment(REPO, 7, body("y"), marker=MARKER)
    out = capsys.readouterr()
    seen = "\n".join([caplog.text, out.out, out.err, str(err.value), repr(gh),
                      repr(gh.session.auth), repr(err.value)])
    assert caplog.records  # debug logging really was on
    assert secret not in seen and secret[:8] not in seen


def test_commit_status_and_check_run(github_api, clock):  # noqa: F811
    gh = client(github_api, clock)
    sha = "b" * 40
    gh.set_status(REPO, sha, "failure", context="modelops-suite/digits-cnn",
                  description="gate failed: accuracy 0.91 < 0.97", target_url="https://x/1")
    status = github_api.repos[REPO].statuses[sha][0]
    assert status["state"] == "failure" and status["context"] == "modelops-suite/digits-cnn"
    run = gh.create_check_run(REPO, sha, name="digits-cnn", conclusion="success",
                              title="all gates pass", summary="| gate | ok |")
    stored = github_api.repos[REPO].check_runs[run["id"]]
    assert stored["conclusion"] == "success" and stored["status"] == "completed"
    with pytest.raises(CommentForbidden):
        client(github_api, clock, token="read-token").set_status(
            REPO, sha, "success", context="c", description="d")


def test_oversized_body_is_refused_before_any_request(github_api, clock):  # noqa: F811
    from modelops.errors import InputError

    with pytest.raises(InputError, match="65536"):
        client(github_api, clock).upsert_comment(REPO, 7, body("x" * 65536), marker=MARKER)
    assert github_api.count() == 0


def test_imitation_catches_its_own_invalid_responses(github_api, clock, monkeypatch):  # noqa: F811
    # Were the imitation to answer something GitHub never would (a user without its required
    # "node_id"), the OpenAPI check must flag it, so the imitation cannot drift from GitHub.
    real = github_api._user

    def broken(login, user_type="User"):
        user = real(login, user_type)
        del user["node_id"]
        return user

    monkeypatch.setattr(github_api, "_user", broken)
    client(github_api, clock).upsert_comment(REPO, 7, body("x"), marker=MARKER)
    found = list(github_api.violations)
    github_api.violations.clear()
    assert any("response 201" in v and "node_id" in v for v in found), found


def test_imitation_rejects_requests_outside_the_contract(github_api, clock):  # noqa: F811
    # The imitation is only useful if it catches a client that breaks GitHub's contract.
    gh = client(github_api, clock)
    gh.gh._post(gh._url("repos", "octo", "models", "issues", 1, "comments"),
                data={"text": "wrong field"})
    gh.gh._get(gh._url("repos", "octo", "models", "no-such-operation"))
    found = list(github_api.violations)
    github_api.violations.clear()  # expected here; the fixture must not fail this test
    assert any("POST" in v and "body" in v for v in found), found
    assert any("no-such-operation" in v for v in found), found


def test_imitation_serves_pull_requests_for_github3(github_api):  # noqa: F811
    # What the GitOps side uses to open a promotion PR: github3's own high-level calls.
    import github3

    gh = github3.enterprise_login(url=github_api.url, token=TOKEN)
    repo = gh.repository("octo", "models")
    pr = repo.create_pull("promote digits-cnn 1.2.0 to prod", "main", "promote/digits-cnn",
                          body="release digits-cnn 1.2.0")
    assert pr.number == 1 and pr.head.ref == "promote/digits-cnn" and pr.state == "open"
    listed = list(repo.pull_requests(state="open", head="octo:promote/digits-cnn"))
    assert [p.number for p in listed] == [1]
    with pytest.raises(github3.exceptions.UnprocessableEntity):  # one open PR per head
        repo.create_pull("again", "main", "promote/digits-cnn")
    assert repo.pull_request(1).title == "promote digits-cnn 1.2.0 to prod"
    readonly = github3.enterprise_login(url=github_api.url, token="read-token")
    with pytest.raises(github3.exceptions.ForbiddenError):
        readonly.repository("octo", "models").create_pull("x", "main", "other")


def test_imitation_pagination_permissions_and_extras(github_api):  # noqa: F811
    import requests

    for i in range(130):
        github_api.add_comment(REPO, 2, "bob", f"c{i}")
    url = f"{github_api.api_url}/repos/{REPO}/issues/2/comments"
    auth = {"Authorization": "token write-token"}
    first = requests.get(url, params={"per_page": 500}, headers=auth, timeout=10)
    assert len(first.json()) == 100  # capped like GitHub
    assert set(first.links) == {"next", "last"} and "page=2" in first.links["next"]["url"]
    second = requests.get(first.links["next"]["url"], headers=auth, timeout=10)
    assert len(second.json()) == 30 and set(second.links) == {"prev", "first"}
    assert requests.get(url, headers={"Authorization": "token bad"}, timeout=10).status_code \
        == 401
    github_api.add_token("status-only", "ci-bot", write={"statuses"})
    only = {"Authorization": "token status-only"}
    denied = requests.post(url, json={"body": "x"}, headers=only, timeout=10)
    assert denied.status_code == 403 and denied.json()["message"] == \
        "Resource not accessible by integration"
    ok = requests.post(f"{github_api.api_url}/repos/{REPO}/statuses/{'d' * 40}", headers=only,
                       json={"state": "pending", "context": "c"}, timeout=10)
    assert ok.status_code == 201
    labels = requests.post(f"{github_api.api_url}/repos/{REPO}/issues/2/labels", headers=auth,
                           json={"labels": ["canary"]}, timeout=10)
    assert [x["name"] for x in labels.json()] == ["canary"]
    dispatch = requests.post(f"{github_api.api_url}/repos/{REPO}/dispatches", headers=auth,
                             json={"event_type": "promote", "client_payload": {"v": "1"}},
                             timeout=10)
    assert dispatch.status_code == 204 and github_api.repos[REPO].dispatches[0]["event_type"] \
        == "promote"


def _resp(status, headers=None, message=None):
    import requests

    r = requests.Response()
    r.status_code = status
    r.headers.update(headers or {})
    r._content = json.dumps({"message": message}).encode() if message else b""
    return r


@pytest.mark.parametrize(("status", "headers", "message", "expected"), [
    (200, {"x-ratelimit-remaining": "0"}, None, None),  # a success is never a limit
    (403, {}, "Resource not accessible by integration", None),  # permissions, not a limit
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1030"}, None, 31.0),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "900"}, None, 1.0),  # past
    (429, {"retry-after": "12"}, None, 12.0),
    (403, {"retry-after": "3"}, "secondary rate limit", 3.0),
    (429, {}, None, 60.0),
    (403, {}, "You have exceeded a secondary rate limit", 60.0),
    (429, {"retry-after": "soon"}, None, 60.0),
])
def test_rate_limit_delay(status, headers, message, expected):
    from modelops.github import rate_limit_delay

    assert rate_limit_delay(_resp(status, headers, message), now=1000.0) == expected


def test_redact():
    from modelops.github import redact

    assert redact("token abc123 and abc123", "abc123") == "token *** and ***"
    assert redact("short a", "a") == "short a"  # too short to be a token; nothing mangled
    assert redact("x", None) == "x"


def test_property_sticky_found_wherever_it_is():
    # Any number of comments, the sticky one anywhere (or absent), forged markers by others:
    # exactly the bot's comment is edited, none is added when it exists, within the budget.
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    api = GitHubImitation().start()
    api.add_token(TOKEN, APP_BOT_LOGIN)
    api.add_repo(REPO)
    clock = FakeClock()
    numbers = iter(range(1000, 100000))

    @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
    @given(n=st.integers(0, 320), where=st.one_of(st.none(), st.floats(0, 1)),
           forged=st.lists(st.integers(0, 320), max_size=3))
    def check(n, where, forged):
        pr = next(numbers)
        sticky_at = None if where is None else int(where * n)
        for i in range(n):
            if i == sticky_at:
                api.add_comment(REPO, pr, APP_BOT_LOGIN, body("old"))
            elif i in forged:
                api.add_comment(REPO, pr, "mallory", body("forged"))
            else:
                api.add_comment(REPO, pr, "dev", f"comment {i}")
        result = client(api, clock).upsert_comment(REPO, pr, body("new"), marker=MARKER)
        comments = api.comments(REPO, pr)
        mine = [c for c in comments if c["user"]["login"] == APP_BOT_LOGIN]
        assert len(mine) == 1 and mine[0]["body"] == body("new")
        assert all(c["body"] == body("forged") for c in comments
                   if c["user"]["login"] == "mallory")
        expected = "updated" if sticky_at is not None and sticky_at < n else "created"
        assert result.action == expected
        assert result.requests <= max_requests(n)

    try:
        check()
    finally:
        api.stop()
    assert not api.violations, api.violations


@pytest.mark.parametrize(("api_url", "expected"), [
    (None, "https://api.github.com/repos/o/r/issues/1/comments"),
    ("https://api.github.com/", "https://api.github.com/repos/o/r/issues/1/comments"),
    ("https://ghe.example.com/api/v3", "https://ghe.example.com/api/v3/repos/o/r/issues/1/comments"),
    ("https://api.acme.ghe.com", "https://api.acme.ghe.com/repos/o/r/issues/1/comments"),
])
def test_api_url_forms(api_url, expected):
    gh = GitHub("t0ken-value", api_url)
    assert gh._url("repos", "o", "r", "issues", 1, "comments") == expected
    assert "t0ken-value" not in repr(gh) + repr(gh.session.auth)


# --------------------------------------------------------------------------- pull requests

def test_open_pull_request_opens_one_and_finds_it_again(github_api, clock):  # noqa: F811
    gh = client(github_api, clock)
    number, url = gh.open_pull_request(REPO, "promote/x", "main", "Promote x", "body")
    assert url.endswith(f"/pull/{number}")
    again = gh.open_pull_request(REPO, "promote/x", "main", "Promote x", "body")  # 422 -> found
    assert again == (number, url)
    assert len(github_api.repos[REPO].pulls) == 1
    assert [p.number for p in gh.list_pulls(REPO, base="main")] == [number]
    assert gh.list_pulls(REPO, base="other") == []


def test_open_pull_request_lists_before_posting_again(github_api, clock):  # noqa: F811
    github_api.inject("POST", f"/repos/{REPO}/pulls", 502, times=2)  # not performed
    gh = client(github_api, clock)
    number, _ = gh.open_pull_request(REPO, "promote/y", "main", "Promote y", "body")
    assert len(github_api.repos[REPO].pulls) == 1 and number == 1
    assert github_api.count("POST", f"/repos/{REPO}/pulls") == 3
    assert github_api.count("GET", f"/repos/{REPO}/pulls") == 2  # after each failed POST
    assert clock.sleeps == [1.0, 2.0]


def test_open_pull_request_with_a_read_only_token_is_not_retried(github_api, clock):  # noqa: F811
    gh = client(github_api, clock, token="read-token")
    with pytest.raises(ExternalError) as err:
        gh.open_pull_request(REPO, "promote/z", "main", "Promote z", "body")
    assert not err.value.retryable and "403" in str(err.value)
    assert "read-token" not in str(err.value)
    assert github_api.count("POST", f"/repos/{REPO}/pulls") == 1 and clock.sleeps == []
