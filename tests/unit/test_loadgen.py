"""The load generator's pieces: what it sends, how it counts, what it reports."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pocketvl.adapters.claim_check import image_stores
from pocketvl.domains.compose import prepare_inputs
from pocketvl.errors import PocketvlError
from pocketvl.loadgen import report
from pocketvl.loadgen.measure import Collector, figures, scale_out
from pocketvl.loadgen.plan import (
    LoadPlan,
    build,
    even_keys,
    load_examples,
    parse_mix,
    partition_of,
    unique_variant,
)
from pocketvl.loadgen.suite import select
from pocketvl.settings import KafkaSettings, Settings
from pocketvl.worker.codec import decode_request
from pocketvl.worker.envelope import InboundRecord
from pocketvl.worker.images import ImageFetcher
from tests.conftest import REPO

EXAMPLES = load_examples(REPO / "schemas" / "examples")


def composed(request: dict[str, Any]) -> tuple[list[bytes], str]:
    settings = Settings()
    decoded = decode_request(json.dumps(request).encode(), str(request["domain"]))
    fetcher = ImageFetcher(settings.limits, image_stores(settings.image_store))
    inputs = prepare_inputs(decoded, fetcher.load_all(decoded.images), settings.limits)
    return [image.tobytes() for image in inputs.images], inputs.question


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_a_unique_variant_has_the_same_pixels_and_its_own_cache_entry(name: str) -> None:
    example = EXAMPLES[name]
    variant = unique_variant(example, "u1")
    assert variant != example and variant["task"]["type"] == example["task"]["type"]
    images, question = composed(example)
    v_images, v_question = composed(variant)
    assert v_images == images  # the model sees the same pixels...
    # ... but the cache key differs: in the task text or in the first image's bytes
    assert v_question != question or variant["images"][0] != example["images"][0]


def test_repeats_share_content_under_new_event_ids() -> None:
    mix = {"remote_sensing.vqa": 1.0, "medical.vqa": 1.0}
    planned = build(LoadPlan(200, None, mix, repeat_fraction=0.5, keys=8), EXAMPLES, "p")
    bodies = [json.loads(p.record.value) for p in planned]
    assert len({b["event_id"] for b in bodies}) == 200
    repeats = [b for p, b in zip(planned, bodies, strict=True) if p.repeat]
    assert 60 < len(repeats) < 140
    fresh_tasks = [
        json.dumps(b["task"]) for p, b in zip(planned, bodies, strict=True) if not p.repeat
    ]
    assert len(set(fresh_tasks)) == len(fresh_tasks)  # every fresh request its own content
    assert {json.dumps(b["task"]) for b in repeats} <= set(fresh_tasks)
    assert {p.record.key for p in planned} == {f"entity-{i}".encode() for i in range(8)}
    assert {p.record.topic for p in planned} == {"p.remote_sensing.requests", "p.medical.requests"}


def test_bad_plans_say_what_to_fix() -> None:
    with pytest.raises(PocketvlError, match=r"no example .medical\.xray."):
        parse_mix("medical.xray=2", list(EXAMPLES))
    with pytest.raises(PocketvlError, match="must be a number"):
        parse_mix("medical.vqa=lots", list(EXAMPLES))
    assert parse_mix("medical.vqa=3, remote_sensing.vqa", list(EXAMPLES)) == {
        "medical.vqa": 3.0,
        "remote_sensing.vqa": 1.0,
    }
    with pytest.raises(PocketvlError, match="--repeats"):
        LoadPlan(10, None, {"medical.vqa": 1.0}, repeat_fraction=1.5)


def arrived(collector: Collector, topic: str, event_id: str, at_s: float, **body: Any) -> None:
    value = json.dumps({"event_id": event_id, **body}).encode()
    headers = [("dlq.reason", b"image_undecodable")] if topic.endswith(".dlq") else []
    collector.arrive(InboundRecord(topic, 0, 0, None, value, headers, int(at_s * 1000)))


def test_figures_count_outcomes_latency_and_duplicates() -> None:
    collector = Collector(KafkaSettings(topic_prefix="p"), ["medical"])
    sent = {f"e{i}": 100.0 + i * 0.1 for i in range(10)}
    for i in range(8):  # answered 50 ms + i*10 ms after sending; e0 twice
        arrived(
            collector,
            "p.medical.answers",
            f"e{i}",
            sent[f"e{i}"] + 0.05 + i * 0.01,
            cache="hit" if i < 2 else "miss",
        )
    arrived(collector, "p.medical.answers", "e0", 105.0, cache="hit")
    arrived(collector, "p.medical.dlq", "e8", 101.5)
    result = figures(sent, collector)
    assert (result.answered, result.dead_lettered, result.lost, result.duplicates) == (8, 1, 1, 1)
    assert result.dlq_reasons == {"image_undecodable": 1}
    assert result.latency_ms["p50"] == pytest.approx(90, abs=1)  # 50..120 ms, and 700 ms
    assert result.latency_ms["max"] == pytest.approx(700, abs=1)  # the DLQ record
    assert result.cache_hit_ratio == pytest.approx(2 / 8)
    assert sum(b["per_s"] for b in result.timeline) == 9  # one-second bins


def test_the_report_is_written_as_json_markdown_and_a_plot(tmp_path: Path) -> None:
    collector = Collector(KafkaSettings(topic_prefix="p"), ["medical"])
    sent = {f"e{i}": 100.0 + i * 0.01 for i in range(50)}
    for event_id, at in sent.items():
        arrived(collector, "p.medical.answers", event_id, at + 0.2, cache="miss")
    worker = figures(sent, collector).__dict__ | {"cpu_ms_per_request": 2.0, "average_batch": 4.0}
    scenario = {
        "name": "echo",
        "title": "echo",
        "model": "echo",
        "worker": worker,
        "direct": {"throughput": 500.0, "average_batch": 8.0},
        "worker_vs_direct": 0.4,
    }
    metrics = {"samples": [{"t": 1.0, "worker": "echo/0", "values": {"pocketvl_ready": 1.0}}]}
    metrics |= {"phases": [], "events": []}
    run = {
        "started": "now",
        "machine": report.machine(),
        "scenarios": [scenario],
        "decode": {},
        "metrics": metrics,
    }
    paths = report.write(run, tmp_path)
    assert [p.name for p in paths] == [
        "streaming.json",
        "streaming.md",
        "streaming.png",
        "metrics.json",
        "metrics.png",
    ]
    written = json.loads(paths[0].read_text())
    assert written["scenarios"][0]["worker"]["answered"] == 50 and "metrics" not in written
    assert json.loads(paths[3].read_text()) == metrics  # the raw samples, apart
    assert paths[4].read_bytes().startswith(b"\x89PNG")
    assert "| `echo` | 500.0 req/s, batch 8.0 |" in paths[1].read_text()
    assert "(metrics.png)" in paths[1].read_text()
    assert paths[2].read_bytes().startswith(b"\x89PNG")


def test_even_keys_give_every_partition_the_same_share_of_the_requests() -> None:
    keys = even_keys(8, 3)
    assert len(set(keys)) == 24
    # in turn: partition 0, 1, ... 7, 0, 1, ... as kafka-python's partitioner places them
    assert [partition_of(k, 8) for k in keys] == list(range(8)) * 3
    plan = LoadPlan(800, None, {"remote_sensing.vqa": 1.0}, keys=64, even_partitions=8)
    placed = Counter(partition_of(p.record.key or b"", 8) for p in build(plan, EXAMPLES, "p"))
    assert sorted(placed.values()) == [100] * 8
    with pytest.raises(PocketvlError, match="multiple"):
        LoadPlan(10, None, {"medical.vqa": 1.0}, keys=10, even_partitions=8)


def test_partition_of_agrees_with_the_java_client() -> None:
    # murmur2 of the key, positive, modulo the count: Kafka's documented default
    from kafka.partitioner.default import murmur2

    assert partition_of(b"entity-0", 8) == (murmur2(b"entity-0") & 0x7FFFFFFF) % 8
    assert {partition_of(f"k{i}".encode(), 3) for i in range(50)} == {0, 1, 2}


def test_the_scale_out_group_runs_one_process_then_two_on_the_same_model() -> None:
    chosen = select(["scale-out", "outage", "scale-out-2"])
    assert [s.name for s in chosen] == ["scale-out-1", "scale-out-2", "outage"]
    one, two = chosen[:2]
    assert (one.workers, two.workers) == (1, 2) and one.model == two.model == "fixed_latency"
    assert one.partitions == two.partitions >= 2 * two.workers  # partitions for both
    assert one.max_in_flight == two.max_in_flight
    assert one.plan.rate is None  # a backlog: as fast as the workers go
    assert one.plan.even_partitions == one.partitions
    assert two.plan.requests == 2 * one.plan.requests  # about as long a run each
    assert two.scaled(0.1).workers == 2
    with pytest.raises(PocketvlError, match="no scenario 'nope'"):
        select(["nope"])


def scenario_result(name: str, workers: int, throughput: float) -> dict[str, Any]:
    return {
        "name": name,
        "workers": workers,
        "worker": {
            "throughput": throughput,
            "average_batch": 4.0 * workers,
            "cpu_ms_per_request": 5.0,
            "max_in_flight": 8,
            "processed_by_worker": [600.0 / workers] * workers,
            "lost": 0,
        },
    }


def test_scale_out_compares_each_process_count_with_one() -> None:
    scenarios = [
        scenario_result("outage", 1, 20.0),
        scenario_result("scale-out-2", 2, 74.0),
        scenario_result("scale-out-1", 1, 40.0),
    ]
    pair = scale_out(scenarios)
    assert pair is not None
    assert pair["ratio"] == pytest.approx(1.85)
    assert [(r["workers"], r["ratio"]) for r in pair["rows"]] == [(1, 1.0), (2, 1.85)]
    table = "\n".join(report.scale_out_table(pair))
    assert "| 2 | 74.0 | 1.85× | 8.0 | 5.00 | 300 / 300 | 0 | ≥ 1.8 × one process |" in table
    assert scale_out(scenarios[:2]) is None  # no one-process baseline: no ratio
    assert report.scale_out_table(None) == []
