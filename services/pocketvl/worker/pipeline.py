"""One readable path per message: decode, route, fetch images, cache, infer, answer.

``Pipeline.process`` never raises for anything a producer can send: it returns the answer
record or a DLQ record with the original bytes and a reason. A bug met on one record is
dead-lettered too (``internal_error``, naming the exception type and the stage), so one
record can never stop a partition.

Spans record failures by reason code and our own message only: OpenTelemetry's automatic
exception events would carry the exception's text and its chained causes (a decoder's text
can quote the file, and for DICOM that can be patient data).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Literal, TypeVar

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pocketvl.contracts.messages import (
    Answer,
    AnswerBase,
    AnyRequest,
    ModelIdentity,
    Timings,
    TokenCounts,
)
from pocketvl.domains.compose import Composed, layout_max_tiles, prepare_inputs
from pocketvl.domains.registry import REGISTRY
from pocketvl.domains.spec import ParseContext
from pocketvl.errors import (
    CacheUnavailable,
    DeadLetterError,
    ImageError,
    InternalError,
)
from pocketvl.settings import Route, Settings
from pocketvl.telemetry import WorkerMetrics
from pocketvl.worker.caching import cache_key
from pocketvl.worker.codec import decode_request, parse_json
from pocketvl.worker.envelope import (
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
from pocketvl.worker.images import ImageFetcher, LoadedImage
from pocketvl.worker.memory import MemoryBudget
from pocketvl.worker.ports import (
    CachedResult,
    DoneStore,
    GenerationResult,
    InferenceBackend,
    ResultCache,
)
from pocketvl.worker.retry import RetryPolicy, with_retries
from pocketvl.worker.route_book import RouteBook, RouteTable
from pocketvl.worker.routing import (
    NOT_LOADED_LOG,
    NotLoaded,
    Target,
    passed_on_if_not_loaded,
    resolve_route,
    route_targets,
    sticky_key,
)

_PROPAGATOR = TraceContextTextMapPropagator()
GRPC_OVERHEAD_BYTES = 64 * 1024  # tensor headers and metadata around the image bytes
log = logging.getLogger(__name__)

T = TypeVar("T")
CacheOutcome = Literal["hit", "miss", "unavailable"]


@dataclass(frozen=True)
class _Served:
    result: GenerationResult
    context: ParseContext
    cache: CacheOutcome
    infer_ms: float | None
    target: Target


@dataclass
class _Progress:
    """The stage a record has reached, so an unexpected failure can say where it was."""

    stage: str = "deserialize"
    model: str = "none"  # the routed Triton model, once known


def _mark_failed(span: Span, code: str, message: str) -> None:
    span.set_status(Status(StatusCode.ERROR, code))
    span.set_attribute("error.type", code)
    span.add_event("exception", {"exception.type": code, "exception.message": message[:1024]})


@contextmanager
def _failures_recorded_safely(span: Span) -> Iterator[Span]:
    try:
        yield span
    except DeadLetterError as exc:
        _mark_failed(span, exc.reason, str(exc))
        raise
    except Exception as exc:
        _mark_failed(span, type(exc).__name__, "internal error")
        raise


def _header_carrier(headers: Headers) -> dict[str, str]:
    return {
        k: v.decode("utf-8", "replace") for k, v in headers if k in ("traceparent", "tracestate")
    }


@dataclass
class Pipeline:
    settings: Settings
    images: ImageFetcher
    inference: InferenceBackend
    cache: ResultCache
    done: DoneStore
    tracer: Tracer = field(default_factory=lambda: trace.get_tracer("pocketvl.worker"))
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics.create)
    sleep: Callable[[float], None] = time.sleep
    # Decoded-image memory shared by every request in flight; None: not bounded.
    memory: MemoryBudget | None = None
    # The routes in use, reloadable (the service's); None: settings.routing.routes as they are.
    routes: RouteBook | None = None

    @property
    def route_table(self) -> RouteTable:
        """The routes in use now: a record keeps the table it was received with."""
        if self.routes is None:
            return RouteTable(MappingProxyType(self.settings.routing.routes), 0, "")
        return self.routes.current

    def answered_before(self, parsed: list[object]) -> list[bool | None]:
        """For each parsed request value, whether the done-store knows its event id: one
        lookup for a whole poll. A value without a usable event id reads False (``process``
        dead-letters it). Never raises: after a bug here, all read None (``process`` asks
        the done-store itself, and dead-letters the record the bug is met on)."""
        ids = [raw.get("event_id") if isinstance(raw, dict) else None for raw in parsed]
        try:
            known = self.done.seen_among(sorted({i for i in ids if isinstance(i, str)}))
        except Exception:
            log.exception("the done-store lookup of a poll failed; asking per record")
            return [None] * len(parsed)
        return [isinstance(i, str) and i in known for i in ids]

    def route_of(
        self, record: InboundRecord, table: RouteTable | None = None
    ) -> tuple[str | None, object]:
        """The Triton model ``record`` will go to first, read from its JSON alone on
        ``table`` (default: the routes in use), and that JSON (for ``process``, so it is
        parsed once). None for a record that cannot be routed: ``process`` dead-letters
        it, saying why. Never raises."""
        domain = domain_of(self.settings.kafka.topic_prefix, record.topic)
        caps = self.settings.kafka.max_message_bytes, self.settings.limits.max_json_depth
        try:
            raw = parse_json(record.value, *caps)
        except DeadLetterError:
            return None, None
        task = raw.get("task") if isinstance(raw, dict) else None
        size = raw.get("model_size") if isinstance(raw, dict) else None
        if domain is None or not isinstance(task, dict) or not isinstance(task.get("type"), str):
            return None, raw
        if size is not None and not isinstance(size, str):
            return None, raw
        routes = (table or self.route_table).routes
        try:
            key, route = resolve_route(routes, domain, task["type"], size)
        except DeadLetterError:
            return None, raw
        event_id = raw.get("event_id") if isinstance(raw, dict) else None
        split_on = sticky_key(record.key, event_id if isinstance(event_id, str) else None)
        return route_targets(key, route, split_on)[0].triton_model, raw

    def process(
        self,
        record: InboundRecord,
        parsed: object = None,
        seen: bool | None = None,
        table: RouteTable | None = None,
    ) -> OutboundRecord | None:
        """The answer or DLQ record; None for a request whose answer was already published.
        ``parsed``: the value's JSON from ``route_of``, if it was read there; ``seen``:
        whether the done-store already knew its event id, if it was asked then; ``table``:
        the routes it was received with (default: the routes in use now)."""
        producer_ctx = trace.get_current_span(_PROPAGATOR.extract(_header_carrier(record.headers)))
        links = (
            [Link(producer_ctx.get_span_context())]
            if producer_ctx.get_span_context().is_valid
            else []
        )
        with self._span(f"process {record.topic}", SpanKind.CONSUMER, links) as span:
            span.set_attributes(
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.destination.name": record.topic,
                    "messaging.consumer.group.name": self.settings.kafka.group_id,
                    "messaging.destination.partition.id": str(record.partition),
                    "messaging.kafka.offset": record.offset,
                }
            )
            domain = domain_of(self.settings.kafka.topic_prefix, record.topic)
            if domain is None:  # the consumer subscribes to request topics only
                raise RuntimeError(f"{record.topic} is not a request topic")
            started = time.perf_counter()
            progress = _Progress()
            outcome, reason = "dead_lettered", "internal_error"
            try:
                routes = (table or self.route_table).routes
                answered = self._answer(record, domain, span, progress, parsed, seen, routes)
                outcome = "answered" if answered is not None else "duplicate"
                reason = ""
                return answered
            except DeadLetterError as exc:
                reason = exc.reason
                _mark_failed(span, exc.reason, str(exc))
                return self.dead_letter(record, domain, exc)
            except Exception as exc:  # a bug: dead-letter the record, keep the partition going
                error = InternalError(progress.stage, exc)
                _mark_failed(span, "internal_error", str(error))
                # Frames only: the exception's own text may quote the input.
                frames = "".join(traceback.format_tb(exc.__traceback__))
                log.error("internal_error on %s: %s\n%s", _where(record), error, frames)
                return self.dead_letter(record, domain, error)
            finally:
                labels = {"domain": domain, "outcome": outcome}
                self.metrics.processed.add(1, labels | {"reason": reason})
                took = time.perf_counter() - started
                self.metrics.process_duration.record(took, labels | {"model": progress.model})

    @contextmanager
    def _span(
        self, name: str, kind: SpanKind = SpanKind.INTERNAL, links: list[Link] | None = None
    ) -> Iterator[Span]:
        with (
            self.tracer.start_as_current_span(
                name, kind=kind, links=links, record_exception=False, set_status_on_exception=False
            ) as span,
            _failures_recorded_safely(span),
        ):
            yield span

    def _answer(
        self,
        record: InboundRecord,
        domain: str,
        span: Span,
        progress: _Progress,
        parsed: object,
        seen: bool | None,
        routes: Mapping[str, Route],
    ) -> OutboundRecord | None:
        started = time.perf_counter()
        request = decode_request(
            record.value,
            domain,
            max_bytes=self.settings.kafka.max_message_bytes,
            max_depth=self.settings.limits.max_json_depth,
            parsed=parsed,
        )
        span.set_attribute("messaging.message.id", request.event_id)
        if seen is None:
            seen = self.done.seen(request.event_id)
        if seen:  # redelivered after its answer was acked
            span.set_attribute("pocketvl.duplicate", True)
            return None
        progress.stage = "route"
        route_key, route = resolve_route(
            routes, request.domain, request.task.type, request.model_size
        )
        targets = route_targets(route_key, route, sticky_key(record.key, request.event_id))
        progress.stage = "fetch"
        progress.model = route.triton_model
        with self._span("fetch images"):
            images = self._retrying(
                self._store_policy, lambda: self.images.load_all(request.images)
            )
        progress.stage = "infer"
        served = self._served(request, route, targets, images)
        result, context, cache, target = served.result, served.context, served.cache, served.target
        progress.stage = "postprocess"
        status, typed = REGISTRY.parse(request.task, result.text, context)
        span.set_attribute("pocketvl.cache.hit", cache == "hit")
        span.set_attribute("pocketvl.cache", cache)
        span.set_attribute("pocketvl.route", route_key)
        span.set_attribute("pocketvl.served_by", target.role)
        answer = Answer(
            event_id=request.event_id,
            domain=request.domain,
            task=request.task,
            model=ModelIdentity(
                checkpoint=target.checkpoint,
                triton_model=target.triton_model,
                version=result.model_version,
                served_by=target.role,
            ),
            status=status,
            answer=typed,
            raw_text=result.text,
            cache=cache,
            timings=Timings(
                total_ms=(time.perf_counter() - started) * 1000, infer_ms=served.infer_ms
            ),
            tokens=TokenCounts(prompt=result.prompt_tokens, generated=result.generated_tokens),
            produced_at=datetime.now(UTC),
        )
        return self._answer_record(record, answer)

    def _served(
        self,
        request: AnyRequest,
        route: Route,
        targets: tuple[Target, ...],
        images: list[LoadedImage],
    ) -> _Served:
        """The answer of the first of ``targets`` that is loaded. A model Triton does not
        have loaded passes the request on to the next at once; the last is retried as any
        model is (an outage, or a model loading, is waited out within the budget)."""
        for target, after in itertools.pairwise(targets):
            try:
                return self._generate(request, route, target, images, pass_on=True)
            except NotLoaded as exc:
                if NOT_LOADED_LOG.due(target.triton_model):  # once a minute, not per record
                    log.warning(
                        "%s; serving from the %s %s", exc.cause, after.role, after.triton_model
                    )
        return self._generate(request, route, targets[-1], images, pass_on=False)

    def _generate(
        self,
        request: AnyRequest,
        route: Route,
        target: Target,
        images: list[LoadedImage],
        pass_on: bool,
    ) -> _Served:
        """A cached result if there is one (looked up from the raw images' digests, so a hit
        decodes nothing); otherwise decode, compose, ask Triton, and cache it (best effort).
        The cache key names the model that answers and the version it reports."""
        # The route caps both: a request may ask for less work, never for more.
        max_new_tokens = min(
            request.generation.max_new_tokens or route.max_new_tokens, route.max_new_tokens
        )
        max_tiles = min(request.generation.max_tiles or route.max_tiles, route.max_tiles)
        layout_cap = layout_max_tiles(REGISTRY.for_task(request.task).layout)
        max_tiles = min(max_tiles, layout_cap or max_tiles)
        model = target.triton_model

        def triton(call: Callable[[], T]) -> T:
            return self._retrying(
                self._triton_policy, passed_on_if_not_loaded(call) if pass_on else call
            )

        def key_for(version: str) -> str:
            return cache_key(
                self.settings.redis.key_prefix,
                target.checkpoint,
                version,
                {"triton_model": model},
                [image.sha256 for image in images],
                {
                    "task": request.task.model_dump(mode="json"),
                    "decode": request.decode.model_dump(mode="json"),
                    "names": [image.name for image in request.images],  # DriveLM camera order
                },
                {"max_new_tokens": max_new_tokens, "max_tiles": max_tiles},
            )

        version = triton(lambda: self.inference.model_version(model))
        cache: CacheOutcome = "miss"
        with self._span("cache lookup"):
            try:
                cached = self.cache.get(key_for(version))
            except CacheUnavailable:
                cached, cache = None, "unavailable"
        cache = "hit" if cached is not None else cache
        self.metrics.cache_lookups.add(1, {"result": cache})
        if cached is not None:
            context = ParseContext(cached.image_sizes, cached.camera_sizes)
            return _Served(cached.result, context, cache, None, target)
        with self._span("decode and compose") as span, self._decoding_memory(span) as reserve:
            composed = prepare_inputs(request, images, self.settings.limits, reserve)
        self._check_fits_one_call(composed)
        started = time.perf_counter()
        with self._span(f"triton infer {model}", SpanKind.CLIENT):
            result = triton(
                lambda: self.inference.generate(
                    model, composed.images, composed.question, max_new_tokens, max_tiles
                )
            )
        infer_ms = (time.perf_counter() - started) * 1000
        labels = {"domain": request.domain, "model": model}
        self.metrics.inference_duration.record(infer_ms / 1000, labels)
        context = composed.context
        if cache != "unavailable":
            # Filed under the version that answered: Triton may have loaded a new one since
            # the version was looked up.
            entry = CachedResult(result, context.image_sizes, dict(context.camera_sizes))
            self.cache.put(key_for(result.model_version), entry)
        return _Served(result, context, cache, infer_ms, target)

    @contextmanager
    def _decoding_memory(self, span: Span) -> Iterator[Callable[[int], None] | None]:
        """Each frame's memory is reserved from the budget as its header is read, and all of
        it released once the request's images are composed."""
        if self.memory is None:
            yield None
            return
        budget, waited = self.memory, 0.0

        def reserve(nbytes: int) -> None:
            nonlocal waited
            started = time.perf_counter()
            budget.reserve(nbytes)
            waited += time.perf_counter() - started

        with budget.request():
            try:
                yield reserve
            finally:
                span.set_attribute("pocketvl.memory.wait_ms", round(waited * 1000, 3))

    def _check_fits_one_call(self, composed: Composed) -> None:
        """gRPC refuses a message over the cap as RESOURCE_EXHAUSTED, which reads like an
        overloaded server; say what it is instead, before sending."""
        cap = self.settings.triton.max_grpc_message_bytes
        size = composed.payload_bytes + len(composed.question.encode())
        if size > cap - GRPC_OVERHEAD_BYTES:
            raise ImageError(
                "image_too_large",
                f"the decoded images are {size} bytes as RGB, over what one Triton call "
                f"carries (triton.max_grpc_message_bytes={cap}): send smaller images",
            )

    @property
    def _triton_policy(self) -> RetryPolicy:
        t = self.settings.triton
        return RetryPolicy(
            t.max_attempts,
            t.backoff_initial_s,
            t.backoff_max_s,
            budget_s=t.outage_budget_s,
            stage="triton",
        )

    @property
    def _store_policy(self) -> RetryPolicy:
        store = self.settings.image_store
        return RetryPolicy(
            store.max_attempts, store.backoff_initial_s, store.backoff_max_s, stage="image_store"
        )

    def _retrying(self, policy: RetryPolicy, call: Callable[[], T]) -> T:
        def count(error: DeadLetterError) -> None:
            self.metrics.retries.add(1, {"stage": policy.stage, "reason": error.reason})

        return with_retries(call, policy, self.sleep, on_retry=count)

    def _answer_record(self, record: InboundRecord, answer: AnswerBase) -> OutboundRecord:
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

    def dead_letter(
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
        headers += _trace_headers()  # the process span's, where there is one
        return dlq_record(record, topic(self.settings.kafka.topic_prefix, domain, "dlq"), headers)


def _trace_headers() -> Headers:
    """The current span's context as ``traceparent`` (and ``tracestate``) headers; the loop
    replaces them with its ``send`` span's when it publishes the record."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return [(k, v.encode()) for k, v in carrier.items()]


def _where(record: InboundRecord) -> str:
    return f"{record.topic}[{record.partition}]@{record.offset}"
