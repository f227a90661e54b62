"""The git runner's error classes and network bounds, and the one retry policy (on a fake
clock)."""

from __future__ import annotations

import pytest

from modelops.errors import ExternalError
from modelops.git import NetworkLimits, classify, git_env, refusal, ssh_command
from modelops.gitops.gitrepo import is_race
from modelops.retry import RetryPolicy, retry_call

LOCK_DENIED = ("error: cannot lock ref 'refs/heads/main': Unable to create "
               "'/srv/gitops.git/refs/heads/main.lock': Permission denied\n"
               "To /srv/gitops.git\n ! [remote rejected] main -> main (failed to update ref)\n")
LOCK_BUSY = ("error: cannot lock ref 'refs/heads/main': Unable to create "
             "'/srv/gitops.git/refs/heads/main.lock': File exists.\n"
             " ! [remote rejected] main -> main (failed to update ref)\n")
MOVED = ("error: cannot lock ref 'refs/heads/main': is at 1111 but expected 2222\n"
         " ! [remote rejected] main -> main (failed to update ref)\n")
HOOK = ("remote: protected: no direct pushes\n"
        " ! [remote rejected] main -> main (pre-receive hook declined)\n")


@pytest.mark.parametrize(("output", "race"), [
    (MOVED, True), (LOCK_BUSY, True), (" ! [rejected] main -> main (fetch first)\n", True),
    (" ! [rejected] main -> main (non-fast-forward)\n", True),
    (LOCK_DENIED, False), (HOOK, False),
    ("remote: error: GH006: Protected branch update failed for refs/heads/main.\n"
     " ! [remote rejected] main -> main (protected branch hook declined)\n", False),
    ("error: insufficient permission for adding an object to repository database ./objects\n"
     " ! [remote rejected] main -> main (unpacker error)\n", False),
])
def test_a_lost_race_is_told_apart_from_a_refusal(output, race):
    assert is_race(output) is race
    if not race:
        assert classify(output)[0] is False


@pytest.mark.parametrize(("stderr", "kind"), [
    (LOCK_DENIED, "permission"), (HOOK, "refused"),
    ("error: unable to write file ./objects/ab: Read-only file system", "permission"),
    ("fatal: Authentication failed for 'https://github.com/o/r.git/'", "auth"),
    ("git@github.com: Permission denied (publickey).", "auth"),
    ("Host key verification failed.", "auth"),
    ("fatal: unable to access 'https://h/r.git/': Operation too slow. Less than 1000 bytes/sec "
     "transferred the last 30 seconds", None),
])
def test_refusals_no_retry_can_help(stderr, kind):
    assert refusal(stderr) == kind


@pytest.mark.parametrize("stderr", [
    "fatal: unable to access 'http://127.0.0.1:9/x/': Operation too slow. Less than 1000 "
    "bytes/sec transferred the last 2 seconds",
    "Connection timed out during banner exchange\nConnection to 127.0.0.1 port 22 timed out",
    "kex_exchange_identification: Connection closed by remote host",
    "ssh: connect to host h port 22: Connection refused",
    "fatal: the remote end hung up unexpectedly",
    "git fetch did not finish within 5s",
])
def test_stalls_and_dropped_connections_are_retryable(stderr):
    assert classify(stderr)[0] is True


@pytest.mark.parametrize("stderr", [
    # a push into the local bare repository removed its quarantine while the clone copied it
    "fatal: failed to copy file to '/tmp/x/repo/objects/tmp_objdir-incoming-afF2D4/10/"
    "tmp_obj_810kKA': No such file or directory",
    "fatal: failed to create link '/tmp/x/repo/objects/tmp_objdir-incoming-Q1/pack/"
    "tmp_pack_9': No such file or directory",
    # a repack there replaced the pack the clone was about to link
    "fatal: failed to create link '/tmp/x/repo/objects/pack/pack-1f.pack': No such file or "
    "directory",
])
def test_a_local_clone_racing_a_push_is_retried_not_blamed_on_the_url(stderr):
    retryable, hint = classify(stderr)
    assert retryable is True
    assert "URL" not in hint and "again" in hint


@pytest.mark.parametrize("stderr", [
    "fatal: repository '/tmp/nowhere.git' does not exist",
    "fatal: '/tmp/nowhere.git' does not appear to be a git repository",
])
def test_a_missing_local_repository_is_not_retried(stderr):
    retryable, hint = classify(stderr)
    assert retryable is False and "URL" in hint


def test_network_limits_come_from_the_environment():
    limits = NetworkLimits.from_env({"MODELOPS_GIT_TIMEOUT": "7.5",
                                     "MODELOPS_GIT_CONNECT_TIMEOUT": "3",
                                     "MODELOPS_GIT_LOW_SPEED_TIME": "4",
                                     "MODELOPS_GIT_LOW_SPEED_LIMIT": "oops"})
    assert (limits.timeout, limits.connect_timeout, limits.low_speed_time,
            limits.low_speed_limit) == (7.5, 3, 4, 1000)
    assert NetworkLimits.from_env({}) == NetworkLimits()


def test_every_git_command_gets_a_low_speed_limit_and_bounded_ssh(monkeypatch):
    for name in ("GIT_SSH_COMMAND", "GIT_SSH", "GIT_HTTP_LOW_SPEED_LIMIT",
                 "GIT_HTTP_LOW_SPEED_TIME"):
        monkeypatch.delenv(name, raising=False)
    env = git_env(limits=NetworkLimits(connect_timeout=4, low_speed_time=9))
    assert env["GIT_HTTP_LOW_SPEED_LIMIT"] == "1000" and env["GIT_HTTP_LOW_SPEED_TIME"] == "9"
    assert "-o ConnectTimeout=4" in env["GIT_SSH_COMMAND"]
    assert "-o ServerAliveInterval=" in env["GIT_SSH_COMMAND"]
    assert env["GIT_TERMINAL_PROMPT"] == "0"


def test_a_users_ssh_command_keeps_its_own_options_first():
    limits = NetworkLimits(connect_timeout=4)
    mine = ssh_command(limits, {"GIT_SSH_COMMAND": "ssh -i ~/.ssh/deploy -o ConnectTimeout=60"})
    assert mine.startswith("ssh -i ~/.ssh/deploy -o ConnectTimeout=60 ")  # OpenSSH: first wins
    assert "-o ConnectTimeout=4" in mine
    assert ssh_command(limits, {"GIT_SSH_COMMAND": "/opt/fake-ssh --x"}) is None  # not OpenSSH
    assert ssh_command(limits, {"GIT_SSH": "/usr/bin/plink"}) is None


# --------------------------------------------------------------------------- retry policy

class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_a_time_budget_bounds_the_retries_without_a_count():
    clock = FakeClock()
    policy = RetryPolicy(attempts=None, budget=10.0, backoff=0.5, max_backoff=4.0,
                         jitter="full", sleep=clock.sleep, clock=clock, rng=lambda: 1.0)
    calls = []

    def flaky():
        calls.append(clock.now)
        raise ExternalError("moved", retryable=True)

    with pytest.raises(ExternalError):
        retry_call(flaky, policy=policy)
    assert clock.now == pytest.approx(10.0)  # the last pause ends with the budget
    assert clock.sleeps[:4] == [0.5, 1.0, 2.0, 4.0] and max(clock.sleeps) <= 4.0
    assert len(calls) == 6


def test_full_jitter_draws_in_the_whole_pause():
    draws = iter([0.0, 0.5, 0.999])
    policy = RetryPolicy(attempts=None, budget=60, backoff=1.0, jitter="full",
                         rng=lambda: next(draws))
    assert [policy.delay(3) for _ in range(3)] == pytest.approx([0.0, 4.0, 7.992])
    equal = RetryPolicy(backoff=1.0, rng=lambda: 0.0)
    assert equal.delay(3) == 4.0  # equal jitter: the upper half
    assert RetryPolicy(backoff=1.0, jitter=False).delay(3) == 8.0


def test_an_error_no_retry_can_help_is_raised_on_the_first_attempt():
    clock = FakeClock()
    calls = []

    def refused():
        calls.append(1)
        raise ExternalError("pre-receive hook declined", retryable=False)

    with pytest.raises(ExternalError, match="hook declined"):
        retry_call(refused, policy=RetryPolicy(attempts=8, sleep=clock.sleep, clock=clock))
    assert calls == [1] and clock.sleeps == []


def test_a_policy_needs_a_bound():
    with pytest.raises(ValueError):
        RetryPolicy(attempts=None)
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    assert RetryPolicy(attempts=3, budget=5).describe() == "3 attempts or 5 s"
