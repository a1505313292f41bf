"""Pixels handed to Triton through system shared memory instead of inside the gRPC message.

For a worker and a Triton on one host (or containers sharing IPC and ``/dev/shm``): the
worker writes a request's packed RGB into a region Triton has registered, and the gRPC call
carries only the region's name. That saves the client's serialisation (a DriveLM request is
7.2 MB of RGB: 5.4 CPU ms in the worker inside the message, 2.2 ms through a region, on a
2-vCPU EPYC; ``bench/results/datapath.json``) and Triton's parsing of the message.

One region per request in flight: a region is taken for the call and given back after the
answer, so no region is written while Triton may still read it. Regions are created on
demand (rounded up to whole MiB), grown by replacing them, registered once, and removed on
``close``. A Triton that restarted has forgotten its registrations: ``register_again`` puts a
region back.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np

_MIB = 1 << 20

Register = Callable[[str, str, int], None]  # (region name, shm key, byte size)
Unregister = Callable[[str], None]  # (region name)


@dataclass
class Region:
    name: str  # Triton's name for it; the shm key is "/" + name
    memory: shared_memory.SharedMemory

    @property
    def key(self) -> str:
        return "/" + self.name

    @property
    def size(self) -> int:
        return int(self.memory.size)


class SharedPixels:
    def __init__(self, register: Register, unregister: Unregister) -> None:
        self._register = register
        self._unregister = unregister
        self._free: list[Region] = []
        self._held = 0  # regions taken by requests in flight
        self._lock = threading.Lock()
        # Unique per process and per client: several workers may share one Triton.
        self._prefix = f"pocketvl_{os.getpid()}_{secrets.token_hex(4)}"
        self._numbers = itertools.count()
        self._closed = False

    @contextmanager
    def holding(self, pixels: np.ndarray[Any, Any]) -> Iterator[Region]:
        """A registered region holding ``pixels`` (C order, from offset 0), until the block
        ends; the region is then free for the next request."""
        region = self._take(pixels.nbytes)
        try:
            view: np.ndarray[Any, Any] = np.ndarray(
                pixels.shape, dtype=pixels.dtype, buffer=region.memory.buf
            )
            view[...] = pixels
            del view  # no exported buffer may outlive the block: close() would refuse
            yield region
        finally:
            with self._lock:
                self._held -= 1
                closed = self._closed
                if not closed:
                    self._free.append(region)
            if closed:  # closed while this request was in flight
                self._remove(region)

    def register_again(self, region: Region) -> None:
        """After Triton restarted (its registrations are gone): register ``region`` anew."""
        with contextlib.suppress(Exception):  # Triton may or may not still know it
            self._unregister(region.name)
        self._register(region.name, region.key, region.size)

    def regions(self) -> int:
        with self._lock:
            return len(self._free) + self._held

    def close(self) -> None:
        with self._lock:
            self._closed = True
            free, self._free = self._free, []
        for region in free:
            self._remove(region)

    def _take(self, nbytes: int) -> Region:
        """The smallest free region that fits; else a new one (replacing the largest free
        region, so their number stays at most the number of requests ever in flight)."""
        stale: Region | None = None
        with self._lock:
            if self._closed:
                raise RuntimeError("shared pixels are closed")
            fits = [r for r in self._free if r.size >= nbytes]
            if fits:
                region = min(fits, key=lambda r: r.size)
                self._free.remove(region)
                self._held += 1
                return region
            if self._free:
                stale = max(self._free, key=lambda r: r.size)
                self._free.remove(stale)
        if stale is not None:
            self._remove(stale)
        region = self._create(max(_MIB, -(-nbytes // _MIB) * _MIB))
        with self._lock:
            self._held += 1
        return region

    def _create(self, size: int) -> Region:
        name = f"{self._prefix}_{next(self._numbers)}"
        region = Region(name, shared_memory.SharedMemory(name, create=True, size=size))
        try:
            self._register(region.name, region.key, region.size)
        except BaseException:
            _release(region)
            raise
        return region

    def _remove(self, region: Region) -> None:
        try:
            with contextlib.suppress(Exception):  # Triton down or restarted: nothing to undo
                self._unregister(region.name)
        finally:
            _release(region)


def _release(region: Region) -> None:
    region.memory.close()
    region.memory.unlink()
