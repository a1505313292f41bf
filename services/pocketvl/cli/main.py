"""``pocketvl``: the command line. Each command prints what to fix when it cannot proceed."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from pocketvl.cli.bench import add_bench_parser
from pocketvl.cli.dlq import add_dlq_parser, dlq_command
from pocketvl.cli.extras import require_extra
from pocketvl.cli.models import add_models_parser, cmd_models
from pocketvl.devstack import paths
from pocketvl.domains.registry import REGISTRY, Registry
from pocketvl.domains.tables import tasks_table
from pocketvl.errors import PocketvlError, describe_errors


def _settings(use_stack: bool) -> Any:
    from pocketvl.devstack.stack import StackState
    from pocketvl.settings import Settings

    if use_stack:
        os.environ.update(StackState.load(paths.home() / "stack").env())
    try:
        return Settings()
    except ValidationError as exc:
        # Messages only: pydantic's own text quotes the input, which may hold a secret.
        problems = describe_errors(exc, shown=10).replace("; ", "\n  ")
        raise PocketvlError(f"invalid settings (POCKETVL_* environment):\n  {problems}") from None


def cmd_stack(args: argparse.Namespace) -> int:
    from pocketvl.devstack.stack import (
        LocalStack,
        StackState,
        kill_service,
        start_service,
        status,
        stop_all,
    )

    run_dir = paths.home() / "stack"
    if args.action == "up":
        require_extra("devstack", "stack up")
        require_extra("serving", "stack up")  # it builds the tiny checkpoints
        if (run_dir / "stack.json").exists() and any(status(StackState.load(run_dir)).values()):
            raise PocketvlError("a local stack is already running: `pocketvl stack down` first")
        stack = LocalStack(
            run_dir,
            paths.model_repository(),
            paths.ensure_tiny_checkpoints(),
            paths.TINY_MODELS,
            triton_traces=args.triton_traces,
        )
        state = stack.up()
        print(f"local stack up (logs in {run_dir}); use --stack, or export:")
    else:
        state = StackState.load(run_dir)
    if args.action == "down":
        stop_all(state)
        print("local stack stopped")
        return 0
    if args.action in ("stop", "start"):
        if args.component is None:
            raise PocketvlError(f"stack {args.action} needs a component: kafka, redis or triton")
        if args.action == "stop":
            kill_service(state, args.component)
            print(f"{args.component} killed (SIGKILL, with everything it started)")
        else:
            start_service(state, args.component)
            print(f"{args.component} started again on port {state.services[args.component].port}")
        return 0
    if args.action == "status":
        for name, alive in status(state).items():
            record = state.services[name]
            print(f"{name:7} {'up' if alive else 'DOWN':5} pid {record.pid} port {record.port}")
        return 0 if all(status(state).values()) else 1
    for key, value in state.env().items():
        print(f"export {key}={value}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from opentelemetry import trace

    from pocketvl.service import build_observed_worker, refuse_unsafe_start
    from pocketvl.telemetry import otlp_tracer_provider

    settings = _settings(args.stack)
    if args.stack:  # the local stack serves the tiny models over plain loopback links
        settings = settings.model_copy(update={"mode": "dev"})
    refuse_unsafe_start(settings)
    spans = otlp_tracer_provider()  # None unless OTEL_EXPORTER_OTLP_* says where to send them
    if spans is not None:
        trace.set_tracer_provider(spans)
    tracer = spans.get_tracer("pocketvl.worker") if spans is not None else None
    worker, ops = build_observed_worker(settings, tracer)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    routes = worker.pipeline.routes
    if routes is not None:  # routing.routes_file: read again on SIGHUP and when it changes
        signal.signal(signal.SIGHUP, lambda *_: routes.request_reload())
        routes.watch()
    try:
        stats = worker.run(stop, max_records=args.max_records, idle_timeout_s=args.idle_timeout)
    finally:
        if routes is not None:
            routes.close()
        worker.close()
        if ops is not None:
            ops.close()
        if spans is not None:
            spans.shutdown()  # flushes what is batched
    print(f"processed {stats.processed} records, {stats.dead_lettered} to the DLQ")
    return 0


def task_from_args(
    registry: Registry, domain: str, task_arg: str | None, question: str | None
) -> dict[str, Any]:
    """``--task`` (a task name, or the task as JSON) and ``--question`` as a task object,
    checked against the domain's tasks in the registry."""
    if task_arg is None and question is None:
        raise PocketvlError("give --question TEXT or --task NAME|JSON")
    if task_arg is None:
        asking = [s for s in registry.tasks(domain) if "question" in s.model.model_fields]
        if not asking:
            raise PocketvlError(f"no {domain} task takes a question; give --task")
        task: dict[str, Any] = {"type": asking[0].name}
    elif task_arg.lstrip().startswith("{"):
        task = json.loads(task_arg)
        if not isinstance(task, dict):
            raise PocketvlError("--task JSON must be an object")
    else:
        task = {"type": task_arg}
    names = [spec.name for spec in registry.tasks(domain)]
    if task.get("type") not in names:
        raise PocketvlError(
            f"{domain} has no task {task.get('type')!r}; use one of {', '.join(names)} "
            "(`pocketvl tasks` lists them)"
        )
    if question is not None:
        task.setdefault("question", question)
    try:
        registry.get(domain, task["type"]).model.model_validate(task)
    except ValidationError as exc:
        raise PocketvlError(f"--task {task['type']}: {describe_errors(exc)}") from exc
    return task


def _request_from_args(args: argparse.Namespace) -> dict[str, Any]:
    from pocketvl.contracts.common import inline_image as inline

    media = {
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".png": "image/png",
        ".webp": "image/webp",
        ".tif": "image/tiff",
        ".tiff": "image/tiff",
        ".dcm": "application/dicom",
        ".mp4": "video/mp4",
        ".webm": "video/webm",
        ".mov": "video/quicktime",
    }
    images: list[dict[str, Any]] = []
    for name in args.image:
        path = Path(name)
        if path.suffix.lower() not in media:
            raise PocketvlError(f"{path}: use one of {', '.join(sorted(media))}")
        if not path.is_file():
            raise PocketvlError(f"{path}: no such file")
        cameras = args.camera or []
        camera = cameras[len(images)] if len(images) < len(cameras) else None
        images.append(inline(path.read_bytes(), media[path.suffix.lower()], camera))
    task = task_from_args(REGISTRY, args.domain, args.task, args.question)
    request = {
        "schema_version": "1",
        "event_id": args.event_id or str(uuid.uuid4()),
        "domain": args.domain,
        "task": task,
        "images": images,
    }
    if args.decode:
        request["decode"] = json.loads(args.decode)
    return request


def cmd_produce(args: argparse.Namespace) -> int:
    from pocketvl.adapters.kafka_broker import ensure_topics, publish
    from pocketvl.contracts.messages import REQUEST_ADAPTER
    from pocketvl.worker.envelope import all_topics, request_record

    request = _request_from_args(args)
    try:
        REQUEST_ADAPTER.validate_python(request)
    except ValidationError as exc:
        raise PocketvlError(f"the request would be rejected:\n{exc}") from exc
    settings = _settings(args.stack)
    ensure_topics(settings.kafka, all_topics(settings.kafka.topic_prefix))
    key = (args.key or args.domain).encode()
    record = request_record(
        settings.kafka.topic_prefix, request, key, f"/pocketvl/cli/{args.domain}"
    )
    publish(settings.kafka, [record])
    print(request["event_id"])
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from pocketvl.adapters.kafka_broker import read_records
    from pocketvl.worker.envelope import topic

    settings = _settings(args.stack)
    kind: Literal["dlq", "answers"] = "dlq" if args.dlq else "answers"
    domains = [args.domain] if args.domain else list(REGISTRY.domains)
    topics = [topic(settings.kafka.topic_prefix, d, kind) for d in domains]
    for record in read_records(settings.kafka, topics, args.count, args.timeout):
        if args.dlq or not args.json:
            headers = {k: v.decode("utf-8", "replace") for k, v in record.headers}
            line = {"topic": record.topic, "offset": record.offset, "headers": headers}
            line["value"] = record.value.decode("utf-8", "replace")
            print(json.dumps(line, ensure_ascii=False))
        else:
            print(record.value.decode())
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    from pocketvl.adapters.kafka_broker import publish, read_records

    settings = _settings(args.stack)
    return dlq_command(
        args,
        settings,
        lambda topics: read_records(settings.kafka, topics, None, args.timeout),
        lambda records: publish(settings.kafka, records),
    )


def cmd_schemas(args: argparse.Namespace) -> int:
    from pocketvl.contracts.export import drifted, export

    directory = Path(args.dir)
    if args.action == "check":
        stale = drifted(directory)
        if stale:
            print(f"schemas out of date: {', '.join(stale)}; run `pocketvl schemas export`")
            return 1
        print("schemas up to date")
        return 0
    for path in export(directory):
        print(f"wrote {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from pocketvl.evaluation.runner import eval_command

    out = Path(args.out) if args.out else None
    return eval_command(_settings(args.stack), Path(args.dataset), out, args.timeout)


def cmd_demo(args: argparse.Namespace) -> int:
    require_extra("devstack", "demo")
    require_extra("serving", "demo")
    from pocketvl.cli.demo import run_demo

    return run_demo()


def cmd_tasks(args: argparse.Namespace) -> int:
    print(tasks_table(REGISTRY), end="")
    return 0


def connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--stack", action="store_true", help="use the stack from `pocketvl stack up`")


def _task_help(registry: Registry) -> str:
    lines = [
        f"{spec.key}: {spec.summary}; fields: {spec.docs.fields.replace('`', '')}"
        for spec in registry
    ]
    return "tasks (--task NAME, or JSON with its fields):\n  " + "\n  ".join(lines)


def _add_produce_parser(sub: Any, registry: Registry) -> None:
    produce = sub.add_parser(
        "produce",
        help="publish one request from image files",
        epilog=_task_help(registry),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    connect(produce)
    produce.add_argument("--domain", required=True, choices=registry.domains)
    produce.add_argument("--image", action="append", required=True, help="repeat for several")
    produce.add_argument("--question", help="the question (tasks with a question field)")
    produce.add_argument(
        "--task", help='task name, or the task as JSON, e.g. \'{"type": "caption"}\''
    )
    produce.add_argument("--camera", action="append", help="drivelm: camera name per --image")
    produce.add_argument("--decode", help="decode options as JSON, e.g. '{\"bands\": [3, 2, 1]}'")
    produce.add_argument("--key", help="Kafka key: the entity (vehicle, tile, study)")
    produce.add_argument("--event-id", help="default: a new UUID")
    produce.set_defaults(func=cmd_produce)


def build_parser(registry: Registry = REGISTRY) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pocketvl", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="embedded local broker, Redis and Triton")
    stack.add_argument("action", choices=["up", "down", "status", "env", "stop", "start"])
    stack.add_argument(
        "component",
        nargs="?",
        choices=["kafka", "redis", "triton"],
        help="stop: SIGKILL one component, as a crash would; start: start it again, same ports",
    )
    stack.add_argument(
        "--triton-traces",
        metavar="URL",
        help="up: Triton traces every request (OpenTelemetry mode) and exports its spans to "
        "this OTLP/HTTP traces URL, e.g. http://127.0.0.1:4318/v1/traces",
    )
    stack.set_defaults(func=cmd_stack)

    worker = sub.add_parser("worker", help="consume requests, answer them")
    connect(worker)
    worker.add_argument("--max-records", type=int, help="stop after this many records")
    worker.add_argument("--idle-timeout", type=float, help="stop after this many idle seconds")
    worker.set_defaults(func=cmd_worker)

    _add_produce_parser(sub, registry)

    tasks = sub.add_parser("tasks", help="the tasks each domain answers (a Markdown table)")
    tasks.set_defaults(func=cmd_tasks)

    tail = sub.add_parser("tail", help="print answers (or DLQ records), bounded")
    connect(tail)
    tail.add_argument("--domain", choices=registry.domains)
    tail.add_argument("--json", action="store_true", help="answer values as JSON lines")
    tail.add_argument("--dlq", action="store_true", help="read the DLQ topics instead")
    tail.add_argument("--count", type=int, help="stop after this many records")
    tail.add_argument("--timeout", type=float, default=10.0, help="stop after this many seconds")
    tail.set_defaults(func=cmd_tail)

    add_dlq_parser(sub, connect, list(registry.domains), cmd_dlq)

    schemas = sub.add_parser("schemas", help="JSON Schemas of the messages")
    schemas.add_argument("action", choices=["export", "check"])
    schemas.add_argument("--dir", default="schemas")
    schemas.set_defaults(func=cmd_schemas)

    add_models_parser(sub, cmd_models)

    evaluate = sub.add_parser("eval", help="score a labelled JSONL set through the service")
    connect(evaluate)
    evaluate.add_argument("dataset", help="JSON Lines: {key?, request, label} per line")
    evaluate.add_argument("--out", help="also write the report as JSON here")
    evaluate.add_argument("--timeout", type=float, default=300.0, help="seconds to wait")
    evaluate.set_defaults(func=cmd_eval)

    demo = sub.add_parser("demo", help="start the local stack, answer the examples, stop")
    demo.set_defaults(func=cmd_demo)

    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)  # its retries are noise; we report
    logging.getLogger("pocketvl.worker.route_book").setLevel(logging.INFO)  # reloads taken
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except PocketvlError as exc:
        print(f"pocketvl: {exc}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"pocketvl: not valid JSON: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
