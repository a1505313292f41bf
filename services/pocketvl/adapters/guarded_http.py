"""One guarded GET for the network claim-check stores (https, http, s3), over httpx.

The host is resolved once per fetch and every address it resolves to is checked
(:func:`checked_addresses`); the request then goes to a checked address itself, with the
original ``Host`` header and, for TLS, the original name for SNI and certificate checks, so
no second lookup can point it elsewhere (DNS rebinding). No redirect is followed, no proxy
or ``.netrc`` from the environment is used, the body is not decompressed (so the cap counts
the bytes that arrive), at most cap + 1 bytes are kept, and one deadline covers the whole
fetch, DNS lookup to last byte.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

import httpx

from pocketvl.errors import ImageError, ImageUnavailable
from pocketvl.settings import ImageStoreSettings

IPAddress = IPv4Address | IPv6Address
DEFAULT_PORTS = {"http": 80, "https": 443}


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


def is_public(address: IPAddress) -> bool:
    """False for loopback, link-local, private (RFC 1918, ULA, CGNAT), multicast, unspecified,
    reserved, documentation and site-local addresses; an IPv4-mapped IPv6 address counts as
    the IPv4 address it carries."""
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        if address.is_site_local:
            return False
    # is_global alone lets multicast through, and is_reserved covers ranges it does not.
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_unspecified
    )


def checked_addresses(
    host: str, resolved: list[str], private_hosts: frozenset[str] = frozenset()
) -> list[IPAddress]:
    """The addresses ``host`` resolved to, in order, when every one of them may be used.

    A public address always may. A non-public one only when the host names it itself: the
    host is that IP literal, ``localhost`` and the address is loopback, or the host is one
    the operator listed in ``image_store.private_hosts``. Any other DNS name that
    resolves into a non-public range is refused (``uri_forbidden``), so changing a listed
    name's DNS cannot aim the worker at its own machine or network.
    """
    literal = _ip_literal(host)
    addresses = list(dict.fromkeys(ip_address(text) for text in resolved))
    for address in addresses:
        named = (
            address == literal
            or (host == "localhost" and address.is_loopback)
            or host in private_hosts
        )
        if not (named or is_public(address)):
            raise ImageError(
                "uri_forbidden",
                f"host {host!r} resolves to {address}, a non-public address: list the IP "
                "literal itself, or the host in image_store.private_hosts, to allow it",
            )
    if not addresses:
        raise ImageUnavailable("image_unavailable", f"host {host!r} resolved to no address")
    return addresses


class GuardedGetter:
    """GETs for one store: one pooled ``httpx.Client`` per host it reaches."""

    def __init__(self, settings: ImageStoreSettings) -> None:
        self.timeout_s = settings.fetch_timeout_s
        self.private_hosts = frozenset(settings.private_hosts)
        # Verification stays on; a private CA is trusted in addition to the system's.
        self.tls = ssl.create_default_context()
        if settings.ca_file is not None:
            self.tls.load_verify_locations(cafile=settings.ca_file)
        # A pool is keyed by the address it connects to, so two listed names on one address
        # would share a connection whose certificate was checked for one of them only.
        self.clients: dict[tuple[str, str, int], httpx.Client] = {}

    def get(self, target: HttpTarget, headers: Mapping[str, str], label: str, cap: int) -> bytes:
        """At most cap + 1 bytes of ``target``. Raises ``ImageError`` (refused, 3xx, 4xx,
        untrusted certificate) or ``ImageUnavailable`` (down, 5xx/429, too slow)."""
        deadline = time.monotonic() + self.timeout_s
        try:
            # The lookup has no timeout of its own: the resolver's settings bound it.
            infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
            addresses = checked_addresses(
                target.host, [str(info[4][0]) for info in infos], self.private_hosts
            )
            return self._first_answer(addresses, target, headers, label, cap, deadline)
        except (OSError, httpx.TransportError) as exc:
            if isinstance(exc, httpx.ConnectError) and _tls_failure(exc):
                # An untrusted certificate will not heal by retrying.
                raise ImageError("image_unreachable", f"cannot fetch {label}: {exc!r}") from exc
            raise ImageUnavailable("image_unavailable", f"cannot fetch {label}: {exc!r}") from exc

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def _first_answer(
        self,
        addresses: list[IPAddress],
        target: HttpTarget,
        headers: Mapping[str, str],
        label: str,
        cap: int,
        deadline: float,
    ) -> bytes:
        """Each checked address in turn, as a socket connect tries them; only a failed
        connection (never a TLS refusal) moves on to the next."""
        for address in addresses[:-1]:
            try:
                return self._get_at(address, target, headers, label, cap, deadline)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if _tls_failure(exc):
                    raise
        return self._get_at(addresses[-1], target, headers, label, cap, deadline)

    def _get_at(
        self,
        address: IPAddress,
        target: HttpTarget,
        headers: Mapping[str, str],
        label: str,
        cap: int,
        deadline: float,
    ) -> bytes:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the whole fetch took longer than fetch_timeout_s")
        url = httpx.URL(
            scheme=target.scheme, host=str(address), port=target.port, raw_path=target.path.encode()
        )
        with self._client(target).stream(
            "GET",
            url,
            headers={**headers, "Host": target.netloc},
            timeout=httpx.Timeout(min(self.timeout_s, remaining)),
            extensions={"sni_hostname": target.host},  # TLS checks the name, not the address
        ) as response:
            _check_response(response, label, cap)
            return _read_capped(response, cap + 1, deadline)

    def _client(self, target: HttpTarget) -> httpx.Client:
        key = (target.scheme, target.host, target.port)
        if key not in self.clients:
            self.clients[key] = httpx.Client(
                verify=self.tls,
                trust_env=False,  # no proxies, .netrc or SSL_CERT_* from the environment
                follow_redirects=False,
                timeout=self.timeout_s,
                headers={"Accept-Encoding": "identity"},
            )
        return self.clients[key]


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ip_address(host)
    except ValueError:
        return None


def _tls_failure(exc: BaseException) -> bool:
    """Whether an ``ssl`` error (certificate, handshake) is behind ``exc``: httpx wraps
    httpcore's error, which wraps the ssl module's."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _check_response(response: httpx.Response, label: str, cap: int) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise ImageError("image_unreachable", f"{label}: HTTP {status} redirect, not followed")
    if status >= 500 or status == 429:
        raise ImageUnavailable("image_unavailable", f"{label}: HTTP {status}")
    if status != 200:
        raise ImageError("image_unreachable", f"{label}: HTTP {status}")
    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > cap:
        raise ImageError("image_too_large", f"{label} is {length} bytes, over the image cap")


def _read_capped(response: httpx.Response, limit: int, deadline: float) -> bytes:
    """Up to ``limit`` bytes; a slow sender cannot stretch the fetch much past ``deadline``
    (by one read timeout at most, and that is bounded by the time left when it started)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
        if time.monotonic() > deadline:
            raise TimeoutError("the whole fetch took longer than fetch_timeout_s")
    return b"".join(chunks)[:limit]
