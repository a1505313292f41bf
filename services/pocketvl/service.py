"""Wire a worker from settings: the real adapters for Kafka, Redis and Triton."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Tracer

from pocketvl.adapters.claim_check import ImageLoader
from pocketvl.adapters.kafka_broker import ensure_topics, make_consumer, make_producer
from pocketvl.adapters.redis_store import NoCache, RedisResultCache, ResultCache
from pocketvl.adapters.triton_client import TritonInference
from pocketvl.contracts.common import DOMAINS
from pocketvl.settings import Settings
from pocketvl.worker.envelope import all_topics, topic
from pocketvl.worker.loop import Worker
from pocketvl.worker.pipeline import Pipeline


def request_topics(settings: Settings) -> list[str]:
    return [topic(settings.kafka.topic_prefix, d, "requests") for d in DOMAINS]


def build_worker(settings: Settings, tracer: Tracer | None = None) -> Worker:
    ensure_topics(settings.kafka, all_topics(settings.kafka.topic_prefix))
    cache: ResultCache = NoCache()
    if settings.cache_enabled:
        cache = RedisResultCache(
            settings.redis.url,
            settings.redis.ttl_seconds,
            settings.redis.socket_timeout_s,
            settings.redis.key_prefix,
        )
    pipeline = Pipeline(
        settings=settings,
        images=ImageLoader(settings.limits),
        inference=TritonInference(settings.triton),
        cache=cache,
        tracer=tracer or trace.get_tracer("pocketvl.worker"),
    )
    consumer = make_consumer(settings.kafka, request_topics(settings), settings.kafka.group_id)
    return Worker(pipeline, consumer, make_producer(settings.kafka))
