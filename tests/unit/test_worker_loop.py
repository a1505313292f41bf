"""The consumer loop survives any one record: a bug in a stage, a failure while building the
DLQ record, and results the broker refuses. In-memory consumer and producer that behave
like kafka-python's (the same paths run against the real broker in tests/integration)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kafka.errors import KafkaTimeoutError, MessageSizeTooLargeError

from pocketvl.worker.envelope import InboundRecord, OutboundRecord
from pocketvl.worker.loop import Worker
from tests.unit.fakes import DictCache, ScriptedInference
from tests.unit.test_decode import example
from tests.unit.test_pipeline import make_pipeline


@dataclass(frozen=True)
class ConsumerRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class FakeConsumer:
    def __init__(self, batches: list[dict[Any, list[ConsumerRecord]]]) -> None:
        self.batches = list(batches)
        self.committed: dict[Any, int] = {}

    def poll(self, timeout_ms: int) -> dict[Any, list[ConsumerRecord]]:
        return self.batches.pop(0) if self.batches else {}

    def commit(self, offsets: dict[Any, Any]) -> None:
        self.committed.update({tp: meta.offset for tp, meta in offsets.items()})

    def close(self) -> None:
        pass


class FakeFuture:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def get(self, timeout: float) -> None:
        if self.error is not None:
            raise self.error


class FakeProducer:
    """Refuses records over ``max_request_size`` on send, like kafka-python, and those over
    ``broker_max`` on the ack, like a broker's message.max.bytes."""

    def __init__(self, max_request_size: int = 10**9, broker_max: int = 10**9) -> None:
        self.max_request_size = max_request_size
        self.broker_max = broker_max
        self.acked: list[OutboundRecord] = []

    def send(self, topic: str, key: Any, value: bytes, headers: Any) -> FakeFuture:
        size = len(value) + sum(len(k) + len(v) for k, v in headers)
        if size > self.max_request_size:
            raise MessageSizeTooLargeError(f"{size} bytes")
        if size > self.broker_max:
            return FakeFuture(MessageSizeTooLargeError("broker: too large"))
        self.acked.append(OutboundRecord(topic, key, value, headers))
        return FakeFuture()

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


TP = ("pocketvl.medical.requests", 0)


def records(*values: bytes) -> list[ConsumerRecord]:
    return [
        ConsumerRecord(TP[0], 0, offset, b"study", value) for offset, value in enumerate(values)
    ]


def valid(event_id: str) -> bytes:
    return json.dumps({**example("medical"), "event_id": event_id}).encode()


def run(worker: Worker, count: int) -> None:
    worker.run(max_records=count, idle_timeout_s=0.5)


def by_topic(producer: FakeProducer) -> dict[str, list[OutboundRecord]]:
    out: dict[str, list[OutboundRecord]] = {}
    for record in producer.acked:
        out.setdefault(record.topic.rsplit(".", 1)[1], []).append(record)
    return out


def reason(record: OutboundRecord) -> str:
    return dict(record.headers)["dlq.reason"].decode()


def test_a_bug_in_any_stage_is_dead_lettered_and_the_next_records_are_answered() -> None:
    class BuggyCache(DictCache):
        def answered(self, event_id: str) -> bool:
            if event_id == "bug-at-done-check":
                raise ZeroDivisionError("a bug quoting input: Doe^Jane")
            return super().answered(event_id)

        def get(self, key: str) -> Any:
            raise AttributeError("a bug at the cache lookup")

    pipeline = make_pipeline(ScriptedInference())
    pipeline.cache = BuggyCache()
    real_process = pipeline.process

    def process(inbound: InboundRecord) -> OutboundRecord | None:
        if inbound.offset == 3:  # the pipeline itself fails: the loop's own guard
            raise MemoryError("out of memory while building the DLQ record")
        return real_process(inbound)

    pipeline.process = process  # type: ignore[method-assign,assignment]
    values = [valid("bug-at-cache"), valid("bug-at-done-check"), b"{oops", valid("x")]
    consumer = FakeConsumer([{TP: records(*values)}])
    producer = FakeProducer()
    run(Worker(pipeline, consumer, producer), 4)
    dlq = by_topic(producer)["dlq"]
    assert [r.value for r in dlq] == values  # every record dead-lettered, in order
    messages = [dict(r.headers)["dlq.exception.message"].decode() for r in dlq]
    bug = "internal_error"
    assert [reason(r) for r in dlq] == [bug, bug, "invalid_json", bug]
    assert messages[0] == "AttributeError at stage infer"
    assert messages[1] == "ZeroDivisionError at stage deserialize"
    assert messages[3] == "MemoryError at stage worker"
    assert consumer.committed == {TP: 4}  # the partition moved past every record

    pipeline.cache = DictCache()  # the bugs fixed: the next records are answered
    consumer.batches = [{TP: [ConsumerRecord(TP[0], 0, 4, b"study", valid("ok"))]}]
    run(Worker(pipeline, consumer, producer), 1)
    assert json.loads(producer.acked[-1].value)["event_id"] == "ok"
    assert consumer.committed == {TP: 5}


def test_an_answer_the_producer_refuses_dead_letters_its_request() -> None:
    pipeline = make_pipeline(ScriptedInference(text="B" * 5000))
    consumer = FakeConsumer([{TP: records(valid("long-answer"))}])
    producer = FakeProducer(max_request_size=len(valid("long-answer")) + 4000)
    run(Worker(pipeline, consumer, producer), 1)
    (record,) = producer.acked
    assert record.topic == "pocketvl.medical.dlq" and record.value == valid("long-answer")
    assert (reason(record), dict(record.headers)["dlq.stage"]) == ("message_too_large", b"produce")
    assert consumer.committed == {TP: 1}
    assert pipeline.cache.answered("long-answer") is False  # no answer was published


def test_a_dlq_record_the_broker_refuses_goes_again_without_the_value() -> None:
    huge = b"{" + b" " * 20_000  # invalid JSON, too large to copy into the DLQ
    pipeline = make_pipeline(ScriptedInference())
    consumer = FakeConsumer([{TP: records(huge, valid("after"))}])
    producer = FakeProducer(broker_max=10_000)
    run(Worker(pipeline, consumer, producer), 2)
    dlq, answer = by_topic(producer)["dlq"], by_topic(producer)["answers"]
    assert [r.value for r in dlq] == [b""]
    headers = {k: v.decode() for k, v in dlq[0].headers}
    assert headers["dlq.reason"] == "message_too_large"
    assert "dead-lettered as invalid_json" in headers["dlq.exception.message"]
    assert (headers["dlq.original.partition"], headers["dlq.original.offset"]) == ("0", "0")
    assert [json.loads(r.value)["event_id"] for r in answer] == ["after"]
    assert consumer.committed == {TP: 2}


def test_a_broker_that_takes_nothing_stops_the_worker_before_any_commit() -> None:
    class DownProducer(FakeProducer):
        def send(self, topic: str, key: Any, value: bytes, headers: Any) -> FakeFuture:
            return FakeFuture(KafkaTimeoutError("no broker"))

    consumer = FakeConsumer([{TP: records(valid("a"))}])
    worker = Worker(make_pipeline(ScriptedInference()), consumer, DownProducer())
    try:
        run(worker, 1)
    except KafkaTimeoutError:
        pass
    else:
        raise AssertionError("the worker went on although the broker took nothing")
    assert consumer.committed == {}  # redelivered after a restart: nothing is lost
