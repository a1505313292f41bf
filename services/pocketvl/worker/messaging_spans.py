"""The loop's own spans, named and attributed by the OpenTelemetry messaging conventions
(``{operation} {topic}``, ``messaging.operation.type``); the pipeline makes the per-record
``process`` span and its children.

- ``poll <topic>`` (kind CLIENT, operation type ``receive``): one per poll that returned
  records (none for an empty poll), from the call to its return, with
  ``messaging.batch.message_count`` and a link to each record's producer context.
- ``send <topic>`` (kind PRODUCER, operation type ``send``): one per answer or DLQ record,
  from the hand-over to the producer to the broker's ack, a child of the record's
  ``process`` span (ended by then). Its context replaces the record's ``traceparent``, so a
  consumer of the answers or the DLQ continues this trace.
- ``commit <topic>`` (kind CLIENT, operation type ``settle``): one per offset commit, linked
  to the ``process`` span of each record the commit covers.

A span covering several topics is named by the operation alone (``poll``, ``commit``).
Failures are recorded by a code (``error.type``), never by an exception's text. The cost
per record is one span and a header rewrite; a poll or a commit costs one span.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace

from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN_CONTEXT,
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
    get_current_span,
    set_span_in_context,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from pocketvl.worker.envelope import Headers, InboundRecord, OutboundRecord
from pocketvl.worker.ports import Partition

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = ("traceparent", "tracestate")


def trace_context(headers: Headers) -> SpanContext:
    """The span context a record's ``traceparent`` names; invalid when it names none."""
    carrier = {k: v.decode("utf-8", "replace") for k, v in headers if k in _TRACE_HEADERS}
    if not carrier:
        return INVALID_SPAN_CONTEXT
    return get_current_span(_PROPAGATOR.extract(carrier)).get_span_context()


def _links(contexts: Iterable[SpanContext]) -> list[Link]:
    return [Link(context) for context in contexts if context.is_valid]


def _named(operation: str, topics: set[str]) -> tuple[str, dict[str, AttributeValue]]:
    if len(topics) == 1:
        (only,) = topics
        return f"{operation} {only}", {"messaging.destination.name": only}
    return operation, {}


def failed(span: Span, code: str) -> None:
    span.set_status(Status(StatusCode.ERROR, code))
    span.set_attribute("error.type", code)


@dataclass(frozen=True)
class MessagingSpans:
    tracer: Tracer
    group: str  # the consumer group

    def _attributes(self, operation: str, kind: str) -> dict[str, AttributeValue]:
        return {
            "messaging.system": "kafka",
            "messaging.operation.name": operation,
            "messaging.operation.type": kind,
            "messaging.consumer.group.name": self.group,
        }

    def polled(self, batch: list[InboundRecord], started_ns: int) -> None:
        """The ``poll`` span of a poll that began at ``started_ns`` (``time.time_ns``)."""
        if not batch:
            return
        name, where = _named("poll", {record.topic for record in batch})
        attributes = self._attributes("poll", "receive") | where
        attributes["messaging.batch.message_count"] = len(batch)
        partitions = {record.partition for record in batch}
        if where and len(partitions) == 1:
            attributes["messaging.destination.partition.id"] = str(next(iter(partitions)))
        self.tracer.start_span(
            name,
            context=Context(),  # a trace of its own: the records' traces are linked
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=_links(trace_context(record.headers) for record in batch),
            start_time=started_ns,
        ).end()

    def sending(self, record: OutboundRecord, parent: SpanContext) -> tuple[Span, OutboundRecord]:
        """The ``send`` span of ``record`` (a child of ``parent``, the process span), and
        the record with that span's context as its ``traceparent``."""
        context = set_span_in_context(NonRecordingSpan(parent)) if parent.is_valid else Context()
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.name": "send",
            "messaging.operation.type": "send",
            "messaging.destination.name": record.topic,
        }
        headers = dict(record.headers)
        if "ce_id" in headers:
            attributes["messaging.message.id"] = headers["ce_id"].decode("utf-8", "replace")
        if "dlq.reason" in headers:
            attributes["pocketvl.dlq.reason"] = headers["dlq.reason"].decode("utf-8", "replace")
        span = self.tracer.start_span(
            f"send {record.topic}", context=context, kind=SpanKind.PRODUCER, attributes=attributes
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, set_span_in_context(span))
        kept = [(k, v) for k, v in record.headers if k not in _TRACE_HEADERS]
        traced = kept + [(k, v.encode()) for k, v in carrier.items()]
        return span, replace(record, headers=traced)

    @staticmethod
    def sent(span: Span, error: str | None = None) -> None:
        """End a ``send`` span: the broker acked the record, or ``error`` says why not."""
        if error is not None:
            failed(span, error)
        span.end()

    @contextmanager
    def committing(
        self, offsets: Mapping[Partition, int], records: list[SpanContext | None]
    ) -> Iterator[Span]:
        """The ``commit`` span around committing ``offsets``, which finishes ``records``
        (their process spans' contexts; None where a record has none)."""
        name, where = _named("commit", {partition.topic for partition in offsets})
        attributes = self._attributes("commit", "settle") | where
        attributes["messaging.batch.message_count"] = len(records)
        if where and len(offsets) == 1:
            (partition,) = offsets
            attributes["messaging.destination.partition.id"] = str(partition.partition)
        span = self.tracer.start_span(
            name,
            context=Context(),
            kind=SpanKind.CLIENT,
            attributes=attributes,
            links=_links(context for context in records if context is not None),
        )
        try:
            yield span
        except BaseException as exc:
            failed(span, type(exc).__name__)
            raise
        finally:
            span.end()
