"""The consumer loop: many requests in flight, polling never blocked, contiguous commits.

One thread polls, dispatches and settles; a bounded pool runs ``Pipeline.process`` (decode,
fetch, cache, Triton) for up to ``worker.max_in_flight`` records at once, so Triton's
dynamic batcher sees concurrent requests and a slow request holds up only its own key.
Each Triton model has its own budget of requests in flight (``scheduling.Scheduler``): a
slow model fills its own budget, never the others'.

- Ordering (``worker.ordering``): "key" (default) runs records with the same key one after
  another, in offset order, and different keys in parallel; "partition" one at a time per
  partition; "none" in any order. A record's answer is published before the next record of
  its lane starts, so answers of one key arrive in request order.
- At-least-once: an offset is finished once its answer or DLQ record is acked by the broker
  (or it was a duplicate); results are not flushed one by one: the producer batches them
  and the loop settles each as its ack arrives. ``OffsetTracker`` commits, per partition,
  only below the lowest unfinished offset. If Kafka cannot take results at all, the error
  stops the worker and nothing past the unfinished work is committed.
- Back-pressure: when ``worker.max_buffered`` received records wait for one model, the
  partitions feeding it are paused and polling goes on, so the group never sees the worker
  as stuck whatever inference takes; they resume when its queue drains to half.
- Rebalance: before partitions are revoked, what is finished on them is committed and their
  unstarted records dropped (the new owner gets them); their in-flight results are still
  published, never committed here.
- Spans (``messaging_spans``): ``poll`` per poll that returned records, ``send`` per result
  published (its context goes into the result's ``traceparent``), ``commit`` per commit.

No single record can stop the loop: an exception from any stage is dead-lettered as
``internal_error``; an answer the broker refuses (too large) is dead-lettered instead; a
DLQ record it refuses is sent again without the original value, whose place (topic,
partition, offset) the headers keep.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from opentelemetry.trace import Span, SpanContext

from pocketvl.errors import DeadLetterError, InternalError, RecordRefused
from pocketvl.settings import WorkerSettings
from pocketvl.worker.envelope import InboundRecord, OutboundRecord, domain_of
from pocketvl.worker.messaging_spans import MessagingSpans, trace_context
from pocketvl.worker.offsets import OffsetTracker
from pocketvl.worker.pipeline import Pipeline
from pocketvl.worker.ports import Delivery, Partition, RecordSink, RecordSource
from pocketvl.worker.scheduling import Job, Scheduler

log = logging.getLogger(__name__)
ACK_TIMEOUT_S = 30.0
_RECENT_ANSWERS = 10_000  # event ids answered lately, against duplicates racing in flight


@dataclass(frozen=True)
class Snapshot:
    """The loop's state for the metrics, taken on the loop thread about once a second."""

    in_flight: int = 0
    waiting: dict[str | None, int] = field(default_factory=dict)  # model -> buffered records
    paused: dict[str | None, int] = field(default_factory=dict)  # model -> partitions paused
    assigned: int = 0
    lag: dict[Partition, int] = field(default_factory=dict)  # records not yet finished
    running: dict[str | None, int] = field(default_factory=dict)  # model -> in flight


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
    span: Span  # "send", ended once the broker answers
    parent: SpanContext  # the record's process span


@dataclass
class _Done:
    job: Job
    outbound: OutboundRecord | None  # None: a duplicate, nothing to publish

    @property
    def inbound(self) -> InboundRecord:
        return self.job.inbound


@dataclass
class _Pending:
    """A finished record whose result the broker has not acknowledged yet."""

    done: _Done
    sent: _Sent | None  # None: a duplicate, nothing was sent


class Worker:
    def __init__(
        self,
        pipeline: Pipeline,
        source: RecordSource,
        sink: RecordSink,
        settings: WorkerSettings | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.sink = sink
        self.settings = settings or pipeline.settings.worker
        self.stats = RunStats()
        self.tracker = OffsetTracker()
        self._pool = ThreadPoolExecutor(self.settings.max_in_flight, "pocketvl-work")
        self._completed: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self.scheduler = Scheduler(self._budget)
        self._budgets: dict[str, tuple[int, float]] = {}  # model -> (budget, when known)
        self._in_flight = 0  # dispatched, and not yet settled (acked by the broker)
        self._running = 0  # dispatched, and not yet finished by the pool
        self._paused: set[Partition] = set()
        self._full: set[str | None] = set()  # models whose waiting records paused their feeds
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._unacked: list[_Pending] = []
        self._answering: set[str] = set()  # event ids whose answer is sent, not yet acked
        self.spans = MessagingSpans(pipeline.tracer, pipeline.settings.kafka.group_id)
        # Per partition, finished records not yet committed: offset, and the process span
        # the commit span will link to.
        self._uncommitted: dict[Partition, list[tuple[int, SpanContext | None]]] = {}
        self.running = False
        self.last_round: float | None = None  # time.monotonic() of the loop's last round
        self.snapshot = Snapshot()
        source.on_revoke(self._revoked)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def run(
        self,
        stop: threading.Event | None = None,
        max_records: int | None = None,
        idle_timeout_s: float | None = None,
    ) -> RunStats:
        """Process until ``stop`` is set, ``max_records`` are done, or no record arrives
        for ``idle_timeout_s``; then finish what is in flight (within
        ``worker.shutdown_timeout_s``), publish and commit."""
        stop = stop or threading.Event()
        last_record = observed = time.monotonic()
        self.running = True
        while not stop.is_set():
            self.last_round = now = time.monotonic()
            if now - observed >= 1.0:
                self.snapshot, observed = self._observe(), now
            self._settle(wait_s=0.01 if self._running else 0.0)
            if max_records is not None and self.stats.processed >= max_records:
                break
            wanted = None if max_records is None else max_records - self.stats.processed
            polled_at = time.time_ns()
            if wanted is None or self.scheduler.buffered + self._in_flight < wanted:
                batch = self.source.poll(timeout_s=0.01 if self._in_flight else 0.2)
            else:
                batch = []
            self._receive(batch, polled_at)
            if batch:
                last_record = time.monotonic()
            self._dispatch(wanted)
            self._apply_back_pressure()
            idle = not batch and not self._in_flight and not self.scheduler.buffered
            if (
                idle
                and idle_timeout_s is not None
                and time.monotonic() - last_record > idle_timeout_s
            ):
                break
        self.running = False
        self._drain(self.settings.shutdown_timeout_s)
        self.snapshot = self._observe()
        return self.stats

    def _observe(self) -> Snapshot:
        assigned = self.source.assignment()
        restart = self.tracker.restart_points(assigned)
        ends = self.source.highwaters()
        lag = {p: max(0, end - restart[p]) for p, end in ends.items() if p in restart}
        paused = {m: len(self.scheduler.feeding(m) & self._paused) for m in self._full}
        waiting, running = dict(self.scheduler.waiting), dict(self.scheduler.running)
        return Snapshot(self._in_flight, waiting, paused, len(assigned), lag, running)

    def _receive(self, batch: list[InboundRecord], polled_at: int) -> None:
        if not batch:
            return
        self.spans.polled(batch, polled_at)
        consumed: dict[str, int] = {}
        for inbound in batch:
            consumed[inbound.topic] = consumed.get(inbound.topic, 0) + 1
        for name, count in consumed.items():
            self.pipeline.metrics.consumed.add(count, {"topic": name})
        routes = self.pipeline.route_table  # this batch is routed on these, to the end
        routed = [self.pipeline.route_of(inbound, routes) for inbound in batch]
        seen = self.pipeline.answered_before([parsed for _, parsed in routed])
        for inbound, (model, parsed), answered in zip(batch, routed, seen, strict=True):
            self.tracker.track(Partition(inbound.topic, inbound.partition), inbound.offset)
            lane = self._lane_of(inbound)
            self.scheduler.add(Job(inbound, lane, model, parsed, answered, routes))

    def _budget(self, model: str | None) -> int:
        """Requests in flight for ``model``: ``worker.model_in_flight`` if set, else what
        Triton runs at once (max_batch_size x instances, read from it), within
        ``worker.max_in_flight``. While Triton cannot say, the global cap applies."""
        cap = self.settings.max_in_flight
        if model is None:
            return cap
        if model in self.settings.model_in_flight:
            return min(cap, self.settings.model_in_flight[model])
        known = self._budgets.get(model)
        if known is None or (known[0] == cap and time.monotonic() - known[1] > 30):
            capacity = self.pipeline.inference.capacity(model)
            known = (min(cap, capacity or cap), time.monotonic())
            self._budgets[model] = known
        return known[0]

    def _lane_of(self, inbound: InboundRecord) -> Hashable:
        where = (inbound.topic, inbound.partition)
        if self.settings.ordering == "partition":
            return where
        if self.settings.ordering == "key" and inbound.key is not None:
            return (*where, inbound.key)
        return (*where, "offset", inbound.offset)

    def _dispatch(self, wanted: int | None) -> None:
        room = self.settings.max_in_flight - self._in_flight
        if wanted is not None:
            room = min(room, wanted - self._in_flight)
        for job in self.scheduler.take(room) if room > 0 else []:
            self._in_flight += 1
            self._running += 1
            self._pool.submit(self._work, job)

    def _work(self, job: Job) -> None:
        try:
            outbound = self._process(job)
        except Exception:  # not even a DLQ record could be built: finish it, loudly
            log.exception("record %s/%d@%d lost its result", *_where(job.inbound))
            outbound = None
        self._completed.put(_Done(job, outbound))

    def _settle(self, wait_s: float) -> None:
        """Send the results of finished work (the producer batches them), then settle what
        the broker has acknowledged: mark answered, free the lane, commit."""
        done: list[_Done] = []
        try:
            done.append(
                self._completed.get(timeout=wait_s) if wait_s else self._completed.get_nowait()
            )
            while True:
                done.append(self._completed.get_nowait())
        except queue.Empty:
            pass
        self._running -= len(done)
        for item in done:
            self._unacked.append(self._publish(item))
        self._reap()

    def _publish(self, item: _Done) -> _Pending:
        self.stats.processed += 1
        outbound = item.outbound
        if outbound is None or (outbound.answers and self._answered(outbound.answers)):
            self.stats.duplicates += 1  # answered before, or racing its twin in flight
            return _Pending(item, None)
        entry = self._send(item.inbound, outbound)  # may be a DLQ record in its place
        if entry.outbound.answers is not None:
            self._answering.add(entry.outbound.answers)
        return _Pending(item, entry)

    def _reap(self, block: bool = False) -> None:
        """Settle every result the broker has answered for (with ``block``, all of them):
        only then is a request marked answered and its offset finished."""
        if block and self._unacked:
            self.sink.flush(ACK_TIMEOUT_S)
        waiting: list[_Pending] = []
        settled: list[_Done] = []
        answered: list[str] = []
        for pending in self._unacked:
            sent = pending.sent
            if sent is not None and not block and not sent.delivery.done():
                waiting.append(pending)
                continue
            if sent is not None:
                event_id = sent.outbound.answers
                acked = self._acked(sent)
                if event_id is not None:
                    self._answering.discard(event_id)
                    if acked:
                        answered.append(event_id)
                if event_id is None or not acked:
                    self.stats.dead_lettered += 1
            settled.append(pending.done)
            if self.tracker.tracks(pending.done.job.partition):  # else revoked: not committed
                parent = None if sent is None else sent.parent
                finished = self._uncommitted.setdefault(pending.done.job.partition, [])
                finished.append((pending.done.inbound.offset, parent))
        if not settled:
            return
        self._unacked = waiting
        self.pipeline.done.mark(answered)  # only after the broker has them
        for event_id in answered:
            self._recent[event_id] = None
            if len(self._recent) > _RECENT_ANSWERS:
                self._recent.popitem(last=False)
        for item in settled:
            self._in_flight -= 1
            self.tracker.finish(item.job.partition, item.inbound.offset)
            self.scheduler.finished(item.job)
        self._commit()

    def _answered(self, event_id: str) -> bool:
        return event_id in self._recent or event_id in self._answering

    def _commit(self) -> None:
        offsets = self.tracker.committable()
        if offsets:
            covered: list[SpanContext | None] = []
            for partition, offset in offsets.items():
                finished = self._uncommitted.pop(partition, [])
                covered += [context for at, context in finished if at < offset]
                later = [(at, context) for at, context in finished if at >= offset]
                if later:
                    self._uncommitted[partition] = later
            with self.spans.committing(offsets, covered):
                self.source.commit(offsets)
            self.tracker.committed(offsets)

    def _apply_back_pressure(self) -> None:
        """Pause the partitions feeding a model with ``worker.max_buffered`` records waiting;
        resume them once it is down to half (and no other full model waits on them)."""
        limit, waiting = self.settings.max_buffered, self.scheduler.waiting
        self._full = {m for m in self._full if waiting[m] > limit // 2}
        self._full |= {m for m, n in waiting.items() if n >= limit}
        wanted: set[Partition] = set()
        for model in self._full:
            wanted |= self.scheduler.feeding(model)
        wanted &= self.source.assignment()
        if wanted - self._paused:
            self.source.pause(wanted - self._paused)
        if self._paused - wanted:
            self.source.resume(self._paused - wanted)
        self._paused = wanted

    def _revoked(self, partitions: set[Partition]) -> dict[Partition, int]:
        """Before ``partitions`` move: settle what the broker has acked, drop their unstarted
        records, and hand back, per partition, the offset everything below which is finished
        (the source commits it, and reads from it again if the partition comes back). Runs
        while ``poll`` waits (so the loop is not running), maybe on the client's thread."""
        self._settle(wait_s=0.0)
        self._reap(block=True)
        mine = self.tracker.restart_points(partitions)
        self.tracker.revoke(partitions)
        for partition in partitions:
            self._uncommitted.pop(partition, None)
        self.scheduler.drop(partitions)
        self._paused -= partitions
        return mine

    def _drain(self, timeout_s: float) -> None:
        """Wait for the work in flight (not for records not yet started), publish, commit."""
        deadline = time.monotonic() + timeout_s
        while self._in_flight and time.monotonic() < deadline:
            self._settle(wait_s=0.05)
            self._reap(block=not self._running)
        if self._in_flight:
            log.warning("%d requests still in flight at shutdown: not committed", self._in_flight)

    def _process(self, job: Job) -> OutboundRecord | None:
        inbound = job.inbound
        try:
            return self.pipeline.process(inbound, job.parsed, job.seen, job.routes)
        except Exception as exc:  # even building the DLQ record failed: a bug
            log.exception("internal error outside the pipeline's stages on %s", inbound.topic)
            return self._dead_letter(inbound, InternalError("worker", exc))

    def _dead_letter(self, inbound: InboundRecord, error: DeadLetterError) -> OutboundRecord:
        domain = domain_of(self.pipeline.settings.kafka.topic_prefix, inbound.topic)
        if domain is None:
            raise RuntimeError(f"{inbound.topic} is not a request topic") from error
        return self.pipeline.dead_letter(inbound, domain, error)

    def _send(
        self, inbound: InboundRecord, outbound: OutboundRecord, parent: SpanContext | None = None
    ) -> _Sent:
        """Hand ``outbound`` to the producer under its ``send`` span, whose parent is the
        process span named by the record's ``traceparent`` (or ``parent``, for a record
        sent in place of a refused one)."""
        parent = trace_context(outbound.headers) if parent is None else parent
        span, outbound = self.spans.sending(outbound, parent)
        try:
            return _Sent(inbound, outbound, self.sink.send(outbound), span, parent)
        except RecordRefused as refusal:
            self.spans.sent(span, "message_too_large")
            replacement = self._instead_of_refused(inbound, outbound, refusal)
            return self._send(inbound, replacement, parent)
        except BaseException as exc:
            self.spans.sent(span, type(exc).__name__)
            raise

    def _acked(self, item: _Sent) -> bool:
        """Wait for the broker's ack; False when it refused the record and a replacement
        (the request dead-lettered, or a DLQ record without the value) was acked instead."""
        try:
            item.delivery.wait(ACK_TIMEOUT_S)
        except RecordRefused as refusal:
            self.spans.sent(item.span, "message_too_large")
            replacement = self._instead_of_refused(item.inbound, item.outbound, refusal)
            retry = self._send(item.inbound, replacement, item.parent)
            self.sink.flush(ACK_TIMEOUT_S)
            self._acked(retry)
            return False
        except BaseException as exc:
            self.spans.sent(item.span, type(exc).__name__)
            raise
        self.spans.sent(item.span)
        kind = "dlq" if item.outbound.answers is None else "answers"
        self.pipeline.metrics.published.add(1, {"topic": item.outbound.topic, "kind": kind})
        return True

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
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.source.close()
        self.sink.close()
        self.pipeline.images.close()
        self.pipeline.inference.close()


def _where(inbound: InboundRecord) -> tuple[str, int, int]:
    return inbound.topic, inbound.partition, inbound.offset
