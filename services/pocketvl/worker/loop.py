"""The consumer loop: poll, process in order, wait for acks, then commit.

At-least-once: a partition's offset is committed only after every answer or DLQ record
up to it has been acknowledged by the broker. If Kafka refuses a result, nothing is
committed and the error stops the worker, so the records are redelivered.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from pocketvl.messaging import commit_offsets, send, to_inbound
from pocketvl.worker.pipeline import Pipeline

log = logging.getLogger(__name__)
ACK_TIMEOUT_S = 30.0


@dataclass
class RunStats:
    processed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0  # redeliveries of already answered requests: not published again


class Worker:
    def __init__(self, pipeline: Pipeline, consumer: Any, producer: Any) -> None:
        self.pipeline = pipeline
        self.consumer = consumer
        self.producer = producer
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
            batch = self.consumer.poll(timeout_ms=200)
            if not batch:
                if idle_timeout_s is not None and time.monotonic() - last_record > idle_timeout_s:
                    break
                continue
            last_record = time.monotonic()
            self._handle(batch)
        return self.stats

    def _handle(self, batch: dict[Any, list[Any]]) -> None:
        pending, answered = [], []
        next_offsets: dict[Any, int] = {}
        for partition, records in batch.items():
            for record in records:
                outbound = self.pipeline.process(to_inbound(record))
                next_offsets[partition] = record.offset + 1
                self.stats.processed += 1
                if outbound is None or (outbound.answers and outbound.answers in answered):
                    self.stats.duplicates += 1  # answered before, or earlier in this batch
                    continue
                if outbound.answers is None:
                    self.stats.dead_lettered += 1
                else:
                    answered.append(outbound.answers)
                pending.append(send(self.producer, outbound))
        self.producer.flush(timeout=ACK_TIMEOUT_S)
        for future in pending:
            future.get(timeout=ACK_TIMEOUT_S)  # raises if the broker did not take it
        self.pipeline.cache.mark_answered(answered)  # only after the broker has them
        commit_offsets(self.consumer, next_offsets)

    def close(self) -> None:
        self.consumer.close()
        self.producer.close(timeout=5)
