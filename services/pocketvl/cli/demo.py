"""``make demo``: the main job end to end on the embedded stack and the tiny model.

Starts the broker, Redis and Triton; sends one example request per domain; answers them;
sends the same requests again (answered from Redis); sends one malformed record (to the DLQ);
prints what came out; stops everything.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pocketvl.adapters.kafka_broker import publish, read_records
from pocketvl.devstack import paths
from pocketvl.devstack.stack import LocalStack, StackState
from pocketvl.domains.registry import REGISTRY
from pocketvl.service import build_worker
from pocketvl.settings import KafkaSettings, RedisSettings, Settings, TritonSettings
from pocketvl.worker.envelope import OutboundRecord, request_record, topic

TEXT_WIDTH = 34


def _examples() -> list[dict[str, Any]]:
    """One example request per registered task, from ``schemas/examples/DOMAIN.TASK.json``."""
    directory = paths.examples_dir()
    return [json.loads((directory / spec.example_file()).read_text()) for spec in REGISTRY]


def _publish(
    settings: Settings, requests: list[dict[str, Any]], suffix: str
) -> list[dict[str, Any]]:
    sent = [{**example, "event_id": f"{example['event_id']}-{suffix}"} for example in requests]
    records = [
        request_record(
            settings.kafka.topic_prefix,
            request,
            f"demo-{request['domain']}".encode(),
            "/pocketvl/demo",
            [("x-demo-round", suffix.encode())],
        )
        for request in sent
    ]
    publish(settings.kafka, records)
    return sent


def _inputs(request: dict[str, Any]) -> str:
    kinds = [i["media_type"].split("/")[-1] for i in request["images"]]
    return f"{len(kinds)}x{kinds[0]}" if len(kinds) > 1 else kinds[0]


def _summary(answer: dict[str, Any]) -> str:
    """The typed answer in a few words (the full JSON is on the answers topic)."""
    typed = answer["answer"]
    kind = typed["kind"]
    if kind == "label":
        return f"label={typed['label']}"
    if kind == "yes_no":
        return f"yes_no={typed['value']}"
    if kind == "choice":
        return f"choice={typed['letter']} ({typed['option']})"
    if kind == "boxes":
        return f"{len(typed['boxes'])} box(es) " + " ".join(
            f"[{b['x1']:.0f},{b['y1']:.0f},{b['x2']:.0f},{b['y2']:.0f}]" for b in typed["boxes"][:2]
        )
    if kind == "bdd":
        parts = [
            f"{k}={typed[k]['value']}{typed[k]['unit']}"
            for k in ("speed", "turning_angle")
            if typed[k]
        ]
        return " ".join(parts) or str(typed["action"] or typed["justification"])
    if kind == "drivelm":
        return f"{len(typed['objects'])} object ref(s); " + json.dumps(typed["text"])[:TEXT_WIDTH]
    return json.dumps(typed["text"], ensure_ascii=False)[:TEXT_WIDTH]


def _print_answers(settings: Settings, requests: list[dict[str, Any]]) -> None:
    topics = [topic(settings.kafka.topic_prefix, d, "answers") for d in REGISTRY.domains]
    answers = {}
    for record in read_records(settings.kafka, topics, None, timeout_s=3.0):
        answer = json.loads(record.value)
        answers[answer["event_id"]] = answer
    header = (
        f"{'domain':15} {'task':9} {'input':7} {'triton model':22} "
        f"{'status':8} {'cache':5} {'ms':>6}  answer (typed)"
    )
    print(header)
    print("-" * (len(header) + 30))
    for request in requests:
        a = answers[request["event_id"]]
        print(
            f"{a['domain']:15} {a['task']['type']:9} {_inputs(request):7} "
            f"{a['model']['triton_model']:22} {a['status']:8} {a['cache']:5} "
            f"{a['timings']['total_ms']:6.1f}  {_summary(a)}"
        )


def _show_parsers(settings: Settings, examples: list[dict[str, Any]]) -> None:
    """The parsers on sample answers in the published formats: what a real checkpoint's
    text becomes. Labelled as such: this is not model output."""
    from pocketvl.contracts.messages import REQUEST_ADAPTER
    from pocketvl.domains.compose import prepare_inputs
    from pocketvl.worker.images import ImageFetcher

    print("\n== typed answers: the parsers on sample answers in the published formats ==")
    print("   (not model output: this is what a real DA checkpoint's text turns into)")
    for example in examples:
        request = REQUEST_ADAPTER.validate_python(example)
        loaded = ImageFetcher(settings.limits, {}).load_all(request.images)  # inline only
        context = prepare_inputs(request, loaded, settings.limits).context
        text = REGISTRY.for_task(request.task).published_answer
        status, typed = REGISTRY.parse(request.task, text, context)
        summary = _summary({"answer": typed.model_dump(mode="json")})
        print(f"  {request.domain:15} {request.task.type:9} {status:8} {text[:44]:46} -> {summary}")


def _settings_for(state: StackState) -> Settings:
    return Settings(
        mode="dev",  # the tiny random-weight models over plain loopback links
        kafka=KafkaSettings(bootstrap_servers=state.kafka_bootstrap, session_timeout_ms=6000),
        redis=RedisSettings(url=state.redis_url),
        triton=TritonSettings(url=state.triton_url),
    )


def _send_malformed(settings: Settings) -> None:
    bad = OutboundRecord(
        topic(settings.kafka.topic_prefix, "medical", "requests"), b"demo", b"{not json", []
    )
    publish(settings.kafka, [bad])


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
                sent = _publish(settings, examples, round_name)
                worker.run(max_records=len(sent) * int(round_name))
                print(f"\n== {label} ==")
                _print_answers(settings, sent)
            _send_malformed(settings)
            worker.run(max_records=worker.stats.processed + 1)
            dlq = read_records(
                settings.kafka, [topic(settings.kafka.topic_prefix, "medical", "dlq")], 1, 5.0
            )
            reasons = [dict(r.headers).get("dlq.reason", b"?").decode() for r in dlq]
            print(
                f"\n== a malformed record ==\n  went to pocketvl.medical.dlq with reason {reasons}"
            )
            _show_parsers(settings, examples)
        finally:
            worker.close()
    print(
        "\nNOTE: answers come from a tiny random-weight checkpoint generated locally; they are "
        "meaningless.\n      Serve a real Mini-InternVL2 DA checkpoint by configuring its "
        "directory (README: Configuration)."
    )
    print(f"done in {time.monotonic() - started:.1f} s")
    return 0
