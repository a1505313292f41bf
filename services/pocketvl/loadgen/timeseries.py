"""From scrape samples to the panels of the metrics plot, the way PromQL would compute
them: ``rate()`` of counters, ``histogram_quantile(0.95, ...)`` over a window of bucket
increases, gauges summed over the workers scraped in each second.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any

PROCESSED = "pocketvl_messages_processed_total"
CACHE = "pocketvl_cache_lookups_total"
PROCESS_HISTOGRAM = "pocketvl_process_duration_seconds"
INFERENCE_HISTOGRAM = "pocketvl_inference_duration_seconds"
GAUGES = {  # panel column -> series
    "in_flight": "pocketvl_in_flight",
    "waiting": "pocketvl_waiting",
    "lag": "pocketvl_consumer_lag",
    "ready": "pocketvl_ready",
    "assigned": "pocketvl_assigned_partitions",
}
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def labelled(values: dict[str, float], name: str, label: str) -> dict[str, float]:
    """The series of ``name`` by the value of ``label`` (``series_values`` keys)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        head, _, rest = key.partition("{")
        if head == name:
            labels = dict(_LABEL.findall(rest))
            if label in labels:
                out[labels[label]] = out.get(labels[label], 0.0) + value
    return out


def histogram_quantile(share: float, buckets: dict[float, float]) -> float:
    """Prometheus' estimate: the ``share`` quantile from cumulative bucket counts by upper
    bound, interpolated linearly inside the bucket; NaN with no observations."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return float("nan")
    rank = share * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower  # in the overflow bucket: its lower bound, as Prometheus does
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def _buckets(values: dict[str, float], histogram: str) -> dict[float, float]:
    return {float(le): v for le, v in labelled(values, f"{histogram}_bucket", "le").items()}


def _increase(now: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    # a restarted worker starts from zero: then the whole count is the increase
    if any(now.get(le, 0.0) < v for le, v in before.items()):
        return dict(now)
    return {le: v - before.get(le, 0.0) for le, v in now.items()}


def _derived(series: list[dict[str, Any]], i: int, window_s: float) -> dict[str, float]:
    """What sample ``i`` of one worker's ``series`` says: its gauges, the rates since its
    previous sample and the p95 durations over the last ``window_s``."""
    sample = series[i]
    values = sample["values"]
    row = {column: values.get(name, 0.0) for column, name in GAUGES.items()}
    row["workers"] = 1.0
    if i == 0:
        return row
    previous = series[i - 1]
    elapsed = float(sample["t"]) - float(previous["t"])
    for column, name, key, label in (
        ("answered_per_s", PROCESSED, "outcome", "answered"),
        ("dead_lettered_per_s", PROCESSED, "outcome", "dead_lettered"),
        ("cache_hit_per_s", CACHE, "result", "hit"),
        ("cache_miss_per_s", CACHE, "result", "miss"),
    ):
        now = labelled(values, name, key).get(label, 0.0)
        then = labelled(previous["values"], name, key).get(label, 0.0)
        row[column] = (now - then if now >= then else now) / elapsed
    t = float(sample["t"])
    earlier = next((s for s in reversed(series[:i]) if t - float(s["t"]) >= window_s), series[0])
    for column, histogram in (
        ("process_p95_ms", PROCESS_HISTOGRAM),
        ("inference_p95_ms", INFERENCE_HISTOGRAM),
    ):
        now_buckets = _buckets(values, histogram)
        increase = _increase(now_buckets, _buckets(earlier["values"], histogram))
        row[column] = histogram_quantile(0.95, increase) * 1000
    return row


def panels(
    samples: list[dict[str, Any]], start: float, window_s: float = 5.0
) -> list[dict[str, float]]:
    """One row per second since ``start`` with a sample: rates (per second, from each
    worker's previous sample), p95 durations in ms (bucket increases over ``window_s``; with
    several workers the slowest one's), and gauges summed over the workers scraped in that
    second (``workers``: how many; a worker scraped twice in a second counts once)."""
    by_worker: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for sample in sorted(samples, key=lambda s: float(s["t"])):
        by_worker[str(sample["worker"])].append(sample)
    latest: dict[tuple[int, str], dict[str, float]] = {}
    for worker, series in by_worker.items():
        for i, sample in enumerate(series):
            latest[(int(float(sample["t"]) - start), worker)] = _derived(series, i, window_s)
    rows: dict[int, dict[str, float]] = {}
    for (second, _), derived in sorted(latest.items()):
        row = rows.setdefault(second, {"t_s": float(second)})
        for column, value in derived.items():
            if column.endswith("_p95_ms"):
                if not math.isnan(value):
                    row[column] = max(row.get(column, value), value)
            else:
                row[column] = row.get(column, 0.0) + value
    return [rows[second] for second in sorted(rows)]
