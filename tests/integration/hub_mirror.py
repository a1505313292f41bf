"""A minimal Hugging Face hub-protocol server over a local directory, for testing fetch.

It answers the calls ``huggingface_hub.snapshot_download`` makes (repo info, recursive tree,
HEAD/GET of resolve URLs): the same protocol an air-gapped site's hub mirror speaks.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _handler(root: Path, repo_id: str) -> type[BaseHTTPRequestHandler]:
    files = sorted(p for p in root.iterdir() if p.is_file())

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(
            self, code: int, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            api = f"/api/models/{repo_id}/"
            if path.startswith(api + "tree/"):
                tree = [
                    {"type": "file", "path": f.name, "size": f.stat().st_size, "oid": COMMIT}
                    for f in files
                ]
                return self._send(
                    200, json.dumps(tree).encode(), {"Content-Type": "application/json"}
                )
            if path.startswith(api + "revision/"):
                info = {
                    "id": repo_id,
                    "sha": COMMIT,
                    "siblings": [{"rfilename": f.name} for f in files],
                }
                return self._send(
                    200, json.dumps(info).encode(), {"Content-Type": "application/json"}
                )
            prefix = f"/{repo_id}/resolve/"
            if path.startswith(prefix):
                name = path[len(prefix) :].split("/", 1)[1]
                target = root / name
                if target in files:
                    data = target.read_bytes()
                    etag = f'"{hashlib.sha256(data).hexdigest()}"'
                    return self._send(200, data, {"ETag": etag, "X-Repo-Commit": COMMIT})
            return self._send(404, b"", {"X-Error-Code": "RepoNotFound"})

    return Handler


@contextmanager
def hub_mirror(root: Path, repo_id: str) -> Iterator[str]:
    """Serve ``root`` as ``repo_id``; yields the endpoint URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(root, repo_id))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
