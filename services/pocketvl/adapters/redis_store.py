"""Redis behind two ports: the result cache and the done-store (the only redis import).

Both are best effort by design. Redis down or slow: a cache lookup raises
``CacheUnavailable`` (the answer goes out without the cache and says so) and writes are
forgotten, and the done-store answers "not seen", so an outage costs inferences (and possibly
a duplicate answer), never a request.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from typing import Any
from urllib.parse import urlsplit

import redis

from pocketvl.errors import CacheUnavailable
from pocketvl.settings import RedisSettings
from pocketvl.worker.ports import CachedResult, GenerationResult

log = logging.getLogger(__name__)


def connection_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """redis-py arguments for the ACL user and, with ``rediss://``, TLS (the plain
    connection class takes no ``ssl_*`` argument, so they are given only for TLS)."""
    timeout = settings.socket_timeout_s
    kwargs: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if settings.username is not None:
        kwargs["username"] = settings.username
    if settings.password is not None:
        kwargs["password"] = settings.password.get_secret_value()
    if urlsplit(settings.url).scheme == "rediss":
        kwargs["ssl_check_hostname"] = settings.ssl_check_hostname
        for argument, path in (
            ("ssl_ca_certs", settings.ssl_ca_file),
            ("ssl_certfile", settings.ssl_certfile),
            ("ssl_keyfile", settings.ssl_keyfile),
        ):
            if path is not None:
                kwargs[argument] = str(path)
    return kwargs


def connect(settings: RedisSettings) -> redis.Redis:
    return redis.Redis.from_url(settings.url, **connection_kwargs(settings))


class RedisResultCache:
    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds

    def get(self, key: str) -> CachedResult | None:
        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            log.warning("cache lookup failed, continuing without cache: %s", exc)
            raise CacheUnavailable(f"Redis: {type(exc).__name__}") from None
        if raw is None:
            return None
        try:
            entry = json.loads(raw)
            return CachedResult(
                GenerationResult(**entry["result"]),
                tuple((int(w), int(h)) for w, h in entry["image_sizes"]),
                {str(k): (int(w), int(h)) for k, (w, h) in entry["camera_sizes"].items()},
            )
        except (TypeError, ValueError, KeyError):
            log.warning("ignoring a malformed cache entry under %s", key)
            return None

    def put(self, key: str, value: CachedResult) -> None:
        entry = {
            "result": asdict(value.result),
            "image_sizes": [list(size) for size in value.image_sizes],
            "camera_sizes": {name: list(size) for name, size in value.camera_sizes.items()},
        }
        try:
            self.client.set(key, json.dumps(entry), ex=self.ttl_seconds)
        except redis.RedisError as exc:
            log.warning("cache write failed, continuing: %s", exc)


class RedisDoneStore:
    """``{prefix}:done:{event_id}`` per answered event, kept as long as cache entries."""

    def __init__(self, client: redis.Redis, ttl_seconds: int, key_prefix: str) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self.key_prefix = key_prefix

    def seen(self, event_id: str) -> bool:
        try:
            return bool(self.client.exists(self._key(event_id)))
        except redis.RedisError as exc:
            log.warning("done-store check failed, answering again: %s", exc)
            return False

    def seen_among(self, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        try:
            found = self.client.mget([self._key(event_id) for event_id in event_ids])
        except redis.RedisError as exc:
            log.warning("done-store check failed, answering again: %s", exc)
            return set()
        return {event_id for event_id, value in zip(event_ids, found, strict=True) if value}

    def mark(self, event_ids: list[str]) -> None:
        if not event_ids:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for event_id in event_ids:
                pipe.set(self._key(event_id), b"1", ex=self.ttl_seconds)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not record answered events (a redelivery may repeat them): %s", exc)

    def reachable(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def _key(self, event_id: str) -> str:
        return f"{self.key_prefix}:done:{event_id}"
