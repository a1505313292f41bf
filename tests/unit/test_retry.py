"""The retry policy: an outage budget instead of a few tries, for servers that are down."""

from __future__ import annotations

import pytest

from pocketvl.errors import InferenceError, InferenceUnavailable
from pocketvl.worker.retry import RetryPolicy, with_retries


class Flaky:
    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise InferenceUnavailable("model_unavailable", "down")
        return "ok"


def test_an_outage_is_waited_out_however_many_tries_it_takes() -> None:
    waits: list[float] = []
    flaky = Flaky(failures=40)
    policy = RetryPolicy(None, 0.1, 1.0, budget_s=60)
    assert with_retries(flaky, policy, waits.append, jitter=lambda: 1.0, clock=lambda: 0) == "ok"
    assert flaky.calls == 41
    assert max(waits) == 1.0  # capped
    assert sum(waits) < 60


def test_the_budget_bounds_the_wait_then_the_error_says_how_often_it_was_tried() -> None:
    waits: list[float] = []
    policy = RetryPolicy(None, 0.5, 2.0, budget_s=10)
    with pytest.raises(InferenceUnavailable) as caught:
        with_retries(Flaky(10_000), policy, waits.append, jitter=lambda: 1.0, clock=lambda: 0)
    assert 10 <= sum(waits) < 12
    assert caught.value.attempts == len(waits) + 1


def test_max_attempts_still_caps_and_request_errors_are_never_retried() -> None:
    with pytest.raises(InferenceUnavailable) as caught:
        with_retries(Flaky(5), RetryPolicy(3, 0, 0, budget_s=60), lambda _: None)
    assert caught.value.attempts == 3

    def rejected() -> str:
        raise InferenceError("inference_failed", "bad input")

    with pytest.raises(InferenceError):
        with_retries(rejected, RetryPolicy(None, 0, 0, budget_s=60), lambda _: None)
