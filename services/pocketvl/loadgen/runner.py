"""Running the suite: one worker process against the stand-in Triton models.

Each scenario gets fresh topics, a fresh cache prefix and its own ``pocketvl worker``
subprocess (so its CPU time is its own), warmed up with one request per example before
the clock starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pocketvl.adapters.kafka_broker import ensure_topics
from pocketvl.adapters.triton_client import TritonInference
from pocketvl.devstack.stack import LocalStack
from pocketvl.domains.registry import REGISTRY
from pocketvl.errors import PocketvlError
from pocketvl.loadgen.direct import average_batch, composed_inputs, drive
from pocketvl.loadgen.measure import Collector, figures, process_cpu_s, send
from pocketvl.loadgen.plan import Planned, build, unique_variant
from pocketvl.loadgen.suite import STAND_INS, Scenario
from pocketvl.settings import (
    KafkaSettings,
    OpsSettings,
    RedisSettings,
    Route,
    RoutingSettings,
    Settings,
    TritonSettings,
    WorkerSettings,
    as_environment,
)
from pocketvl.worker.envelope import all_topics, request_record


def bench_settings(stack: LocalStack, scenario: Scenario) -> Settings:
    state = stack.state
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    route = Route(
        triton_model=scenario.model, checkpoint=f"stand-in-{scenario.model}", max_new_tokens=16
    )
    return Settings(
        mode="dev",  # stand-in models over plain loopback links
        kafka=KafkaSettings(
            bootstrap_servers=state.kafka_bootstrap,
            topic_prefix=prefix,
            group_id=f"{prefix}-workers",
            max_poll_records=64,
        ),
        redis=RedisSettings(url=state.redis_url, key_prefix=prefix),
        triton=TritonSettings(url=state.triton_url, backoff_max_s=1.0),
        routing=RoutingSettings(routes={spec.key: route for spec in REGISTRY}),
        worker=WorkerSettings(),
        ops=OpsSettings(host="127.0.0.1", port=0),
    )


@contextmanager
def running_worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A ``pocketvl worker`` process; stopped with SIGTERM (it drains) when done."""
    command = [str(Path(sys.executable).with_name("pocketvl")), "worker"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env={**os.environ, **as_environment(settings)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _warm_up(
    settings: Settings,
    collector: Collector,
    examples: dict[str, Any],
    mix: dict[str, float],
    worker: subprocess.Popen[bytes],
    log: Path,
) -> None:
    """One request per example in the mix, answered: the group is joined, the model's
    version known, every decoder imported."""
    planned = []
    for name in mix:
        request = {**unique_variant(examples[name], "warm-up"), "event_id": f"warm-{name}"}
        record = request_record(settings.kafka.topic_prefix, request, b"warm", "/pocketvl/bench")
        planned.append(Planned(str(request["event_id"]), str(request["domain"]), False, record))
    sent = send(settings.kafka, planned, None, "warm-up")
    collector.wait_for(sent, 120, "warm-up")
    if worker.poll() is not None or not set(sent) <= set(collector.done):
        tail = log.read_text(errors="replace")[-3000:]
        raise PocketvlError(f"the worker did not answer its warm-up requests; its log:\n{tail}")


def run_scenario(
    stack: LocalStack, scenario: Scenario, examples: dict[str, Any], work_dir: Path
) -> dict[str, Any]:
    settings = bench_settings(stack, scenario)
    plan = scenario.plan
    ensure_topics(settings.kafka, all_topics(settings.kafka.topic_prefix))
    planned = build(plan, examples, settings.kafka.topic_prefix)
    measured = [p for p in planned if p.repeat] if scenario.prime else planned
    triton = TritonInference(settings.triton)
    log = work_dir / f"worker-{scenario.name}.log"
    domains = {p.domain for p in planned}
    outage_log: dict[str, float] = {}
    try:
        with Collector(settings.kafka, domains) as collector, running_worker(settings, log) as proc:
            _warm_up(settings, collector, examples, plan.mix, proc, log)
            if scenario.prime:
                first = send(settings.kafka, [p for p in planned if not p.repeat], None, "prime")
                collector.wait_for(first, 300, "prime")
            cpu_before, batches_before = (
                process_cpu_s(proc.pid),
                triton.batch_counts(scenario.model),
            )
            outage = _start_outage(stack, scenario.outage, outage_log)
            sent = send(settings.kafka, measured, plan.rate, scenario.name)
            if outage is not None:
                outage.join()
            collector.wait_for(sent, 300, scenario.name)
            cpu_s = process_cpu_s(proc.pid) - cpu_before
            batches_after = triton.batch_counts(scenario.model)
            result = figures(sent, collector)
        report: dict[str, Any] = {
            "name": scenario.name,
            "title": scenario.title,
            "model": scenario.model,
            "plan": asdict(plan),
            "worker": asdict(result)
            | {
                "cpu_ms_per_request": cpu_s * 1000 / len(sent),
                "average_batch": average_batch(batches_before, batches_after),
                "max_in_flight": settings.worker.max_in_flight,
            },
        }
        if outage_log:
            report["outage"] = _outage_figures(outage_log, collector, sent)
        if scenario.direct:
            composed = composed_inputs(settings, examples[next(iter(plan.mix))])
            direct = drive(
                triton, scenario.model, composed, plan.requests, settings.worker.max_in_flight
            )
            report["direct"] = asdict(direct)
            report["worker_vs_direct"] = result.throughput / direct.throughput
        return report
    finally:
        triton.close()


def _start_outage(
    stack: LocalStack, outage: tuple[float, float] | None, log: dict[str, float]
) -> threading.Thread | None:
    if outage is None:
        return None
    after_s, for_s = outage

    def cycle() -> None:
        time.sleep(after_s)
        log["killed_at"] = time.time()
        stack.kill("triton")
        time.sleep(for_s)
        log["restarting_at"] = time.time()
        stack.start("triton")
        log["ready_at"] = time.time()

    thread = threading.Thread(target=cycle, daemon=True)
    thread.start()
    return thread


def _outage_figures(
    log: dict[str, float], collector: Collector, sent: dict[str, float]
) -> dict[str, float]:
    """How long Triton was away (killed to ready again), and what the requests sent
    meanwhile came to."""
    outcomes = collector.outcomes(sent)
    waited = [
        o for o in outcomes.values() if o.sent_at < log["ready_at"] and o.done_at > log["killed_at"]
    ]
    last = max((o.done_at for o in waited), default=log["ready_at"])
    return {
        "killed_at_s": log["killed_at"] - min(sent.values()),
        "down_s": log["ready_at"] - log["killed_at"],
        "requests_waiting_on_triton": len(waited),
        "dead_lettered": sum(not o.answered for o in outcomes.values()),
        "last_answer_after_return_s": last - log["ready_at"],
    }


def decode_costs(examples: dict[str, Any], settings: Settings) -> dict[str, dict[str, Any]]:
    """CPU time to decode and compose each example in this process (what a miss costs the
    worker before Triton), by input format."""
    costs = {}
    for name, request in examples.items():
        times = []
        for _ in range(5):
            started = time.process_time()
            composed_inputs(settings, request)
            times.append((time.process_time() - started) * 1000)
        kinds = [i["media_type"].split("/")[-1] for i in request["images"]]
        inputs = f"{len(kinds)} × {kinds[0]}" if len(kinds) > 1 else kinds[0]
        costs[name] = {"inputs": inputs, "cpu_ms": sorted(times)[2]}
    return costs


def run_suite(
    scenarios: list[Scenario],
    examples: dict[str, Any],
    stand_ins: Path,
    work_dir: Path,
) -> dict[str, Any]:
    """Every scenario on one private stack (broker, Redis, Triton with the stand-ins)."""
    from datetime import UTC, datetime

    from pocketvl.loadgen.report import machine

    run: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "scenarios": [],
    }
    stack = LocalStack(work_dir / "stack", stand_ins, work_dir, STAND_INS)
    with stack:
        for scenario in scenarios:
            run["scenarios"].append(run_scenario(stack, scenario, examples, work_dir))
        run["decode"] = decode_costs(examples, bench_settings(stack, scenarios[0]))
    return run
