"""Bytes to a validated request, with a DLQ reason for every way that can fail."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from pydantic import ValidationError

from pocketvl.contracts.messages import REQUEST_ADAPTER, AnyRequest
from pocketvl.errors import DecodeError, SchemaError

_MAX_ERRORS_SHOWN = 3


def _describe(exc: ValidationError) -> str:
    parts = [
        f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}"
        for err in exc.errors()[:_MAX_ERRORS_SHOWN]
    ]
    more = exc.error_count() - _MAX_ERRORS_SHOWN
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _reason(exc: ValidationError) -> str:
    """Tell an unknown domain or task apart from other schema violations."""
    for err in exc.errors():
        if err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            return "unknown_task" if "task" in err["loc"] else "unknown_domain"
    return "schema_invalid"


def decode_request(value: bytes, topic_domain: str, now: datetime | None = None) -> AnyRequest:
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError("invalid_json", f"value is not UTF-8 JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise SchemaError("schema_invalid", "request must be a JSON object")
    try:
        request = REQUEST_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise SchemaError(_reason(exc), _describe(exc)) from exc
    if request.domain != topic_domain:
        raise SchemaError(
            "domain_mismatch", f"a {request.domain} request on the {topic_domain} topic"
        )
    if request.deadline is not None:
        deadline = request.deadline
        if deadline.tzinfo is None:
            raise SchemaError("schema_invalid", "deadline must carry a timezone")
        if deadline < (now or datetime.now(UTC)):
            raise SchemaError("deadline_expired", f"deadline {deadline.isoformat()} has passed")
    return request
