"""Running the suite: worker processes against the stand-in Triton models.

Each scenario gets fresh topics, a fresh cache prefix and its own ``pocketvl worker``
subprocesses in one consumer group (so their CPU time is their own), which must share every
request partition and answer one request per example and partition before the clock starts.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pocketvl.adapters.kafka_broker import ensure_topics
from pocketvl.adapters.triton_client import TritonInference
from pocketvl.devstack.processes import free_ports
from pocketvl.devstack.stack import LocalStack
from pocketvl.domains.registry import REGISTRY
from pocketvl.errors import PocketvlError
from pocketvl.loadgen.direct import average_batch, composed_inputs, drive
from pocketvl.loadgen.measure import Collector, figures, process_cpu_s, scale_out, send
from pocketvl.loadgen.plan import Planned, build, even_keys, unique_variant
from pocketvl.loadgen.scrape import Scraper, fetch_metrics
from pocketvl.loadgen.suite import STAND_INS, Scenario
from pocketvl.loadgen.timeseries import PROCESSED, labelled
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
from pocketvl.worker.envelope import all_topics, request_record, request_topics


def bench_settings(stack: LocalStack, scenario: Scenario) -> Settings:
    state = stack.state
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    route = Route(
        triton_model=scenario.model, checkpoint=f"stand-in-{scenario.model}", max_new_tokens=16
    )
    worker = WorkerSettings()
    if scenario.max_in_flight is not None:
        worker = WorkerSettings(max_in_flight=scenario.max_in_flight)
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
        worker=worker,
        ops=OpsSettings(host="127.0.0.1", port=0),
    )


@dataclass
class Workers:
    """The worker processes of one scenario, with their logs and operations ports."""

    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    ports: list[int]

    def tail(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}" for log in self.logs
        )

    def cpu_s(self) -> float:
        return sum(process_cpu_s(proc.pid) for proc in self.procs)

    def processed(self) -> list[float]:
        """Records each worker has answered or dead-lettered so far (its own counter)."""
        return [
            sum(labelled(fetch_metrics(port), PROCESSED, "outcome").values()) for port in self.ports
        ]


@contextmanager
def running_workers(settings: Settings, count: int, work_dir: Path, name: str) -> Iterator[Workers]:
    """``count`` ``pocketvl worker`` processes in one group, each with its own operations
    port; stopped with SIGTERM (they drain) when done."""
    command = [str(Path(sys.executable).with_name("pocketvl")), "worker"]
    ports = free_ports(count)
    workers = Workers([], [work_dir / f"worker-{name}-{i}.log" for i in range(count)], ports)
    try:
        for log, port in zip(workers.logs, ports, strict=True):
            own = settings.model_copy(
                update={"ops": settings.ops.model_copy(update={"port": port})}
            )
            with log.open("wb") as out:
                workers.procs.append(
                    subprocess.Popen(
                        command,
                        env={**os.environ, **as_environment(own)},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield workers
    finally:
        for proc in workers.procs:
            proc.terminate()
        for proc in workers.procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _group_formed(settings: Settings, workers: Workers, partitions: int) -> dict[int, float]:
    """Waits until every worker owns partitions and together they own every request
    partition (no rebalance left to happen mid-run); the partitions each one owns."""
    wanted = partitions * len(request_topics(settings.kafka.topic_prefix))
    deadline = time.monotonic() + 120
    owned: dict[int, float] = {}
    while time.monotonic() < deadline:
        if any(proc.poll() is not None for proc in workers.procs):
            break
        try:
            owned = {
                port: fetch_metrics(port).get("pocketvl_assigned_partitions", 0.0)
                for port in workers.ports
            }
        except OSError:
            owned = {}
        if owned and all(owned.values()) and sum(owned.values()) == wanted:
            return owned
        time.sleep(0.5)
    raise PocketvlError(
        f"the worker group did not share the {wanted} request partitions "
        f"(owned: {owned}); the logs:\n{workers.tail()}"
    )


def _warm_up(
    settings: Settings,
    collector: Collector,
    examples: dict[str, Any],
    mix: dict[str, float],
    workers: Workers,
    partitions: int,
) -> None:
    """One request per example in the mix and partition, answered: every worker has its
    model's version and every decoder imported."""
    planned = []
    for name in mix:
        for p, key in enumerate(even_keys(partitions, 1)):
            event_id = f"warm-{name}-{p}"
            request = {**unique_variant(examples[name], "warm-up"), "event_id": event_id}
            record = request_record(settings.kafka.topic_prefix, request, key, "/pocketvl/bench")
            planned.append(Planned(event_id, str(request["domain"]), False, record))
    sent = send(settings.kafka, planned, None, "warm-up")
    collector.wait_for(sent, 120, "warm-up")
    if any(p.poll() is not None for p in workers.procs) or not set(sent) <= set(collector.done):
        raise PocketvlError(f"the workers did not answer their warm-up requests:\n{workers.tail()}")


def run_scenario(
    stack: LocalStack,
    scenario: Scenario,
    examples: dict[str, Any],
    work_dir: Path,
    scraper: Scraper,
) -> dict[str, Any]:
    settings = bench_settings(stack, scenario)
    plan = scenario.plan
    ensure_topics(settings.kafka, all_topics(settings.kafka.topic_prefix), scenario.partitions)
    planned = build(plan, examples, settings.kafka.topic_prefix)
    measured = [p for p in planned if p.repeat] if scenario.prime else planned
    triton = TritonInference(settings.triton)
    domains = {p.domain for p in planned}
    outage_log: dict[str, float] = {}
    try:
        with (
            Collector(settings.kafka, domains) as collector,
            running_workers(settings, scenario.workers, work_dir, scenario.name) as workers,
        ):
            owned = _group_formed(settings, workers, scenario.partitions)
            labels = [f"{scenario.name}/{i}" for i in range(scenario.workers)]
            scraper.watch(dict(zip(labels, workers.ports, strict=True)))
            _warm_up(settings, collector, examples, plan.mix, workers, scenario.partitions)
            if scenario.prime:
                first = send(settings.kafka, [p for p in planned if not p.repeat], None, "prime")
                collector.wait_for(first, 300, "prime")
            cpu_before, batches_before = workers.cpu_s(), triton.batch_counts(scenario.model)
            processed_before = workers.processed()
            started = time.time()
            outage = _start_outage(stack, scenario.outage, outage_log)
            sent = send(settings.kafka, measured, plan.rate, scenario.name)
            if outage is not None:
                outage.join()
            collector.wait_for(sent, 300, scenario.name)
            cpu_s = workers.cpu_s() - cpu_before
            batches_after = triton.batch_counts(scenario.model)
            by_worker = [a - b for a, b in zip(workers.processed(), processed_before, strict=True)]
            scraper.phase(scenario.name, started, time.time())
            scraper.watch({})
            result = figures(sent, collector)
        report: dict[str, Any] = {
            "name": scenario.name,
            "title": scenario.title,
            "model": scenario.model,
            "plan": asdict(plan),
            "workers": scenario.workers,
            "partitions": scenario.partitions,
            "worker": asdict(result)
            | {
                "cpu_ms_per_request": cpu_s * 1000 / len(sent),
                "average_batch": average_batch(batches_before, batches_after),
                "max_in_flight": settings.worker.max_in_flight,
                "partitions_owned": sorted(owned.values()),
                "processed_by_worker": by_worker,
            },
        }
        if outage_log:
            report["outage"] = _outage_figures(outage_log, collector, sent)
            scraper.event("Triton killed", outage_log["killed_at"])
            scraper.event("Triton ready", outage_log["ready_at"])
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
    """Every scenario on one private stack (broker, Redis, Triton with the stand-ins), the
    workers' ``/metrics`` scraped every second all along (``run["metrics"]``)."""
    from datetime import UTC, datetime

    from pocketvl.loadgen.report import machine

    run: dict[str, Any] = {
        "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "scenarios": [],
    }
    stack = LocalStack(work_dir / "stack", stand_ins, work_dir, STAND_INS)
    with stack, Scraper() as scraper:
        for scenario in scenarios:
            run["scenarios"].append(run_scenario(stack, scenario, examples, work_dir, scraper))
        run["decode"] = decode_costs(examples, bench_settings(stack, scenarios[0]))
    run["scale_out"] = scale_out(run["scenarios"])
    run["metrics"] = scraper.scrapes.as_json()
    return run
