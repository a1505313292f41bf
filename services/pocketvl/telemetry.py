"""Worker metrics (OpenTelemetry): what a dashboard needs to see each hop.

Instruments (names follow the messaging semantic conventions' style):

- ``pocketvl.messages.processed`` counter {domain, outcome=answered|dead_lettered, reason}
- ``pocketvl.process.duration`` histogram, seconds {domain, outcome}
- ``pocketvl.cache.lookups`` counter {result=hit|miss}
- ``pocketvl.inference.duration`` histogram, seconds {model}

The meter is passed in (tests use an in-memory reader); without a configured provider the
OpenTelemetry API hands out no-op instruments.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics
from opentelemetry.metrics import Counter, Histogram, Meter


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
