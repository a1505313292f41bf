"""The worker's operations port: ``/livez``, ``/readyz`` (JSON, 200 or 503) and
``/metrics`` (Prometheus text), on a small threaded HTTP server of the standard library.

Every answer is computed from state the worker already keeps (the loop's last round, the
probe thread's last look, the metric readers), so a probe or a scrape never waits on Kafka,
Triton or Redis.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pocketvl.worker.health import Report

log = logging.getLogger(__name__)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


class OpsServer:
    def __init__(
        self,
        host: str,
        port: int,
        live: Callable[[], Report],
        ready: Callable[[], Report],
        metrics: Callable[[], bytes],
    ) -> None:
        routes: dict[str, Callable[[], tuple[int, str, bytes]]] = {
            "/livez": lambda: _report(live()),
            "/readyz": lambda: _report(ready()),
            "/metrics": lambda: (200, PROMETHEUS_TEXT, metrics()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    status, kind, body = 404, "text/plain", b"/livez, /readyz or /metrics\n"
                else:
                    try:
                        status, kind, body = route()
                    except Exception:
                        log.exception("the operations endpoint %s failed", self.path)
                        status, kind, body = 500, "text/plain", b"internal error\n"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # probes every few seconds would flood the worker's log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pocketvl-ops", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> OpsServer:
        self._thread.start()
        log.info("operations port %d: /livez /readyz /metrics", self.port)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _report(report: Report) -> tuple[int, str, bytes]:
    body = json.dumps(report.as_json(), indent=2).encode() + b"\n"
    return (200 if report.ok else 503), "application/json", body
