"""A TLS front for a plaintext server: accepts TLS on a loopback port (client certificate
required) and forwards the decrypted bytes to ``target``. The local broker (tansu 0.6.0)
has no working TLS listener, so the Kafka TLS test puts this in front of it and has the
broker advertise the proxy's address: every client connection then goes through TLS."""

from __future__ import annotations

import select
import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType

from tests.support.certificates import Certificates


class TlsProxy:
    def __init__(self, certs: Certificates, port: int, target: tuple[str, int]) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=certs.ca)
        self.context.load_cert_chain(Path(certs.server_cert), Path(certs.server_key))
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.refused: list[str] = []  # handshakes that failed, and why
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self.listener.close()
        self._thread.join(5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            self.refused.append(type(exc).__name__ + ": " + str(exc))
            conn.close()
            return
        with tls, socket.create_connection(self.target) as plain:
            self._pump(tls, plain)

    def _pump(self, tls: ssl.SSLSocket, plain: socket.socket) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([tls, plain], [], [], 0.5)
            try:
                if tls in readable or tls.pending():
                    data = tls.recv(65536)
                    if not data:
                        return
                    plain.sendall(data)
                if plain in readable:
                    data = plain.recv(65536)
                    if not data:
                        return
                    tls.sendall(data)
            except ssl.SSLWantReadError:
                continue
            except OSError:
                return
