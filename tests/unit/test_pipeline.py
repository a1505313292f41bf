"""``Pipeline.process``: answers, cache hits, DLQ records and retries, on in-memory adapters."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from PIL import Image

from pocketvl.errors import CacheUnavailable, InferenceError, InferenceUnavailable
from pocketvl.media.options import RGB_WORK_BYTES_PER_PIXEL
from pocketvl.settings import Settings
from pocketvl.worker.caching import NoResultCache
from pocketvl.worker.envelope import InboundRecord
from pocketvl.worker.memory import MemoryBudget
from pocketvl.worker.ports import CachedResult
from tests.support.examples import example
from tests.support.fakes import InMemoryResultCache, ScriptedInference
from tests.support.pipelines import make_pipeline, published, record


def test_answer_then_cache_hit_for_the_same_content() -> None:
    inference = ScriptedInference()
    pipeline = make_pipeline(inference)
    first = published(pipeline, record(example("medical")))
    assert first.topic == "pocketvl.medical.answers"
    assert first.key == b"study-1"
    answer = json.loads(first.value)
    assert answer["cache"] == "miss"
    assert answer["status"] == "ok"
    assert answer["answer"] == {"kind": "choice", "letter": "B", "option": "Nodule"}
    assert answer["raw_text"] == "B"
    assert answer["model"] == {
        "checkpoint": "tiny-internvl2-qwen2",
        "triton_model": "internvl2_tiny_qwen2",
        "version": "1",
        "served_by": "primary",
    }
    assert ("x-tenant", b"acme") in first.headers
    assert dict(first.headers)["ce_type"] == b"pocketvl.medical.answer.v1"
    # same content, another event id -> served from the cache, not inferred again
    second = json.loads(
        published(pipeline, record({**example("medical"), "event_id": "other"})).value
    )
    assert second["cache"] == "hit"
    assert second["event_id"] == "other"
    assert len(inference.calls) == 1


def test_the_model_is_asked_the_task_in_the_trained_format() -> None:
    inference = ScriptedInference()
    published(make_pipeline(inference), record(example("medical")))
    _, n_images, question, max_new, max_tiles = inference.calls[0]
    assert n_images == 1
    assert question.endswith(
        "A. Normal\nB. Nodule\nC. Pleural effusion\nD. Pneumothorax\n"
        "Answer with the option's letter from the given choices directly."
    )
    assert (max_new, max_tiles) == (16, 12)


@pytest.mark.parametrize(
    ("value", "stage", "reason"),
    [
        (b"{oops", "deserialize", "invalid_json"),
        ({**example("medical"), "task": {"type": "segment"}}, "validate", "unknown_task"),
        ({**example("medical"), "model_size": "4b"}, "route", "no_route"),
        (
            {
                **example("medical"),
                "images": [{"kind": "inline", "media_type": "image/png", "data_b64": "AAAA"}],
            },
            "fetch",
            "media_type_mismatch",
        ),
    ],
)
def test_bad_messages_become_dlq_records_with_original_bytes(
    value: Any, stage: str, reason: str
) -> None:
    inbound = record(value)
    out = published(make_pipeline(ScriptedInference()), inbound)
    headers = {k: v.decode() for k, v in out.headers}
    assert out.topic == "pocketvl.medical.dlq"
    assert (out.key, out.value) == (inbound.key, inbound.value)
    assert headers["dlq.stage"] == stage
    assert headers["dlq.reason"] == reason
    assert headers["dlq.original.topic"] == "pocketvl.medical.requests"
    assert (headers["dlq.original.partition"], headers["dlq.original.offset"]) == ("2", "7")
    assert headers["dlq.retryable"] == "false"
    assert headers["x-tenant"] == "acme"


def test_transient_failures_are_retried_then_answered() -> None:
    flaky = ScriptedInference(errors=[InferenceUnavailable("model_unavailable", "down")] * 2)
    answer = json.loads(published(make_pipeline(flaky), record(example("medical"))).value)
    assert answer["status"] == "ok"
    assert len(flaky.calls) == 3


def test_retries_are_bounded_then_dead_lettered_as_retryable() -> None:
    down = ScriptedInference(errors=[InferenceUnavailable("model_unavailable", "down")] * 5)
    out = published(make_pipeline(down), record(example("medical")))
    headers = {k: v.decode() for k, v in out.headers}
    assert out.topic == "pocketvl.medical.dlq"
    assert (headers["dlq.reason"], headers["dlq.attempts"], headers["dlq.retryable"]) == (
        "model_unavailable",
        "3",
        "true",
    )
    assert len(down.calls) == 3


def test_a_rejected_inference_is_not_retried() -> None:
    bad = ScriptedInference(errors=[InferenceError("inference_failed", "bad tensor")])
    out = published(make_pipeline(bad), record(example("medical")))
    assert dict(out.headers)["dlq.reason"] == b"inference_failed"
    assert len(bad.calls) == 1


def test_empty_model_output_is_unparsed_not_ok() -> None:
    answer = json.loads(
        published(make_pipeline(ScriptedInference(text="  ")), record(example("medical"))).value
    )
    assert answer["status"] == "unparsed"


def test_spans_cover_each_hop_and_link_to_the_producer() -> None:
    exporter = InMemorySpanExporter()
    inbound = record(example("medical"))
    traceparent = ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    inbound = InboundRecord(inbound.topic, 0, 1, inbound.key, inbound.value, [traceparent])
    out = published(make_pipeline(ScriptedInference(), exporter), inbound)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {
        "process pocketvl.medical.requests",
        "cache lookup",
        "triton infer internvl2_tiny_qwen2",
    } <= set(spans)
    process = spans["process pocketvl.medical.requests"]
    assert format(process.links[0].context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert process.attributes is not None
    assert process.attributes["messaging.message.id"] == "example-medical-choice-0001"
    assert "traceparent" in dict(out.headers)


def test_a_flaky_image_store_is_retried_like_triton() -> None:
    from pocketvl.errors import ImageUnavailable
    from pocketvl.worker.images import LoadedImage

    pipeline = make_pipeline(ScriptedInference())
    real_load = pipeline.images.load_all
    failures = [ImageUnavailable("image_unavailable", "503")] * 2

    def flaky(images: Any) -> list[LoadedImage]:
        if failures:
            raise failures.pop()
        return real_load(images)

    pipeline.images.load_all = flaky  # type: ignore[method-assign]
    answer = json.loads(published(pipeline, record(example("medical"))).value)
    assert answer["status"] == "ok"
    assert failures == []


def test_metrics_count_outcomes_cache_and_inference() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from pocketvl.telemetry import WorkerMetrics

    reader = InMemoryMetricReader()
    pipeline = make_pipeline(ScriptedInference())
    pipeline.metrics = WorkerMetrics.create(MeterProvider(metric_readers=[reader]).get_meter("t"))
    published(pipeline, record(example("medical")))
    published(pipeline, record({**example("medical"), "event_id": "again"}))
    published(pipeline, record(b"{oops"))
    points: dict[str, list[Any]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    processed = {
        (p.attributes["outcome"], p.attributes["reason"]): p.value
        for p in points["pocketvl.messages.processed"]
    }
    assert processed == {("answered", ""): 2, ("dead_lettered", "invalid_json"): 1}
    lookups = {p.attributes["result"]: p.value for p in points["pocketvl.cache.lookups"]}
    assert lookups == {"miss": 1, "hit": 1}
    (inference,) = points["pocketvl.inference.duration"]
    assert inference.count == 1
    assert sum(p.count for p in points["pocketvl.process.duration"]) == 3


def test_a_redelivered_request_is_not_answered_twice() -> None:
    inference = ScriptedInference()
    pipeline = make_pipeline(inference)
    first = published(pipeline, record(example("medical")))
    assert first.answers == "example-medical-choice-0001"
    pipeline.done.mark([first.answers])  # what the loop does once the broker acked it
    assert pipeline.process(record(example("medical"), offset=8)) is None
    assert len(inference.calls) == 1
    # the same content under a new event id is a new event: answered (from the cache)
    assert (
        json.loads(published(pipeline, record({**example("medical"), "event_id": "new"})).value)[
            "cache"
        ]
        == "hit"
    )
    assert published(pipeline, record(b"{oops")).answers is None  # DLQ records answer nothing


class _DownCache(InMemoryResultCache):
    """A cache that cannot be reached until ``up`` is set; counts the writes it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.writes = 0

    def get(self, key: str) -> CachedResult | None:
        if not self.up:
            raise CacheUnavailable("Redis: ConnectionError")
        return super().get(key)

    def put(self, key: str, value: CachedResult) -> None:
        self.writes += 1
        super().put(key, value)


def test_a_cache_that_cannot_be_reached_is_said_in_the_answer_and_recovers() -> None:
    inference = ScriptedInference()
    pipeline = make_pipeline(inference)
    pipeline.cache = cache = _DownCache()
    first = json.loads(published(pipeline, record(example("medical"))).value)
    assert (first["cache"], first["status"]) == ("unavailable", "ok")
    assert cache.writes == 0  # nothing written to a cache that is down
    cache.up = True
    again = json.loads(published(pipeline, record({**example("medical"), "event_id": "b"})).value)
    assert again["cache"] == "miss"  # back: looked up, missed, written
    third = json.loads(published(pipeline, record({**example("medical"), "event_id": "c"})).value)
    assert third["cache"] == "hit"
    assert len(inference.calls) == 2


def test_duplicates_are_suppressed_with_the_result_cache_off() -> None:
    inference = ScriptedInference()
    pipeline = make_pipeline(inference)
    pipeline.cache = NoResultCache()
    first = published(pipeline, record(example("medical")))
    assert json.loads(first.value)["cache"] == "miss"
    assert first.answers is not None
    pipeline.done.mark([first.answers])
    assert pipeline.process(record(example("medical"), offset=8)) is None
    # new event, same content: inferred again, since nothing is cached
    again = json.loads(published(pipeline, record({**example("medical"), "event_id": "n"})).value)
    assert again["cache"] == "miss"
    assert len(inference.calls) == 2


def test_the_service_keeps_a_done_store_when_caching_is_disabled() -> None:
    from pocketvl.adapters.redis_store import RedisDoneStore, RedisResultCache
    from pocketvl.service import build_pipeline

    off = build_pipeline(Settings(cache_enabled=False))
    assert isinstance(off.cache, NoResultCache)
    assert isinstance(off.done, RedisDoneStore)
    assert isinstance(build_pipeline(Settings()).cache, RedisResultCache)


def test_span_failure_events_carry_the_reason_and_a_safe_message_only() -> None:
    """OpenTelemetry's own exception events would carry the exception text, its chained
    causes and a stack trace: here a bug quoting patient data, and a decoder failure."""

    class Leaky(ScriptedInference):
        def generate(self, *args: Any, **kwargs: Any) -> Any:
            raise KeyError("Doe^Jane 12345")

    exporter = InMemorySpanExporter()
    out = published(make_pipeline(Leaky(), exporter), record(example("medical")))
    assert dict(out.headers)["dlq.reason"] == b"internal_error"
    broken = {**example("medical"), "images": [{**example("medical")["images"][0]}]}
    broken["images"][0]["data_b64"] = broken["images"][0]["data_b64"][:400]
    published(make_pipeline(ScriptedInference(), exporter), record(broken))
    events = [
        (span.name, dict(event.attributes or {}))
        for span in exporter.get_finished_spans()
        for event in span.events
    ]
    assert (
        "triton infer internvl2_tiny_qwen2",
        {"exception.type": "KeyError", "exception.message": "internal error"},
    ) in events
    failed = [attrs for _, attrs in events if attrs.get("exception.type") == "image_undecodable"]
    assert failed, events
    for _, attributes in events:
        assert set(attributes) == {"exception.type", "exception.message"}  # no stack trace
        assert "Doe" not in str(attributes) and "12345" not in str(attributes)


def test_the_route_caps_max_new_tokens_and_max_tiles_like_each_other() -> None:
    inference = ScriptedInference()
    asked = {**example("medical"), "generation": {"max_new_tokens": 1024, "max_tiles": 40}}
    published(make_pipeline(inference), record(asked))
    less = {**example("medical"), "event_id": "less", "generation": {"max_new_tokens": 3}}
    published(make_pipeline(inference), record(less))
    assert [call[3:] for call in inference.calls] == [(16, 12), (3, 12)]  # route: 16 and 12


def test_concurrent_requests_decode_within_the_memory_budget_and_release_it() -> None:
    """Budget for one frame: eight requests on eight threads decode one at a time."""
    inference = ScriptedInference()
    pipeline = make_pipeline(inference)
    image = example("medical")["images"][0]["data_b64"]
    width, height = Image.open(io.BytesIO(base64.b64decode(image))).size
    frame = width * height * RGB_WORK_BYTES_PER_PIXEL  # the example's one image
    pipeline.memory = budget = MemoryBudget(frame)
    peak, lock = [0], threading.Lock()
    reserve = budget.reserve

    def watched(nbytes: int) -> None:
        reserve(nbytes)
        with lock:
            peak[0] = max(peak[0], budget.reserved_bytes)
        time.sleep(0.01)  # hold it a while, so the others have to wait

    budget.reserve = watched  # type: ignore[method-assign]
    records = [
        record(
            {
                **example("medical"),
                "event_id": f"m{i}",
                "task": {**example("medical")["task"], "question": f"q{i}"},
            },
            offset=i,
        )
        for i in range(8)
    ]
    with ThreadPoolExecutor(8) as pool:
        answers = [
            json.loads(published_value)
            for published_value in pool.map(lambda r: published(pipeline, r).value, records)
        ]
    assert [a["status"] for a in answers] == ["ok"] * 8
    assert peak[0] == frame  # never two frames at once
    assert budget.reserved_bytes == 0 and budget.waiting == 0
