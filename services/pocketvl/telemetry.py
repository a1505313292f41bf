"""Worker metrics (OpenTelemetry): what a dashboard needs to see each hop.

Instruments (names follow the messaging semantic conventions' style):

- ``pocketvl.messages.processed`` counter {domain, outcome=answered|dead_lettered, reason}
- ``pocketvl.process.duration`` histogram, seconds {domain, outcome}
- ``pocketvl.cache.lookups`` counter {result=hit|miss|unavailable}
- ``pocketvl.inference.duration`` histogram, seconds {model}
- from the loop (``observe_worker``): ``pocketvl.in_flight``, ``pocketvl.waiting`` {model},
  ``pocketvl.paused_partitions`` {model}, ``pocketvl.assigned_partitions``,
  ``pocketvl.consumer.lag`` {topic, partition}, ``pocketvl.duplicates``

The worker serves them as Prometheus text on its operations port (``/metrics``), where
dots become underscores and counters end in ``_total``.

The meter is passed in (tests use an in-memory reader); without a configured provider the
OpenTelemetry API hands out no-op instruments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, generate_latest

if TYPE_CHECKING:
    from pocketvl.worker.loop import Worker


@dataclass(frozen=True)
class WorkerMetrics:
    processed: Counter
    process_duration: Histogram
    cache_lookups: Counter
    inference_duration: Histogram

    @classmethod
    def create(cls, meter: Meter | None = None) -> WorkerMetrics:
        meter = meter or metrics.get_meter("pocketvl.worker")
        return cls(
            processed=meter.create_counter(
                "pocketvl.messages.processed", description="request records handled"
            ),
            process_duration=meter.create_histogram(
                "pocketvl.process.duration", unit="s", description="decode to answer, per record"
            ),
            cache_lookups=meter.create_counter(
                "pocketvl.cache.lookups", description="result cache lookups"
            ),
            inference_duration=meter.create_histogram(
                "pocketvl.inference.duration",
                unit="s",
                description="Triton calls, retries included",
            ),
        )


def prometheus_metrics() -> tuple[MeterProvider, CollectorRegistry]:
    """A meter provider whose instruments are read by a Prometheus registry of its own
    (served on the operations port as ``/metrics``)."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    return MeterProvider(metric_readers=[reader]), registry


def prometheus_text(registry: CollectorRegistry) -> bytes:
    return bytes(generate_latest(registry))


def observe_worker(meter: Meter, worker: Worker) -> None:
    """Gauges read from the loop's last snapshot (never from its live state: it belongs to
    the loop thread) and from its run counters."""

    def in_flight(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(worker.snapshot.in_flight)

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
