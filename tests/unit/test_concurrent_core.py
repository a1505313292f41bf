"""The concurrent core on in-memory ports: per-key order, parallel keys, contiguous commits,
back-pressure and revocation. The same loop runs against the real stack in tests/fault."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from typing import Any

import pytest

from pocketvl.contracts.triton import RgbImage
from pocketvl.settings import Route, WorkerSettings
from pocketvl.worker.envelope import InboundRecord
from pocketvl.worker.loop import Worker
from pocketvl.worker.ports import GenerationResult, Partition
from tests.support.examples import example
from tests.support.fakes import InMemorySink, InMemorySource
from tests.support.pipelines import make_pipeline

TOPIC = "pocketvl.medical.requests"


class TimedInference:
    """Answers after ``delay(question)`` seconds and records when each call ran."""

    def __init__(self, delay_s: float = 0.05, slow: dict[str, float] | None = None) -> None:
        self.delay_s, self.slow = delay_s, slow or {}
        self.spans: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()
        self.running = 0
        self.most_at_once = 0
        self.by_model: Counter[str] = Counter()
        self.most_by_model: Counter[str] = Counter()
        self.capacities: dict[str, int] = {}

    def capacity(self, model: str) -> int | None:
        return self.capacities.get(model)

    def ready(self, model: str) -> bool:
        return True

    def model_version(self, model: str) -> str:
        return "1"

    def generate(
        self,
        model: str,
        images: list[RgbImage],
        question: str,
        max_new_tokens: int,
        max_tiles: int,
    ) -> GenerationResult:
        with self.lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
            self.by_model[model] += 1
            self.most_by_model[model] = max(self.most_by_model[model], self.by_model[model])
        event_id = question.split("\n", 1)[0]  # the question opens with the event id
        started = time.monotonic()
        time.sleep(self.slow.get(event_id, self.delay_s))
        with self.lock:
            self.running -= 1
            self.by_model[model] -= 1
            self.spans[event_id] = (started, time.monotonic())
        return GenerationResult("B", 10, 1, "1")


def request(event_id: str, task: str = "medical") -> bytes:
    # The question carries the event id, so the fake can tell the calls apart (and no two
    # requests share a cache entry).
    value: dict[str, Any] = example(task)
    value = {**value, "event_id": event_id, "task": {**value["task"], "question": event_id}}
    return json.dumps(value).encode()


def inbound(partition: int, offset: int, key: bytes, event_id: str) -> InboundRecord:
    return InboundRecord(TOPIC, partition, offset, key, request(event_id))


def worker_for(
    inference: TimedInference, source: InMemorySource, sink: InMemorySink, **settings: Any
) -> Worker:
    pipeline = make_pipeline(inference)  # type: ignore[arg-type]
    return Worker(pipeline, source, sink, WorkerSettings(**settings))


def answered_ids(sink: InMemorySink) -> list[str]:
    return [json.loads(r.value)["event_id"] for r in sink.acked if r.topic.endswith("answers")]


def test_same_key_in_order_different_keys_in_parallel() -> None:
    batch = [inbound(0, i, b"car-a" if i % 2 == 0 else b"car-b", f"e{i}") for i in range(8)]
    inference, sink = TimedInference(), InMemorySink()
    worker = worker_for(inference, InMemorySource([batch]), sink, max_in_flight=8)
    worker.run(max_records=8, idle_timeout_s=1)
    for key_ids in (["e0", "e2", "e4", "e6"], ["e1", "e3", "e5", "e7"]):
        spans = [inference.spans[e] for e in key_ids]
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # one by one
        got = [e for e in answered_ids(sink) if e in key_ids]
        assert got == key_ids  # answers of a key in request order
    assert inference.most_at_once == 2  # the two keys ran side by side
    assert {r.key for r in sink.acked} == {b"car-a", b"car-b"}  # answers keep their key


@pytest.mark.parametrize(("ordering", "most"), [("none", 6), ("partition", 1)])
def test_ordering_options(ordering: str, most: int) -> None:
    batch = [inbound(0, i, b"same", f"e{i}") for i in range(6)]
    inference, sink = TimedInference(), InMemorySink()
    worker = worker_for(
        inference, InMemorySource([batch]), sink, ordering=ordering, max_in_flight=6
    )
    worker.run(max_records=6, idle_timeout_s=1)
    assert inference.most_at_once == most
    assert sorted(answered_ids(sink)) == sorted(f"e{i}" for i in range(6))


class WatchedSource(InMemorySource):
    """Checks, at every commit, that nothing below it is unfinished (not yet acked)."""

    def __init__(self, batches: list[list[InboundRecord]], sink: InMemorySink) -> None:
        super().__init__(batches)
        self.sink = sink
        self.all = [r for b in batches for r in b]
        self.commits: list[dict[Partition, int]] = []

    def commit(self, offsets: Any) -> None:
        acked = {json.loads(r.value)["event_id"] for r in self.sink.acked}
        for partition, offset in offsets.items():
            below = [r for r in self.all if (r.topic, r.partition) == partition]
            for record in below:
                if record.offset < offset:
                    assert json.loads(record.value)["event_id"] in acked, (offset, record.offset)
        self.commits.append(dict(offsets))
        super().commit(offsets)


def test_a_slow_record_holds_its_partitions_commit_not_the_others() -> None:
    batch = [inbound(i % 2, i // 2, f"k{i}".encode(), f"e{i}") for i in range(10)]
    inference = TimedInference(delay_s=0.01, slow={"e0": 0.6})  # partition 0, offset 0
    sink = InMemorySink()
    source = WatchedSource([batch], sink)
    worker = worker_for(inference, source, sink, max_in_flight=4)
    worker.run(max_records=10, idle_timeout_s=1)
    p0, p1 = Partition(TOPIC, 0), Partition(TOPIC, 1)
    # while e0 ran, partition 1 was committed to its end and partition 0 not past 0
    assert any(c.get(p1) == 5 and p0 not in c for c in source.commits)
    assert source.committed == {p0: 5, p1: 5}
    assert len(answered_ids(sink)) == 10


def test_a_full_buffer_pauses_the_partitions_and_everything_is_still_answered() -> None:
    batches = [
        [inbound(0, i * 5 + j, f"k{j}".encode(), f"e{i * 5 + j}") for j in range(5)]
        for i in range(6)
    ]
    inference, sink = TimedInference(delay_s=0.02), InMemorySink()
    source = InMemorySource(batches)
    worker = worker_for(inference, source, sink, max_in_flight=2, max_buffered=4)
    worker.run(max_records=30, idle_timeout_s=1)
    assert source.pauses >= 1 and not source.paused  # paused, then resumed
    assert sorted(answered_ids(sink)) == sorted(f"e{i}" for i in range(30))
    assert source.committed == {Partition(TOPIC, 0): 30}


def test_revoked_partitions_are_committed_as_far_as_finished_and_then_let_go() -> None:
    first = [inbound(p, o, f"k{p}".encode(), f"p{p}o{o}") for o in range(4) for p in (0, 1)]
    inference, sink = TimedInference(delay_s=0.05), InMemorySink()
    source = InMemorySource([first])
    worker = worker_for(inference, source, sink, max_in_flight=2)
    worker.run(max_records=2, idle_timeout_s=1)  # one record per partition done
    source.revoke({Partition(TOPIC, 1)})
    worker.run(max_records=8, idle_timeout_s=0.5)
    answered = answered_ids(sink)
    assert [e for e in answered if e.startswith("p1")] == ["p1o0"]  # the rest left with it
    assert [e for e in answered if e.startswith("p0")] == [f"p0o{o}" for o in range(4)]
    assert source.committed == {Partition(TOPIC, 0): 4, Partition(TOPIC, 1): 1}


def two_model_worker(
    inference: TimedInference, source: InMemorySource, sink: InMemorySink, **settings: Any
) -> Worker:
    """medical/vqa goes to the model ``slow``, medical/choice to ``fast``."""
    worker = worker_for(inference, source, sink, **settings)
    routes = worker.pipeline.settings.routing.routes
    routes["medical/vqa"] = Route(triton_model="slow", checkpoint="slow-checkpoint")
    routes["medical/choice"] = Route(triton_model="fast", checkpoint="fast-checkpoint")
    return worker


def slow_and_fast(slow: int, fast: int) -> list[InboundRecord]:
    """``slow`` vqa records first, then ``fast`` choice records, each with its own key."""
    records = [
        InboundRecord(TOPIC, 0, i, f"s{i}".encode(), request(f"s{i}", "medical.vqa"))
        for i in range(slow)
    ]
    records += [
        InboundRecord(TOPIC, 1, i, f"f{i}".encode(), request(f"f{i}", "medical.choice"))
        for i in range(fast)
    ]
    return records


@pytest.mark.parametrize("budget_from", ["triton", "settings"])
def test_a_slow_model_fills_its_own_budget_never_the_others(budget_from: str) -> None:
    inference, sink = (
        TimedInference(delay_s=0.01, slow={f"s{i}": 0.3 for i in range(8)}),
        InMemorySink(),
    )
    extra: dict[str, Any] = {}
    if budget_from == "triton":
        inference.capacities = {"slow": 2}  # what Triton says it runs at once
    else:
        extra["model_in_flight"] = {"slow": 2}
    worker = two_model_worker(
        inference, InMemorySource([slow_and_fast(8, 8)]), sink, max_in_flight=8, **extra
    )
    worker.run(max_records=16, idle_timeout_s=1)
    assert inference.most_by_model["slow"] == 2  # never more than its budget...
    assert inference.most_at_once >= 3  # ... while the fast model used the other slots
    first_slow_done = min(inference.spans[f"s{i}"][1] for i in range(8))
    assert max(inference.spans[f"f{i}"][1] for i in range(8)) < first_slow_done
    assert len(answered_ids(sink)) == 16


def test_back_pressure_pauses_only_the_partitions_feeding_the_full_model() -> None:
    records = slow_and_fast(12, 12)
    batches = [records[i::6] for i in range(6)]  # slow and fast records in every poll
    inference = TimedInference(delay_s=0.01, slow={f"s{i}": 0.1 for i in range(12)})
    inference.capacities = {"slow": 1}
    sink, source = InMemorySink(), InMemorySource(batches)
    worker = two_model_worker(inference, source, sink, max_in_flight=4, max_buffered=3)
    worker.run(max_records=24, idle_timeout_s=1)
    assert source.ever_paused == {Partition(TOPIC, 0)}  # the slow model's partition only
    assert not source.paused
    assert sorted(answered_ids(sink)) == sorted(
        [f"s{i}" for i in range(12)] + [f"f{i}" for i in range(12)]
    )
    assert source.committed == {Partition(TOPIC, 0): 12, Partition(TOPIC, 1): 12}
