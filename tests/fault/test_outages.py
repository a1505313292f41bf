"""Triton and Redis killed under load: no valid request is dead-lettered, none is lost."""

from __future__ import annotations

import threading
import time

import pytest

from pocketvl.devstack.stack import LocalStack
from pocketvl.service import build_worker
from pocketvl.settings import Settings
from pocketvl.worker.loop import Worker
from tests.fault.conftest import outcomes, send_load

pytestmark = pytest.mark.integration


def wait_for(check: object, timeout_s: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Running:
    """A worker in a thread of this process, so its counters can be watched."""

    def __init__(self, settings: Settings) -> None:
        self.worker: Worker = build_worker(settings)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def processed(self) -> int:
        return self.worker.stats.processed

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.worker.close()


@pytest.mark.parametrize(("component", "down_s"), [("triton", 15.0), ("redis", 5.0)])
def test_a_component_killed_under_load_loses_nothing_and_dead_letters_nothing(
    local_stack: LocalStack, settings: Settings, component: str, down_s: float
) -> None:
    ids = send_load(settings, 200)
    running = Running(settings)
    try:
        wait_for(lambda: running.processed() >= 30, 120, "the first answers")
        local_stack.kill(component)
        killed_at = running.processed()
        time.sleep(down_s)
        local_stack.start(component)
        wait_for(lambda: running.processed() >= len(ids), 240, "every request")
    finally:
        running.close()
    seen = outcomes(settings)
    assert seen.lost(ids) == []
    assert sorted(seen.dead_lettered) == []  # a server being down is not the request's fault
    assert set(seen.answers) == set(ids)
    assert killed_at < len(ids), "the fault hit while requests were still waiting"
    if component == "redis":  # answered without the cache meanwhile, and said so
        assert seen.cache["unavailable"] > 0 and seen.cache["miss"] > 0
    else:
        assert seen.cache["unavailable"] == 0
    print(f"{component} down {down_s:.0f} s: {seen.duplicates} duplicate answers, {seen.cache}")
