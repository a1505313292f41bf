"""One readable path per message: decode, route, fetch images, cache, infer, answer.

``Pipeline.process`` never raises for a bad message: it returns the answer record or a DLQ
record with the original bytes and a reason. Only failures of the service itself (a bug, or
Kafka being unable to take the result) escape, and those leave the offset uncommitted.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pocketvl.cache import ResultCache, cache_key
from pocketvl.contracts.messages import (
    Answer,
    AnyRequest,
    ModelIdentity,
    Timings,
    TokenCounts,
)
from pocketvl.domains.compose import Composed, prepare_inputs
from pocketvl.domains.parsers import parse_answer
from pocketvl.envelope import (
    Headers,
    InboundRecord,
    OutboundRecord,
    answer_event_id,
    cloudevent_headers,
    dlq_headers,
    dlq_record,
    domain_of,
    passthrough_headers,
    topic,
)
from pocketvl.errors import DeadLetterError
from pocketvl.generation import GenerationResult
from pocketvl.images import ImageLoader, LoadedImage
from pocketvl.inference import InferenceBackend
from pocketvl.routing import resolve_route
from pocketvl.settings import Route, Settings
from pocketvl.telemetry import WorkerMetrics
from pocketvl.worker.decode import decode_request

_PROPAGATOR = TraceContextTextMapPropagator()


T = TypeVar("T")


def _header_carrier(headers: Headers) -> dict[str, str]:
    return {
        k: v.decode("utf-8", "replace") for k, v in headers if k in ("traceparent", "tracestate")
    }


@dataclass
class Pipeline:
    settings: Settings
    images: ImageLoader
    inference: InferenceBackend
    cache: ResultCache
    tracer: Tracer = field(default_factory=lambda: trace.get_tracer("pocketvl.worker"))
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics.create)
    sleep: Callable[[float], None] = time.sleep

    def process(self, record: InboundRecord) -> OutboundRecord | None:
        """The answer or DLQ record; None for a request whose answer was already published."""
        producer_ctx = trace.get_current_span(_PROPAGATOR.extract(_header_carrier(record.headers)))
        links = (
            [Link(producer_ctx.get_span_context())]
            if producer_ctx.get_span_context().is_valid
            else []
        )
        with self.tracer.start_as_current_span(
            f"process {record.topic}", kind=SpanKind.CONSUMER, links=links
        ) as span:
            span.set_attribute("messaging.kafka.offset", record.offset)
            span.set_attribute("messaging.destination.partition.id", str(record.partition))
            domain = domain_of(self.settings.kafka.topic_prefix, record.topic)
            if domain is None:  # the consumer subscribes to request topics only
                raise RuntimeError(f"{record.topic} is not a request topic")
            started = time.perf_counter()
            outcome, reason = "failed", "internal_error"  # a bug: the worker will stop
            try:
                answered = self._answer(record, domain, span)
                outcome = "answered" if answered is not None else "duplicate"
                reason = ""
                return answered
            except DeadLetterError as exc:
                outcome, reason = "dead_lettered", exc.reason
                span.set_attribute("error.type", exc.reason)
                return self._dead_letter(record, domain, exc)
            finally:
                labels = {"domain": domain, "outcome": outcome}
                self.metrics.processed.add(1, labels | {"reason": reason})
                self.metrics.process_duration.record(time.perf_counter() - started, labels)

    def _answer(self, record: InboundRecord, domain: str, span: Span) -> OutboundRecord | None:
        started = time.perf_counter()
        request = decode_request(record.value, domain)
        span.set_attribute("messaging.message.id", request.event_id)
        if self.cache.answered(request.event_id):  # redelivered after its answer was acked
            span.set_attribute("pocketvl.duplicate", True)
            return None
        route_key, route = resolve_route(
            self.settings.routing.routes, request.domain, request.task.type, request.model_size
        )
        images = self._with_retries(lambda: self.images.load_all(request.images))
        with self.tracer.start_as_current_span("decode and compose"):
            composed = prepare_inputs(request, images, self.settings.limits)
        result, hit, infer_ms = self._generate(request, route, images, composed)
        status, typed = parse_answer(request.task, result.text, composed.context)
        span.set_attribute("pocketvl.cache.hit", hit)
        span.set_attribute("pocketvl.route", route_key)
        answer = Answer(
            event_id=request.event_id,
            domain=request.domain,
            task=request.task,
            model=ModelIdentity(
                checkpoint=route.checkpoint,
                triton_model=route.triton_model,
                version=result.model_version,
            ),
            status=status,
            answer=typed,
            raw_text=result.text,
            cache="hit" if hit else "miss",
            timings=Timings(total_ms=(time.perf_counter() - started) * 1000, infer_ms=infer_ms),
            tokens=TokenCounts(prompt=result.prompt_tokens, generated=result.generated_tokens),
            produced_at=datetime.now(UTC),
        )
        return self._answer_record(record, answer)

    def _generate(
        self, request: AnyRequest, route: Route, images: list[LoadedImage], composed: Composed
    ) -> tuple[GenerationResult, bool, float | None]:
        """Cached result if there is one; otherwise Triton, then cache it (best effort)."""
        max_new_tokens = request.generation.max_new_tokens or route.max_new_tokens
        max_tiles = min(request.generation.max_tiles or route.max_tiles, route.max_tiles)
        max_tiles = min(max_tiles, composed.max_tiles or max_tiles)
        version = self._with_retries(lambda: self.inference.model_version(route.triton_model))
        key = cache_key(
            self.settings.redis.key_prefix,
            route.checkpoint,
            version,
            {"triton_model": route.triton_model},
            [image.sha256 for image in images],
            {
                "task": request.task.model_dump(mode="json"),
                "decode": request.decode.model_dump(mode="json"),
                "names": [image.name for image in request.images],  # DriveLM camera order
            },
            {"max_new_tokens": max_new_tokens, "max_tiles": max_tiles},
        )
        with self.tracer.start_as_current_span("cache lookup"):
            cached = self.cache.get(key)
        self.metrics.cache_lookups.add(1, {"result": "miss" if cached is None else "hit"})
        if cached is not None:
            return cached, True, None
        started = time.perf_counter()
        with self.tracer.start_as_current_span(
            f"triton infer {route.triton_model}", kind=SpanKind.CLIENT
        ):
            result = self._with_retries(
                lambda: self.inference.generate(
                    route.triton_model,
                    composed.images,
                    composed.question,
                    max_new_tokens,
                    max_tiles,
                )
            )
        infer_ms = (time.perf_counter() - started) * 1000
        self.metrics.inference_duration.record(infer_ms / 1000, {"model": route.triton_model})
        self.cache.put(key, result)
        return result, False, infer_ms

    def _with_retries(self, call: Callable[[], T]) -> T:
        """Retry transient failures (Triton, the image store) with capped, jittered
        exponential backoff; the others go straight to the DLQ."""
        cfg = self.settings.triton
        for attempt in range(1, cfg.max_attempts + 1):
            try:
                return call()
            except DeadLetterError as exc:
                if not exc.retryable:
                    raise
                exc.attempts = attempt
                if attempt == cfg.max_attempts:
                    raise
                delay = min(cfg.backoff_max_s, cfg.backoff_initial_s * 2 ** (attempt - 1))
                self.sleep(delay * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable: the loop returns or raises")

    def _answer_record(self, record: InboundRecord, answer: Answer) -> OutboundRecord:
        headers = cloudevent_headers(
            answer_event_id(answer.event_id),
            "/pocketvl/worker",
            f"pocketvl.{answer.domain}.answer.v1",
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier)
        headers += [(k, v.encode()) for k, v in carrier.items()]
        headers += passthrough_headers(record.headers)
        value = json.dumps(answer.model_dump(mode="json"), ensure_ascii=False).encode()
        prefix = self.settings.kafka.topic_prefix
        answers = topic(prefix, answer.domain, "answers")
        return OutboundRecord(answers, record.key, value, headers, answers=answer.event_id)

    def _dead_letter(
        self, record: InboundRecord, domain: str, exc: DeadLetterError
    ) -> OutboundRecord:
        headers = dlq_headers(
            record,
            stage=exc.stage,
            reason=exc.reason,
            message=str(exc),
            attempts=exc.attempts,
            retryable=exc.retryable,
        )
        return dlq_record(record, topic(self.settings.kafka.topic_prefix, domain, "dlq"), headers)
