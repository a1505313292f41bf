"""Kafka in -> worker -> Redis / Triton -> Kafka out, on the real local stack."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from pocketvl.adapters.triton_client import TritonInference
from pocketvl.devstack.paths import TINY_MODELS
from pocketvl.service import build_worker
from pocketvl.settings import Settings
from tests.integration.conftest import answers, publish, request
from tests.support.examples import example

pytestmark = pytest.mark.integration
MODEL = TINY_MODELS[0]


def run_worker(settings: Settings, count: int) -> None:
    worker = build_worker(settings)
    try:
        stats = worker.run(max_records=count, idle_timeout_s=60)
    finally:
        worker.close()
    assert stats.processed == count


def test_n_requests_in_exactly_n_answered_then_repeat_served_from_redis(settings: Settings) -> None:
    ids = {}
    for domain in ("driving", "remote_sensing", "medical"):
        ids[domain] = [f"{domain}-{i}" for i in range(3)]
        publish(settings, domain, [request(example(domain), e) for e in ids[domain]])
    all_ids = [e for domain_ids in ids.values() for e in domain_ids]
    triton = TritonInference(settings.triton)
    before = triton.inference_count(MODEL)

    run_worker(settings, 9)
    first = [json.loads(r.value) for r in answers(settings, 9)]
    assert sorted(a["event_id"] for a in first) == sorted(all_ids)
    assert {a["cache"] for a in first} == {"miss", "hit"}  # 3 identical per domain: 1 miss each
    assert sum(a["cache"] == "miss" for a in first) == 3
    after_first = triton.inference_count(MODEL)
    assert after_first - before == 3
    for a in first:
        assert a["model"]["triton_model"] == MODEL
        assert a["tokens"]["prompt"] > 256

    # the same batch again, new event ids: all from Redis, Triton's statistics do not grow
    for domain in ("driving", "remote_sensing", "medical"):
        publish(settings, domain, [request(example(domain), f"again-{e}") for e in ids[domain]])
    run_worker(settings, 9)
    every = [json.loads(r.value) for r in answers(settings, 18)]
    second = [a for a in every if a["event_id"].startswith("again-")]
    assert sorted(a["event_id"] for a in second) == sorted(f"again-{e}" for e in all_ids)
    assert {a["cache"] for a in second} == {"hit"}
    assert triton.inference_count(MODEL) == after_first
    triton.close()


def test_malformed_messages_go_to_the_dlq_and_the_worker_keeps_going(settings: Settings) -> None:
    good = example("remote_sensing")
    bad = {
        "invalid_json": b"\x00\x01 not json",
        "schema_invalid": request(good, "s1", images=[]),
        "unknown_task": request(good, "s2", task={"type": "segment"}),
        "unknown_domain": request(good, "s3", domain="astronomy"),
        "domain_mismatch": request(example("medical"), "s4"),
        "image_undecodable": request(
            good,
            "s5",
            images=[{"kind": "inline", "media_type": "image/png", "data_b64": "iVBORw0KGgo="}],
        ),
    }
    publish(
        settings, "remote_sensing", [*bad.values(), request(good, "still-alive")], key=b"tile-9"
    )
    run_worker(settings, len(bad) + 1)

    dlq = answers(settings, len(bad), kind="dlq")
    assert [dict(r.headers)["dlq.reason"].decode() for r in dlq] == list(bad)
    assert [r.value for r in dlq] == list(bad.values())  # original bytes, unchanged
    assert {r.key for r in dlq} == {b"tile-9"}
    assert all(dict(r.headers)["x-test"] == b"yes" for r in dlq)
    alive = answers(settings, 1)
    assert json.loads(alive[0].value)["event_id"] == "still-alive"


def test_offsets_are_committed_so_a_restarted_worker_does_not_reprocess(settings: Settings) -> None:
    publish(settings, "medical", [request(example("medical"), f"m{i}") for i in range(2)])
    run_worker(settings, 2)
    publish(settings, "medical", [request(example("medical"), "m-late")])
    run_worker(settings, 1)  # a new consumer in the same group starts after the committed offsets
    got = [json.loads(r.value)["event_id"] for r in answers(settings, 3)]
    assert got == ["m0", "m1", "m-late"]


def test_triton_rejects_a_bad_image_for_that_request_only(settings: Settings) -> None:
    import numpy as np

    from pocketvl.errors import InferenceError, InferenceUnavailable

    triton = TritonInference(settings.triton)
    with pytest.raises(InferenceError) as info:
        triton.generate(MODEL, [np.zeros((0, 5, 3), np.uint8)], "Q", 4, 1)
    assert not isinstance(info.value, InferenceUnavailable)
    assert "ImageTensorError" in str(info.value) and "empty image" in str(info.value)
    with pytest.raises(InferenceUnavailable, match=r"no_such_model"):
        triton.model_version("no_such_model")
    triton.close()


def test_worker_stops_on_request(settings: Settings) -> None:
    worker = build_worker(settings)
    stop = threading.Event()
    stop.set()
    try:
        assert worker.run(stop).processed == 0
    finally:
        worker.close()


def test_every_example_and_a_video_clip_get_schema_valid_answers(settings: Settings) -> None:
    import jsonschema

    from pocketvl.contracts.common import inline_image as inline
    from pocketvl.contracts.export import schemas
    from pocketvl.contracts.messages import Answer
    from tests.support.examples import EXAMPLES
    from tests.support.media_samples import video_bytes

    sent = {}
    for path in EXAMPLES:
        value = json.loads(path.read_text())
        sent[value["event_id"]] = (value["domain"], value)
    clip = inline(video_bytes("mp4", "h264", frames=12, size=(160, 96)), "video/mp4")
    video = {**example("driving.bdd"), "event_id": "bdd-video", "images": [clip]}
    video["decode"] = {"video_frames": 4}
    sent["bdd-video"] = ("driving", video)
    for event_id, (domain, value) in sent.items():
        publish(settings, domain, [request(value, event_id)])
    run_worker(settings, len(sent))

    got = {
        json.loads(r.value)["event_id"]: json.loads(r.value) for r in answers(settings, len(sent))
    }
    assert set(got) == set(sent)  # nothing dead-lettered: DICOM, TIFF, frames and video all decode
    for answer in got.values():
        jsonschema.validate(answer, schemas()["answer.schema.json"])
        Answer.model_validate(answer)
        assert answer["status"] == "ok" or answer["answer"] == {
            "kind": "text",
            "text": answer["raw_text"],
        }
    # the clip's 4 sampled frames, one tile each: 4 x 256 image tokens plus the prompt
    assert 4 * 256 < got["bdd-video"]["tokens"]["prompt"] < 5 * 256


def test_a_redelivered_event_gets_one_answer(settings: Settings) -> None:
    value = request(example("medical"), "only-once")
    publish(settings, "medical", [value, value])  # a producer retry: same event twice
    worker = build_worker(settings)
    try:
        stats = worker.run(max_records=2, idle_timeout_s=60)
        assert (stats.processed, stats.duplicates) == (2, 1)
        publish(settings, "medical", [value])  # redelivered after the answer was acked
        stats = worker.run(max_records=3, idle_timeout_s=60)
        assert stats.duplicates == 2
    finally:
        worker.close()
    from pocketvl.adapters.kafka_broker import read_records
    from pocketvl.worker.envelope import topic

    answers_topic = topic(settings.kafka.topic_prefix, "medical", "answers")
    got = read_records(settings.kafka, [answers_topic], None, timeout_s=3)  # all there is
    assert [json.loads(r.value)["event_id"] for r in got] == ["only-once"]


def test_poison_records_are_dead_lettered_on_the_real_broker(settings: Settings) -> None:
    """A bug on one record, JSON deep enough to break the parser, and a value too large to
    copy into the DLQ: each is dead-lettered, the records after them are answered, and the
    offsets move past all of them."""
    small = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"max_message_bytes": 65_536}),
            "limits": settings.limits.model_copy(update={"max_inline_image_bytes": 65_536}),
        }
    )
    huge = b"{" + b" " * 200_000  # over the worker's producer cap (64 KiB + DLQ headroom)
    values = [
        request(example("medical"), "before"),
        request(example("medical"), "bug"),
        b"[" * 5000 + b"]" * 5000,
        huge,
        request(example("medical"), "after"),
    ]
    publish(settings, "medical", values)
    worker = build_worker(small)
    calls: list[int] = []
    original = worker.pipeline.images.load_all

    def buggy(images: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:  # the second request: a bug in the fetch stage
            raise RuntimeError("a bug")
        return original(images)

    worker.pipeline.images.load_all = buggy  # type: ignore[method-assign]
    try:
        stats = worker.run(max_records=len(values), idle_timeout_s=60)
    finally:
        worker.close()
    assert stats.processed == len(values)
    got = [json.loads(r.value)["event_id"] for r in answers(settings, 2)]
    assert got == ["before", "after"]
    dlq = answers(settings, 3, kind="dlq")
    headers = [{k: v.decode() for k, v in r.headers} for r in dlq]
    assert [h["dlq.reason"] for h in headers] == [
        "internal_error",
        "json_too_deep",
        "message_too_large",
    ]
    assert headers[0]["dlq.exception.message"] == "RuntimeError at stage fetch"
    assert [r.value for r in dlq[:2]] == values[1:3]
    assert dlq[2].value == b"" and headers[2]["dlq.original.offset"] == "3"
    # a new group member starts after all five: nothing is redelivered
    publish(settings, "medical", [request(example("medical"), "late")])
    run_worker(settings, 1)
    assert json.loads(answers(settings, 3)[2].value)["event_id"] == "late"
