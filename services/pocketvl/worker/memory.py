"""A budget on decoded-image memory shared by every request in flight, across all models.

One request at the pixel cap peaks near 300 MB (``bench/results/memory.json``), so without a
bound a burst of large images on 32 threads could take the worker down. Each decoder states
what a frame will cost from its header size (``media.options.check_pixels``), before any
pixel buffer exists; the reservation is held until the request's images are composed.

- A request that holds nothing waits until its frame fits in what is left.
- A request that already holds a reservation never waits (its second camera must not wait
  for memory that only its own release can free): the budget can be overrun by at most the
  rest of the requests already decoding, never by requests that have not started.
- A frame larger than the whole budget is admitted once nothing else is reserved.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class MemoryBudget:
    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("the decoded-image memory budget must be at least one byte")
        self.limit_bytes = limit_bytes
        self._reserved = 0
        self._waiting = 0
        self._changed = threading.Condition()
        self._mine = threading.local()

    @property
    def reserved_bytes(self) -> int:
        return self._reserved

    @property
    def waiting(self) -> int:
        """Requests waiting for memory now."""
        return self._waiting

    @contextmanager
    def request(self) -> Iterator[None]:
        """The scope of one request's decoding: what it reserved is released at its end."""
        self._mine.held, self._mine.active = 0, True
        try:
            yield
        finally:
            held, self._mine.held, self._mine.active = self._held(), 0, False
            if held:
                with self._changed:
                    self._reserved -= held
                    self._changed.notify_all()

    def reserve(self, nbytes: int) -> None:
        """Take ``nbytes`` for the current request, waiting only if it holds nothing yet."""
        if not getattr(self._mine, "active", False):
            raise RuntimeError("reserve() outside MemoryBudget.request(): nothing would free it")
        nbytes = max(0, min(nbytes, self.limit_bytes))
        with self._changed:
            if not self._held():
                self._waiting += 1
                try:
                    self._changed.wait_for(
                        lambda: self._reserved == 0 or self._reserved + nbytes <= self.limit_bytes
                    )
                finally:
                    self._waiting -= 1
            self._reserved += nbytes
        self._mine.held = self._held() + nbytes

    def _held(self) -> int:
        return int(getattr(self._mine, "held", 0))
