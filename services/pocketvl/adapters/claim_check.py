"""Claim-check stores: where image references point (file, https, http, s3).

Each store reads only configured places (the worker checks caps and sha256 on top,
:mod:`pocketvl.worker.images`): ``file://`` under ``file_roots`` (regular files only, no
traversal, no symlink escapes); ``https://`` / ``http://`` from the exact ``https_hosts`` /
``http_hosts`` entries (no userinfo, unlisted ports or IP literals); ``s3://bucket/key`` for
``s3_buckets`` only, path-style on ``s3_endpoint``, SigV4-signed by botocore with the
credentials its default chain finds. Network fetches go through
:mod:`pocketvl.adapters.guarded_http`: non-public addresses refused unless the host is that
IP literal, ``localhost`` or listed in ``private_hosts``; no redirects or proxies; one
deadline for the whole body; reading stopped at the cap.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse, urlsplit

import botocore.session
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError

from pocketvl.adapters.guarded_http import DEFAULT_PORTS, GuardedGetter, HttpTarget
from pocketvl.errors import ImageError, ImageUnavailable
from pocketvl.settings import ImageStoreSettings
from pocketvl.worker.ports import ImageStore

CREDENTIAL_SOURCES = (
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a shared credentials or config file profile "
    "(AWS_PROFILE), a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN), "
    "container or instance metadata"
)


class FileStore:
    """``file://`` references under the configured roots (no traversal, no symlink escapes)."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [root.resolve() for root in roots]

    def close(self) -> None:
        """Nothing pooled: each fetch opens and closes its file."""

    def fetch(self, uri: str, max_bytes: int) -> bytes:
        """Read a regular file under a root. The type is checked on the opened descriptor
        (no race with a swap); O_NONBLOCK makes opening a FIFO return instead of waiting
        for a writer, and O_NOFOLLOW refuses a symlink put in place after the path check."""
        path = self._allowed_path(uri)
        flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise ImageError("uri_forbidden", "file:// reference is a symbolic link") from None
            raise ImageError("image_unreachable", f"cannot read {uri}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ImageError("uri_forbidden", "file:// reference is not a regular file")
            try:
                return handle.read(max_bytes + 1)
            except OSError as exc:
                message = f"cannot read {uri}: {exc.strerror}"
                raise ImageError("image_unreachable", message) from None

    def _allowed_path(self, uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise ImageError("uri_forbidden", f"scheme {parsed.scheme!r} is not allowed")
        path = Path(unquote(parsed.path)).resolve()
        if not any(path.is_relative_to(root) for root in self.roots):
            raise ImageError("uri_forbidden", "file:// reference outside the configured roots")
        return path


class WebStore:
    """``https://`` (or plain ``http://``) references from the exact listed ``host[:port]``."""

    def __init__(self, scheme: str, hosts: list[str], settings: ImageStoreSettings) -> None:
        self.scheme = scheme
        self.hosts = set(hosts)
        self.getter = GuardedGetter(settings)

    def fetch(self, uri: str, max_bytes: int) -> bytes:
        label = uri.partition("?")[0]  # a query may hold tokens: keep it out of DLQ text
        return self.getter.get(self._allowed_target(uri), {}, label, max_bytes)

    def close(self) -> None:
        self.getter.close()

    def _allowed_target(self, uri: str) -> HttpTarget:
        if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in uri):
            raise ImageError("uri_forbidden", "spaces or control characters in the URI")
        parts = urlsplit(uri)
        if parts.scheme != self.scheme:
            raise ImageError("uri_forbidden", f"scheme {parts.scheme!r} is not allowed")
        if "@" in parts.netloc:
            raise ImageError("uri_forbidden", "credentials (userinfo) in the URI are not allowed")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ImageError("uri_forbidden", f"bad port in the URI: {exc}") from exc
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = HttpTarget(parts.scheme, parts.hostname or "", port, path)
        if not target.host or not target.allowlist_names() & self.hosts:
            raise ImageError("uri_forbidden", f"{parts.scheme} host {target.netloc!r} not allowed")
        return target


class S3Store:
    """``s3://bucket/key`` for the listed buckets, path-style on the endpoint, SigV4-signed."""

    def __init__(self, settings: ImageStoreSettings) -> None:
        self.buckets = set(settings.s3_buckets)
        self.region = settings.s3_region
        self.credentials, self.no_credentials = default_credentials()
        self.getter = GuardedGetter(settings)
        endpoint = urlsplit(settings.s3_endpoint or f"https://s3.{self.region}.amazonaws.com")
        self.endpoint = HttpTarget(
            endpoint.scheme,
            endpoint.hostname or "",
            endpoint.port or DEFAULT_PORTS[endpoint.scheme],
        )

    def fetch(self, uri: str, max_bytes: int) -> bytes:
        # The key is everything after "bucket/", as the AWS CLI writes it: not unquoted, and
        # "?" or "#" belong to it. Dot segments are refused so no proxy can leave the bucket.
        bucket, _, key = uri[len("s3://") :].partition("/")
        if bucket not in self.buckets:
            raise ImageError("uri_forbidden", f"s3 bucket {bucket!r} is not allowed")
        bad_chars = any(ord(char) < 0x20 or ord(char) == 0x7F for char in key)
        if not key or bad_chars or {".", ".."} & set(key.split("/")):
            raise ImageError("uri_forbidden", "s3 key is empty, has control characters or ./..")
        target = replace(self.endpoint, path=f"/{quote(bucket, safe='')}/{quote(key)}")
        label = f"s3://{bucket}/{key}"
        return self.getter.get(target, self._signed_headers(target), label, max_bytes)

    def close(self) -> None:
        self.getter.close()

    def _signed_headers(self, target: HttpTarget) -> dict[str, str]:
        """The headers that authorise ``GET target.path``; all are sent, unchanged."""
        if self.credentials is None:
            raise ImageError("image_unreachable", f"no S3 credentials: {self.no_credentials}")
        try:
            # Refreshes temporary credentials (web identity, metadata) when they near expiry.
            frozen = self.credentials.get_frozen_credentials()
        except (BotoCoreError, ClientError) as exc:
            message = f"cannot refresh S3 credentials: {exc}"
            raise ImageUnavailable("image_unavailable", message) from exc
        url = f"{target.scheme}://{target.netloc}{target.path}"
        request = AWSRequest(method="GET", url=url, headers={"Host": target.netloc})
        S3SigV4Auth(frozen, "s3", self.region).add_auth(request)
        return {str(name): str(value) for name, value in request.headers.items()}


def default_credentials() -> tuple[Any, str]:
    """botocore's default chain (``Credentials`` or None), and why there are none."""
    try:
        credentials = botocore.session.get_session().get_credentials()
    except BotoCoreError as exc:  # a missing AWS_PROFILE, an unreadable config file
        return None, f"{exc} (looked for {CREDENTIAL_SOURCES})"
    if credentials is None:
        return None, f"none found; set one of {CREDENTIAL_SOURCES}"
    return credentials, ""


def image_stores(settings: ImageStoreSettings) -> dict[str, ImageStore]:
    """One store per scheme the settings allow anything for."""
    stores: dict[str, ImageStore] = {}
    if settings.file_roots:
        stores["file"] = FileStore(settings.file_roots)
    if settings.https_hosts:
        stores["https"] = WebStore("https", settings.https_hosts, settings)
    if settings.http_hosts:
        stores["http"] = WebStore("http", settings.http_hosts, settings)
    if settings.s3_buckets:
        stores["s3"] = S3Store(settings)
    return stores
