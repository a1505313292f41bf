"""The shared-memory regions that carry pixels to Triton: written, reused, grown, removed."""

from __future__ import annotations

import threading
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pocketvl.adapters.shared_pixels import SharedPixels


class FakeTriton:
    """Records registrations, as Triton's shared-memory API would hold them."""

    def __init__(self) -> None:
        self.registered: dict[str, tuple[str, int]] = {}
        self.calls: list[str] = []
        self.refuse = False

    def register(self, name: str, key: str, size: int) -> None:
        self.calls.append(f"register {name}")
        if self.refuse:
            raise RuntimeError("cannot map it")
        assert name not in self.registered, "registered twice"
        self.registered[name] = (key, size)

    def unregister(self, name: str) -> None:
        self.calls.append(f"unregister {name}")
        if name not in self.registered:
            raise KeyError(name)
        del self.registered[name]


def shm_exists(name: str) -> bool:
    return Path("/dev/shm", name).exists()


def pixels(nbytes: int, seed: int = 0) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)


def test_the_pixels_are_in_the_registered_region_under_its_key() -> None:
    triton = FakeTriton()
    shared = SharedPixels(triton.register, triton.unregister)
    data = pixels(3 << 20)
    with shared.holding(data) as region:
        key, size = triton.registered[region.name]
        assert key == "/" + region.name and size == region.size == 3 << 20
        seen = shared_memory.SharedMemory(key.lstrip("/"))  # as Triton opens it
        try:
            assert seen.buf is not None and bytes(seen.buf[: data.nbytes]) == data.tobytes()
        finally:
            seen.close()
    shared.close()


def test_a_region_is_reused_and_one_per_request_in_flight() -> None:
    triton = FakeTriton()
    shared = SharedPixels(triton.register, triton.unregister)
    for seed in range(3):  # one after another: one region
        with shared.holding(pixels(1000, seed)):
            pass
    assert shared.regions() == 1 and len(triton.calls) == 1
    inside, release = threading.Barrier(3), threading.Event()

    def hold() -> None:
        with shared.holding(pixels(1000)):
            inside.wait()
            release.wait()

    threads = [threading.Thread(target=hold) for _ in range(2)]
    for thread in threads:
        thread.start()
    inside.wait()  # both hold one at once: two distinct regions
    assert shared.regions() == 2 and len(triton.registered) == 2
    release.set()
    for thread in threads:
        thread.join()
    shared.close()


def test_a_larger_request_replaces_a_region_and_close_removes_every_one() -> None:
    triton = FakeTriton()
    shared = SharedPixels(triton.register, triton.unregister)
    with shared.holding(pixels(1 << 20)) as small:
        small_name = small.name
    with shared.holding(pixels((5 << 20) + 1)) as large:
        assert large.size == 6 << 20  # whole MiB
        large_name = large.name
    assert small_name not in triton.registered and not shm_exists(small_name)
    assert shared.regions() == 1
    with shared.holding(pixels(2 << 20)) as again:  # the large one fits: reused
        assert again.name == large_name
    shared.close()
    assert triton.registered == {} and not shm_exists(large_name)
    with pytest.raises(RuntimeError, match="closed"), shared.holding(pixels(10)):
        pass


def test_closed_while_a_request_holds_a_region_it_is_removed_on_release() -> None:
    triton = FakeTriton()
    shared = SharedPixels(triton.register, triton.unregister)
    with shared.holding(pixels(100)) as region:
        shared.close()
        assert shm_exists(region.name)  # Triton may still be reading it
    assert not shm_exists(region.name) and triton.registered == {}


def test_a_refused_registration_leaves_no_region_behind() -> None:
    triton = FakeTriton()
    triton.refuse = True
    shared = SharedPixels(triton.register, triton.unregister)
    with pytest.raises(RuntimeError, match="cannot map"), shared.holding(pixels(100)):
        pass
    assert shared.regions() == 0
    assert not list(Path("/dev/shm").glob(f"{shared._prefix}_*"))


def test_register_again_after_triton_forgot_the_region() -> None:
    triton = FakeTriton()
    shared = SharedPixels(triton.register, triton.unregister)
    with shared.holding(pixels(100)) as region:
        triton.registered.clear()  # a restarted Triton knows none of them
        shared.register_again(region)  # its unregister fails: ignored
        assert region.name in triton.registered
    shared.close()
