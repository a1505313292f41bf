"""``pocketvl dlq``: filters, the table, and what a replay sends (or refuses)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pocketvl.cli.dlq import (
    REPLAY_ATTEMPT,
    REPLAY_OF,
    DlqEntry,
    DlqFilter,
    parse_time,
    plan_replay,
    render_table,
)
from pocketvl.errors import PocketvlError
from pocketvl.worker.envelope import InboundRecord, dlq_headers, dlq_record

REQUESTS = "pv.medical.requests"


TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def dead(
    reason: str, retryable: bool, event_id: str = "e1", value: bytes | None = None, offset: int = 0
) -> DlqEntry:
    original = InboundRecord(
        REQUESTS,
        2,
        40 + offset,
        b"study-9",
        json.dumps({"event_id": event_id}).encode() if value is None else value,
        [("x-tenant", b"acme"), ("ce_id", b"abc")],
    )
    headers = dlq_headers(original, "infer", reason, "Triton said no | twice", 3, retryable)
    out = dlq_record(original, "pv.medical.dlq", headers)
    traced = [*out.headers, ("traceparent", TRACEPARENT)]  # as Pipeline.dead_letter sends it
    return DlqEntry.of(InboundRecord(out.topic, 0, offset, out.key, out.value, traced))


def test_filters_combine_reason_event_id_and_time() -> None:
    entry = dead("model_unavailable", True)
    assert DlqFilter().matches(entry)
    assert DlqFilter(frozenset({"model_unavailable", "x"})).matches(entry)
    assert not DlqFilter(frozenset({"invalid_json"})).matches(entry)
    assert DlqFilter(event_id="e1").matches(entry) and not DlqFilter(event_id="e2").matches(entry)
    now = datetime.now(UTC)
    assert DlqFilter(since=now - timedelta(minutes=5)).matches(entry)
    assert not DlqFilter(since=now + timedelta(minutes=5)).matches(entry)
    assert not DlqFilter(until=now - timedelta(minutes=5)).matches(entry)


def test_times_are_rfc3339_or_durations_back_from_now() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now) == datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    assert parse_time("7d", now) == datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_time("2026-12-04T09:30:00Z") == datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    with pytest.raises(PocketvlError, match="RFC 3339"):
        parse_time("yesterday")


def test_a_retryable_record_is_replayed_with_its_bytes_key_and_an_attempt_count() -> None:
    entry = dead("model_unavailable", True)
    plan = plan_replay("pv", entry, force=False)
    assert plan.record is not None and not plan.refusal
    assert (plan.record.topic, plan.record.key) == (REQUESTS, b"study-9")
    assert plan.record.value == entry.record.value
    headers = dict(plan.record.headers)
    assert headers[REPLAY_ATTEMPT] == b"1" and headers[REPLAY_OF] == b"pv.medical.dlq:0@0"
    assert headers["x-tenant"] == b"acme" and "dlq.reason" not in headers
    assert headers["traceparent"] == TRACEPARENT  # the replay joins the failed record's trace
    # replayed again after failing again: the count goes on
    again = DlqEntry.of(
        InboundRecord(
            "pv.medical.dlq", 0, 5, b"k", b"{}", [*entry.record.headers, (REPLAY_ATTEMPT, b"1")]
        )
    )
    replayed = plan_replay("pv", again, force=False).record
    assert replayed is not None and dict(replayed.headers)[REPLAY_ATTEMPT] == b"2"


def test_non_retryable_records_are_refused_unless_forced() -> None:
    entry = dead("invalid_json", False, value=b"{oops")
    refused = plan_replay("pv", entry, force=False)
    assert refused.record is None and "not retryable" in refused.refusal
    assert plan_replay("pv", entry, force=True).record is not None


def test_records_without_their_value_or_from_elsewhere_are_refused() -> None:
    stripped = dead("message_too_large", True, value=b"")
    assert "too large to keep" in plan_replay("pv", stripped, force=True).refusal
    elsewhere = plan_replay("other", dead("model_unavailable", True), force=True)
    assert elsewhere.record is None and "not a request topic" in elsewhere.refusal


def test_the_table_has_one_row_per_record_with_its_headers() -> None:
    table = render_table([dead("model_unavailable", True), dead("invalid_json", False, "e2")])
    lines = table.splitlines()
    assert len(lines) == 4
    assert (
        "| pv.medical.dlq:0@0 |" in lines[2]
        and "| model_unavailable | yes | 3 | 0 | e1 |" in lines[2]
    )
    assert "Triton said no \\| twice" in lines[2]  # a | in a message does not split the row
