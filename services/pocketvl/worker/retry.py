"""The retry policy: transient failures retried with capped, jittered exponential backoff.

Only errors marked ``retryable`` (Triton or an image store down, overloaded or slow) are
tried again; every other error goes straight to the DLQ. A retried error that never clears
is dead-lettered with ``dlq.attempts`` saying how often it was tried.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from pocketvl.errors import DeadLetterError

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_initial_s: float
    backoff_max_s: float

    def delay(self, attempt: int, jitter: float) -> float:
        """Wait after failed attempt ``attempt`` (1-based); ``jitter`` in [0.5, 1]."""
        backoff = self.backoff_initial_s * 2.0 ** (attempt - 1)
        return float(min(self.backoff_max_s, backoff) * jitter)


def with_retries(
    call: Callable[[], T],
    policy: RetryPolicy,
    sleep: Callable[[float], None],
    jitter: Callable[[], float] = lambda: random.uniform(0.5, 1.0),
) -> T:
    for attempt in range(1, policy.max_attempts + 1):
        try:
            return call()
        except DeadLetterError as exc:
            if not exc.retryable:
                raise
            exc.attempts = attempt
            if attempt == policy.max_attempts:
                raise
            sleep(policy.delay(attempt, jitter()))
    raise AssertionError("unreachable: the loop returns or raises")
