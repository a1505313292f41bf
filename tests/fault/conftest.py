"""A private embedded stack per module, and load: requests out, outcomes counted by event id.

A module overrides ``local_stack`` to get a different stack (``fault_stack(...,
durable_broker=True)`` for a broker whose data survives its restart); ``settings`` follows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pocketvl.adapters.kafka_broker import publish, read_records
from pocketvl.devstack.stack import LocalStack
from pocketvl.settings import (
    TINY_MODEL,
    Settings,
    WorkerSettings,
    as_environment,
)
from pocketvl.worker.envelope import request_record, topic
from tests.conftest import REPO
from tests.support.examples import example
from tests.support.stack_settings import stack_settings

pytestmark = pytest.mark.integration


def fault_stack(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path, durable_broker: bool = False
) -> Iterator[LocalStack]:
    """The body of a module's ``local_stack`` fixture: a stack of its own, up while it runs."""
    stack = LocalStack(
        tmp_path_factory.mktemp("fault-stack"),
        REPO / "model_repository",
        checkpoint_root,
        (TINY_MODEL,),
        durable_broker=durable_broker,
    )
    with stack:
        yield stack


@pytest.fixture(scope="module")
def local_stack(
    tmp_path_factory: pytest.TempPathFactory, checkpoint_root: Path
) -> Iterator[LocalStack]:
    yield from fault_stack(tmp_path_factory, checkpoint_root)


@pytest.fixture
def settings(local_stack: LocalStack) -> Settings:
    return stack_settings(
        local_stack.state,
        "f",
        redis={"socket_timeout_s": 0.5},
        triton={"timeout_s": 10, "backoff_initial_s": 0.1, "backoff_max_s": 1.0},
        worker=WorkerSettings(max_in_flight=16, shutdown_timeout_s=20),
    )


def send_load(settings: Settings, count: int, keys: int = 20) -> list[str]:
    """``count`` valid medical requests, each needing its own inference (the question is
    the event id, so no two share a cache entry), over ``keys`` keys."""
    base: dict[str, Any] = example("medical")
    ids = [f"load-{i:04d}" for i in range(count)]
    records = [
        request_record(
            settings.kafka.topic_prefix,
            {**base, "event_id": event_id, "task": {**base["task"], "question": event_id}},
            f"entity-{i % keys}".encode(),
            "/tests/fault",
        )
        for i, event_id in enumerate(ids)
    ]
    publish(settings.kafka, records)
    return ids


@dataclass
class Outcomes:
    answers: Counter[str]  # event id -> answers published for it
    dead_lettered: Counter[str]
    cache: Counter[str] = field(default_factory=Counter)  # the answers' cache field

    def lost(self, ids: list[str]) -> list[str]:
        return [i for i in ids if i not in self.answers and i not in self.dead_lettered]

    @property
    def duplicates(self) -> int:
        return sum(n - 1 for n in self.answers.values())


def outcomes(settings: Settings, timeout_s: float = 5.0) -> Outcomes:
    prefix = settings.kafka.topic_prefix
    answers = read_records(settings.kafka, [topic(prefix, "medical", "answers")], None, timeout_s)
    dlq = read_records(settings.kafka, [topic(prefix, "medical", "dlq")], None, timeout_s)
    values = [json.loads(r.value) for r in answers]
    return Outcomes(
        Counter(value["event_id"] for value in values),
        Counter(json.loads(r.value)["event_id"] for r in dlq if r.value),
        Counter(value["cache"] for value in values),
    )


def outcomes_of(
    settings: Settings, ids: list[str], timeout_s: float = 60.0, read_s: float = 5.0
) -> Outcomes:
    """The outcomes once every id has one, or as they are after ``timeout_s``. Each look
    reads the topics for ``read_s`` (a broker on S3 storage reads each batch from it: give
    it longer); one that missed the newest records is followed by another."""
    deadline = time.monotonic() + timeout_s
    seen = outcomes(settings, read_s)
    while seen.lost(ids) and time.monotonic() < deadline:
        seen = outcomes(settings, read_s)
    return seen


def start_worker(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """A ``pocketvl worker`` subprocess on ``settings``, logging to ``log`` (appended: a
    file never fills up and blocks the worker, as a pipe can)."""
    env = {**os.environ, **as_environment(settings)}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pocketvl.cli.main", "worker", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
