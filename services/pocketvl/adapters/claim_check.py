"""Claim-check stores: where image references point (file, https, http, s3).

Each store reads only configured places (the worker checks caps and sha256 on top,
:mod:`pocketvl.worker.images`): ``file://`` under ``file_roots`` (regular files only, no
traversal, no symlink escapes);
``https://`` / ``http://`` from the exact ``https_hosts`` / ``http_hosts`` entries (no
userinfo, unlisted ports or IP literals, no redirects followed, no proxies); ``s3://bucket/key``
for ``s3_buckets`` only, path-style on ``s3_endpoint`` and SigV4-signed. Network fetches have
one deadline for the whole body and stop reading at the cap.
"""

from __future__ import annotations

import errno
import http.client
import os
import ssl
import stat
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, unquote, urlparse, urlsplit

from pocketvl.adapters.s3_signing import S3Credentials, sign_s3_get
from pocketvl.errors import ImageError, ImageUnavailable
from pocketvl.settings import ImageStoreSettings
from pocketvl.worker.ports import ImageStore

DEFAULT_PORTS = {"http": 80, "https": 443}
CHUNK_BYTES = 64 * 1024


@dataclass(frozen=True)
class HttpTarget:
    """Where one GET goes; ``path`` is already percent-encoded (with any query)."""

    scheme: str
    host: str
    port: int
    path: str = "/"

    @property
    def host_name(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host  # IPv6 literal

    @property
    def netloc(self) -> str:
        """The ``Host`` header value: the port only when it is not the scheme's default."""
        default = self.port == DEFAULT_PORTS[self.scheme]
        return self.host_name if default else f"{self.host_name}:{self.port}"

    def allowlist_names(self) -> set[str]:
        """Entries that allow this target: ``host:port``, or bare ``host`` on the default port."""
        names = {f"{self.host_name}:{self.port}"}
        if self.port == DEFAULT_PORTS[self.scheme]:
            names.add(self.host_name)
        return names


class FileStore:
    """``file://`` references under the configured roots (no traversal, no symlink escapes)."""

    def __init__(self, roots: list[Path]) -> None:
        self.roots = [root.resolve() for root in roots]

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


class _Getter:
    """One GET, no redirects or proxies; at most cap + 1 bytes within one deadline."""

    def __init__(self, settings: ImageStoreSettings) -> None:
        self.timeout_s = settings.fetch_timeout_s
        # Verification stays on; a private CA is trusted in addition to the system's.
        self.tls = ssl.create_default_context()
        if settings.ca_file is not None:
            self.tls.load_verify_locations(cafile=settings.ca_file)

    def get(self, target: HttpTarget, headers: dict[str, str], label: str, cap: int) -> bytes:
        timeout = self.timeout_s
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = http.client.HTTPSConnection(
                target.host, target.port, timeout=timeout, context=self.tls
            )
        else:
            connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
        try:
            connection.request("GET", target.path, headers=headers)
            response = connection.getresponse()
            _check_response(response, label, cap)
            return _read_capped(response, cap + 1, time.monotonic() + timeout)
        except ssl.SSLError as exc:  # an untrusted certificate will not heal by retrying
            raise ImageError("image_unreachable", f"cannot fetch {label}: {exc!r}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ImageUnavailable("image_unavailable", f"cannot fetch {label}: {exc!r}") from exc
        finally:
            connection.close()


class WebStore:
    """``https://`` (or plain ``http://``) references from the exact listed ``host[:port]``."""

    def __init__(self, scheme: str, hosts: list[str], settings: ImageStoreSettings) -> None:
        self.scheme = scheme
        self.hosts = set(hosts)
        self.getter = _Getter(settings)

    def fetch(self, uri: str, max_bytes: int) -> bytes:
        label = uri.partition("?")[0]  # a query may hold tokens: keep it out of DLQ text
        return self.getter.get(self._allowed_target(uri), {}, label, max_bytes)

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
        self.credentials = S3Credentials.from_env(os.environ)
        self.getter = _Getter(settings)
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
        if self.credentials is None:
            raise ImageError(
                "image_unreachable", "no S3 credentials: set AWS_ACCESS_KEY_ID/SECRET_ACCESS_KEY"
            )
        target = replace(self.endpoint, path=f"/{quote(bucket, safe='')}/{quote(key)}")
        headers = sign_s3_get(
            self.credentials, self.region, target.netloc, target.path, datetime.now(UTC)
        )
        return self.getter.get(target, headers, f"s3://{bucket}/{key}", max_bytes)


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


def _check_response(response: http.client.HTTPResponse, label: str, cap: int) -> None:
    if 300 <= response.status < 400:
        raise ImageError(
            "image_unreachable", f"{label}: HTTP {response.status} redirect, not followed"
        )
    if response.status >= 500 or response.status == 429:
        raise ImageUnavailable("image_unavailable", f"{label}: HTTP {response.status}")
    if response.status != 200:
        raise ImageError("image_unreachable", f"{label}: HTTP {response.status}")
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) > cap:
        raise ImageError("image_too_large", f"{label} is {length} bytes, over the image cap")


def _read_capped(response: http.client.HTTPResponse, limit: int, deadline: float) -> bytes:
    """Up to ``limit`` bytes; a slow sender cannot stretch the fetch past ``deadline``."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        if time.monotonic() > deadline:
            raise TimeoutError("the whole fetch took longer than fetch_timeout_s")
        chunk = response.read(min(CHUNK_BYTES, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
