"""The consumer loop survives any one record: a bug in a stage, a failure while building the
DLQ record, and results the broker refuses. In-memory ports (tests/support/fakes.py); the
same paths run against the real broker in tests/integration/test_worker_e2e.py."""

from __future__ import annotations

import json
from typing import Any

from pocketvl.errors import BrokerUnavailable
from pocketvl.worker.envelope import InboundRecord, OutboundRecord
from pocketvl.worker.loop import Worker
from pocketvl.worker.ports import Partition
from pocketvl.worker.route_book import RouteTable
from tests.support.examples import example
from tests.support.fakes import (
    InMemoryDoneStore,
    InMemoryResultCache,
    InMemorySink,
    InMemorySource,
    ScriptedInference,
)
from tests.support.pipelines import make_pipeline

TP = Partition("pocketvl.medical.requests", 0)


def records(*values: bytes, first: int = 0) -> list[InboundRecord]:
    return [
        InboundRecord(TP.topic, TP.partition, first + offset, b"study", value)
        for offset, value in enumerate(values)
    ]


def valid(event_id: str) -> bytes:
    return json.dumps({**example("medical"), "event_id": event_id}).encode()


def run(worker: Worker, count: int) -> None:
    worker.run(max_records=count, idle_timeout_s=0.5)


def reason(record: OutboundRecord) -> str:
    return dict(record.headers)["dlq.reason"].decode()


def test_a_bug_in_any_stage_is_dead_lettered_and_the_next_records_are_answered() -> None:
    class BuggyDoneStore(InMemoryDoneStore):
        def seen(self, event_id: str) -> bool:
            if event_id == "bug-at-done-check":
                raise ZeroDivisionError("a bug quoting input: Doe^Jane")
            return super().seen(event_id)

        def seen_among(self, event_ids: list[str]) -> set[str]:
            if "bug-at-done-check" in event_ids:  # the poll's lookup: asked again per record
                raise ZeroDivisionError("a bug quoting input: Doe^Jane")
            return super().seen_among(event_ids)

    class BuggyCache(InMemoryResultCache):
        def get(self, key: str) -> Any:
            raise AttributeError("a bug at the cache lookup")

    pipeline = make_pipeline(ScriptedInference())
    pipeline.cache = BuggyCache()
    pipeline.done = BuggyDoneStore()
    real_process = pipeline.process

    def process(
        inbound: InboundRecord,
        parsed: object = None,
        seen: bool | None = None,
        table: RouteTable | None = None,
    ) -> OutboundRecord | None:
        if inbound.offset == 3:  # the pipeline itself fails: the loop's own guard
            raise MemoryError("out of memory while building the DLQ record")
        return real_process(inbound, parsed, seen, table)

    pipeline.process = process  # type: ignore[method-assign,assignment]
    values = [valid("bug-at-cache"), valid("bug-at-done-check"), b"{oops", valid("x")]
    consumer = InMemorySource([records(*values)])
    producer = InMemorySink()
    run(Worker(pipeline, consumer, producer), 4)
    dlq = producer.topics()["dlq"]
    assert [r.value for r in dlq] == values  # every record dead-lettered, in order
    messages = [dict(r.headers)["dlq.exception.message"].decode() for r in dlq]
    bug = "internal_error"
    assert [reason(r) for r in dlq] == [bug, bug, "invalid_json", bug]
    assert messages[0] == "AttributeError at stage infer"
    assert messages[1] == "ZeroDivisionError at stage deserialize"
    assert messages[3] == "MemoryError at stage worker"
    assert consumer.committed == {TP: 4}  # the partition moved past every record

    pipeline.cache = InMemoryResultCache()  # the bugs fixed: the next records are answered
    consumer.batches = [records(valid("ok"), first=4)]
    run(Worker(pipeline, consumer, producer), 1)
    assert json.loads(producer.acked[-1].value)["event_id"] == "ok"
    assert consumer.committed == {TP: 5}


def test_an_answer_the_producer_refuses_dead_letters_its_request() -> None:
    pipeline = make_pipeline(ScriptedInference(text="B" * 5000))
    consumer = InMemorySource([records(valid("long-answer"))])
    producer = InMemorySink(refuse_on_send=lambda record: len(record.value) > 5000)
    run(Worker(pipeline, consumer, producer), 1)
    (record,) = producer.acked
    assert record.topic == "pocketvl.medical.dlq" and record.value == valid("long-answer")
    assert (reason(record), dict(record.headers)["dlq.stage"]) == ("message_too_large", b"produce")
    assert consumer.committed == {TP: 1}
    assert pipeline.done.seen("long-answer") is False  # no answer was published


def test_a_dlq_record_the_broker_refuses_goes_again_without_the_value() -> None:
    huge = b"{" + b" " * 20_000  # invalid JSON, too large to copy into the DLQ
    pipeline = make_pipeline(ScriptedInference())
    consumer = InMemorySource([records(huge, valid("after"))])
    producer = InMemorySink(refuse_on_ack=lambda record: len(record.value) > 10_000)
    run(Worker(pipeline, consumer, producer), 2)
    dlq, answer = producer.topics()["dlq"], producer.topics()["answers"]
    assert [r.value for r in dlq] == [b""]
    headers = {k: v.decode() for k, v in dlq[0].headers}
    assert headers["dlq.reason"] == "message_too_large"
    assert "dead-lettered as invalid_json" in headers["dlq.exception.message"]
    assert (headers["dlq.original.partition"], headers["dlq.original.offset"]) == ("0", "0")
    assert [json.loads(r.value)["event_id"] for r in answer] == ["after"]
    assert consumer.committed == {TP: 2}


def test_a_broker_that_takes_nothing_stops_the_worker_before_any_commit() -> None:
    consumer = InMemorySource([records(valid("a"))])
    down = InMemorySink(fail_on_ack=BrokerUnavailable("no broker"))
    worker = Worker(make_pipeline(ScriptedInference()), consumer, down)
    try:
        run(worker, 1)
    except BrokerUnavailable:
        pass
    else:
        raise AssertionError("the worker went on although the broker took nothing")
    assert consumer.committed == {}  # redelivered after a restart: nothing is lost


def test_the_done_store_is_asked_once_per_poll_and_answered_events_are_skipped() -> None:
    class CountingDoneStore(InMemoryDoneStore):
        def __init__(self) -> None:
            super().__init__()
            self.lookups: list[list[str]] = []
            self.single = 0

        def seen(self, event_id: str) -> bool:
            self.single += 1
            return super().seen(event_id)

        def seen_among(self, event_ids: list[str]) -> set[str]:
            self.lookups.append(event_ids)
            return super().seen_among(event_ids)

    inference = ScriptedInference()
    pipeline = make_pipeline(inference)
    pipeline.done = done = CountingDoneStore()
    done.mark(["a1"])  # answered before: a redelivery
    values = [valid(f"a{i}") for i in range(5)]
    producer = InMemorySink()
    run(Worker(pipeline, InMemorySource([records(*values)]), producer), 5)
    assert done.lookups == [["a0", "a1", "a2", "a3", "a4"]] and done.single == 0
    answered = [json.loads(r.value)["event_id"] for r in producer.topics()["answers"]]
    assert sorted(answered) == ["a0", "a2", "a3", "a4"]
