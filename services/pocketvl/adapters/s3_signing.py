"""AWS Signature Version 4 for one S3 GET: the headers that authorise it, nothing else.

Pure functions over hmac/hashlib (no boto3): the caller builds the already percent-encoded
path-style ``/bucket/key`` and the ``Host`` it will send, and sends exactly the headers
returned. The payload hash is that of the empty body, as a GET has none.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class S3Credentials:
    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> S3Credentials | None:
        """The standard AWS_* variables, or None when the key pair is not set."""
        key_id = environ.get("AWS_ACCESS_KEY_ID")
        secret = environ.get("AWS_SECRET_ACCESS_KEY")
        if not key_id or not secret:
            return None
        return cls(key_id, secret, environ.get("AWS_SESSION_TOKEN") or None)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signing_key(secret_access_key: str, day: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(f"AWS4{secret_access_key}".encode(), day)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def _canonical_get(path: str, headers: Mapping[str, str], names: list[str]) -> str:
    return "\n".join(
        [
            "GET",
            path,
            "",  # no query string
            "".join(f"{name}:{headers[name]}\n" for name in names),
            ";".join(names),
            EMPTY_SHA256,
        ]
    )


def sign_s3_get(
    credentials: S3Credentials,
    region: str,
    host: str,
    path: str,
    when: datetime,
    extra_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Headers (lower-case names, ``authorization`` included) for ``GET path`` on ``host``.

    ``path`` must already be URI-encoded once (S3 does not double-encode); every header
    returned is signed, so send them all and add none that S3 would check.
    """
    amz_date = when.strftime("%Y%m%dT%H%M%SZ")
    headers = {name.lower(): value.strip() for name, value in (extra_headers or {}).items()}
    headers |= {"host": host, "x-amz-content-sha256": EMPTY_SHA256, "x-amz-date": amz_date}
    if credentials.session_token:
        headers["x-amz-security-token"] = credentials.session_token
    names = sorted(headers)
    signed_headers = ";".join(names)
    canonical_request = _canonical_get(path, headers, names)
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = signing_key(credentials.secret_access_key, amz_date[:8], region)
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return headers
