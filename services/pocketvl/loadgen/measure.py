"""Sending a plan, following what comes back, and the figures a run is judged by."""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pocketvl.adapters.kafka_broker import KafkaRecordSink, follow_records
from pocketvl.loadgen.plan import Planned
from pocketvl.loadgen.progress import Progress
from pocketvl.settings import KafkaSettings
from pocketvl.worker.envelope import InboundRecord, topic


@dataclass
class Outcome:
    sent_at: float  # epoch seconds, when the request was handed to the producer
    done_at: float  # the answer's (or DLQ record's) Kafka timestamp
    answered: bool
    cache: str | None = None
    reason: str | None = None

    @property
    def latency_s(self) -> float:
        return self.done_at - self.sent_at


def send(
    settings: KafkaSettings, planned: list[Planned], rate: float | None, label: str
) -> dict[str, float]:
    """Publish ``planned`` (at ``rate`` per second, or as fast as possible); the send time
    of each event id. Returns once the broker has acknowledged all of them."""
    sink = KafkaRecordSink(settings)
    progress = Progress(f"{label}: send", len(planned))
    sent: dict[str, float] = {}
    try:
        started = time.monotonic()
        deliveries = []
        for i, item in enumerate(planned):
            if rate is not None:
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            sent[item.event_id] = time.time()
            deliveries.append(sink.send(item.record))
            progress.update(i + 1)
        sink.flush(60)
        for delivery in deliveries:
            delivery.wait(60)
    finally:
        progress.close()
        sink.close()
    return sent


class Collector:
    """Follows the answer and DLQ topics of ``domains`` from the start, in a thread,
    recording when each event id was answered or dead-lettered."""

    def __init__(self, settings: KafkaSettings, domains: Iterable[str]) -> None:
        self.topics = [
            topic(settings.topic_prefix, d, kind)
            for d in sorted(set(domains))
            for kind in ("answers", "dlq")
        ]
        self.settings = settings
        # event id -> (when, answered, cache field, DLQ reason): the first outcome only
        self.done: dict[str, tuple[float, bool, str | None, str | None]] = {}
        self.arrived: Counter[str] = Counter()  # event id -> records (duplicates show here)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> Collector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _follow(self) -> None:
        follow_records(self.settings, self.topics, self.arrive, self._stop.is_set)

    def arrive(self, record: InboundRecord) -> None:
        at = (record.timestamp_ms or time.time() * 1000) / 1000
        try:
            body = json.loads(record.value)
        except ValueError:
            return  # a DLQ record of a request that was not JSON: not one of ours
        event_id = body.get("event_id") if isinstance(body, dict) else None
        if not isinstance(event_id, str):
            return
        self.arrived[event_id] += 1
        if event_id in self.done:
            return
        if record.topic.endswith(".answers"):
            self.done[event_id] = (at, True, body.get("cache"), None)
        else:
            reason = dict(record.headers).get("dlq.reason", b"").decode()
            self.done[event_id] = (at, False, None, reason)

    def wait_for(self, ids: Iterable[str], timeout_s: float, label: str) -> None:
        wanted = set(ids)
        progress = Progress(f"{label}: answers", len(wanted))
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                have = len(wanted.intersection(self.done))
                progress.update(have)
                if have == len(wanted):
                    return
                time.sleep(0.05)
        finally:
            progress.close()

    def outcomes(self, sent: dict[str, float]) -> dict[str, Outcome]:
        out = {}
        for event_id, sent_at in sent.items():
            if event_id in self.done:
                at, answered, cache, reason = self.done[event_id]
                out[event_id] = Outcome(sent_at, at, answered, cache, reason)
        return out


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


@dataclass
class Figures:
    """What one measured phase comes to."""

    requests: int
    answered: int
    dead_lettered: int
    lost: int
    duplicates: int
    seconds: float  # first request sent -> last outcome
    throughput: float  # outcomes per second over ``seconds``
    latency_ms: dict[str, float]  # p50 / p95 / p99 / max, request sent -> answer produced
    cache_hit_ratio: float
    dlq_reasons: dict[str, int] = field(default_factory=dict)
    timeline: list[dict[str, float]] = field(default_factory=list)


def figures(sent: dict[str, float], collector: Collector, bin_s: float = 1.0) -> Figures:
    outcomes = collector.outcomes(sent)
    done = list(outcomes.values())
    latencies = [o.latency_s * 1000 for o in done]
    start = min(sent.values())
    end = max((o.done_at for o in done), default=start)
    answered = [o for o in done if o.answered]
    reasons = Counter(o.reason or "" for o in done if not o.answered)
    return Figures(
        requests=len(sent),
        answered=len(answered),
        dead_lettered=len(done) - len(answered),
        lost=len(sent) - len(done),
        duplicates=sum(collector.arrived[i] - 1 for i in sent if collector.arrived[i] > 1),
        seconds=end - start,
        throughput=len(done) / (end - start) if end > start else float("nan"),
        latency_ms={
            "p50": percentile(latencies, 0.50),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies, default=float("nan")),
        },
        cache_hit_ratio=sum(o.cache == "hit" for o in answered) / len(answered)
        if answered
        else 0.0,
        dlq_reasons=dict(reasons),
        timeline=_timeline(done, start, bin_s),
    )


def _timeline(done: list[Outcome], start: float, bin_s: float) -> list[dict[str, float]]:
    bins: dict[int, list[float]] = {}
    for outcome in done:
        bins.setdefault(int((outcome.done_at - start) / bin_s), []).append(outcome.latency_s)
    return [
        {
            "t_s": index * bin_s,
            "per_s": len(bins.get(index, [])) / bin_s,
            "p50_ms": statistics.median(bins[index]) * 1000 if index in bins else float("nan"),
            "p95_ms": percentile(bins[index], 0.95) * 1000 if index in bins else float("nan"),
        }
        for index in range(max(bins, default=-1) + 1)
    ]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid``, all its threads (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scale_out(scenarios: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The scale-out pair of a run side by side: throughput, Triton's batch and worker CPU
    per request for each number of processes, and each one's throughput over one
    process's (``ratio``); None unless the run has the one-process scenario and another."""
    pair = sorted(
        (s for s in scenarios if s["name"].startswith("scale-out-")), key=lambda s: s["workers"]
    )
    if len(pair) < 2 or pair[0]["workers"] != 1:
        return None
    one = pair[0]["worker"]["throughput"]
    return {
        "rows": [
            {
                "workers": s["workers"],
                "throughput": s["worker"]["throughput"],
                "ratio": s["worker"]["throughput"] / one,
                "average_batch": s["worker"]["average_batch"],
                "cpu_ms_per_request": s["worker"]["cpu_ms_per_request"],
                "max_in_flight": s["worker"]["max_in_flight"],
                "processed_by_worker": s["worker"]["processed_by_worker"],
                "lost": s["worker"]["lost"],
            }
            for s in pair
        ],
        "ratio": pair[-1]["worker"]["throughput"] / one,
        "target": 1.8,
    }
