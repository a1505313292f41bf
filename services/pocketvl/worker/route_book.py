"""The routes a running worker uses, and their reload from ``routing.routes_file``.

Readers take ``RouteBook.current``: a table that is never changed once published, so a
record keeps the table it was received with until it is settled, whatever is reloaded
meanwhile. A reload reads and checks the whole file first and swaps the table in one
assignment; a file that cannot be read or fails the checks is refused with a logged error
and the routes in use stay as they were.

Reloads run on the watcher's own thread, asked by ``request_reload`` (SIGHUP) or by the
file having changed. Watching by polling ``stat`` every ``routing.watch_interval_s``
costs one system call, works on every filesystem (a Kubernetes ConfigMap volume swaps a
symlink, which inotify on the file itself misses), and keeps parsing and checking off the
poll loop. The signal handler only sets an event: taking the book's lock inside a handler
could deadlock against the thread it interrupted.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from pocketvl.settings import Route, RoutingSettings, read_routes_file
from pocketvl.worker.routing import first_choice_models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteTable:
    """One published set of routes (read-only), and which reload it came from."""

    routes: Mapping[str, Route]
    generation: int
    digest: str  # sha256 of the file it was read from; "" for routes from the environment

    @property
    def models(self) -> list[str]:
        return first_choice_models(self.routes.values())


def _table(routes: Mapping[str, Route], generation: int, digest: str) -> RouteTable:
    return RouteTable(MappingProxyType(dict(routes)), generation, digest)


class RouteBook:
    def __init__(
        self,
        routing: RoutingSettings,
        on_change: Callable[[RouteTable], None] | None = None,
        check: Callable[[Mapping[str, Route]], list[str]] | None = None,
    ) -> None:
        """``check`` (production mode) lists why reloaded routes must not be taken: a file
        that passes the settings' own checks can still route to a random-weight model."""
        self.path = routing.routes_file
        self.interval_s = routing.watch_interval_s
        digest = _digest(self.path) if self.path is not None else ""
        self.current = _table(routing.routes, 1, digest or "")
        self.on_change = on_change
        self.check = check
        self.refused = 0  # reloads refused (a bad file) since start
        self._stat = _stat(self.path)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def reload(self) -> bool:
        """Read the routes file again: True if its routes were taken (or were unchanged),
        False if it was refused (logged; the routes in use stay)."""
        if self.path is None:
            log.warning("routes reload asked, but routing.routes_file is not set")
            return False
        with self._lock:
            self._stat = _stat(self.path)
            try:
                routes = read_routes_file(self.path)
            except ValueError as exc:
                self.refused += 1
                log.error("routes reload refused, keeping the routes in use: %s", exc)
                return False
            problems = self.check(routes) if self.check is not None else []
            if problems:
                self.refused += 1
                log.error(
                    "routes reload refused in production mode, keeping the routes in use: %s",
                    "; ".join(problems),
                )
                return False
            digest = _digest(self.path) or ""
            if routes == dict(self.current.routes):
                self.current = _table(self.current.routes, self.current.generation, digest)
                return True
            table = _table(routes, self.current.generation + 1, digest)
            self.current = table
        log.info(
            "routes reloaded from %s (generation %d, %d routes)",
            self.path,
            table.generation,
            len(routes),
        )
        if self.on_change is not None:
            self.on_change(table)
        return True

    def changed(self) -> bool:
        """Whether the file looks different from when it was last read: its stat first
        (cheap), then its content (a copy that kept the mtime, an atomic rename)."""
        if self.path is None:
            return False
        if _stat(self.path) == self._stat:
            return False
        return _digest(self.path) != self.current.digest

    def request_reload(self) -> None:
        """Ask the watcher thread for a reload (safe from a signal handler)."""
        self._wake.set()

    def watch(self) -> RouteBook:
        """Start the watcher thread (once; nothing to watch without a routes file, but a
        SIGHUP still gets its log line)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pocketvl-routes", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = self._wake.wait(self.interval_s)
            if self._stop.is_set():
                return
            self._wake.clear()
            try:
                if asked or self.changed():
                    self.reload()
            except Exception:  # the watcher never takes the worker down
                log.exception("routes reload failed; keeping the routes in use")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout=5)


def _stat(path: Path | None) -> tuple[int, int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None
