"""The running service: the real adapters (Kafka, Redis, Triton, claim-check stores)
plugged into the worker's ports, from settings. The one place that knows both sides."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.metrics import Meter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.trace import Tracer

from pocketvl.adapters.claim_check import image_stores
from pocketvl.adapters.kafka_broker import KafkaRecordSink, KafkaRecordSource, ensure_topics
from pocketvl.adapters.ops_http import OpsServer
from pocketvl.adapters.redis_store import RedisDoneStore, RedisResultCache, connect
from pocketvl.adapters.triton_client import TritonInference
from pocketvl.errors import UnsafeSettings
from pocketvl.safe_defaults import (
    DEV_HINT,
    production_problems,
    route_problems,
    routed_models,
    served_model_problems,
)
from pocketvl.settings import Route, Settings
from pocketvl.telemetry import (
    WorkerMetrics,
    observe_readiness,
    observe_worker,
    prometheus_metrics,
    prometheus_text,
)
from pocketvl.worker.caching import NoResultCache
from pocketvl.worker.envelope import all_topics, request_topics
from pocketvl.worker.health import ReadinessProbe, Report, liveness, readiness
from pocketvl.worker.images import ImageFetcher
from pocketvl.worker.loop import Worker
from pocketvl.worker.memory import MemoryBudget
from pocketvl.worker.pipeline import Pipeline
from pocketvl.worker.ports import ResultCache
from pocketvl.worker.route_book import RouteBook

log = logging.getLogger(__name__)


def served_weights_problems(inference: TritonInference, routes: Mapping[str, Route]) -> list[str]:
    """What Triton says each routed model serves (dummy or tiny weights). A model Triton
    cannot describe yet (down, still loading) is logged, not refused."""
    problems: list[str] = []
    for model in routed_models(routes):
        parameters = inference.parameters(model)
        if parameters is None:
            log.warning("Triton did not describe %s: its weights were not checked", model)
        else:
            problems += served_model_problems(model, parameters)
    return problems


def refuse_unsafe_start(settings: Settings) -> None:
    """Raise ``UnsafeSettings`` if ``settings`` must not run in production: the settings
    themselves, then what Triton says each routed model serves."""
    if settings.mode == "dev":
        return
    problems = production_problems(settings)
    inference = TritonInference(settings.triton)
    try:
        problems += served_weights_problems(inference, settings.routing.routes)
    finally:
        inference.close()
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise UnsafeSettings(f"refusing to start in production mode:\n{lines}\n({DEV_HINT})")


def _reload_check(
    settings: Settings, inference: TritonInference
) -> Callable[[Mapping[str, Route]], list[str]] | None:
    """In production, a reloaded routes file passes the same route checks as the start."""
    if settings.mode == "dev":
        return None
    return lambda routes: route_problems(routes) + served_weights_problems(inference, routes)


def build_pipeline(
    settings: Settings, tracer: Tracer | None = None, meter: Meter | None = None
) -> Pipeline:
    redis = connect(settings.redis)
    inference = TritonInference(settings.triton, settings.routing.version_ttl_s)
    cache: ResultCache = NoResultCache()
    if settings.cache_enabled:
        cache = RedisResultCache(redis, settings.redis.ttl_seconds)
    return Pipeline(
        settings=settings,
        images=ImageFetcher(settings.limits, image_stores(settings.image_store)),
        inference=inference,
        cache=cache,
        # Duplicate suppression does not depend on the result cache being on.
        done=RedisDoneStore(redis, settings.redis.ttl_seconds, settings.redis.key_prefix),
        tracer=tracer or trace.get_tracer("pocketvl.worker"),
        metrics=WorkerMetrics.create(meter),
        memory=MemoryBudget(settings.worker.decode_memory_mib * 2**20),
        routes=RouteBook(settings.routing, check=_reload_check(settings, inference)),
    )


def build_worker(
    settings: Settings, tracer: Tracer | None = None, meter: Meter | None = None
) -> Worker:
    prefix = settings.kafka.topic_prefix
    if settings.kafka.create_topics:
        ensure_topics(settings.kafka, all_topics(prefix))
    pipeline = build_pipeline(settings, tracer, meter)
    source = KafkaRecordSource(settings.kafka, request_topics(prefix))
    return Worker(pipeline, source, KafkaRecordSink(settings.kafka))


@dataclass
class Operations:
    """The operations port of a running worker, its readiness probe and its metrics."""

    server: OpsServer
    probe: ReadinessProbe
    meters: MeterProvider

    @property
    def port(self) -> int:
        return self.server.port

    def close(self) -> None:
        self.server.close()
        self.probe.close()
        self.meters.shutdown()


def build_observed_worker(
    settings: Settings, tracer: Tracer | None = None
) -> tuple[Worker, Operations | None]:
    """The worker, with ``/livez``, ``/readyz`` and ``/metrics`` served on ``ops.port``
    (unless ``ops.enabled`` is false)."""
    if not settings.ops.enabled:
        return build_worker(settings, tracer), None
    meters, registry = prometheus_metrics()
    meter = meters.get_meter("pocketvl.worker")
    worker = build_worker(settings, tracer, meter)
    observe_worker(meter, worker)
    ops = settings.ops
    probe = ReadinessProbe(
        lambda: worker.pipeline.route_table.models,  # follows a routes reload
        worker.pipeline.inference.ready,
        worker.pipeline.done.reachable,
        ops.probe_interval_s,
    ).start()

    def live() -> Report:
        since = None if worker.last_round is None else time.monotonic() - worker.last_round
        return liveness(since, ops.live_stall_s)

    def ready() -> Report:
        return readiness(worker.running, worker.snapshot.assigned, probe.last, ops.redis_down)

    observe_readiness(meter, lambda: ready().ok, lambda: probe.last.models)
    server = OpsServer(ops.host, ops.port, live, ready, lambda: prometheus_text(registry))
    return worker, Operations(server.start(), probe, meters)
