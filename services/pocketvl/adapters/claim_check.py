"""Fetch request media: inline base64 or claim-check references (file, https, http, s3).

Untrusted input (DESIGN §5): byte caps, sha256 verification of every reference, and only
configured places: ``file://`` under ``file_roots`` (no traversal, no symlink escapes);
``https://`` / ``http://`` from the exact ``https_hosts`` / ``http_hosts`` entries (no
userinfo, unlisted ports or IP literals, no redirects followed, no proxies); ``s3://bucket/key``
for ``s3_buckets`` only, path-style on ``s3_endpoint`` and SigV4-signed. Network fetches have
one deadline for the whole body and stop reading at the cap. Decoding, with its format and
pixel checks, is ``pocketvl.media``'s job.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
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
from pocketvl.contracts.common import ImageReference, InlineImage
from pocketvl.errors import ImageError, ImageUnavailable
from pocketvl.settings import LimitSettings


@dataclass(frozen=True)
class LoadedImage:
    data: bytes
    sha256: str
    media_type: str


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


class ImageLoader:
    def __init__(self, limits: LimitSettings) -> None:
        self.limits = limits
        self.roots = [root.resolve() for root in limits.file_roots]
        # Verification stays on; a private CA is trusted in addition to the system's.
        self.tls = ssl.create_default_context()
        if limits.ca_file is not None:
            self.tls.load_verify_locations(cafile=limits.ca_file)
        self.s3_credentials = S3Credentials.from_env(os.environ)
        endpoint = urlsplit(limits.s3_endpoint or f"https://s3.{limits.s3_region}.amazonaws.com")
        self.s3_endpoint = HttpTarget(
            endpoint.scheme,
            endpoint.hostname or "",
            endpoint.port or DEFAULT_PORTS[endpoint.scheme],
        )

    def load_all(self, images: list[InlineImage | ImageReference]) -> list[LoadedImage]:
        if len(images) > self.limits.max_images:
            raise ImageError(
                "too_many_images", f"{len(images)} images; at most {self.limits.max_images}"
            )
        return [self.load(image) for image in images]

    def load(self, image: InlineImage | ImageReference) -> LoadedImage:
        if isinstance(image, InlineImage):
            data = self._inline_bytes(image)
        else:
            data = self._referenced_bytes(image)
        return LoadedImage(data, hashlib.sha256(data).hexdigest(), image.media_type)

    def _inline_bytes(self, image: InlineImage) -> bytes:
        cap = self.limits.max_inline_image_bytes
        text = image.data_b64
        # Standard base64 carries 3 bytes per 4 characters: refuse what cannot fit before
        # decoding, then check the decoded length exactly.
        if len(text) > 4 * -(-cap // 3):
            raise ImageError("image_too_large", f"inline image over {cap} bytes: use a reference")
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImageError("bad_base64", f"data_b64 {_base64_problem(text)}") from None
        if len(data) > cap:
            raise ImageError(
                "image_too_large", f"inline image is {len(data)} bytes, over {cap}: use a reference"
            )
        return data

    def _referenced_bytes(self, ref: ImageReference) -> bytes:
        cap = self.limits.max_image_bytes
        if ref.size_bytes > cap:
            raise ImageError("image_too_large", f"{ref.size_bytes} bytes is over the image cap")
        scheme = ref.uri.partition(":")[0].lower()
        label = ref.uri.partition("?")[0]  # a query may hold tokens: keep it out of DLQ text
        if scheme == "file":
            data = self._file_bytes(ref.uri)
        elif scheme in DEFAULT_PORTS:
            data = self._get(self._allowed_web_target(ref.uri), {}, label)
        elif scheme == "s3":
            data = self._s3_bytes(ref.uri)
        else:
            raise ImageError("uri_forbidden", f"scheme {scheme!r} is not allowed")
        if len(data) > cap:
            raise ImageError("image_too_large", f"{label} is over the image cap")
        if len(data) != ref.size_bytes or hashlib.sha256(data).hexdigest() != ref.sha256:
            raise ImageError("digest_mismatch", f"{label} does not match its size or sha256")
        return data

    def _file_bytes(self, uri: str) -> bytes:
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
                return handle.read(self.limits.max_image_bytes + 1)
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

    def _allowed_web_target(self, uri: str) -> HttpTarget:
        """The GET for an http(s) URI whose exact host[:port] is listed for its scheme."""
        if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in uri):
            raise ImageError("uri_forbidden", "spaces or control characters in the URI")
        parts = urlsplit(uri)
        if "@" in parts.netloc:
            raise ImageError("uri_forbidden", "credentials (userinfo) in the URI are not allowed")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError as exc:
            raise ImageError("uri_forbidden", f"bad port in the URI: {exc}") from exc
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = HttpTarget(parts.scheme, parts.hostname or "", port, path)
        entries = self.limits.https_hosts if parts.scheme == "https" else self.limits.http_hosts
        if not target.host or not target.allowlist_names() & set(entries):
            raise ImageError("uri_forbidden", f"{parts.scheme} host {target.netloc!r} not allowed")
        return target

    def _s3_bytes(self, uri: str) -> bytes:
        # The key is everything after "bucket/", as the AWS CLI writes it: not unquoted, and
        # "?" or "#" belong to it. Dot segments are refused so no proxy can leave the bucket.
        bucket, _, key = uri[len("s3://") :].partition("/")
        if bucket not in self.limits.s3_buckets:
            raise ImageError("uri_forbidden", f"s3 bucket {bucket!r} is not allowed")
        bad_chars = any(ord(char) < 0x20 or ord(char) == 0x7F for char in key)
        if not key or bad_chars or {".", ".."} & set(key.split("/")):
            raise ImageError("uri_forbidden", "s3 key is empty, has control characters or ./..")
        if self.s3_credentials is None:
            raise ImageError(
                "image_unreachable", "no S3 credentials: set AWS_ACCESS_KEY_ID/SECRET_ACCESS_KEY"
            )
        target = replace(self.s3_endpoint, path=f"/{quote(bucket, safe='')}/{quote(key)}")
        headers = sign_s3_get(
            self.s3_credentials,
            self.limits.s3_region,
            target.netloc,
            target.path,
            datetime.now(UTC),
        )
        return self._get(target, headers, f"s3://{bucket}/{key}")

    def _get(self, target: HttpTarget, headers: dict[str, str], label: str) -> bytes:
        """One GET, no redirects or proxies; at most cap + 1 bytes within one deadline."""
        timeout = self.limits.fetch_timeout_s
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
            self._check_response(response, label)
            return _read_capped(
                response, self.limits.max_image_bytes + 1, time.monotonic() + timeout
            )
        except ssl.SSLError as exc:  # an untrusted certificate will not heal by retrying
            raise ImageError("image_unreachable", f"cannot fetch {label}: {exc!r}") from exc
        except (OSError, http.client.HTTPException) as exc:
            raise ImageUnavailable("image_unavailable", f"cannot fetch {label}: {exc!r}") from exc
        finally:
            connection.close()

    def _check_response(self, response: http.client.HTTPResponse, label: str) -> None:
        if 300 <= response.status < 400:
            raise ImageError(
                "image_unreachable", f"{label}: HTTP {response.status} redirect, not followed"
            )
        if response.status >= 500 or response.status == 429:
            raise ImageUnavailable("image_unavailable", f"{label}: HTTP {response.status}")
        if response.status != 200:
            raise ImageError("image_unreachable", f"{label}: HTTP {response.status}")
        length = response.getheader("Content-Length")
        if length and length.isdigit() and int(length) > self.limits.max_image_bytes:
            raise ImageError("image_too_large", f"{label} is {length} bytes, over the image cap")


def _base64_problem(text: str) -> str:
    """What is wrong with a base64 text, in words a producer can act on."""
    if "\n" in text or "\r" in text:
        return "has line breaks (MIME style): send it on one line"
    if "-" in text or "_" in text:
        return "uses the URL-safe alphabet (- and _): send standard base64 (+ and /)"
    if len(text) % 4:
        return "is not a multiple of 4 characters long: is its = padding missing?"
    return "is not standard base64 (A-Z, a-z, 0-9, + and /, padded with =)"


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
