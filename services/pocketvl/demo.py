"""``make demo``: the main job end to end on the embedded stack and the tiny model.

Starts the broker, Redis and Triton; sends one example request per domain; answers them;
sends the same requests again (answered from Redis); sends one malformed record (to the DLQ);
prints what came out; stops everything.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pocketvl import paths
from pocketvl.envelope import OutboundRecord, cloudevent_headers, topic
from pocketvl.messaging import make_producer, read_records, send
from pocketvl.settings import KafkaSettings, RedisSettings, Settings, TritonSettings
from pocketvl.stack import LocalStack, StackState
from pocketvl.worker.runtime import build_worker

TEXT_WIDTH = 34


def _examples() -> list[dict[str, Any]]:
    directory = paths.model_repository().parent / "schemas" / "examples"
    return [json.loads(p.read_text()) for p in sorted(directory.glob("*.json"))]


def _publish(settings: Settings, requests: list[dict[str, Any]], suffix: str) -> list[str]:
    producer = make_producer(settings.kafka)
    ids, futures = [], []
    for example in requests:
        request = {**example, "event_id": f"{example['event_id']}-{suffix}"}
        ids.append(request["event_id"])
        headers = cloudevent_headers(request["event_id"], "/pocketvl/demo", "pocketvl.demo.v1")
        headers.append(("x-demo-round", suffix.encode()))
        record = OutboundRecord(
            topic(settings.kafka.topic_prefix, request["domain"], "requests"),
            f"demo-{request['domain']}".encode(),
            json.dumps(request).encode(),
            headers,
        )
        futures.append(send(producer, record))
    for future in futures:
        future.get(timeout=30)
    producer.close()
    return ids


def _print_answers(settings: Settings, ids: list[str]) -> None:
    topics = [
        topic(settings.kafka.topic_prefix, d, "answers")
        for d in ("driving", "remote_sensing", "medical")
    ]
    answers = {}
    for record in read_records(settings.kafka, topics, None, timeout_s=3.0):
        answer = json.loads(record.value)
        answers[answer["event_id"]] = answer
    header = (
        f"{'domain':15} {'task':8} {'event_id':24} {'triton model (checkpoint)':45} "
        f"{'status':8} {'cache':5} {'ms':>6}  answer"
    )
    print(header)
    print("-" * len(header))
    for event_id in ids:
        a = answers[event_id]
        model = f"{a['model']['triton_model']} ({a['model']['checkpoint']})"
        text = json.dumps(a["answer"]["text"], ensure_ascii=False)[:TEXT_WIDTH]
        print(
            f"{a['domain']:15} {a['task']['type']:8} {event_id:24} {model:45} {a['status']:8} "
            f"{a['cache']:5} {a['timings']['total_ms']:6.1f}  {text}"
        )


def _settings_for(state: StackState) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=state.kafka_bootstrap, session_timeout_ms=6000),
        redis=RedisSettings(url=state.redis_url),
        triton=TritonSettings(url=state.triton_url),
    )


def _send_malformed(settings: Settings) -> None:
    producer = make_producer(settings.kafka)
    bad = OutboundRecord(
        topic(settings.kafka.topic_prefix, "medical", "requests"), b"demo", b"{not json", []
    )
    send(producer, bad).get(timeout=30)
    producer.close()


def run_demo() -> int:
    started = time.monotonic()
    print(
        "pocketvl demo: starting the embedded stack (tansu broker, redis-server, tritonserver)..."
    )
    run_dir = paths.home() / "demo"
    stack = LocalStack(
        run_dir, paths.model_repository(), paths.ensure_tiny_checkpoints(), paths.TINY_MODELS
    )
    with stack as state:
        print(f"  ready in {time.monotonic() - started:.1f} s: {state.env()}")
        settings = _settings_for(state)
        worker = build_worker(settings)
        examples = _examples()
        try:
            for round_name, label in (("1", "first requests"), ("2", "the same requests again")):
                ids = _publish(settings, examples, round_name)
                worker.run(max_records=len(ids) * int(round_name))
                print(f"\n== {label} ==")
                _print_answers(settings, ids)
            _send_malformed(settings)
            worker.run(max_records=worker.stats.processed + 1)
            dlq = read_records(
                settings.kafka, [topic(settings.kafka.topic_prefix, "medical", "dlq")], 1, 5.0
            )
            reasons = [dict(r.headers).get("dlq.reason", b"?").decode() for r in dlq]
            print(
                f"\n== a malformed record ==\n  went to pocketvl.medical.dlq with reason {reasons}"
            )
        finally:
            worker.close()
    print(
        "\nNOTE: answers come from a tiny random-weight checkpoint generated locally; they are "
        "meaningless.\n      Serve a real Mini-InternVL2 DA checkpoint by configuring its "
        "directory (README: Configuration)."
    )
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0
