"""A one-line progress bar on stderr (a plain line every 10% when stderr is not a terminal)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int, stream: TextIO | None = None) -> None:
        self.label, self.total = label, max(total, 1)
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._shown = -1.0
        self._drawn_at = 0.0

    def update(self, done: int, note: str = "") -> None:
        share = min(done / self.total, 1.0)
        if not self.tty and share < 1.0 and share - self._shown < 0.1:
            return
        if self.tty and share < 1.0 and time.monotonic() - self._drawn_at < 0.1:
            return
        self._shown = share
        self._drawn_at = time.monotonic()
        elapsed = self._drawn_at - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        bar = "#" * int(share * 30)
        line = f"{self.label:24} [{bar:30}] {done}/{self.total} {rate:7.1f}/s {note}"
        self.stream.write(f"\r{line}" if self.tty else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()
