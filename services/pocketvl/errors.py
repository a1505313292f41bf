"""The exception tree, written down once.

::

    PocketvlError
    ├── DeadLetterError              ends in a DLQ record: has a reason, stage and attempts
    │   ├── RejectedMessage          the message itself is bad: never retried
    │   │   ├── DecodeError          not JSON / not UTF-8                    (deserialize)
    │   │   ├── SchemaError          JSON but not a valid request            (validate)
    │   │   ├── RouteError           no route for domain/task/size           (route)
    │   │   └── ImageError           image missing, unsafe, corrupt, too big (fetch)
    │   │       └── ImageUnavailable the image store is down or slow: retried with backoff
    │   ├── InferenceError           Triton said no for this request         (infer)
    │   │   └── InferenceUnavailable Triton down, overloaded or slow: retried with backoff
    │   └── InternalError            a bug met on one record: internal_error (any stage)
    ├── RecordRefused                the broker refused one outgoing record (too large, invalid)
    ├── BrokerUnavailable            no Kafka broker answered at the configured address
    ├── UnsafeSettings               a production start refused: the message lists what to change
    └── StackError                   the local stack could not start or stop

Foreign exceptions (pydantic, tritonclient, redis, kafka) are translated where they are
caught, with ``raise ... from exc``. Every error that can reach the DLQ carries a ``reason``
(:data:`DlqReason`, described in :data:`DLQ_REASONS`): a short, low-cardinality code that
dashboards count and people act on.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

from pydantic import ValidationError

DlqReason = Literal[
    "message_too_large",
    "invalid_json",
    "json_too_deep",
    "schema_invalid",
    "unknown_domain",
    "unknown_task",
    "domain_mismatch",
    "deadline_expired",
    "no_route",
    "too_many_images",
    "bad_base64",
    "image_too_large",
    "uri_forbidden",
    "image_unreachable",
    "image_unavailable",
    "digest_mismatch",
    "unsupported_media_type",
    "media_type_mismatch",
    "too_many_pixels",
    "too_many_frames",
    "image_undecodable",
    "video_undecodable",
    "dicom_unsupported",
    "option_out_of_range",
    "inference_failed",
    "model_unavailable",
    "model_not_loaded",
    "internal_error",
]

# Every reason a DLQ record can carry, with when it happens. The README's list and the
# per-reason pipeline tests are checked against this table.
DLQ_REASONS: Final[dict[DlqReason, str]] = {
    "message_too_large": "the record value is over kafka.max_message_bytes",
    "invalid_json": "the value is not UTF-8 JSON (NaN/Infinity literals and numbers over "
    "4300 digits included)",
    "json_too_deep": "the JSON nests deeper than limits.max_json_depth",
    "schema_invalid": "JSON, but not a valid request (a missing or unknown field, a bad or "
    "missing image kind, NaN in a number field, prompt markup in user text)",
    "unknown_domain": "the domain is not driving, remote_sensing or medical",
    "unknown_task": "the task type does not exist in the request's domain",
    "domain_mismatch": "a request of one domain on another domain's topic",
    "deadline_expired": "the request's deadline had passed when the worker took it",
    "no_route": "no route for the domain/task (and the asked model_size)",
    "too_many_images": "more images than limits.max_images",
    "bad_base64": "data_b64 is not standard padded base64 (URL-safe alphabet, line breaks, "
    "missing padding, other characters)",
    "image_too_large": "an image over its byte cap (inline or referenced, decoded size "
    "counted), or decoded images too large for one Triton call (triton.max_grpc_message_bytes)",
    "uri_forbidden": "a reference outside the allowed schemes, roots, hosts or buckets, or to "
    "something that is not a regular file",
    "image_unreachable": "the reference cannot be read: missing file, HTTP 4xx, redirect, "
    "untrusted certificate, no S3 credentials",
    "image_unavailable": "the image store is down, slow or answered 5xx/429 (retryable, "
    "retried with backoff first)",
    "digest_mismatch": "the fetched bytes do not match the reference's size_bytes or sha256",
    "unsupported_media_type": "a media type (or video codec) that is not supported",
    "media_type_mismatch": "the bytes are not the declared media type",
    "too_many_pixels": "a frame's header size is over limits.max_image_pixels (TIFF: its bands "
    "decode to more than 8 bytes per pixel of that cap)",
    "too_many_frames": "video frames, DICOM frames or TIFF pages over their caps",
    "image_undecodable": "a still image (JPEG, PNG, WebP, TIFF, DICOM) that is corrupt or cut "
    "short (a DICOM image without its pixel data included)",
    "video_undecodable": "a video that is corrupt, cut short or has no frames",
    "dicom_unsupported": "a DICOM that is not an image (report, waveform, plan), or whose "
    "photometric interpretation or transfer syntax cannot be decoded (named)",
    "option_out_of_range": "a decode option the file cannot satisfy (band, frame, window)",
    "inference_failed": "Triton rejected or failed this request",
    "model_unavailable": (
        "Triton stayed down, overloaded or too slow for the whole outage budget (retryable)"
    ),
    "model_not_loaded": "the routed model is not loaded in Triton (retryable)",
    "internal_error": "a bug in the worker; the header names the exception type only",
}
assert set(DLQ_REASONS) == set(get_args(DlqReason)), "DLQ_REASONS must describe every reason"


def describe_errors(exc: ValidationError, where: str | None = None, shown: int = 3) -> str:
    """A pydantic error in one line: the first ``shown`` problems as ``loc: message``."""
    parts = []
    for err in exc.errors()[:shown]:
        loc = ".".join([*([where] if where else []), *(str(p) for p in err["loc"])])
        parts.append(f"{loc or '(root)'}: {err['msg']}")
    more = exc.error_count() - shown
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class PocketvlError(Exception):
    """Base of every error pocketvl raises on purpose."""


class DeadLetterError(PocketvlError):
    """A failure that sends the message to its DLQ with ``reason`` (low-cardinality code)."""

    stage: str = "validate"
    retryable: bool = False

    def __init__(self, reason: DlqReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.attempts = 1  # how many times it was tried before giving up


class RejectedMessage(DeadLetterError):
    """The message cannot be processed as sent; retrying will not help."""


class DecodeError(RejectedMessage):
    stage = "deserialize"


class SchemaError(RejectedMessage):
    stage = "validate"


class RouteError(RejectedMessage):
    stage = "route"


class ImageError(RejectedMessage):
    stage = "fetch"


class ImageUnavailable(ImageError):
    """Transient: the claim-check store timed out, refused the connection or answered 5xx/429."""

    retryable = True


class InferenceError(DeadLetterError):
    """Triton rejected or failed this request."""

    stage = "infer"


class InferenceUnavailable(InferenceError):
    """Transient: the server is down, overloaded or slow. Retried with backoff, then DLQ."""

    retryable = True


class InternalError(DeadLetterError):
    """A bug met while processing one record. The record is dead-lettered so the partition
    moves on; the message names the exception type only, because a foreign exception's text
    may quote the input (and for DICOM, patient data)."""

    def __init__(self, stage: str, exc: BaseException) -> None:
        super().__init__("internal_error", f"{type(exc).__name__} at stage {stage}")
        self.stage = stage


class RecordRefused(PocketvlError):
    """The broker (or the producer's own size check) refused this one record: too large or
    invalid. Other records still go through; the message says why."""


class CacheUnavailable(PocketvlError):
    """The result cache could not be reached: the request is answered without it, and its
    answer says ``cache: unavailable``."""


class BrokerUnavailable(PocketvlError):
    """No Kafka broker could be reached; the message names the address tried."""


class UnsafeSettings(PocketvlError):
    """Settings that must not run in production (``pocketvl.safe_defaults``): the message
    has one line per problem, each naming the setting to change."""


class StackError(PocketvlError):
    """The embedded local stack could not start, become ready, or stop."""
