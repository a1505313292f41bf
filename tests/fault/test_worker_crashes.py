"""Workers SIGKILLed mid-stream and restarted, alone and in a group of two: nothing lost."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from pocketvl.settings import Settings
from tests.fault.conftest import outcomes, send_load, start_worker

pytestmark = pytest.mark.integration


def answered(settings: Settings) -> int:
    return len(outcomes(settings, timeout_s=0.3).answers)


def wait_answered(settings: Settings, at_least: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while answered(settings) < at_least:
        assert time.monotonic() < deadline, f"fewer than {at_least} answers in {timeout_s} s"


def finish(settings: Settings, log: Path) -> None:
    """A last worker drains what is left; then every id must have its outcome."""
    last = start_worker(settings, log, "--idle-timeout", "15")
    assert last.wait(timeout=300) == 0, log.read_text()


def test_a_worker_killed_three_times_mid_stream_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    ids = send_load(settings, 500)
    log = tmp_path / "workers.log"
    for round_number in range(1, 4):
        worker = start_worker(settings, log)
        try:
            wait_answered(settings, 30 * round_number, 180)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
    before_last = answered(settings)
    assert before_last < len(ids), "the kills must hit while requests were still waiting"
    finish(settings, log)
    seen = outcomes(settings)
    assert seen.lost(ids) == []
    assert not seen.dead_lettered
    print(
        f"worker SIGKILLed 3 times ({before_last} answered before the last worker): "
        f"{seen.duplicates} duplicate answers of {len(ids)}"
    )


def test_one_of_two_workers_killed_the_other_takes_over(settings: Settings, tmp_path: Path) -> None:
    ids = send_load(settings, 200)
    log = tmp_path / "survivor.log"
    survivor, victim = start_worker(settings, log), start_worker(settings, tmp_path / "victim.log")
    try:
        wait_answered(settings, 40, 180)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        # the group notices after session.timeout (6 s) and hands its partitions over
        wait_answered(settings, len(ids), 240)
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=60)
    assert survivor.returncode == 0, log.read_text()  # SIGTERM: drain, commit, exit 0
    seen = outcomes(settings)
    assert seen.lost(ids) == []
    assert not seen.dead_lettered
    print(f"rebalance after a SIGKILL: {seen.duplicates} duplicate answers of {len(ids)}")
