"""Result cache: a pure content key and a best-effort Redis adapter (the only redis import).

The key covers everything that decides the answer (checkpoint, model version, engine config,
image digests, canonical task JSON, generation parameters, key version), never the event id.
Redis being down degrades to "no cache"; it never fails a request.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from typing import Any, Protocol

import redis

from pocketvl.worker.ports import GenerationResult

KEY_VERSION = "v2"  # v2: decode parameters and composition joined the key
log = logging.getLogger(__name__)


def cache_key(
    prefix: str,
    checkpoint: str,
    model_version: str,
    engine: dict[str, Any],
    image_digests: list[str],
    task: dict[str, Any],
    generation: dict[str, Any],
) -> str:
    canonical = json.dumps(
        {
            "checkpoint": checkpoint,
            "model_version": model_version,
            "engine": engine,
            "images": image_digests,
            "task": task,
            "generation": generation,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return f"{prefix}:res:{KEY_VERSION}:{digest}"


class ResultCache(Protocol):
    """Results by content key, and which event ids already have a published answer."""

    def get(self, key: str) -> GenerationResult | None: ...

    def put(self, key: str, value: GenerationResult) -> None: ...

    def answered(self, event_id: str) -> bool: ...

    def mark_answered(self, event_ids: list[str]) -> None: ...


class RedisResultCache:
    def __init__(
        self, url: str, ttl_seconds: int, socket_timeout_s: float, key_prefix: str = "pocketvl"
    ) -> None:
        self.client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s
        )
        self.ttl_seconds = ttl_seconds
        self.key_prefix = key_prefix

    def get(self, key: str) -> GenerationResult | None:
        try:
            raw = self.client.get(key)
        except redis.RedisError as exc:
            log.warning("cache lookup failed, continuing without cache: %s", exc)
            return None
        if raw is None:
            return None
        try:
            return GenerationResult(**json.loads(raw))
        except (TypeError, ValueError):
            log.warning("ignoring a malformed cache entry under %s", key)
            return None

    def put(self, key: str, value: GenerationResult) -> None:
        try:
            self.client.set(key, json.dumps(asdict(value)), ex=self.ttl_seconds)
        except redis.RedisError as exc:
            log.warning("cache write failed, continuing: %s", exc)

    def answered(self, event_id: str) -> bool:
        """True if an answer for ``event_id`` was published (and acked) before: a redelivery."""
        try:
            return bool(self.client.exists(self._done_key(event_id)))
        except redis.RedisError as exc:
            log.warning("answered-check failed, answering again: %s", exc)
            return False

    def mark_answered(self, event_ids: list[str]) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            for event_id in event_ids:
                pipe.set(self._done_key(event_id), b"1", ex=self.ttl_seconds)
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("could not record answered events (a redelivery may repeat them): %s", exc)

    def _done_key(self, event_id: str) -> str:
        return f"{self.key_prefix}:done:{event_id}"

    def close(self) -> None:
        self.client.close()


class NoCache:
    def get(self, key: str) -> GenerationResult | None:
        return None

    def put(self, key: str, value: GenerationResult) -> None:
        return None

    def answered(self, event_id: str) -> bool:
        return False

    def mark_answered(self, event_ids: list[str]) -> None:
        return None
