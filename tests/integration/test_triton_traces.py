"""Triton's own spans join the worker's trace: tritonserver (2.51, from the nvidia-pytriton
wheel) in its OpenTelemetry trace mode exports to an OTLP/HTTP receiver run here, and the
worker's ``triton infer`` span is the parent of Triton's ``InferRequest`` span, because the
Triton adapter sends ``traceparent`` in the gRPC metadata.

Triton's exporter posts OTLP as JSON (``application/json``, ids in hex), not protobuf."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pocketvl.adapters.triton_client import TritonInference
from pocketvl.devstack.stack import LocalStack, StackState
from pocketvl.domains.registry import REGISTRY
from pocketvl.settings import Route, RoutingSettings, Settings, TritonSettings
from pocketvl.worker.images import ImageFetcher
from pocketvl.worker.pipeline import Pipeline
from tests.conftest import REPO
from tests.support.examples import example
from tests.support.fakes import InMemoryDoneStore, InMemoryResultCache
from tests.support.pipelines import published, record

pytestmark = pytest.mark.integration


class TraceReceiver:
    """An OTLP/HTTP endpoint that keeps the JSON spans posted to /v1/traces."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.content_types: set[str] = set()
        self.arrived = threading.Condition()

    def add(self, content_type: str, body: bytes) -> None:
        payload = json.loads(body)
        spans = [
            span
            for resource in payload.get("resourceSpans", [])
            for scope in resource.get("scopeSpans", [])
            for span in scope.get("spans", [])
        ]
        with self.arrived:
            self.content_types.add(content_type)
            self.spans += spans
            self.arrived.notify_all()

    def wait_for(self, name: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.arrived:
            while True:
                found = [s for s in self.spans if s.get("name") == name]
                if found:
                    return found[0]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name!r} span from Triton; got {self.spans}")
                self.arrived.wait(left)


@pytest.fixture
def receiver() -> Iterator[tuple[str, TraceReceiver]]:
    kept = TraceReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/v1/traces":
                kept.add(self.headers.get("Content-Type", ""), body)
            self.send_response(200 if self.path == "/v1/traces" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", kept
    server.shutdown()


@pytest.fixture
def traced_triton(
    tmp_path: Path, receiver: tuple[str, TraceReceiver]
) -> Iterator[tuple[StackState, TraceReceiver]]:
    """Triton alone, with the ``echo`` stand-in model, tracing every request."""
    url, kept = receiver
    repository = REPO / "bench" / "model_repository"
    stack = LocalStack(
        tmp_path, repository, tmp_path, ("echo",), components=("triton",), triton_traces=url
    )
    with stack as state:
        yield state, kept


def test_tritons_spans_join_the_workers_trace_under_its_infer_span(
    traced_triton: tuple[StackState, TraceReceiver],
) -> None:
    state, kept = traced_triton
    echo = Route(triton_model="echo", checkpoint="stand-in-echo", max_new_tokens=16)
    settings = Settings(
        triton=TritonSettings(url=state.triton_url),
        routing=RoutingSettings(routes={spec.key: echo for spec in REGISTRY}),
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pipeline = Pipeline(
        settings=settings,
        images=ImageFetcher(settings.limits, {}),
        inference=TritonInference(settings.triton),
        cache=InMemoryResultCache(),
        done=InMemoryDoneStore(),
        tracer=provider.get_tracer("pocketvl.worker"),
    )
    answer = json.loads(published(pipeline, record(example("medical"))).value)
    assert answer["model"]["triton_model"] == "echo"

    (infer,) = [s for s in exporter.get_finished_spans() if s.name == "triton infer echo"]
    trace_id, span_id = f"{infer.context.trace_id:032x}", f"{infer.context.span_id:016x}"
    request = kept.wait_for("InferRequest", timeout_s=30)
    assert request["traceId"] == trace_id  # the worker's trace
    assert request["parentSpanId"] == span_id  # under the worker's triton infer span
    model = kept.wait_for("echo", timeout_s=30)  # Triton's model span, under its request span
    assert (model["traceId"], model["parentSpanId"]) == (trace_id, request["spanId"])
    assert kept.content_types == {"application/json"}
