"""SIGTERM with requests in flight: the worker drains, publishes, commits and exits 0; the
next worker goes on from there, and nothing is lost or answered twice."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

import pytest

from pocketvl.adapters.kafka_broker import read_records
from pocketvl.devstack.processes import log_tail
from pocketvl.settings import Settings
from pocketvl.worker.envelope import topic
from tests.fault.conftest import outcomes_of, send_load, start_worker

pytestmark = pytest.mark.integration
MARGIN_S = 30.0  # beyond worker.shutdown_timeout_s: leaving the group, closing clients


def processed(log: Path) -> int:
    found = re.findall(r"processed (\d+) records", log.read_text(errors="replace"))
    assert len(found) == 1, f"one worker, one summary line:\n{log_tail(log)}"
    return int(found[0])


def test_sigterm_with_requests_in_flight_drains_and_the_next_worker_answers_no_duplicates(
    settings: Settings, tmp_path: Path
) -> None:
    ids = send_load(settings, 300)
    answers = topic(settings.kafka.topic_prefix, "medical", "answers")
    first_log = tmp_path / "first.log"
    first = start_worker(settings, first_log)
    try:
        seen_at_signal = len(read_records(settings.kafka, [answers], 30, 180))
        assert seen_at_signal == 30, f"no answers yet:\n{log_tail(first_log)}"
        signalled = time.monotonic()
        first.send_signal(signal.SIGTERM)
        code = first.wait(timeout=settings.worker.shutdown_timeout_s + 2 * MARGIN_S)
        took = time.monotonic() - signalled
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert code == 0, f"SIGTERM: drain, commit, exit 0; got {code}:\n{log_tail(first_log)}"
    assert took < settings.worker.shutdown_timeout_s + MARGIN_S, f"exit took {took:.1f} s"
    done_by_first = processed(first_log)
    assert done_by_first < len(ids), "the SIGTERM must come while requests are waiting"

    second_log = tmp_path / "second.log"
    second = start_worker(settings, second_log, "--idle-timeout", "15")
    assert second.wait(timeout=300) == 0, log_tail(second_log)
    seen = outcomes_of(settings, ids)
    report = (
        f"SIGTERM after {seen_at_signal}+ answers: exit 0 in {took:.1f} s, "
        f"{done_by_first} results by the first worker, {processed(second_log)} by the "
        f"second; {seen.duplicates} duplicate answers of {len(ids)}"
    )
    print(report)
    assert seen.lost(ids) == [], report
    assert sorted(seen.dead_lettered) == [], report
    assert set(seen.answers) == set(ids), report
    assert seen.duplicates == 0, f"a drained worker committed what it published: {report}"
