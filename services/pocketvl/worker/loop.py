"""The consumer loop: poll, process in order, wait for acks, then commit.

At-least-once: a partition's offset is committed only after every answer or DLQ record
up to it has been acknowledged by the broker. If Kafka cannot take results at all (down,
timing out), nothing is committed and the error stops the worker, so the records are
redelivered.

No single record can stop the loop: an exception from any stage is dead-lettered as
``internal_error``; an answer the broker refuses (too large) is dead-lettered instead; a
DLQ record it refuses is sent again without the original value, whose place (topic,
partition, offset) the headers keep.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from pocketvl.errors import DeadLetterError, InternalError, RecordRefused
from pocketvl.worker.envelope import InboundRecord, OutboundRecord, domain_of
from pocketvl.worker.pipeline import Pipeline
from pocketvl.worker.ports import Delivery, Partition, RecordSink, RecordSource

log = logging.getLogger(__name__)
ACK_TIMEOUT_S = 30.0


@dataclass
class RunStats:
    processed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0  # redeliveries of already answered requests: not published again


@dataclass
class _Sent:
    inbound: InboundRecord
    outbound: OutboundRecord
    delivery: Delivery


class Worker:
    def __init__(self, pipeline: Pipeline, source: RecordSource, sink: RecordSink) -> None:
        self.pipeline = pipeline
        self.source = source
        self.sink = sink
        self.stats = RunStats()

    def run(
        self,
        stop: threading.Event | None = None,
        max_records: int | None = None,
        idle_timeout_s: float | None = None,
    ) -> RunStats:
        """Process until ``stop`` is set, ``max_records`` are done, or no record arrives
        for ``idle_timeout_s``."""
        stop = stop or threading.Event()
        last_record = time.monotonic()
        while not stop.is_set():
            if max_records is not None and self.stats.processed >= max_records:
                break
            batch = self.source.poll(timeout_s=0.2)
            if not batch:
                if idle_timeout_s is not None and time.monotonic() - last_record > idle_timeout_s:
                    break
                continue
            last_record = time.monotonic()
            self._handle(batch)
        return self.stats

    def _handle(self, batch: list[InboundRecord]) -> None:
        sent: list[_Sent] = []
        answered: list[str] = []
        next_offsets: dict[Partition, int] = {}
        for inbound in batch:
            outbound = self._process(inbound)
            next_offsets[Partition(inbound.topic, inbound.partition)] = inbound.offset + 1
            self.stats.processed += 1
            if outbound is None or (outbound.answers and outbound.answers in answered):
                self.stats.duplicates += 1  # answered before, or earlier in this batch
                continue
            item = self._send(inbound, outbound)  # may be a DLQ record in its place
            if item.outbound.answers is not None:
                answered.append(item.outbound.answers)
            sent.append(item)
        self.sink.flush(ACK_TIMEOUT_S)
        for item in sent:
            if not self._acked(item) and item.outbound.answers is not None:
                answered.remove(item.outbound.answers)
        self.stats.dead_lettered += sum(1 for item in sent if item.outbound.answers is None)
        self.pipeline.done.mark(answered)  # only after the broker has them
        self.source.commit(next_offsets)

    def _process(self, inbound: InboundRecord) -> OutboundRecord | None:
        try:
            return self.pipeline.process(inbound)
        except Exception as exc:  # even building the DLQ record failed: a bug
            log.exception("internal error outside the pipeline's stages on %s", inbound.topic)
            return self._dead_letter(inbound, InternalError("worker", exc))

    def _dead_letter(self, inbound: InboundRecord, error: DeadLetterError) -> OutboundRecord:
        domain = domain_of(self.pipeline.settings.kafka.topic_prefix, inbound.topic)
        if domain is None:
            raise RuntimeError(f"{inbound.topic} is not a request topic") from error
        return self.pipeline.dead_letter(inbound, domain, error)

    def _send(self, inbound: InboundRecord, outbound: OutboundRecord) -> _Sent:
        try:
            return _Sent(inbound, outbound, self.sink.send(outbound))
        except RecordRefused as refusal:
            return self._send(inbound, self._instead_of_refused(inbound, outbound, refusal))

    def _acked(self, item: _Sent) -> bool:
        """Wait for the broker's ack; False when it refused the record and a replacement
        (the request dead-lettered, or a DLQ record without the value) was acked instead."""
        try:
            item.delivery.wait(ACK_TIMEOUT_S)
            return True
        except RecordRefused as refusal:
            replacement = self._instead_of_refused(item.inbound, item.outbound, refusal)
            retry = self._send(item.inbound, replacement)
            self.sink.flush(ACK_TIMEOUT_S)
            self._acked(retry)
            return False

    def _instead_of_refused(
        self, inbound: InboundRecord, outbound: OutboundRecord, refusal: RecordRefused
    ) -> OutboundRecord:
        log.warning("the broker refused a record for %s: %s", outbound.topic, refusal)
        error = DeadLetterError("message_too_large", f"the broker refused the record: {refusal}")
        error.stage = "produce"
        if outbound.answers is not None:  # the answer could not be published: dead-letter
            return self._dead_letter(inbound, error)
        if not outbound.value:  # already without the value: nothing smaller to send
            raise RuntimeError(f"the broker refuses even an empty DLQ record: {refusal}")
        prefix = self.pipeline.settings.kafka.topic_prefix
        domain = domain_of(prefix, inbound.topic) or ""
        stripped = InboundRecord(
            inbound.topic, inbound.partition, inbound.offset, inbound.key, b"", inbound.headers
        )
        first_reason = dict(outbound.headers).get("dlq.reason", b"").decode()
        note = DeadLetterError(
            "message_too_large",
            f"dead-lettered as {first_reason}, but its {len(inbound.value)} bytes are too large "
            "to copy into the DLQ: the original stays at dlq.original.topic/partition/offset",
        )
        note.stage = "produce"
        return self.pipeline.dead_letter(stripped, domain, note)

    def close(self) -> None:
        self.source.close()
        self.sink.close()
        self.pipeline.images.close()
