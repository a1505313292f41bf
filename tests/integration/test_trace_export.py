"""Traces and metrics leave the process: a record's spans, exported over OTLP (gRPC and HTTP)
to a real endpoint started here, and the worker's metrics over OTLP/HTTP, configured only by
the standard OTEL_* variables."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
    TraceServiceServicer,
    add_TraceServiceServicer_to_server,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pocketvl.telemetry import WorkerMetrics, otlp_tracer_provider, prometheus_metrics
from pocketvl.worker.loop import Worker
from tests.support.examples import example
from tests.support.fakes import InMemorySink, InMemorySource, ScriptedInference
from tests.support.pipelines import make_pipeline, published, record

PRODUCER_TRACE = "0af7651916cd43dd8448eb211c80319c"
PRODUCER_SPAN = "b7ad6b7169203331"


class Received:
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.lock = threading.Lock()

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def spans(self) -> list[Span]:
        return [
            span
            for request in self.requests
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        ]

    def service_names(self) -> set[str]:
        return {
            attribute.value.string_value
            for request in self.requests
            for resource in request.resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }


class _Collector(TraceServiceServicer):
    def __init__(self, received: Received) -> None:
        self.received = received

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:  # noqa: N802
        self.received.add(request)
        return ExportTraceServiceResponse()


@pytest.fixture
def grpc_endpoint() -> Iterator[tuple[str, Received]]:
    received = Received()
    server = grpc.server(ThreadPoolExecutor(2))
    add_TraceServiceServicer_to_server(_Collector(received), server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"http://127.0.0.1:{port}", received
    server.stop(0)


@pytest.fixture
def http_endpoint() -> Iterator[tuple[str, Received]]:
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/v1/traces":
                received.add(ExportTraceServiceRequest.FromString(body))
                reply = ExportTraceServiceResponse().SerializeToString()
            else:
                assert self.path == "/v1/metrics"
                received.metrics.append(ExportMetricsServiceRequest.FromString(body))
                reply = ExportMetricsServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_a_records_spans_reach_an_otlp_endpoint_with_their_parentage(
    protocol: str,
    grpc_endpoint: tuple[str, Received],
    http_endpoint: tuple[str, Received],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, received = grpc_endpoint if protocol == "grpc" else http_endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "pocketvl-under-test")
    provider = otlp_tracer_provider()
    assert provider is not None
    pipeline = make_pipeline(ScriptedInference())
    pipeline.tracer = provider.get_tracer("pocketvl.worker")
    inbound = record(example("medical"))
    parent = f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01".encode()
    inbound = replace(inbound, headers=[*inbound.headers, ("traceparent", parent)])
    answer = published(pipeline, inbound)
    dlq = pipeline.process(replace(inbound, value=b"{oops"))
    provider.shutdown()  # flushes the batch to the endpoint

    failed = [s for s in received.spans() if s.status.message == "invalid_json"]
    spans = {span.name: span for span in received.spans() if span not in failed}
    assert received.service_names() == {"pocketvl-under-test"}
    process = spans["process pocketvl.medical.requests"]
    assert process.kind == Span.SPAN_KIND_CONSUMER
    assert [link.trace_id.hex() for link in process.links] == [PRODUCER_TRACE]  # linked
    attributes = {a.key: a.value for a in process.attributes}
    assert attributes["messaging.system"].string_value == "kafka"
    assert attributes["messaging.destination.name"].string_value == "pocketvl.medical.requests"
    assert attributes["messaging.message.id"].string_value == "example-medical-choice-0001"
    assert attributes["messaging.kafka.offset"].int_value == 7
    infer = spans["triton infer internvl2_tiny_qwen2"]
    assert infer.kind == Span.SPAN_KIND_CLIENT
    for child in ("fetch images", "cache lookup", "decode and compose", infer.name):
        assert spans[child].parent_span_id == process.span_id, child
        assert spans[child].trace_id == process.trace_id
    # the answer carries the trace on: its traceparent names the process span's trace
    traceparent = dict(answer.headers)["traceparent"].decode()
    assert traceparent.split("-")[1] == process.trace_id.hex()
    # so does a DLQ record: its process span (the loop puts its send span there instead)
    assert dlq is not None and dict(dlq.headers)["dlq.reason"] == b"invalid_json"
    (failed_process,) = failed
    _, trace_id, span_id, _ = dict(dlq.headers)["traceparent"].decode().split("-")
    assert (trace_id, span_id) == (failed_process.trace_id.hex(), failed_process.span_id.hex())


def test_the_loops_poll_send_and_commit_spans_reach_the_endpoint_with_links_and_parents(
    grpc_endpoint: tuple[str, Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker loop over in-memory ports: one poll of an answerable and an unreadable
    record; the answer and the DLQ record carry their send span's context."""
    endpoint, received = grpc_endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    provider = otlp_tracer_provider()
    assert provider is not None
    pipeline = make_pipeline(ScriptedInference())
    pipeline.tracer = provider.get_tracer("pocketvl.worker")
    parent = ("traceparent", f"00-{PRODUCER_TRACE}-{PRODUCER_SPAN}-01".encode())
    batch = [
        replace(record(example("medical"), offset=7), headers=[parent]),
        replace(record(b"{oops", offset=8), headers=[parent]),
    ]
    sink = InMemorySink()
    Worker(pipeline, InMemorySource([batch]), sink).run(max_records=2, idle_timeout_s=0.5)
    provider.shutdown()

    spans = received.spans()
    topic = "pocketvl.medical.requests"
    (poll,) = [s for s in spans if s.name == f"poll {topic}"]
    assert poll.kind == Span.SPAN_KIND_CLIENT
    assert values(poll)["messaging.operation.type"].string_value == "receive"
    assert values(poll)["messaging.batch.message_count"].int_value == 2
    assert values(poll)["messaging.consumer.group.name"].string_value == "pocketvl-worker"
    assert [link.span_id.hex() for link in poll.links] == [PRODUCER_SPAN] * 2

    processes = {s.span_id: s for s in spans if s.name == f"process {topic}"}
    assert len(processes) == 2
    sends = {s.name: s for s in spans if s.name.startswith("send ")}
    assert set(sends) == {"send pocketvl.medical.answers", "send pocketvl.medical.dlq"}
    for send in sends.values():
        assert send.kind == Span.SPAN_KIND_PRODUCER
        assert values(send)["messaging.operation.type"].string_value == "send"
        assert send.parent_span_id in processes  # the child of its record's process span
        assert send.trace_id == processes[send.parent_span_id].trace_id
    assert values(sends["send pocketvl.medical.dlq"])["pocketvl.dlq.reason"].string_value == (
        "invalid_json"
    )
    # the answer and the DLQ record: traceparent = their send span (trace and span id)
    for out in sink.acked:
        send = sends[f"send {out.topic}"]
        _, trace_id, span_id, _ = dict(out.headers)["traceparent"].decode().split("-")
        assert (trace_id, span_id) == (send.trace_id.hex(), send.span_id.hex()), out.topic

    commits = [s for s in spans if s.name == f"commit {topic}"]
    assert commits
    for commit in commits:
        assert commit.kind == Span.SPAN_KIND_CLIENT
        assert values(commit)["messaging.operation.type"].string_value == "settle"
        assert values(commit)["messaging.destination.partition.id"].string_value == "2"
    linked = sorted(link.span_id for commit in commits for link in commit.links)
    assert linked == sorted(processes)  # every committed record's process span, once


def values(span: Span) -> dict[str, Any]:
    return {attribute.key: attribute.value for attribute in span.attributes}


def test_no_endpoint_no_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    assert otlp_tracer_provider() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert otlp_tracer_provider() is None


def test_the_worker_metrics_reach_an_otlp_http_endpoint_too(
    http_endpoint: tuple[str, Received], monkeypatch: pytest.MonkeyPatch
) -> None:
    endpoint, received = http_endpoint
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    meters, _ = prometheus_metrics()  # the Prometheus reader, and an OTLP one beside it
    pipeline = make_pipeline(ScriptedInference())
    pipeline.metrics = WorkerMetrics.create(meters.get_meter("pocketvl.worker"))
    published(pipeline, record(example("medical")))
    meters.shutdown()  # a last export
    names = {
        metric.name
        for request in received.metrics
        for resource in request.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert {"pocketvl.messages.processed", "pocketvl.inference.duration"} <= names
