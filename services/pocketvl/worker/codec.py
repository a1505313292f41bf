"""Bytes to a validated request, with a DLQ reason for every way that can fail.

The value is untrusted: its size and nesting depth are checked before ``json.loads`` runs
(deep nesting would otherwise raise ``RecursionError`` from inside the parser), and the
parser refuses the ``NaN``/``Infinity`` literals Python's json module accepts by default.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import NoReturn

import numpy as np
from pydantic import ValidationError

from pocketvl.contracts.messages import REQUEST_ADAPTER, AnyRequest
from pocketvl.errors import DecodeError, DlqReason, SchemaError, describe_errors

# A JSON string literal, escapes included: removed before counting brackets, so a "[" in a
# question does not count as nesting.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPEN = np.frombuffer(b"[{", np.uint8)
_CLOSE = np.frombuffer(b"]}", np.uint8)


def json_depth(value: bytes) -> int:
    """The deepest bracket nesting of a JSON text, counted without parsing it.

    Linear in the size and free of recursion. For invalid JSON (an unclosed string, say) the
    figure may be too high; the parser refuses such text anyway.
    """
    structure = np.frombuffer(_STRING.sub(b"", value), np.uint8)
    steps = np.isin(structure, _OPEN).astype(np.int32) - np.isin(structure, _CLOSE)
    return int(np.cumsum(steps).max(initial=0))


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_json(value: bytes, max_bytes: int, max_depth: int) -> object:
    """Parse an untrusted JSON value within a size and a nesting cap."""
    if len(value) > max_bytes:
        raise DecodeError("message_too_large", f"{len(value)} bytes; the cap is {max_bytes}")
    # Fewer opening brackets than the cap cannot nest past it: skip the scan (most requests).
    brackets = value.count(b"[") + value.count(b"{")
    if brackets > max_depth and json_depth(value) > max_depth:
        raise DecodeError("json_too_deep", f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(value, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        raise DecodeError("invalid_json", f"value is not UTF-8: {exc.reason}") from None
    except RecursionError:  # the pre-scan makes this unreachable; kept as a last guard
        raise DecodeError("json_too_deep", "JSON nested too deeply to parse") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over 4300 digits
        raise DecodeError("invalid_json", f"value is not JSON: {exc}") from None


def _reason(exc: ValidationError) -> DlqReason:
    """Tell an unknown domain or task apart from other schema violations.

    Only the request's own discriminators count: a bad ``kind`` of an image is an invalid
    request, not an unknown domain.
    """
    for err in exc.errors():
        if err["type"] not in ("union_tag_invalid", "union_tag_not_found"):
            continue
        if err["loc"] == ():
            return "unknown_domain"
        if len(err["loc"]) == 2 and err["loc"][1] == "task":
            return "unknown_task"
    return "schema_invalid"


def decode_request(
    value: bytes,
    topic_domain: str,
    now: datetime | None = None,
    *,
    max_bytes: int = 8 * 1024 * 1024,
    max_depth: int = 32,
    parsed: object = None,
) -> AnyRequest:
    """``parsed``: the value already parsed by ``parse_json`` (with the same caps), if it was."""
    raw = parsed if parsed is not None else parse_json(value, max_bytes, max_depth)
    if not isinstance(raw, dict):
        raise SchemaError("schema_invalid", "request must be a JSON object")
    try:
        request = REQUEST_ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise SchemaError(_reason(exc), describe_errors(exc)) from None
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
