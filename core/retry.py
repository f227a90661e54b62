"""The suite's one retry policy, on tenacity.

Only errors that say a retry can help are retried: a :class:`~modelops.errors.SuiteError` with
``retryable=True`` (a dropped connection, a 5xx, a stalled network). Everything else (a bad
password, a refusal, a bad input) is raised on the first attempt with its own message.

One formula for every pause: exponential backoff, ``backoff * 2**n`` capped at ``max_backoff``,
with "equal jitter" (a uniform draw in the upper half of that) so that many writers retrying at
once spread out, and bounded two ways: ``attempts`` in all, and optionally a time ``budget``
after which no new attempt starts. ``sleep`` and ``clock`` are injectable, so tests run on a
fake clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity

T = TypeVar("T")
Log = Callable[[str], None]


def is_retryable(exc: BaseException) -> bool:
    """True for an error that marks itself ``retryable`` (the suite's errors do)."""
    return getattr(exc, "retryable", False) is True


@dataclass
class RetryPolicy:
    """How often and how long to retry. The defaults suit one HTTP request or one git command."""

    attempts: int = 5          # tries in all, the first one included (1 = never retry)
    backoff: float = 1.0       # scale of the first pause, in seconds
    max_backoff: float = 30.0  # longest single pause
    budget: float | None = None  # seconds after the first try when no new try starts
    jitter: bool = True
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    rng: Callable[[], float] = field(default=random.random, repr=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1 (got {self.attempts!r})")

    def delay(self, retry: int) -> float:
        """The pause before retry number ``retry`` (0 = the pause after the first failure)."""
        cap = min(self.backoff * (2 ** retry), self.max_backoff)
        return cap * (0.5 + 0.5 * self.rng()) if self.jitter else cap

    def exhausted(self, tries: int, started: float) -> bool:
        """Whether no further try may start after ``tries`` tries begun at ``started``."""
        if tries >= self.attempts:
            return True
        return self.budget is not None and self.clock() - started >= self.budget


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
        return policy.delay(state.attempt_number - 1)

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if log is None or state.outcome is None or state.next_action is None:
            return
        exc = state.outcome.exception()
        reason = (getattr(exc, "message", None) or str(exc)).splitlines()[0][:200]
        log(f"{what or 'request'}: attempt {state.attempt_number}/{policy.attempts} failed: "
            f"{reason}; retrying in {state.next_action.sleep:.2f}s")

    retrying = tenacity.Retrying(
        stop=stop, wait=wait, retry=tenacity.retry_if_exception(retry_on),
        sleep=policy.sleep, reraise=True, before_sleep=before_sleep)
    return retrying(fn)
