"""What the worker tells an operator beyond the process span: retries, records consumed and
published, durations by domain and model, and the loop's poll / send / commit spans."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pocketvl.contracts.triton import RgbImage
from pocketvl.errors import ImageUnavailable, InferenceError, InferenceUnavailable
from pocketvl.telemetry import WorkerMetrics, observe_worker
from pocketvl.worker.images import LoadedImage
from pocketvl.worker.loop import Worker
from pocketvl.worker.pipeline import Pipeline
from pocketvl.worker.ports import GenerationResult
from tests.support.examples import example
from tests.support.fakes import InMemorySink, InMemorySource, ScriptedInference
from tests.support.pipelines import make_pipeline, published, record
from tests.unit.test_worker_loop import TP, records, valid

PARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def points(reader: InMemoryMetricReader) -> dict[str, list[Any]]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        metric.name: list(metric.data.data_points)
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }


def metered(inference: ScriptedInference) -> tuple[Pipeline, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    pipeline = make_pipeline(inference)
    pipeline.metrics = WorkerMetrics.create(MeterProvider(metric_readers=[reader]).get_meter("t"))
    return pipeline, reader


def retries(reader: InMemoryMetricReader) -> dict[tuple[str, str], int]:
    return {
        (p.attributes["stage"], p.attributes["reason"]): p.value
        for p in points(reader)["pocketvl.retries"]
    }


def test_a_retried_triton_outage_and_image_store_count_each_retry() -> None:
    down = [InferenceUnavailable("model_unavailable", "down")] * 2
    pipeline, reader = metered(ScriptedInference(errors=list(down)))
    # before any failure: every stage and retryable reason is there, at zero
    assert retries(reader) == {
        ("triton", "model_unavailable"): 0,
        ("triton", "model_not_loaded"): 0,
        ("image_store", "image_unavailable"): 0,
    }
    published(pipeline, record(example("medical")))
    assert retries(reader)[("triton", "model_unavailable")] == 2  # two retries, then answered

    real_load = pipeline.images.load_all
    failures = [ImageUnavailable("image_unavailable", "503")]

    def flaky(images: Any) -> list[LoadedImage]:
        if failures:
            raise failures.pop()
        return list(real_load(images))

    pipeline.images.load_all = flaky  # type: ignore[method-assign]
    published(pipeline, record({**example("medical"), "event_id": "second"}))
    assert retries(reader)[("image_store", "image_unavailable")] == 1
    assert retries(reader)[("triton", "model_unavailable")] == 2


def test_an_outage_that_outlasts_the_retries_counts_only_the_retries() -> None:
    down: list[InferenceError] = [InferenceUnavailable("model_not_loaded", "unloaded")] * 5
    pipeline, reader = metered(ScriptedInference(errors=down))  # make_pipeline: 3 attempts
    out = published(pipeline, record(example("medical")))
    assert dict(out.headers)["dlq.reason"] == b"model_not_loaded"
    assert retries(reader)[("triton", "model_not_loaded")] == 2  # attempts 1 and 2 retried


def test_durations_are_labelled_by_domain_and_model() -> None:
    pipeline, reader = metered(ScriptedInference())
    published(pipeline, record(example("medical")))
    published(pipeline, record(b"{oops"))
    found = points(reader)
    (inference,) = found["pocketvl.inference.duration"]
    assert dict(inference.attributes) == {"domain": "medical", "model": "internvl2_tiny_qwen2"}
    processed = {
        (p.attributes["model"], p.attributes["outcome"]): p.count
        for p in found["pocketvl.process.duration"]
    }
    # a record that never reached its route has no model
    assert processed == {("internvl2_tiny_qwen2", "answered"): 1, ("none", "dead_lettered"): 1}


def test_the_loop_counts_records_consumed_and_published_by_kind() -> None:
    pipeline, reader = metered(ScriptedInference())
    batch = records(valid("a"), b"{oops", valid("b"))
    worker = Worker(pipeline, InMemorySource([batch]), InMemorySink())
    worker.run(max_records=3, idle_timeout_s=0.5)
    found = points(reader)
    (consumed,) = found["pocketvl.messages.consumed"]
    assert (dict(consumed.attributes), consumed.value) == ({"topic": TP.topic}, 3)
    published_ = {p.attributes["kind"]: p.value for p in found["pocketvl.messages.published"]}
    assert published_ == {"answers": 2, "dlq": 1}


def traced_worker(
    values: list[bytes], out: InMemorySink | None = None
) -> tuple[Worker, InMemorySink, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    pipeline = make_pipeline(ScriptedInference(), exporter)
    batch = [replace(r, headers=[("traceparent", PARENT)]) for r in records(*values)]
    out = out or InMemorySink()
    return Worker(pipeline, InMemorySource([batch]), out), out, exporter


def by_name(exporter: InMemorySpanExporter, prefix: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if (s.name or "").startswith(prefix)]


def test_poll_send_and_commit_spans_follow_the_messaging_conventions() -> None:
    worker, out, exporter = traced_worker([valid("a"), b"{oops"])
    worker.run(max_records=2, idle_timeout_s=0.5)

    (poll,) = by_name(exporter, "poll ")
    assert poll.name == f"poll {TP.topic}" and poll.kind == SpanKind.CLIENT
    assert poll.attributes is not None
    assert poll.attributes["messaging.operation.type"] == "receive"
    assert poll.attributes["messaging.batch.message_count"] == 2
    assert [link.context.trace_id for link in poll.links] == [int(PARENT[3:35], 16)] * 2

    processes = {s.context.span_id: s for s in by_name(exporter, "process ")}
    sends = by_name(exporter, "send ")
    assert sorted(s.name for s in sends) == [
        "send pocketvl.medical.answers",
        "send pocketvl.medical.dlq",
    ]
    for send in sends:  # each the child of its record's process span, in its trace
        assert send.kind == SpanKind.PRODUCER
        assert send.parent is not None and send.parent.span_id in processes
        assert send.context.trace_id == processes[send.parent.span_id].context.trace_id
        assert send.attributes is not None
        assert send.attributes["messaging.operation.type"] == "send"
    # every published record (the DLQ one too) carries its send span's context
    for published_record in out.acked:
        traceparent = dict(published_record.headers)["traceparent"].decode()
        (send,) = [s for s in sends if s.name == f"send {published_record.topic}"]
        assert traceparent.split("-")[1:3] == [
            f"{send.context.trace_id:032x}",
            f"{send.context.span_id:016x}",
        ]

    commits = by_name(exporter, "commit ")
    assert commits and all(c.kind == SpanKind.CLIENT for c in commits)
    assert {c.attributes["messaging.operation.type"] for c in commits if c.attributes} == {"settle"}
    linked = sorted(link.context.span_id for c in commits for link in c.links)
    assert linked == sorted(processes)  # each committed record's process span, once
    counts = [c.attributes["messaging.batch.message_count"] for c in commits if c.attributes]
    assert counts in ([2], [1, 1])


def test_a_refused_answer_ends_its_send_span_failed_and_the_dlq_record_keeps_the_trace() -> None:
    refusing = InMemorySink(refuse_on_ack=lambda r: r.topic.endswith(".answers"))
    worker, out, exporter = traced_worker([valid("a")], refusing)
    worker.run(max_records=1, idle_timeout_s=0.5)
    (process,) = by_name(exporter, "process ")
    answer, dlq = sorted(by_name(exporter, "send "), key=lambda s: s.name)
    assert answer.status.status_code == StatusCode.ERROR
    assert answer.attributes is not None
    assert answer.attributes["error.type"] == "message_too_large"
    assert dlq.name == "send pocketvl.medical.dlq" and dlq.status.status_code == StatusCode.UNSET
    for send in (answer, dlq):
        assert send.parent is not None and send.parent.span_id == process.context.span_id
    (record_,) = out.acked
    assert dict(record_.headers)["traceparent"].decode().split("-")[2] == (
        f"{dlq.context.span_id:016x}"
    )


def test_an_empty_poll_makes_no_span() -> None:
    worker, _, exporter = traced_worker([])
    worker.run(idle_timeout_s=0.1)
    assert exporter.get_finished_spans() == ()


class GatedInference(ScriptedInference):
    """Holds every call until ``gate`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def generate(
        self, model: str, images: list[RgbImage], question: str, max_new_tokens: int, max_tiles: int
    ) -> GenerationResult:
        assert self.gate.wait(30), "the test never opened the gate"
        return super().generate(model, images, question, max_new_tokens, max_tiles)


def test_requests_in_flight_are_gauged_per_model() -> None:
    inference = GatedInference()
    pipeline = make_pipeline(inference)
    reader = InMemoryMetricReader()
    batch = [replace(r, key=f"study-{r.offset}".encode()) for r in records(valid("a"), valid("b"))]
    worker = Worker(pipeline, InMemorySource([batch]), InMemorySink())
    observe_worker(MeterProvider(metric_readers=[reader]).get_meter("loop"), worker)
    running = threading.Thread(target=worker.run, kwargs={"max_records": 2, "idle_timeout_s": 1})
    running.start()
    try:
        deadline = time.monotonic() + 10
        while worker.snapshot.running.get("internvl2_tiny_qwen2") != 2:  # taken once a second
            assert time.monotonic() < deadline, f"snapshot: {worker.snapshot}"
            time.sleep(0.05)
        (gauge,) = points(reader)["pocketvl.model.in_flight"]
        assert (dict(gauge.attributes), gauge.value) == ({"model": "internvl2_tiny_qwen2"}, 2)
    finally:
        inference.gate.set()
        running.join(timeout=30)
    assert not running.is_alive()
