"""The Redis adapter against a real server, and against no server at all."""

from __future__ import annotations

from pocketvl.adapters.redis_store import RedisResultCache
from pocketvl.devstack.processes import free_port
from pocketvl.settings import Settings
from pocketvl.worker.ports import GenerationResult

RESULT = GenerationResult("a river", 260, 3, "1")


def test_round_trip_and_ttl(settings: Settings) -> None:
    cache = RedisResultCache(settings.redis.url, ttl_seconds=60, socket_timeout_s=1)
    key = f"{settings.redis.key_prefix}:res:v1:abc"
    assert cache.get(key) is None
    cache.put(key, RESULT)
    assert cache.get(key) == RESULT
    assert 0 < cache.client.ttl(key) <= 60
    cache.client.set(key, b"{broken")
    assert cache.get(key) is None  # a bad entry is a miss, not a crash
    cache.close()


def test_answered_events_are_remembered_with_a_ttl(settings: Settings) -> None:
    prefix = settings.redis.key_prefix
    cache = RedisResultCache(settings.redis.url, 60, 1, key_prefix=prefix)
    assert not cache.answered("e1")
    cache.mark_answered(["e1", "e2"])
    assert cache.answered("e1") and cache.answered("e2") and not cache.answered("e3")
    assert 0 < cache.client.ttl(f"{prefix}:done:e1") <= 60
    cache.close()


def test_redis_down_degrades_to_no_cache() -> None:
    cache = RedisResultCache(
        f"redis://127.0.0.1:{free_port()}/0", ttl_seconds=60, socket_timeout_s=0.5
    )
    assert cache.get("k") is None
    cache.put("k", RESULT)  # no exception: the answer still goes out
    assert not cache.answered("e1")  # unknown: answer again rather than drop
    cache.mark_answered(["e1"])
    cache.close()
