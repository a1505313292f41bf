"""The real local stack (tansu, redis-server, tritonserver), started once per test session.

Each test gets its own topic prefix and consumer group, so tests never see each other's
records; every run is bounded (N in, N out).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest

from pocketvl.adapters import kafka_broker
from pocketvl.adapters.kafka_broker import read_records
from pocketvl.devstack.paths import TINY_MODELS
from pocketvl.devstack.stack import LocalStack, StackState
from pocketvl.settings import Settings
from pocketvl.worker.envelope import OutboundRecord, cloudevent_headers, topic
from tests.conftest import REPO
from tests.support.stack_settings import stack_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path) -> Iterator[StackState]:
    run_dir = tmp_path_factory.mktemp("stack")
    with LocalStack(run_dir, REPO / "model_repository", checkpoint_root, TINY_MODELS) as state:
        yield state


@pytest.fixture
def settings(stack: StackState) -> Settings:
    return stack_settings(stack)


def publish(settings: Settings, domain: str, values: list[bytes], key: bytes = b"entity-1") -> None:
    """Raw values (valid requests or not) on the domain's request topic, acked."""
    prefix = settings.kafka.topic_prefix
    records = [
        OutboundRecord(
            topic(prefix, domain, "requests"),
            key,
            value,
            [
                *cloudevent_headers(str(uuid.uuid4()), "/tests", "pocketvl.test.v1"),
                ("x-test", b"yes"),
            ],
        )
        for value in values
    ]
    kafka_broker.publish(settings.kafka, records)


def answers(
    settings: Settings, count: int, kind: Literal["answers", "dlq"] = "answers"
) -> list[Any]:
    topics = [
        topic(settings.kafka.topic_prefix, d, kind)
        for d in ("driving", "remote_sensing", "medical")
    ]
    return read_records(settings.kafka, topics, count, timeout_s=30)


def request(domain_example: dict[str, Any], event_id: str, **changes: Any) -> bytes:
    return json.dumps({**domain_example, "event_id": event_id, **changes}).encode()
