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
    │   └── InferenceError           Triton said no for this request         (infer)
    │       └── InferenceUnavailable Triton down, overloaded or slow: retried with backoff
    ├── BrokerUnavailable            no Kafka broker answered at the configured address
    └── StackError                   the local stack could not start or stop

Foreign exceptions (pydantic, tritonclient, redis, kafka) are translated where they are
caught, with ``raise ... from exc``. Every error that can reach the DLQ carries a ``reason``:
a short, low-cardinality code that dashboards count and people act on.
"""

from __future__ import annotations

from typing import ClassVar


class PocketvlError(Exception):
    """Base of every error pocketvl raises on purpose."""


class DeadLetterError(PocketvlError):
    """A failure that sends the message to its DLQ with ``reason`` (low-cardinality code)."""

    stage: ClassVar[str] = "validate"
    retryable: ClassVar[bool] = False

    def __init__(self, reason: str, message: str) -> None:
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


class BrokerUnavailable(PocketvlError):
    """No Kafka broker could be reached; the message names the address tried."""


class StackError(PocketvlError):
    """The embedded local stack could not start, become ready, or stop."""
