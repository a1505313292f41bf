"""Settings for a test against an embedded stack: unique topics and group per test (a
``pocketvl`` subprocess gets them as ``pocketvl.settings.as_environment(settings)``)."""

from __future__ import annotations

import uuid
from typing import Any

from pocketvl.adapters.kafka_broker import ensure_topics
from pocketvl.devstack.stack import StackState
from pocketvl.settings import (
    KafkaSettings,
    OpsSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)
from pocketvl.worker.envelope import all_topics


def stack_settings(state: StackState, prefix_letter: str = "t", **sections: Any) -> Settings:
    """Settings on ``state`` with fresh topics (created) and group; ``triton=``/``redis=``
    keyword dicts adjust those sections, other keywords are whole sections."""
    prefix = f"{prefix_letter}{uuid.uuid4().hex[:10]}"
    redis = {"url": state.redis_url, "key_prefix": prefix, **sections.pop("redis", {})}
    triton = {"url": state.triton_url, "backoff_initial_s": 0.05, **sections.pop("triton", {})}
    result = Settings(
        mode="dev",  # the tiny models over plain loopback links
        kafka=KafkaSettings(
            bootstrap_servers=state.kafka_bootstrap,
            topic_prefix=prefix,
            group_id=f"{prefix}-workers",
            session_timeout_ms=6000,
        ),
        redis=RedisSettings(**redis),
        triton=TritonSettings(**triton),
        ops=OpsSettings(host="127.0.0.1", port=0),  # workers side by side: each a free port
        **sections,
    )
    ensure_topics(result.kafka, all_topics(prefix))
    return result
