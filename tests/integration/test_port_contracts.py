"""One contract per port, run against the in-memory fake and the real adapter, so the fakes
the unit tests lean on behave as Redis and the broker do."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from kafka import TopicPartition

from pocketvl.adapters.kafka_broker import (
    DLQ_HEADROOM_BYTES,
    KafkaRecordSink,
    KafkaRecordSource,
    ensure_topics,
    publish,
)
from pocketvl.adapters.redis_store import RedisDoneStore, RedisResultCache, connect
from pocketvl.devstack.processes import free_ports
from pocketvl.errors import CacheUnavailable, RecordRefused
from pocketvl.settings import KafkaSettings, RedisSettings, Settings
from pocketvl.worker.envelope import InboundRecord, OutboundRecord
from pocketvl.worker.ports import (
    CachedResult,
    DoneStore,
    GenerationResult,
    Partition,
    RecordSink,
    RecordSource,
    ResultCache,
)
from tests.support.fakes import InMemoryDoneStore, InMemoryResultCache, InMemorySink, InMemorySource

RESULT = CachedResult(
    GenerationResult("a river", 260, 3, "1"), ((640, 480),), {"CAM_FRONT": (1600, 900)}
)


@pytest.fixture(params=["fake", "redis"])
def stores(request: pytest.FixtureRequest, settings: Settings) -> tuple[ResultCache, DoneStore]:
    if request.param == "fake":
        return InMemoryResultCache(), InMemoryDoneStore()
    client = connect(settings.redis)
    return (
        RedisResultCache(client, ttl_seconds=60),
        RedisDoneStore(client, 60, settings.redis.key_prefix),
    )


def test_result_cache_round_trip(stores: tuple[ResultCache, DoneStore]) -> None:
    cache, _ = stores
    key = f"k-{uuid.uuid4().hex}"
    assert cache.get(key) is None
    cache.put(key, RESULT)
    assert cache.get(key) == RESULT
    newer = CachedResult(GenerationResult("newer", 1, 1, "2"))
    cache.put(key, newer)
    assert cache.get(key) == newer


def test_done_store_remembers_marked_events_only(stores: tuple[ResultCache, DoneStore]) -> None:
    _, done = stores
    first, second, other = (f"e-{uuid.uuid4().hex}" for _ in range(3))
    assert not done.seen(first)
    done.mark([first, second])
    done.mark([])
    assert done.seen(first) and done.seen(second) and not done.seen(other)
    assert done.seen_among([other, first, second]) == {first, second}
    assert done.seen_among([]) == set()


def test_redis_entries_expire_and_bad_entries_are_misses(settings: Settings) -> None:
    client = connect(settings.redis)
    cache = RedisResultCache(client, ttl_seconds=60)
    done = RedisDoneStore(client, 60, settings.redis.key_prefix)
    key = f"{settings.redis.key_prefix}:res:v3:abc"
    cache.put(key, RESULT)
    assert 0 < client.ttl(key) <= 60
    done.mark(["e1"])
    assert 0 < client.ttl(f"{settings.redis.key_prefix}:done:e1") <= 60
    client.set(key, b"{broken")
    assert cache.get(key) is None  # a bad entry is a miss, not a crash
    client.set(key, b'{"text": "an entry of the old format", "prompt_tokens": 1}')
    assert cache.get(key) is None


def test_redis_down_degrades_to_no_cache_and_not_seen() -> None:
    client = connect(
        RedisSettings(url=f"redis://127.0.0.1:{free_ports(1)[0]}/0", socket_timeout_s=0.5)
    )
    cache, done = RedisResultCache(client, 60), RedisDoneStore(client, 60, "pv")
    with pytest.raises(CacheUnavailable):  # the answer goes out, saying cache: unavailable
        cache.get("k")
    cache.put("k", RESULT)  # no exception: the answer still goes out
    assert not done.seen("e1")  # unknown: answer again rather than drop
    assert done.seen_among(["e1", "e2"]) == set()
    done.mark(["e1"])


SMALL_CAP = 4096
PortPair = tuple[RecordSource, RecordSink, Callable[[], None]]


@pytest.fixture(params=["fake", "kafka"])
def broker(request: pytest.FixtureRequest, settings: Settings) -> Iterator[tuple[str, PortPair]]:
    topic = f"{settings.kafka.topic_prefix}.contract.requests"
    if request.param == "fake":
        cap = SMALL_CAP + DLQ_HEADROOM_BYTES  # as kafka-python's max_request_size
        sink = InMemorySink(refuse_on_send=lambda record: len(record.value) > cap)
        source = InMemorySource()

        def deliver() -> None:  # what the broker does between a send and a poll
            source.batches.append(
                [
                    _inbound(record, offset)
                    for offset, record in enumerate(sink.acked[len(delivered) :], len(delivered))
                ]
            )
            delivered.extend(sink.acked[len(delivered) :])

        delivered: list[OutboundRecord] = []
        yield topic, (source, sink, deliver)
        return
    small = settings.kafka.model_copy(update={"max_message_bytes": SMALL_CAP})
    ensure_topics(small, [topic], partitions=1)
    real_source = KafkaRecordSource(small, [topic])
    real_sink = KafkaRecordSink(small)
    yield topic, (real_source, real_sink, lambda: None)
    real_source.close()
    real_sink.close()


def _inbound(record: OutboundRecord, offset: int) -> InboundRecord:
    return InboundRecord(record.topic, 0, offset, record.key, record.value, record.headers)


def _poll(source: RecordSource, count: int) -> list[InboundRecord]:
    got: list[InboundRecord] = []
    for _ in range(150):  # tansu's group join takes a few seconds
        got += source.poll(0.2)
        if len(got) >= count:
            break
    return got


def test_sent_records_arrive_in_order_with_key_and_headers(
    broker: tuple[str, PortPair], settings: Settings
) -> None:
    topic, (source, sink, deliver) = broker
    sent = [
        OutboundRecord(topic, b"car-7", f"v{i}".encode(), [("x-n", str(i).encode())])
        for i in range(3)
    ]
    deliveries = [sink.send(record) for record in sent]
    sink.flush(10)
    for delivery in deliveries:
        delivery.wait(10)
    deliver()
    got = _poll(source, 3)
    assert [(r.key, r.value, r.headers[-1]) for r in got] == [
        (b"car-7", f"v{i}".encode(), ("x-n", str(i).encode())) for i in range(3)
    ]
    assert [r.offset for r in got] == [0, 1, 2]
    source.commit({Partition(topic, 0): 3})


def test_a_record_over_the_cap_is_refused_alone(broker: tuple[str, PortPair]) -> None:
    topic, (_, sink, _) = broker
    with pytest.raises(RecordRefused):
        sink.send(OutboundRecord(topic, None, b"x" * 80_000, []))  # cap + DLQ headroom < 80 KB
    delivery = sink.send(OutboundRecord(topic, None, b"small", []))
    sink.flush(10)
    delivery.wait(10)  # the producer still works


def filled(
    kafka: KafkaSettings, topic: str, partitions: int, records: list[tuple[str, str]]
) -> None:
    """``topic`` created with ``partitions``, holding ``records`` (key, value), all acked."""
    ensure_topics(kafka, [topic], partitions=partitions)
    publish(kafka, [OutboundRecord(topic, k.encode(), v.encode(), []) for k, v in records])


def test_paused_and_resumed_partitions_deliver_every_record(settings: Settings) -> None:
    """Pause and resume in turns, as back-pressure does, on a real broker: every record
    still arrives once (kafka-python 3.0.12 alone stalls here; see _free_parked_records)."""
    kafka = settings.kafka.model_copy(update={"max_poll_records": 4})
    topic = f"{kafka.topic_prefix}.pauses.requests"
    filled(kafka, topic, 3, [(f"k{i % 9}", f"v{i}") for i in range(90)])
    source = KafkaRecordSource(kafka, [topic])
    seen: set[tuple[int, int]] = set()
    try:
        for _ in range(200):
            seen |= {(r.partition, r.offset) for r in source.poll(0.1)}
            if source.assignment():
                break
        for turn in range(60):
            assigned = sorted(source.assignment())
            source.pause(set(assigned))
            seen |= {(r.partition, r.offset) for r in source.poll(0.05)}
            source.resume({assigned[turn % len(assigned)]})  # one at a time, then all
            seen |= {(r.partition, r.offset) for r in source.poll(0.05)}
            source.resume(set(assigned))
            seen |= {(r.partition, r.offset) for r in source.poll(0.05)}
            if len(seen) == 90:
                break
        for _ in range(100):
            if len(seen) == 90:
                break
            seen |= {(r.partition, r.offset) for r in source.poll(0.1)}
    finally:
        source.close()
    assert len(seen) == 90


def test_a_paused_partition_s_end_still_follows_the_broker(settings: Settings) -> None:
    """Lag must grow while back-pressure (a Triton outage) pauses a partition: its end is
    asked of the broker, since the fetcher no longer sees it. (One record per produce call:
    tansu's ListOffsets answers the last batch's base offset + 1, not the log end, so only
    single-record batches give the true end there; Apache Kafka answers the log end.)"""
    kafka = settings.kafka
    topic = f"{kafka.topic_prefix}.paused-ends.requests"
    filled(kafka, topic, 1, [("k", f"v{i}") for i in range(3)])
    source = KafkaRecordSource(kafka, [topic])
    partition = Partition(topic, 0)
    try:
        seen = 0
        for _ in range(200):
            seen += len(source.poll(0.1))
            if seen == 3 and source.highwaters().get(partition) == 3:
                break
        assert source.highwaters()[partition] == 3
        source.pause({partition})
        for i in range(5):
            publish(kafka, [OutboundRecord(topic, b"k", f"late{i}".encode(), [])])
        ends = []
        for _ in range(100):  # the broker is asked every PAUSED_ENDS_EVERY_S (2 s)
            assert source.poll(0.1) == []  # paused: nothing is fetched
            ends.append(source.highwaters()[partition])
            if ends[-1] == 8:
                break
        assert ends[-1] == 8, ends
    finally:
        source.close()


def test_a_revocation_commits_what_the_worker_finished_before_the_partitions_move(
    settings: Settings,
) -> None:
    """A second member joins: the first is told (inside its poll, on kafka-python's IO
    thread) which partitions it loses, says what it finished, and that is committed before
    they move; a partition it is given back is read again right after the finished records
    (kafka-python 3 would keep its old position there and skip the records the worker
    dropped)."""
    kafka = settings.kafka.model_copy(update={"group_id": f"revoke-{uuid.uuid4().hex[:8]}"})
    topic = f"{kafka.topic_prefix}.revoke-{uuid.uuid4().hex[:8]}.requests"
    filled(kafka, topic, 2, [(f"k{i}", f"v{i}") for i in range(20)])
    first = KafkaRecordSource(kafka, [topic])
    revoked: list[set[Partition]] = []

    def finished(partitions: set[Partition]) -> dict[Partition, int]:
        if partitions:  # eager rebalancing: every join revokes all, none at the first
            revoked.append(partitions)
        return {p: 3 for p in partitions}  # offsets 0-2 of each answered, the rest not

    first.on_revoke(finished)
    again: dict[int, list[int]] = {}  # partition -> offsets the first read after revocation
    try:
        assert _poll(first, 20), "the first member never got its records"
        second = KafkaRecordSource(kafka, [topic])
        try:
            for _ in range(300):
                second.poll(0.1)
                for record in first.poll(0.1):  # the revocation runs inside this poll
                    if revoked:
                        again.setdefault(record.partition, []).append(record.offset)
                if again:
                    break
        finally:
            second.close()
        committed = {p: first.consumer.committed(TopicPartition(topic, p)) for p in (0, 1)}
    finally:
        first.close()
    assert revoked and revoked[0] == {Partition(topic, 0), Partition(topic, 1)}
    assert committed == {0: 3, 1: 3}  # committed from the IO thread, before the move
    assert again and {p: min(offsets) for p, offsets in again.items()} == dict.fromkeys(again, 3)


def test_a_static_member_joins_and_reads(settings: Settings) -> None:
    """``kafka.group_instance_id`` reaches the broker (tansu accepts static members)."""
    kafka = settings.kafka.model_copy(
        update={"group_id": f"static-{uuid.uuid4().hex[:8]}", "group_instance_id": "worker-0"}
    )
    topic = f"{kafka.topic_prefix}.static-{uuid.uuid4().hex[:8]}.requests"
    filled(kafka, topic, 1, [("k", "v")])
    source = KafkaRecordSource(kafka, [topic])
    try:
        assert [r.value for r in _poll(source, 1)] == [b"v"]
        assert source.consumer.config["group_instance_id"] == "worker-0"
    finally:
        source.close()
