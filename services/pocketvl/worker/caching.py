"""Result-cache keys (pure), and the stand-ins used when caching is switched off.

The key covers everything that decides the answer (checkpoint, model version, engine
config, image digests, canonical task JSON, generation parameters, key version), never the
event id: identical content from different events shares one inference.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pocketvl.worker.ports import CachedResult

KEY_VERSION = "v3"  # v3: entries carry the image sizes; v2: decode parameters joined the key


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


class NoResultCache:
    """``cache_enabled=false``: every request goes to Triton. Duplicate suppression is the
    done-store's job and stays on."""

    def get(self, key: str) -> CachedResult | None:
        return None

    def put(self, key: str, value: CachedResult) -> None:
        return None
