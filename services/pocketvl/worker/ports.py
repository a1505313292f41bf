"""The seams of the core: what the worker needs from the broker, the stores and Triton.

The adapters in :mod:`pocketvl.adapters` implement these Protocols against kafka-python,
redis-py, tritonclient and the claim-check stores; the unit tests use the in-memory fakes in
``tests/support/fakes.py``, and ``tests/integration/test_port_contracts.py`` runs the same
contract against both, so the fakes stay honest.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from pocketvl.contracts.triton import RgbImage
from pocketvl.worker.envelope import InboundRecord, OutboundRecord


class Partition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True)
class GenerationResult:
    """What one inference produced: shared by the Triton adapter and the result cache."""

    text: str
    prompt_tokens: int
    generated_tokens: int
    model_version: str


@dataclass(frozen=True)
class CachedResult:
    """A cache entry: the generation, and the original image sizes its answer's coordinates
    are mapped back to, so a hit needs no decoding at all."""

    result: GenerationResult
    image_sizes: tuple[tuple[int, int], ...] = ()
    camera_sizes: Mapping[str, tuple[int, int]] = field(default_factory=dict)


class Delivery(Protocol):
    """A record handed to the broker."""

    def done(self) -> bool:
        """Whether the broker has answered (acknowledged or refused): ``wait`` won't block."""

    def wait(self, timeout_s: float) -> None:
        """Return once the broker acknowledged it. Raises ``RecordRefused`` when the broker
        refused this record (too large, invalid); any other error means the broker took
        nothing (down, timing out) and is raised as it is."""


class RecordSource(Protocol):
    """The consumer side: request records of the subscribed topics, and offset commits."""

    def poll(self, timeout_s: float) -> list[InboundRecord]: ...

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit, per partition, the offset of the next record to read."""

    def assignment(self) -> set[Partition]:
        """The partitions this consumer owns now."""

    def pause(self, partitions: set[Partition]) -> None:
        """Stop fetching from ``partitions``; ``poll`` keeps the group membership alive."""

    def resume(self, partitions: set[Partition]) -> None: ...

    def highwaters(self) -> dict[Partition, int]:
        """Per assigned partition, the end offset last heard from the broker (no request is
        made: lag for the metrics)."""

    def on_revoke(self, callback: Callable[[set[Partition]], Mapping[Partition, int]]) -> None:
        """Call ``callback`` (inside ``poll``, maybe on the client's own thread while
        ``poll`` waits) before partitions are taken away; it returns, per partition, the
        offset below which everything is finished: the source commits it while it still
        owns them and, if a partition is assigned back, reads it again from there (records
        the worker dropped are redelivered). The callback must not call the source."""

    def close(self) -> None: ...


class RecordSink(Protocol):
    """The producer side: answers and DLQ records."""

    def send(self, record: OutboundRecord) -> Delivery:
        """Queue ``record``. Raises ``RecordRefused`` when it can never be sent (too large)."""

    def flush(self, timeout_s: float) -> None: ...

    def close(self) -> None: ...


class ResultCache(Protocol):
    """Generation results by content key (``worker.caching.cache_key``). Best effort: it
    never fails a request."""

    def get(self, key: str) -> CachedResult | None:
        """None on a miss. Raises ``CacheUnavailable`` when the cache cannot be reached."""

    def put(self, key: str, value: CachedResult) -> None:
        """Store ``value``; an unreachable cache forgets it."""


class DoneStore(Protocol):
    """Which events already have a published (broker-acked) answer: duplicate suppression.
    When unreachable, ``seen`` says False: answering twice beats dropping an event."""

    def seen(self, event_id: str) -> bool: ...

    def seen_among(self, event_ids: list[str]) -> set[str]:
        """Those of ``event_ids`` already answered, in one round trip (a poll's worth)."""

    def mark(self, event_ids: list[str]) -> None: ...

    def reachable(self) -> bool:
        """Whether the store answers now (readiness). Never raises."""


class ImageStore(Protocol):
    """Where claim-check references point, for one URI scheme (file, https, s3...)."""

    def fetch(self, uri: str, max_bytes: int) -> bytes:
        """The object's bytes, reading at most ``max_bytes + 1`` (so the caller sees an
        object over the cap). Raises ``ImageError`` (refused, unreachable) or
        ``ImageUnavailable`` (the store is down or slow: worth retrying)."""

    def close(self) -> None:
        """Release pooled connections."""


class InferenceBackend(Protocol):
    """A Triton model (or anything with its interface) that answers one request."""

    def model_version(self, model: str) -> str: ...

    def ready(self, model: str) -> bool:
        """Whether ``model`` is loaded and ready now. Never raises; returns within a few
        seconds."""

    def capacity(self, model: str) -> int | None:
        """Requests ``model`` runs at once (max batch x instances); None when unknown (the
        server cannot say now). Never raises, and returns within a few seconds."""

    def generate(
        self,
        model: str,
        images: list[RgbImage],
        question: str,
        max_new_tokens: int,
        max_tiles: int,
    ) -> GenerationResult:
        """Raises ``InferenceUnavailable`` (down, overloaded, not loaded: retry) or
        ``InferenceError`` (this request was refused)."""

    def close(self) -> None:
        """Release the connection and whatever the server holds for this client (shared
        memory regions)."""
