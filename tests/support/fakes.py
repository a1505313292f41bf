"""In-memory implementations of the worker's ports (``pocketvl.worker.ports``).

``tests/integration/test_port_contracts.py`` runs the same contract against these and the
real adapters (Redis, the broker), so the fakes stay honest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pocketvl.contracts.triton import RgbImage
from pocketvl.errors import InferenceError, RecordRefused
from pocketvl.worker.envelope import InboundRecord, OutboundRecord
from pocketvl.worker.ports import CachedResult, GenerationResult, Partition


class InMemoryResultCache:
    def __init__(self) -> None:
        self.data: dict[str, CachedResult] = {}

    def get(self, key: str) -> CachedResult | None:
        return self.data.get(key)

    def put(self, key: str, value: CachedResult) -> None:
        self.data[key] = value


class InMemoryDoneStore:
    def __init__(self) -> None:
        self.done: set[str] = set()

    def seen(self, event_id: str) -> bool:
        return event_id in self.done

    def seen_among(self, event_ids: list[str]) -> set[str]:
        return self.done.intersection(event_ids)

    def reachable(self) -> bool:
        return True

    def mark(self, event_ids: list[str]) -> None:
        self.done.update(event_ids)


class ScriptedInference:
    """Answers ``text``; raises the queued errors first, one per call."""

    def __init__(self, text: str = "B", errors: list[InferenceError] | None = None):
        self.text = text
        self.errors = list(errors or [])
        self.calls: list[tuple[str, int, str, int, int]] = []
        self.images: list[list[RgbImage]] = []
        self.capacities: dict[str, int] = {}
        self.closed = False

    def capacity(self, model: str) -> int | None:
        return self.capacities.get(model)

    def ready(self, model: str) -> bool:
        return True

    def model_version(self, model: str) -> str:
        return "1"

    def generate(
        self,
        model: str,
        images: list[RgbImage],
        question: str,
        max_new_tokens: int,
        max_tiles: int,
    ) -> GenerationResult:
        self.calls.append((model, len(images), question, max_new_tokens, max_tiles))
        self.images.append(images)
        if self.errors:
            raise self.errors.pop(0)
        return GenerationResult(self.text, 300, 4, "1")

    def close(self) -> None:
        self.closed = True


class InMemoryImageStore:
    """Objects by URI; an unknown URI is ``image_unreachable``, as a 404 would be."""

    def __init__(self, objects: Mapping[str, bytes] | None = None) -> None:
        self.objects = dict(objects or {})

    def fetch(self, uri: str, max_bytes: int) -> bytes:
        from pocketvl.errors import ImageError

        if uri not in self.objects:
            raise ImageError("image_unreachable", f"{uri}: not found")
        return self.objects[uri][: max_bytes + 1]

    def close(self) -> None:
        self.objects.clear()


class InMemorySource:
    """Batches handed out one per poll; commits remembered per partition."""

    def __init__(self, batches: list[list[InboundRecord]] | None = None) -> None:
        self.batches = list(batches or [])
        self.committed: dict[Partition, int] = {}
        self.closed = False
        self.paused: set[Partition] = set()
        self.pauses = 0  # how often pause() was asked for
        self.ever_paused: set[Partition] = set()
        self.revoke_callbacks: list[Callable[[set[Partition]], Mapping[Partition, int]]] = []

    def poll(self, timeout_s: float) -> list[InboundRecord]:
        if not self.batches:
            return []
        batch = self.batches[0]
        ready = [r for r in batch if Partition(r.topic, r.partition) not in self.paused]
        held = [r for r in batch if Partition(r.topic, r.partition) in self.paused]
        if held:
            self.batches[0] = held
        else:
            self.batches.pop(0)
        return ready

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        for partition, offset in offsets.items():
            assert offset >= self.committed.get(partition, 0), "commits only move forward"
        self.committed.update(offsets)

    def assignment(self) -> set[Partition]:
        return {Partition(r.topic, r.partition) for batch in self.batches for r in batch}

    def pause(self, partitions: set[Partition]) -> None:
        self.pauses += 1
        self.paused |= partitions
        self.ever_paused |= partitions

    def resume(self, partitions: set[Partition]) -> None:
        self.paused -= partitions

    def highwaters(self) -> dict[Partition, int]:
        ends: dict[Partition, int] = {}
        for batch in self.batches:
            for r in batch:
                where = Partition(r.topic, r.partition)
                ends[where] = max(ends.get(where, 0), r.offset + 1)
        return ends

    def on_revoke(self, callback: Callable[[set[Partition]], Mapping[Partition, int]]) -> None:
        self.revoke_callbacks.append(callback)

    def revoke(self, partitions: set[Partition]) -> None:
        """What a rebalance does: the callbacks, what they finished committed, then the
        partitions' records are gone."""
        for callback in self.revoke_callbacks:
            self.commit(callback(partitions))
        self.batches = [
            [r for r in batch if Partition(r.topic, r.partition) not in partitions]
            for batch in self.batches
        ]

    def close(self) -> None:
        self.closed = True


@dataclass
class InMemoryDelivery:
    record: OutboundRecord
    sink: InMemorySink
    error: Exception | None = None

    def done(self) -> bool:
        return True

    def wait(self, timeout_s: float) -> None:
        if self.error is not None:
            raise self.error
        if self.record not in self.sink.acked:
            self.sink.acked.append(self.record)


@dataclass
class InMemorySink:
    """Acks what is sent. ``refuse_on_send`` / ``refuse_on_ack`` decide, per record, that the
    producer (at once) or the broker (on the ack) refuses it; ``fail_on_ack`` that the broker
    takes nothing (the error is raised from ``wait``)."""

    refuse_on_send: Callable[[OutboundRecord], bool] = lambda record: False
    refuse_on_ack: Callable[[OutboundRecord], bool] = lambda record: False
    fail_on_ack: Exception | None = None
    acked: list[OutboundRecord] = field(default_factory=list)

    def send(self, record: OutboundRecord) -> InMemoryDelivery:
        if self.refuse_on_send(record):
            raise RecordRefused(f"{record.topic}: too large")
        error: Exception | None = self.fail_on_ack
        if error is None and self.refuse_on_ack(record):
            error = RecordRefused("the broker refused it")
        return InMemoryDelivery(record, self, error)

    def flush(self, timeout_s: float) -> None:
        return None

    def close(self) -> None:
        return None

    def topics(self) -> dict[str, list[OutboundRecord]]:
        """Acked records by the kind of their topic (``answers`` / ``dlq``)."""
        out: dict[str, list[OutboundRecord]] = {}
        for record in self.acked:
            out.setdefault(record.topic.rsplit(".", 1)[1], []).append(record)
        return out
