"""Topics, headers and record shapes: ``{prefix}.{domain}.requests|answers|dlq``, CloudEvents
headers (``ce_*``) and trace context. Pure functions, no Kafka client."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pocketvl.contracts.messages import DlqHeaders
from pocketvl.domains.registry import REGISTRY

Headers = list[tuple[str, bytes]]
TopicKind = Literal["requests", "answers", "dlq"]
_ANSWER_NAMESPACE = uuid.UUID("5d0c3a4e-8c1b-4a57-9b5e-2f7f6a1c0b42")
MAX_EXCEPTION_MESSAGE = 1024


def topic(prefix: str, domain: str, kind: TopicKind) -> str:
    return f"{prefix}.{domain}.{kind}"


def all_topics(prefix: str) -> list[str]:
    kinds: tuple[TopicKind, ...] = ("requests", "answers", "dlq")
    return [topic(prefix, d, k) for d in REGISTRY.domains for k in kinds]


def request_topics(prefix: str) -> list[str]:
    return [topic(prefix, d, "requests") for d in REGISTRY.domains]


def domain_of(prefix: str, topic_name: str) -> str | None:
    """The domain a ``{prefix}.{domain}.requests`` topic belongs to, or None."""
    head, _, rest = topic_name.partition(f"{prefix}.")
    domain, _, kind = rest.rpartition(".")
    return domain if not head and kind == "requests" and domain in REGISTRY.domains else None


@dataclass(frozen=True)
class InboundRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = field(default_factory=list)
    timestamp_ms: int | None = None  # the broker record's timestamp, where known


@dataclass(frozen=True)
class OutboundRecord:
    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    answers: str | None = None  # the request event id this record answers (None for DLQ)


def passthrough_headers(headers: Headers) -> Headers:
    """Inbound ``x-*`` headers, copied to answers and DLQ records."""
    return [(k, v) for k, v in headers if k.lower().startswith("x-")]


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cloudevent_headers(event_id: str, source: str, event_type: str) -> Headers:
    """CloudEvents binary-mode attributes for a JSON value."""
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", event_type.encode()),
        ("ce_time", now_rfc3339().encode()),
        ("content-type", b"application/json"),
    ]


def request_record(
    prefix: str,
    request: dict[str, object],
    key: bytes | None,
    source: str,
    extra_headers: Sequence[tuple[str, bytes]] = (),
) -> OutboundRecord:
    """A request as a producer publishes it: JSON value, CloudEvents headers, its topic."""
    domain = str(request["domain"])
    event_type = f"pocketvl.{domain}.request.v1"
    headers = cloudevent_headers(str(request["event_id"]), source, event_type)
    value = json.dumps(request).encode()
    return OutboundRecord(
        topic(prefix, domain, "requests"), key, value, headers + list(extra_headers)
    )


def answer_event_id(request_event_id: str) -> str:
    """Deterministic, so a redelivered request yields an answer with the same ce_id."""
    return str(uuid.uuid5(_ANSWER_NAMESPACE, request_event_id))


def dlq_headers(
    record: InboundRecord,
    stage: str,
    reason: str,
    message: str,
    attempts: int,
    retryable: bool,
) -> Headers:
    """Diagnostics for a DLQ record, validated against the DlqHeaders contract."""
    headers = DlqHeaders.model_validate(
        {
            "dlq.stage": stage,
            "dlq.reason": reason,
            "dlq.exception.message": message[:MAX_EXCEPTION_MESSAGE],
            "dlq.original.topic": record.topic,
            "dlq.original.partition": record.partition,
            "dlq.original.offset": record.offset,
            "dlq.attempts": attempts,
            "dlq.retryable": retryable,
            "dlq.failed_at": now_rfc3339(),
        }
    )
    values = headers.model_dump(mode="json", by_alias=True)
    encoded = [(k, _header_text(v).encode()) for k, v in values.items()]
    return encoded + passthrough_headers(record.headers)


def _header_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def dlq_record(record: InboundRecord, dlq_topic: str, headers: Headers) -> OutboundRecord:
    """Original key and value bytes, unchanged; diagnostics only in headers."""
    return OutboundRecord(topic=dlq_topic, key=record.key, value=record.value, headers=headers)
