"""Settings for a test against an embedded stack: unique topics and group per test, and the
same settings as the environment of a ``pocketvl`` subprocess."""

from __future__ import annotations

import uuid
from typing import Any

from pocketvl.adapters.kafka_broker import ensure_topics
from pocketvl.devstack.stack import StackState
from pocketvl.settings import KafkaSettings, RedisSettings, Settings, TritonSettings
from pocketvl.worker.envelope import all_topics


def stack_settings(state: StackState, prefix_letter: str = "t", **sections: Any) -> Settings:
    """Settings on ``state`` with fresh topics (created) and group; ``triton=``/``redis=``
    keyword dicts adjust those sections, other keywords are whole sections."""
    prefix = f"{prefix_letter}{uuid.uuid4().hex[:10]}"
    redis = {"url": state.redis_url, "key_prefix": prefix, **sections.pop("redis", {})}
    triton = {"url": state.triton_url, "backoff_initial_s": 0.05, **sections.pop("triton", {})}
    result = Settings(
        kafka=KafkaSettings(
            bootstrap_servers=state.kafka_bootstrap,
            topic_prefix=prefix,
            group_id=f"{prefix}-workers",
            session_timeout_ms=6000,
        ),
        redis=RedisSettings(**redis),
        triton=TritonSettings(**triton),
        **sections,
    )
    ensure_topics(result.kafka, all_topics(prefix))
    return result


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as POCKETVL_* variables, for a worker or CLI subprocess."""
    return {
        "POCKETVL_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "POCKETVL_KAFKA__TOPIC_PREFIX": settings.kafka.topic_prefix,
        "POCKETVL_KAFKA__GROUP_ID": settings.kafka.group_id,
        "POCKETVL_KAFKA__SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "POCKETVL_REDIS__URL": settings.redis.url,
        "POCKETVL_REDIS__KEY_PREFIX": settings.redis.key_prefix,
        "POCKETVL_TRITON__URL": settings.triton.url,
        "POCKETVL_TRITON__BACKOFF_MAX_S": str(settings.triton.backoff_max_s),
    }
