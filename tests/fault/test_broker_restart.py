"""The broker SIGKILLed mid-stream and started again: with durable storage nothing is lost.

The stack's broker keeps its data in S3 here (``durable_broker=True``), so topics, requests,
answers and committed offsets outlive the crash. A worker whose run ends in an error while
the broker is away (it stops when Kafka cannot take results or commits) is built and
started again, as an operator's supervisor would. The one loss allowed is the broker's
own: a record it acknowledged just before the kill can be gone (see ``broker_lost``).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pocketvl.adapters.kafka_broker import read_records
from pocketvl.devstack.stack import LocalStack
from pocketvl.service import build_worker
from pocketvl.settings import Settings
from pocketvl.worker.envelope import OutboundRecord, topic
from pocketvl.worker.loop import Worker
from tests.fault.conftest import fault_stack, outcomes_of, send_load

pytestmark = pytest.mark.integration
DOWN_S = 5.0
READ_S = 10.0  # a read of the topics: S3 storage serves each batch from S3


@pytest.fixture(scope="module")
def local_stack(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path
) -> Iterator[LocalStack]:
    yield from fault_stack(tmp_path_factory, checkpoint_root, durable_broker=True)


class AckLedger:
    """The worker's sink, recording where the broker said each answer was stored."""

    def __init__(self, sink: Any, answers_topic: str) -> None:
        self.sink, self.answers_topic = sink, answers_topic
        self.sent: list[tuple[str, Any]] = []  # (event id, kafka-python future)

    def send(self, record: OutboundRecord) -> Any:
        delivery = self.sink.send(record)
        if record.topic == self.answers_topic:
            self.sent.append((json.loads(record.value)["event_id"], delivery.future))
        return delivery

    def flush(self, timeout_s: float) -> None:
        self.sink.flush(timeout_s)

    def close(self) -> None:
        self.sink.close()

    def acked(self) -> dict[str, set[tuple[int, int]]]:
        """event id -> every (partition, offset) the broker acknowledged its answer at."""
        where: dict[str, set[tuple[int, int]]] = {}
        for event_id, future in self.sent:
            if future.is_done and future.succeeded():
                meta = future.value
                where.setdefault(event_id, set()).add((meta.partition, meta.offset))
        return where


class Supervised:
    """A worker in a thread of this process (its counters can be watched), started again
    when its run ends in an error."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.crashes: list[str] = []  # the errors that ended a run
        self.ledgers: list[AckLedger] = []
        self._processed_before = 0  # by the runs that crashed
        self._start()

    def _start(self) -> None:
        self.worker: Worker = build_worker(self.settings)
        answers = topic(self.settings.kafka.topic_prefix, "medical", "answers")
        self.worker.sink = AckLedger(self.worker.sink, answers)
        self.ledgers.append(self.worker.sink)
        self.stop = threading.Event()
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.worker.run(self.stop)
        except Exception as exc:  # what would end the process: the supervisor's turn
            self.error = exc

    @property
    def processed(self) -> int:
        """Results handed to the broker so far, by every run."""
        return self._processed_before + self.worker.stats.processed

    def supervise(self) -> None:
        """Start a crashed run again, as a supervisor restarts a process that exited."""
        if self.thread.is_alive() or self.stop.is_set():
            return
        assert self.error is not None
        print("".join(traceback.format_exception(self.error)))  # shown if the test fails
        self.crashes.append(repr(self.error))
        self._processed_before += self.worker.stats.processed
        try:
            self.worker.close()  # a process would be gone; its consumer must leave the group
        except Exception as exc:
            self.crashes.append(f"then close(): {exc!r}")
            self.worker.sink.close()
            self.worker.pipeline.images.close()
        self._start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.worker.close()


def wait_for(running: Supervised, at_least: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while running.processed < at_least:
        assert time.monotonic() < deadline, f"{running.processed} < {at_least} in {timeout_s} s"
        time.sleep(0.2)
        running.supervise()


def broker_lost(settings: Settings, acked: dict[str, set[tuple[int, int]]]) -> set[str]:
    """Event ids whose answer the broker acknowledged and no longer holds where it said.

    tansu on S3 takes a record's offset before it stores its batch: a kill -9 between the
    two loses a record it had acknowledged (seen with a plain producer, no worker involved),
    and when that batch was the log's last, the restarted broker gives its offset to a later
    record. The worker then, rightly, counts the answer as given; this tells the two apart.
    """
    answers = topic(settings.kafka.topic_prefix, "medical", "answers")
    stored: dict[tuple[int, int], str] = {}
    for record in read_records(settings.kafka, [answers], None, READ_S):
        stored[(record.partition, record.offset)] = json.loads(record.value)["event_id"]
    return {
        event_id
        for event_id, places in acked.items()
        if all(stored.get(place) != event_id for place in places)
    }


def test_the_broker_killed_mid_stream_and_started_again_loses_nothing(
    local_stack: LocalStack, settings: Settings
) -> None:
    ids = send_load(settings, 300)
    running = Supervised(settings)
    try:
        wait_for(running, 40, 180)
        local_stack.kill("kafka")
        killed_at = running.processed
        time.sleep(DOWN_S)
        local_stack.start("kafka")
        wait_for(running, len(ids), 240)
        # each answer read back from the restarted broker, the worker still running
        seen = outcomes_of(settings, ids, timeout_s=40, read_s=READ_S)
    finally:
        running.close()
    acked: dict[str, set[tuple[int, int]]] = {}
    for ledger in running.ledgers:
        for event_id, places in ledger.acked().items():
            acked.setdefault(event_id, set()).update(places)
    lost, by_broker = seen.lost(ids), broker_lost(settings, acked)
    report = (
        f"broker down {DOWN_S:.0f} s after {killed_at} of {len(ids)} results: "
        f"{seen.duplicates} duplicate answers, {len(lost)} lost {lost}, answers the broker "
        f"acknowledged and lost {sorted(by_broker)}; worker crashes: {running.crashes or 'none'}"
    )
    print(report)
    # Nothing lost by the worker: every answer missing was acknowledged by the broker at an
    # offset that, after its restart, holds something else or nothing.
    assert set(lost) <= by_broker, report
    assert sorted(seen.dead_lettered) == [], report  # the broker's crash is not theirs
    assert set(seen.answers) <= set(ids), report
    assert killed_at < len(ids), f"the kill must hit while requests were waiting: {report}"
