"""Every way a request value can be bad maps to its own DLQ reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pocketvl.errors import DecodeError, SchemaError
from pocketvl.worker.codec import decode_request
from tests.support.examples import example


def test_valid_request_decodes() -> None:
    request = decode_request(json.dumps(example("medical")).encode(), "medical")
    assert request.event_id == "example-medical-choice-0001"


@pytest.mark.parametrize(
    ("value", "reason", "error"),
    [
        (b"{not json", "invalid_json", DecodeError),
        (b"\xff\xfe\x00", "invalid_json", DecodeError),
        (b"[1, 2]", "schema_invalid", SchemaError),
    ],
)
def test_undecodable_values(value: bytes, reason: str, error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        decode_request(value, "medical")
    assert info.value.reason == reason  # type: ignore[attr-defined]


def _reason(value: dict[str, Any], topic_domain: str = "medical") -> str:
    with pytest.raises(SchemaError) as info:
        decode_request(json.dumps(value).encode(), topic_domain)
    return info.value.reason


def test_unknown_task_unknown_domain_and_mismatch_are_told_apart() -> None:
    assert _reason({**example("medical"), "task": {"type": "segment"}}) == "unknown_task"
    assert _reason({**example("medical"), "domain": "astronomy"}) == "unknown_domain"
    assert _reason(example("driving")) == "domain_mismatch"
    missing = example("medical")
    del missing["images"]
    assert _reason(missing) == "schema_invalid"
    assert _reason({**example("medical"), "surprise": 1}) == "schema_invalid"


def test_expired_deadline() -> None:
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    assert _reason({**example("medical"), "deadline": past}) == "deadline_expired"
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    value = json.dumps({**example("medical"), "deadline": future}).encode()
    assert decode_request(value, "medical").deadline is not None
