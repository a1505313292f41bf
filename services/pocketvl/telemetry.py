"""Worker metrics (OpenTelemetry): what a dashboard needs to see each hop.

Instruments (names follow the messaging semantic conventions' style):

- ``pocketvl.messages.consumed`` counter {topic}: request records received
- ``pocketvl.messages.processed`` counter {domain, outcome=answered|dead_lettered|duplicate,
  reason}
- ``pocketvl.messages.published`` counter {topic, kind=answers|dlq}: records the broker acked
- ``pocketvl.process.duration`` histogram, seconds {domain, model, outcome}
- ``pocketvl.cache.lookups`` counter {result=hit|miss|unavailable}
- ``pocketvl.inference.duration`` histogram, seconds {domain, model}
- ``pocketvl.retries`` counter {stage=triton|image_store, reason}: retryable failures tried
  again (created at zero for every stage and retryable reason, so a scrape always has it)
- from the loop (``observe_worker``): ``pocketvl.in_flight``, ``pocketvl.model.in_flight``
  {model}, ``pocketvl.waiting`` {model}, ``pocketvl.paused_partitions`` {model},
  ``pocketvl.assigned_partitions``,
  ``pocketvl.consumer.lag`` {topic, partition}, ``pocketvl.duplicates``
- from the readiness probe (``observe_readiness``): ``pocketvl.ready``,
  ``pocketvl.model.ready`` {model}

The worker serves them as Prometheus text on its operations port (``/metrics``), where
dots become underscores and counters end in ``_total``.

The meter is passed in (tests use an in-memory reader); without a configured provider the
OpenTelemetry API hands out no-op instruments.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from pocketvl.errors import PocketvlError

if TYPE_CHECKING:
    from pocketvl.worker.loop import Worker


# The retryable failures, by the stage that retries them: each starts at zero.
RETRIED = (
    ("triton", "model_unavailable"),
    ("triton", "model_not_loaded"),
    ("image_store", "image_unavailable"),
)

# Durations are in seconds: the SDK's default boundaries (0, 5, 10, 25 ... 10000) are meant
# for milliseconds and would put every Triton call and most records in one bucket.
SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


@dataclass(frozen=True)
class WorkerMetrics:
    processed: Counter
    process_duration: Histogram
    cache_lookups: Counter
    inference_duration: Histogram
    retries: Counter
    consumed: Counter
    published: Counter

    @classmethod
    def create(cls, meter: Meter | None = None) -> WorkerMetrics:
        meter = meter or metrics.get_meter("pocketvl.worker")
        retries = meter.create_counter(
            "pocketvl.retries", description="retryable failures tried again"
        )
        for stage, reason in RETRIED:
            retries.add(0, {"stage": stage, "reason": reason})
        return cls(
            retries=retries,
            consumed=meter.create_counter(
                "pocketvl.messages.consumed", description="request records received"
            ),
            published=meter.create_counter(
                "pocketvl.messages.published",
                description="answer and DLQ records the broker acknowledged",
            ),
            processed=meter.create_counter(
                "pocketvl.messages.processed", description="request records handled"
            ),
            process_duration=meter.create_histogram(
                "pocketvl.process.duration",
                unit="s",
                description="decode to answer, per record",
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            ),
            cache_lookups=meter.create_counter(
                "pocketvl.cache.lookups", description="result cache lookups"
            ),
            inference_duration=meter.create_histogram(
                "pocketvl.inference.duration",
                unit="s",
                description="Triton calls, retries included",
                explicit_bucket_boundaries_advisory=SECONDS_BUCKETS,
            ),
        )


def prometheus_metrics() -> tuple[MeterProvider, CollectorRegistry]:
    """A meter provider whose instruments are read by a Prometheus registry of its own
    (served on the operations port as ``/metrics``)."""
    registry = CollectorRegistry()
    readers = [PrometheusMetricReader(registry=registry), *otlp_metric_readers()]
    return MeterProvider(metric_readers=readers, resource=_resource()), registry


def prometheus_text(registry: CollectorRegistry) -> bytes:
    return bytes(generate_latest(registry))


def observe_worker(meter: Meter, worker: Worker) -> None:
    """Gauges read from the loop's last snapshot (never from its live state: it belongs to
    the loop thread) and from its run counters."""

    def in_flight(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(worker.snapshot.in_flight)

    def model_in_flight(_: CallbackOptions) -> Iterable[Observation]:
        for model, count in worker.snapshot.running.items():
            yield Observation(count, {"model": model or "unroutable"})

    def waiting(_: CallbackOptions) -> Iterable[Observation]:
        for model, count in worker.snapshot.waiting.items():
            yield Observation(count, {"model": model or "unroutable"})

    def paused(_: CallbackOptions) -> Iterable[Observation]:
        for model, count in worker.snapshot.paused.items():
            yield Observation(count, {"model": model or "unroutable"})

    def assigned(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(worker.snapshot.assigned)

    def lag(_: CallbackOptions) -> Iterable[Observation]:
        for where, records in worker.snapshot.lag.items():
            yield Observation(records, {"topic": where.topic, "partition": where.partition})

    def duplicates(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(worker.stats.duplicates)

    meter.create_observable_gauge(
        "pocketvl.in_flight", [in_flight], description="requests dispatched, not yet settled"
    )
    meter.create_observable_gauge(
        "pocketvl.model.in_flight", [model_in_flight], description="in flight, per model"
    )
    meter.create_observable_gauge(
        "pocketvl.waiting", [waiting], description="received, not yet started, per model"
    )
    meter.create_observable_gauge(
        "pocketvl.paused_partitions", [paused], description="partitions paused, per model"
    )
    meter.create_observable_gauge(
        "pocketvl.assigned_partitions", [assigned], description="partitions this worker owns"
    )
    meter.create_observable_gauge(
        "pocketvl.consumer.lag",
        [lag],
        description="records from the first unfinished one to the partition's end",
    )
    meter.create_observable_counter(
        "pocketvl.duplicates", [duplicates], description="redeliveries not published again"
    )


def observe_readiness(
    meter: Meter, ready: Callable[[], bool], models: Callable[[], dict[str, bool]]
) -> None:
    """``pocketvl.ready`` (what /readyz says, 1 or 0) and ``pocketvl.model.ready`` {model}
    (the probe's last look at each routed Triton model): what the alert rules watch."""

    def worker_ready(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(1 if ready() else 0)

    def model_ready(_: CallbackOptions) -> Iterable[Observation]:
        for model, ok in models().items():
            yield Observation(1 if ok else 0, {"model": model})

    meter.create_observable_gauge(
        "pocketvl.ready", [worker_ready], description="1 while /readyz answers 200"
    )
    meter.create_observable_gauge(
        "pocketvl.model.ready", [model_ready], description="1 while the Triton model is ready"
    )


SERVICE_NAME = "pocketvl-worker"


def _wanted(signal: str) -> bool:
    """OTLP export of ``signal`` (traces, metrics): on when an OTLP endpoint is configured
    and ``OTEL_<SIGNAL>_EXPORTER`` does not say otherwise ("none", or no "otlp")."""
    exporters = os.environ.get(f"OTEL_{signal.upper()}_EXPORTER")
    if exporters is not None:
        return "otlp" in [e.strip() for e in exporters.split(",")]
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT")
    )


def _protocol(signal: str) -> str:
    """``grpc`` or ``http/protobuf`` (the specification's default)."""
    protocol = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL") or os.environ.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol not in ("grpc", "http/protobuf"):
        raise PocketvlError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use grpc or http/protobuf "
            "(http/json is not supported)"
        )
    return protocol


def otlp_tracer_provider() -> TracerProvider | None:
    """A tracer provider that exports spans over OTLP, configured entirely by the standard
    variables (``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``, ``_PROTOCOL``, ``_HEADERS``,
    ``_CERTIFICATE``, ``_TIMEOUT``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
    ``OTEL_BSP_*``); None when no OTLP endpoint is configured."""
    if not _wanted("traces"):
        return None
    exporter: SpanExporter = _otlp_exporter("traces")
    provider = TracerProvider(resource=_resource())
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def otlp_metric_readers() -> list[MetricReader]:
    """A periodic OTLP metric reader where OTLP metrics are configured (the same
    variables, and ``OTEL_METRIC_EXPORT_INTERVAL``); none otherwise."""
    if not _wanted("metrics"):
        return []
    exporter: MetricExporter = _otlp_exporter("metrics")
    return [PeriodicExportingMetricReader(exporter)]


_OTLP_EXPORTERS = {
    "traces": ("trace_exporter", "OTLPSpanExporter"),
    "metrics": ("metric_exporter", "OTLPMetricExporter"),
}


def _otlp_exporter(signal: str) -> Any:
    """The OTLP exporter of ``signal`` for the configured protocol; it reads the rest of
    its configuration (endpoint, headers, certificate, timeout) from the environment."""
    module, name = _OTLP_EXPORTERS[signal]
    transport = "grpc" if _protocol(signal) == "grpc" else "http"
    exporters = importlib.import_module(f"opentelemetry.exporter.otlp.proto.{transport}.{module}")
    return getattr(exporters, name)()


def _resource() -> Resource:
    """``service.name`` is pocketvl-worker unless ``OTEL_SERVICE_NAME`` or
    ``OTEL_RESOURCE_ATTRIBUTES`` name it (Resource.create reads both)."""
    named = os.environ.get("OTEL_SERVICE_NAME") or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    )
    return Resource.create({} if named else {"service.name": SERVICE_NAME})
