"""The running service: the real adapters (Kafka, Redis, Triton, claim-check stores)
plugged into the worker's ports, from settings. The one place that knows both sides."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Tracer

from pocketvl.adapters.claim_check import image_stores
from pocketvl.adapters.kafka_broker import KafkaRecordSink, KafkaRecordSource, ensure_topics
from pocketvl.adapters.redis_store import RedisDoneStore, RedisResultCache, connect
from pocketvl.adapters.triton_client import TritonInference
from pocketvl.settings import Settings
from pocketvl.worker.caching import NoResultCache
from pocketvl.worker.envelope import all_topics, request_topics
from pocketvl.worker.images import ImageFetcher
from pocketvl.worker.loop import Worker
from pocketvl.worker.memory import MemoryBudget
from pocketvl.worker.pipeline import Pipeline
from pocketvl.worker.ports import ResultCache


def build_pipeline(settings: Settings, tracer: Tracer | None = None) -> Pipeline:
    redis = connect(settings.redis)
    cache: ResultCache = NoResultCache()
    if settings.cache_enabled:
        cache = RedisResultCache(redis, settings.redis.ttl_seconds)
    return Pipeline(
        settings=settings,
        images=ImageFetcher(settings.limits, image_stores(settings.image_store)),
        inference=TritonInference(settings.triton),
        cache=cache,
        # Duplicate suppression does not depend on the result cache being on.
        done=RedisDoneStore(redis, settings.redis.ttl_seconds, settings.redis.key_prefix),
        tracer=tracer or trace.get_tracer("pocketvl.worker"),
        memory=MemoryBudget(settings.worker.decode_memory_mib * 2**20),
    )


def build_worker(settings: Settings, tracer: Tracer | None = None) -> Worker:
    prefix = settings.kafka.topic_prefix
    ensure_topics(settings.kafka, all_topics(prefix))
    pipeline = build_pipeline(settings, tracer)
    source = KafkaRecordSource(settings.kafka, request_topics(prefix))
    return Worker(pipeline, source, KafkaRecordSink(settings.kafka))
