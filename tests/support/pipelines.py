"""A pipeline on in-memory fakes of every port, and records to feed it."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pocketvl.contracts.messages import DlqHeaders
from pocketvl.settings import Settings, TritonSettings
from pocketvl.worker.envelope import InboundRecord, OutboundRecord
from pocketvl.worker.images import ImageFetcher
from pocketvl.worker.pipeline import Pipeline
from tests.support.examples import REPO
from tests.support.fakes import InMemoryDoneStore, InMemoryResultCache, ScriptedInference


def make_pipeline(
    inference: ScriptedInference, exporter: InMemorySpanExporter | None = None
) -> Pipeline:
    settings = Settings(triton=TritonSettings(max_attempts=3, backoff_initial_s=0.01))
    provider = TracerProvider()
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Pipeline(
        settings=settings,
        images=ImageFetcher(settings.limits, {}),
        inference=inference,
        cache=InMemoryResultCache(),
        done=InMemoryDoneStore(),
        tracer=provider.get_tracer("test"),
        sleep=lambda _: None,
    )


def published(pipeline: Pipeline, inbound: InboundRecord) -> OutboundRecord:
    out = pipeline.process(inbound)
    assert out is not None, "the pipeline published nothing"
    return out


def record(value: Any, domain: str = "medical", offset: int = 7) -> InboundRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    headers = [("x-tenant", b"acme"), ("ce_id", b"abc")]
    return InboundRecord(f"pocketvl.{domain}.requests", 2, offset, b"study-1", raw, headers)


DLQ_SCHEMA = json.loads((REPO / "schemas" / "dlq-headers.schema.json").read_text())


def contract_checked(out: OutboundRecord) -> dict[str, str]:
    """The DLQ headers, validated by the pydantic model and by the published JSON Schema."""
    headers = {k: v.decode() for k, v in out.headers if k.startswith("dlq.")}
    typed = DlqHeaders.model_validate(headers).model_dump(mode="json", by_alias=True)
    jsonschema.validate(typed, DLQ_SCHEMA)
    return headers
