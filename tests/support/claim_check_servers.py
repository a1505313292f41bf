"""Local claim-check servers for the store tests: plain or self-signed HTTPS, and S3-like.

The S3 server checks SigV4 on its own, following the specification's steps (canonical
request, string to sign, derived key) in :func:`sigv4_signature`, which shares no code with
the signer under test (botocore), so a signing bug cannot hide itself; the function is
itself checked against the specification's published GET Object example.
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import cast
from urllib.parse import unquote

import pytest

S3_SCOPE = ("s3", "aws4_request")
EMPTY_BODY_SHA256 = hashlib.sha256(b"").hexdigest()


class ClaimCheckServer(ThreadingHTTPServer):
    daemon_threads = True
    objects: dict[str, bytes]  # by raw request path
    secrets: dict[str, str]  # S3 access key id -> secret; empty for the plain server
    tokens: dict[str, str]  # S3 access key id -> the session token it must come with
    received: list[dict[str, str]]  # each request's headers, names lower-cased
    stopping: threading.Event  # set on shutdown: stalled handlers return

    @property
    def port(self) -> int:
        return int(self.server_address[1])


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """(cert, key) for ``localhost``, made with the openssl CLI; skips the test without it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("the openssl CLI is needed to make a self-signed certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class StaticHandler(BaseHTTPRequestHandler):
    """``/redirect`` (302), ``/endless`` (never-ending body), ``/huge`` (big Content-Length),
    ``/busy`` (503), ``/throttled`` (429), ``/stall`` (no answer), ``/dribble`` (a byte at
    a time); anything else from ``objects``."""

    protocol_version = "HTTP/1.1"

    @property
    def store(self) -> ClaimCheckServer:
        return cast(ClaimCheckServer, self.server)

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.store.received.append({name.lower(): value for name, value in self.headers.items()})
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/ok.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path in ("/busy", "/throttled"):
            self.send_error(503 if self.path == "/busy" else 429)
        elif self.path == "/endless":
            self._endless()
        elif self.path == "/huge":
            self.send_response(200)
            self.send_header("Content-Length", str(10**12))
            self.end_headers()
        elif self.path == "/stall":
            self.store.stopping.wait(30)
        elif self.path == "/dribble":
            self._dribble()
        else:
            self._object(self.path)

    def _object(self, path: str) -> None:
        data = self.store.objects.get(path)
        if data is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _endless(self) -> None:
        # No Content-Length, closed-delimited: only the client's own cap can stop it.
        self.send_response(200)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        try:
            for _ in range(100_000):  # 6.4 GB: far more than any test reads
                self.wfile.write(b"\0" * 65536)
        except OSError:
            pass

    def _dribble(self) -> None:
        # Each byte comes well within a read timeout; the whole body takes 30 s.
        self.send_response(200)
        self.send_header("Content-Length", "300")
        self.end_headers()
        try:
            for _ in range(300):
                self.wfile.write(b"x")
                self.wfile.flush()
                if self.store.stopping.wait(0.1):
                    return
        except OSError:
            pass


class S3Handler(StaticHandler):
    """Path-style GET /bucket/key, answered 403 unless SigV4 verifies."""

    def do_GET(self) -> None:
        self.store.received.append({name.lower(): value for name, value in self.headers.items()})
        if not self._signature_ok():
            self.send_error(403)
            return
        self._object(unquote(self.path))

    def _signature_ok(self) -> bool:
        auth = self.headers.get("Authorization", "")
        algorithm, _, fields_text = auth.partition(" ")
        fields = dict(part.strip().split("=", 1) for part in fields_text.split(",") if "=" in part)
        if algorithm != "AWS4-HMAC-SHA256" or fields.keys() != {
            "Credential",
            "SignedHeaders",
            "Signature",
        }:
            return False
        key_id, day, region, service, terminal = fields["Credential"].split("/")
        secret = self.store.secrets.get(key_id)
        signed = fields["SignedHeaders"].split(";")
        required = {"host", "x-amz-date", "x-amz-content-sha256"}
        if secret is None or not required <= set(signed) or (service, terminal) != S3_SCOPE:
            return False
        if self.headers["x-amz-content-sha256"] not in (EMPTY_BODY_SHA256, "UNSIGNED-PAYLOAD"):
            return False
        token = self.headers.get("X-Amz-Security-Token")
        if token is not None and "x-amz-security-token" not in signed:
            return False
        if token != self.store.tokens.get(key_id):  # temporary keys need their token
            return False
        path, _, query = self.path.partition("?")
        headers = {name: str(self.headers[name]) for name in signed}
        expected = sigv4_signature(
            secret, "GET", path, query, headers, f"{day}/{region}/s3/{terminal}"
        )
        return hmac.compare_digest(fields["Signature"], expected)


def sigv4_signature(
    secret: str, method: str, path: str, query: str, signed: Mapping[str, str], scope: str
) -> str:
    """The SigV4 signature of a request whose ``signed`` headers (lower-case names, in
    SignedHeaders order) include ``x-amz-date`` and ``x-amz-content-sha256``; ``path`` and
    ``query`` exactly as sent (S3 does not normalise or re-encode them)."""
    lines = [f"{name}:{' '.join(value.split())}" for name, value in signed.items()]
    canonical = "\n".join(
        [method, path, query, *lines, "", ";".join(signed), signed["x-amz-content-sha256"]]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            signed["x-amz-date"],
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


@contextmanager
def serve(
    handler: type[BaseHTTPRequestHandler],
    objects: dict[str, bytes],
    tls: ssl.SSLContext | None = None,
    secrets: dict[str, str] | None = None,
    tokens: dict[str, str] | None = None,
) -> Iterator[ClaimCheckServer]:
    """Serve on a free 127.0.0.1 port in a thread."""
    server = ClaimCheckServer(("127.0.0.1", 0), handler)
    server.objects, server.secrets, server.tokens = objects, secrets or {}, tokens or {}
    server.received, server.stopping = [], threading.Event()
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
