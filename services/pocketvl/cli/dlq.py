"""``pocketvl dlq list|show|replay``: look at dead-lettered requests and send them again.

A DLQ record keeps the request's key and value bytes unchanged and says in its headers why
and where it failed (``schemas/dlq-headers.schema.json``). ``replay`` republishes those
original bytes to the request topic they came from, with a ``pocketvl.replay.attempt``
header counting replays and ``pocketvl.replay.of`` naming the DLQ record, and refuses
records whose reason is not retryable (the same bytes would fail the same way) unless
``--force`` (say, after a route was added or a limit raised). Reading never joins a
consumer group, so it never disturbs the workers.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pocketvl.domains.registry import REGISTRY
from pocketvl.errors import PocketvlError
from pocketvl.worker.envelope import Headers, InboundRecord, OutboundRecord, domain_of, topic

REPLAY_ATTEMPT = "pocketvl.replay.attempt"
REPLAY_OF = "pocketvl.replay.of"
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class DlqEntry:
    record: InboundRecord
    headers: dict[str, str]

    @classmethod
    def of(cls, record: InboundRecord) -> DlqEntry:
        return cls(record, {k: v.decode("utf-8", "replace") for k, v in record.headers})

    @property
    def where(self) -> str:
        return f"{self.record.topic}:{self.record.partition}@{self.record.offset}"

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.reason", "")

    @property
    def retryable(self) -> bool:
        return self.headers.get("dlq.retryable") == "true"

    @property
    def failed_at(self) -> datetime | None:
        try:
            return datetime.fromisoformat(self.headers["dlq.failed_at"])
        except (KeyError, ValueError):
            return None

    @property
    def event_id(self) -> str:
        """The request's event id, where its value is JSON that has one."""
        try:
            value = json.loads(self.record.value)
        except ValueError:
            return ""
        event_id = value.get("event_id") if isinstance(value, dict) else None
        return event_id if isinstance(event_id, str) else ""

    @property
    def replays(self) -> int:
        try:
            return int(self.headers.get(REPLAY_ATTEMPT, "0"))
        except ValueError:
            return 0


@dataclass(frozen=True)
class DlqFilter:
    reasons: frozenset[str] = frozenset()
    event_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def matches(self, entry: DlqEntry) -> bool:
        if self.reasons and entry.reason not in self.reasons:
            return False
        if self.event_id is not None and entry.event_id != self.event_id:
            return False
        when = entry.failed_at
        if (self.since or self.until) and when is None:
            return False
        if self.since is not None and when is not None and when < self.since:
            return False
        return not (self.until is not None and when is not None and when > self.until)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An RFC 3339 time, or a duration back from now: ``30m``, ``2h``, ``7d``."""
    now = now or datetime.now(UTC)
    unit = _DURATION_UNITS.get(text[-1:])
    if unit is not None and text[:-1].isdigit():
        return now - timedelta(seconds=int(text[:-1]) * unit)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise PocketvlError(
            f"--since/--until {text!r}: give an RFC 3339 time (2026-12-04T10:00:00Z) or a "
            "duration back from now (30m, 2h, 7d)"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Replay:
    entry: DlqEntry
    record: OutboundRecord | None  # None: refused
    refusal: str = ""


def plan_replay(prefix: str, entry: DlqEntry, force: bool) -> Replay:
    """The request record a DLQ record is sent back as, or why it is not."""
    original = entry.headers.get("dlq.original.topic", "")
    if domain_of(prefix, original) is None:
        return Replay(entry, None, f"its original topic {original!r} is not a request topic")
    if not entry.record.value:
        return Replay(entry, None, "its value was too large to keep: replay it from the source")
    if not entry.retryable and not force:
        return Replay(
            entry, None, f"{entry.reason} is not retryable (the same bytes fail again): --force"
        )
    # x-* headers pass through; the trace context makes the replay part of the failed
    # record's trace, so its new attempt is found beside the one that failed.
    kept: Headers = [
        (k, v)
        for k, v in entry.record.headers
        if k.lower().startswith("x-") or k.lower() in ("traceparent", "tracestate")
    ]
    headers = [
        *kept,
        (REPLAY_ATTEMPT, str(entry.replays + 1).encode()),
        (REPLAY_OF, entry.where.encode()),
    ]
    return Replay(entry, OutboundRecord(original, entry.record.key, entry.record.value, headers))


def render_table(entries: list[DlqEntry]) -> str:
    """A Markdown table: one DLQ record per row."""
    rows = [
        "| record | failed at | stage | reason | retryable | attempts | replays | event id | "
        "message |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        message = e.headers.get("dlq.exception.message", "").replace("|", "\\|")
        when = e.failed_at.strftime("%Y-%m-%d %H:%M:%S") if e.failed_at else ""
        cells = [
            e.where,
            when,
            e.headers.get("dlq.stage", ""),
            e.reason,
            "yes" if e.retryable else "no",
            e.headers.get("dlq.attempts", ""),
            str(e.replays),
            e.event_id,
            message[:80] + ("…" if len(message) > 80 else ""),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def add_dlq_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    connect: Callable[[argparse.ArgumentParser], None],
    domains: list[str],
    command: Callable[[argparse.Namespace], int],
) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="list, show or replay dead-lettered requests",
        description="Reads the DLQ topics from the start (no consumer group); filters combine.",
    )
    dlq.add_argument("action", choices=["list", "show", "replay"])
    connect(dlq)
    dlq.add_argument("--domain", choices=domains, action="append", help="repeatable")
    dlq.add_argument("--reason", action="append", help="a DLQ reason code (repeatable)")
    dlq.add_argument("--event-id", help="only this request event id")
    dlq.add_argument("--since", help="failed at or after: RFC 3339, or 30m / 2h / 7d ago")
    dlq.add_argument("--until", help="failed at or before (same forms)")
    dlq.add_argument("--record", help="show: TOPIC:PARTITION@OFFSET of one DLQ record")
    dlq.add_argument("--force", action="store_true", help="replay non-retryable reasons too")
    dlq.add_argument("--dry-run", action="store_true", help="replay: say what would be sent")
    dlq.add_argument("--timeout", type=float, default=5.0, help="seconds to read the DLQs")
    dlq.set_defaults(func=command)


def dlq_command(
    args: argparse.Namespace,
    settings: Any,
    read: Callable[[list[str]], Iterable[InboundRecord]],
    publish: Callable[[list[OutboundRecord]], None],
) -> int:
    prefix = settings.kafka.topic_prefix
    domains = args.domain or list(REGISTRY.domains)
    chosen = DlqFilter(
        frozenset(args.reason or ()),
        args.event_id,
        parse_time(args.since) if args.since else None,
        parse_time(args.until) if args.until else None,
    )
    entries = [
        entry
        for entry in map(DlqEntry.of, read([topic(prefix, d, "dlq") for d in domains]))
        if chosen.matches(entry) and (args.record is None or entry.where == args.record)
    ]
    if args.action == "list":
        print(render_table(entries))
        print(f"\n{len(entries)} DLQ records")
        return 0
    if args.action == "show":
        if not entries:
            raise PocketvlError("no DLQ record matches: `pocketvl dlq list` shows them")
        for entry in entries:
            _show(entry)
        return 0
    plans = [plan_replay(prefix, entry, args.force) for entry in entries]
    sending = [p.record for p in plans if p.record is not None]
    for plan in plans:
        verb = "would replay" if args.dry_run else "replaying"
        target = plan.record.topic if plan.record else ""
        print(
            f"{plan.entry.where}: {verb} to {target}"
            if plan.record
            else f"{plan.entry.where}: refused, {plan.refusal}"
        )
    if sending and not args.dry_run:
        publish(sending)  # returns once the broker acknowledged every one
    refused = len(plans) - len(sending)
    done = "would be replayed" if args.dry_run else "replayed"
    print(f"\n{len(sending)} {done}, {refused} refused")
    return 0


def _show(entry: DlqEntry) -> None:
    print(f"# {entry.where}")
    width = max((len(k) for k in entry.headers), default=0)
    for name, text in entry.headers.items():
        print(f"{name:<{width}}  {text}")
    value = entry.record.value
    print(f"key: {entry.record.key!r}; value: {len(value)} bytes")
    try:
        print(json.dumps(json.loads(value), indent=2, ensure_ascii=False)[:4000])
    except ValueError:
        print(value[:400].decode("utf-8", "replace"))
    print()
