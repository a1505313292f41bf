"""Kafka through kafka-python (the only module that imports it): the worker's record source
and sink ports, topic creation, and the publish / read helpers of the CLI, demo and eval."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka import (
    KafkaAdminClient,
    KafkaConsumer,
    KafkaProducer,
    TopicPartition,
)
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import AsyncConsumerRebalanceListener
from kafka.errors import (
    CorruptRecordError,
    InvalidRecordError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    TopicAlreadyExistsError,
)
from kafka.structs import OffsetAndMetadata

from pocketvl.adapters.kafka_security import security_kwargs
from pocketvl.errors import BrokerUnavailable, RecordRefused
from pocketvl.settings import KafkaSettings
from pocketvl.worker.envelope import InboundRecord, OutboundRecord
from pocketvl.worker.ports import Partition

log = logging.getLogger(__name__)
# Refusals of one record; anything else (broker down, timeouts) concerns every record.
_RECORD_REFUSALS = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidRecordError,
    CorruptRecordError,
)
# How often the broker is asked for the end of paused partitions (their lag).
PAUSED_ENDS_EVERY_S = 2.0
# Room for the DLQ headers on top of a request value of kafka.max_message_bytes.
DLQ_HEADROOM_BYTES = 64 * 1024


@contextmanager
def _reaching(settings: KafkaSettings) -> Iterator[None]:
    try:
        yield
    except (KafkaConnectionError, KafkaTimeoutError) as exc:
        raise BrokerUnavailable(
            f"no Kafka broker at {settings.bootstrap_servers}: start one (`pocketvl stack up`, "
            "then --stack) or set POCKETVL_KAFKA__BOOTSTRAP_SERVERS"
        ) from exc


def _common(settings: KafkaSettings) -> dict[str, Any]:
    return {
        "bootstrap_servers": settings.bootstrap_servers.split(","),
        "client_id": settings.client_id,
        "bootstrap_timeout_ms": settings.bootstrap_timeout_ms,
        **security_kwargs(settings),
    }


def ensure_topics(settings: KafkaSettings, topics: list[str], partitions: int = 3) -> None:
    """Create missing topics (all with the same partition count, so keys line up)."""
    with _reaching(settings):
        admin = KafkaAdminClient(**_common(settings))
    try:
        existing = set(admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            try:
                admin.create_topics(
                    [NewTopic(t, num_partitions=partitions, replication_factor=1) for t in missing]
                )
            except TopicAlreadyExistsError:
                log.info("topics were created concurrently: %s", missing)
    finally:
        admin.close()


def _consumer(settings: KafkaSettings, topics: list[str], group_id: str) -> Any:
    """Manual commits; offsets are committed only after results are acked by the broker."""
    with _reaching(settings):
        return KafkaConsumer(
            *topics,
            **_common(settings),
            group_id=group_id,
            group_instance_id=settings.group_instance_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=settings.max_poll_records,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            session_timeout_ms=settings.session_timeout_ms,
            heartbeat_interval_ms=settings.heartbeat_interval_ms,
            fetch_max_bytes=max(settings.max_message_bytes, 52_428_800),
            max_partition_fetch_bytes=settings.max_message_bytes,
        )


def _producer(settings: KafkaSettings) -> Any:
    with _reaching(settings):
        return KafkaProducer(
            **_common(settings),
            acks="all",
            linger_ms=5,
            max_request_size=settings.max_message_bytes + DLQ_HEADROOM_BYTES,
        )


def _inbound(record: Any) -> InboundRecord:
    headers = [(k, bytes(v) if v is not None else b"") for k, v in (record.headers or [])]
    value = record.value if record.value is not None else b""
    return InboundRecord(
        record.topic, record.partition, record.offset, record.key, value, headers, record.timestamp
    )


def _offsets(offsets: Mapping[Partition, int]) -> dict[TopicPartition, OffsetAndMetadata]:
    return {
        TopicPartition(*tp): OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()
    }


RevokeCallback = Callable[[set[Partition]], Mapping[Partition, int]]


class _Rebalance(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python 3 runs these on its IO thread while the caller's ``poll`` waits for the
    rebalance (eager protocol: before the JoinGroup), so the callbacks may touch the loop's
    state but must not call a blocking consumer method: the finished offsets they return are
    committed here, awaited on the IO loop, while this member still owns the partitions.

    kafka-python 3 also keeps the fetch position of a partition that is revoked and assigned
    straight back (Java resets it to the committed offset). The worker dropped that
    partition's unstarted records, so reading on from the old position would skip them for
    good: an assigned-back partition is sought to its restart offset instead."""

    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        self.revoke_callbacks: list[RevokeCallback] = []
        self._restart: dict[Partition, int] = {}

    async def on_partitions_revoked(self, revoked: Any) -> None:
        offsets = self._let_go(revoked)
        self._restart.update(offsets)
        if not offsets:
            return
        try:
            await self.consumer.commit_async(_offsets(offsets))
        except KafkaError as exc:
            log.warning(
                "could not commit the finished work of revoked partitions (its requests will "
                "be processed again by their new owner, and answered from the done-store): %s",
                exc,
            )

    async def on_partitions_lost(self, lost: Any) -> None:
        self._restart.update(self._let_go(lost))  # moved already: nothing can be committed

    async def on_partitions_assigned(self, assigned: Any) -> None:
        log.info("assigned %d partitions", len(assigned))
        restart, self._restart = self._restart, {}
        for tp in assigned:
            offset = restart.get(Partition(tp.topic, tp.partition))
            if offset is not None:
                self.consumer.seek(tp, offset)

    def _let_go(self, partitions: Any) -> dict[Partition, int]:
        mine = {Partition(tp.topic, tp.partition) for tp in partitions}
        offsets: dict[Partition, int] = {}
        for callback in self.revoke_callbacks:
            offsets.update(callback(mine))
        return offsets


class KafkaRecordSource:
    """The worker's consumer, in its group, subscribed to ``topics``."""

    def __init__(self, settings: KafkaSettings, topics: list[str]) -> None:
        self.consumer = _consumer(settings, [], settings.group_id)
        self._paused_ends: dict[Any, int] = {}  # TopicPartition -> end, asked of the broker
        self._paused_ends_at = -PAUSED_ENDS_EVERY_S
        self.rebalance = _Rebalance(self.consumer)
        self.consumer.subscribe(topics, listener=self.rebalance)

    def assignment(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self.consumer.assignment()}

    def pause(self, partitions: set[Partition]) -> None:
        self.consumer.pause(*(TopicPartition(*p) for p in partitions))

    def resume(self, partitions: set[Partition]) -> None:
        self.consumer.resume(*(TopicPartition(*p) for p in partitions))

    def highwaters(self) -> dict[Partition, int]:
        """Each assigned partition's end, as the fetcher last saw it. A paused partition is
        not fetched, so its end would freeze while the backlog grows (a Triton outage is
        exactly when lag matters): for those the broker is asked (ListOffsets), at most
        every ``PAUSED_ENDS_EVERY_S``, on this (the loop's) thread, with a short timeout."""
        assigned = self.consumer.assignment()
        paused = set(self.consumer.paused()) & assigned
        ends = {}
        for tp in assigned:
            end = self._paused_ends.get(tp) if tp in paused else None
            if end is None:
                end = self.consumer.highwater(tp)
            if end is not None:
                ends[Partition(tp.topic, tp.partition)] = int(end)
        self._refresh_paused_ends(paused)
        return ends

    def _refresh_paused_ends(self, paused: set[Any]) -> None:
        self._paused_ends = {tp: end for tp, end in self._paused_ends.items() if tp in paused}
        now = time.monotonic()
        if not paused or now - self._paused_ends_at < PAUSED_ENDS_EVERY_S:
            return
        self._paused_ends_at = now
        try:
            self._paused_ends.update(self.consumer.end_offsets(list(paused), timeout_ms=1000))
        except KafkaError as exc:  # keep the last ends; the next round asks again
            log.debug("end offsets of paused partitions not read: %s", exc)

    def on_revoke(self, callback: RevokeCallback) -> None:
        self.rebalance.revoke_callbacks.append(callback)

    def poll(self, timeout_s: float) -> list[InboundRecord]:
        _free_parked_records(self.consumer)
        batch = self.consumer.poll(timeout_ms=int(timeout_s * 1000))
        return [_inbound(record) for records in batch.values() for record in records]

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.consumer.commit(_offsets(offsets))

    def close(self) -> None:
        self.consumer.close()


def _free_parked_records(consumer: Any) -> None:
    """Work around kafka-python 3.0.12 losing resumed partitions.

    Records fetched for a partition that is then paused are parked; on a later poll they
    are put back only while the fetcher's in-line slot is None. But a drained slot keeps
    its emptied (falsy) record set, so a parked partition is never restored, and never
    fetched again either: after pause and resume it would stall for good (seen here as a
    worker idle with lag on every partition). Emptying a drained slot lets it go on.
    """
    fetcher: Any = getattr(consumer, "_fetcher", None)
    current = getattr(fetcher, "_next_partition_records", None)
    if current is not None and not current:
        fetcher._next_partition_records = None


class _KafkaDelivery:
    def __init__(self, future: Any) -> None:
        self.future = future

    def done(self) -> bool:
        return bool(self.future.is_done)

    def wait(self, timeout_s: float) -> None:
        try:
            self.future.get(timeout=timeout_s)
        except _RECORD_REFUSALS as exc:
            raise RecordRefused(type(exc).__name__) from None


class KafkaRecordSink:
    """An idempotence-free producer with ``acks=all``: a record counts once every in-sync
    replica has it."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.producer = _producer(settings)

    def send(self, record: OutboundRecord) -> _KafkaDelivery:
        try:
            future = self.producer.send(
                record.topic, key=record.key, value=record.value, headers=record.headers
            )
        except _RECORD_REFUSALS as exc:  # kafka-python's own size check, before sending
            raise RecordRefused(f"{record.topic}: {type(exc).__name__}") from None
        return _KafkaDelivery(future)

    def flush(self, timeout_s: float) -> None:
        self.producer.flush(timeout=timeout_s)

    def close(self) -> None:
        self.producer.close(timeout=5)


def publish(settings: KafkaSettings, records: list[OutboundRecord], timeout_s: float = 30) -> None:
    """Send ``records`` and return once the broker acknowledged every one of them."""
    sink = KafkaRecordSink(settings)
    try:
        deliveries = [sink.send(record) for record in records]
        sink.flush(timeout_s)
        for delivery in deliveries:
            delivery.wait(timeout_s)
    finally:
        sink.close()


def read_records(
    settings: KafkaSettings, topics: list[str], count: int | None, timeout_s: float
) -> list[InboundRecord]:
    """Read from the start of ``topics`` until ``count`` records or ``timeout_s`` pass.

    No consumer group: nothing is committed, so reading never disturbs the workers.
    """
    out: list[InboundRecord] = []
    deadline = time.monotonic() + timeout_s
    follow_records(
        settings,
        topics,
        out.append,
        lambda: time.monotonic() >= deadline or (count is not None and len(out) >= count),
    )
    return out if count is None else out[:count]


def follow_records(
    settings: KafkaSettings,
    topics: list[str],
    on_record: Callable[[InboundRecord], None],
    done: Callable[[], bool],
) -> None:
    """Hand every record of ``topics``, from the start, to ``on_record`` as it arrives,
    until ``done()`` says so. No consumer group: nothing is committed."""
    with _reaching(settings):
        consumer = KafkaConsumer(
            **_common(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
    try:
        partitions = [
            TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())
        ]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        while not done():
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    on_record(_inbound(record))
    finally:
        consumer.close()
