"""The retry policy: transient failures retried with capped, jittered exponential backoff.

Only errors marked ``retryable`` (Triton or an image store down, overloaded or slow) are
tried again; every other error goes straight to the DLQ. A retried error that never clears
is dead-lettered with ``dlq.attempts`` saying how often it was tried: after
``max_attempts`` tries, or once ``budget_s`` has passed (an outage budget: Triton being
down for minutes must not turn valid requests into DLQ records). Each retry is reported to
``on_retry`` (the ``pocketvl.retries`` counter), with the error that caused it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pocketvl.errors import DeadLetterError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int | None  # None: as many as the budget allows
    backoff_initial_s: float
    backoff_max_s: float
    budget_s: float | None = None  # time spent waiting and trying, at most
    stage: str = "other"  # what is retried (triton, image_store): labels the retries counter

    def exhausted(self, attempt: int, spent_s: float) -> bool:
        if self.max_attempts is not None and attempt >= self.max_attempts:
            return True
        return self.budget_s is not None and spent_s >= self.budget_s

    def delay(self, attempt: int, jitter: float) -> float:
        """Wait after failed attempt ``attempt`` (1-based); ``jitter`` in [0.5, 1]."""
        backoff = self.backoff_initial_s * 2.0 ** (attempt - 1)
        return float(min(self.backoff_max_s, backoff) * jitter)


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.0),
    clock: Callable[[], float] = time.monotonic,
    on_retry: Callable[[DeadLetterError], None] = lambda error: None,
) -> T:
    """``call()``, retried while it raises a retryable error and the policy allows. Time
    spent counts the calls (by ``clock``) and the waits (as asked of ``sleep``);
    ``on_retry`` hears of each failure that is tried again (not of the last one)."""
    started, waited, attempt = clock(), 0.0, 0
    while True:
        attempt += 1
        try:
            return call()
        except DeadLetterError as exc:
            if not exc.retryable:
                raise
            exc.attempts = attempt
            if policy.exhausted(attempt, clock() - started + waited):
                raise
            on_retry(exc)
            delay = policy.delay(attempt, jitter())
            waited += delay
            sleep(delay)
