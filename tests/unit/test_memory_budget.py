"""The decoded-image memory budget: who waits, who never does, and what is released."""

from __future__ import annotations

import threading
import time

import pytest

from pocketvl.worker.memory import MemoryBudget


def _in_thread(budget: MemoryBudget, nbytes: int, hold: threading.Event) -> threading.Thread:
    def run() -> None:
        with budget.request():
            budget.reserve(nbytes)
            hold.wait(10)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _until(check: object, timeout_s: float = 5.0) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_request_waits_until_its_frame_fits_and_runs_once_memory_is_released() -> None:
    budget = MemoryBudget(100)
    first_done, second_done = threading.Event(), threading.Event()
    first = _in_thread(budget, 70, first_done)
    _until(lambda: budget.reserved_bytes == 70)
    second = _in_thread(budget, 50, second_done)
    _until(lambda: budget.waiting == 1)
    assert budget.reserved_bytes == 70  # 70 + 50 is over 100: the second waits
    first_done.set()
    first.join(5)
    _until(lambda: budget.reserved_bytes == 50)
    assert budget.waiting == 0
    second_done.set()
    second.join(5)
    assert budget.reserved_bytes == 0


def test_a_request_holding_memory_never_waits_for_its_next_frame() -> None:
    budget = MemoryBudget(100)
    other_done = threading.Event()
    other = _in_thread(budget, 60, other_done)
    _until(lambda: budget.reserved_bytes == 60)
    with budget.request():
        budget.reserve(0)  # holds nothing yet; fits
        budget.reserve(30)  # fits: 90
        budget.reserve(30)  # over the limit, but it already holds memory: no deadlock
        assert budget.reserved_bytes == 120
    assert budget.reserved_bytes == 60
    other_done.set()
    other.join(5)
    assert budget.reserved_bytes == 0


def test_a_frame_larger_than_the_budget_runs_alone() -> None:
    budget = MemoryBudget(100)
    with budget.request():
        budget.reserve(10_000)
        assert budget.reserved_bytes == 100
    done = threading.Event()
    small = _in_thread(budget, 10, done)
    _until(lambda: budget.reserved_bytes == 10)
    big_started = threading.Event()

    def big() -> None:
        with budget.request():
            budget.reserve(10_000)
            big_started.set()

    thread = threading.Thread(target=big, daemon=True)
    thread.start()
    _until(lambda: budget.waiting == 1)
    assert not big_started.is_set()
    done.set()
    small.join(5)
    thread.join(5)
    assert big_started.is_set() and budget.reserved_bytes == 0


def test_memory_is_released_when_the_request_fails() -> None:
    budget = MemoryBudget(100)
    with pytest.raises(ValueError), budget.request():
        budget.reserve(80)
        raise ValueError("decoder failed")
    assert budget.reserved_bytes == 0


def test_reserving_outside_a_request_is_a_bug_not_a_leak() -> None:
    with pytest.raises(RuntimeError, match="outside"):
        MemoryBudget(100).reserve(1)
