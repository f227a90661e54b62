"""The suite's one retry policy, on tenacity.

Only errors that say a retry can help are retried: a :class:`~modelops.errors.SuiteError` with
``retryable=True`` (a dropped connection, a 5xx, a stalled network, a push that lost a race).
Everything else (a bad password, a refusal, a permission, a bad input) is raised on the first
attempt with its own message.

One formula for every pause: exponential backoff, ``backoff * 2**n`` capped at ``max_backoff``,
with jitter, and bounded two ways: ``attempts`` in all (None: no count), and optionally a time
``budget`` after which no new attempt starts (a pause that would end past it is shortened to
end with it). Jitter is ``"equal"`` (a uniform draw in the upper half of the pause: one client
retrying a flaky server) or ``"full"`` (a uniform draw in the whole pause: many writers
contending for one thing, such as publishers pushing to one branch, spread out best this way;
see the AWS Architecture Blog's "Exponential Backoff and Jitter"), or ``"none"``. ``sleep``,
``clock`` and ``rng`` are injectable, so tests run on a fake clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import tenacity

T = TypeVar("T")
Log = Callable[[str], None]
Jitter = Literal["equal", "full", "none"]


def is_retryable(exc: BaseException) -> bool:
    """True for an error that marks itself ``retryable`` (the suite's errors do)."""
    return getattr(exc, "retryable", False) is True


@dataclass
class RetryPolicy:
    """How often and how long to retry. The defaults suit one HTTP request or one git command."""

    attempts: int | None = 5   # tries in all, the first one included (1 = never retry)
    backoff: float = 1.0       # scale of the first pause, in seconds
    max_backoff: float = 30.0  # longest single pause
    budget: float | None = None  # seconds after the first try when no new try starts
    jitter: bool | Jitter = True  # True = "equal", False = "none"
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.attempts is None and self.budget is None:
            raise ValueError("a retry policy needs attempts, a time budget, or both")
        if self.attempts is not None and self.attempts < 1:
            raise ValueError(f"attempts must be at least 1 (got {self.attempts!r})")
        if self.budget is not None and not self.budget >= 0:
            raise ValueError(f"budget must be a number of seconds >= 0 (got {self.budget!r})")

    @property
    def spread(self) -> Jitter:
        if self.jitter is True:
            return "equal"
        if self.jitter is False:
            return "none"
        return self.jitter

    def delay(self, retry: int) -> float:
        """The pause before retry number ``retry`` (0 = the pause after the first failure)."""
        cap = min(self.backoff * (2 ** min(retry, 62)), self.max_backoff)
        if self.spread == "full":
            return cap * self.rng()
        if self.spread == "equal":
            return cap * (0.5 + 0.5 * self.rng())
        return cap

    def exhausted(self, tries: int, started: float) -> bool:
        """Whether no further try may start after ``tries`` tries begun at ``started``."""
        if self.attempts is not None and tries >= self.attempts:
            return True
        return self.budget is not None and self.clock() - started >= self.budget

    def describe(self) -> str:
        """``8 attempts`` / ``120 s`` / ``8 attempts or 120 s``, for messages."""
        parts = []
        if self.attempts is not None:
            parts.append(f"{self.attempts} attempts")
        if self.budget is not None:
            parts.append(f"{self.budget:g} s")
        return " or ".join(parts)


def retry_call(fn: Callable[[], T], *, policy: RetryPolicy | None = None, what: str = "",
               log: Log | None = None,
               retry_on: Callable[[BaseException], bool] = is_retryable) -> T:
    """Call ``fn`` until it returns, retrying the errors ``retry_on`` accepts under ``policy``.

    The last error is raised as it is (``reraise``), so callers see the real cause. ``log`` gets
    one line per retry: what failed, why, and when the next try starts.
    """
    policy = policy or RetryPolicy()
    started = policy.clock()

    def stop(state: tenacity.RetryCallState) -> bool:
        return policy.exhausted(state.attempt_number, started)

    def wait(state: tenacity.RetryCallState) -> float:
        pause = policy.delay(state.attempt_number - 1)
        if policy.budget is not None:  # never sleep past the budget
            pause = max(0.0, min(pause, policy.budget - (policy.clock() - started)))
        return pause

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if log is None or state.outcome is None or state.next_action is None:
            return
        exc = state.outcome.exception()
        reason = (getattr(exc, "message", None) or str(exc)).splitlines()[0][:200]
        total = f"/{policy.attempts}" if policy.attempts is not None else ""
        log(f"{what or 'request'}: attempt {state.attempt_number}{total} failed: "
            f"{reason}; retrying in {state.next_action.sleep:.2f}s")

    retrying = tenacity.Retrying(
        stop=stop, wait=wait, retry=tenacity.retry_if_exception(retry_on),
        sleep=policy.sleep, reraise=True, before_sleep=before_sleep)
    return retrying(fn)
