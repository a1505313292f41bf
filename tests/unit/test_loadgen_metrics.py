"""The benchmark's scrape of the workers' /metrics: parsing the real exporter's text,
PromQL-like rates and quantiles, the scraper thread against a real HTTP endpoint, the plot."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from pocketvl.adapters.ops_http import OpsServer
from pocketvl.loadgen import report
from pocketvl.loadgen.scrape import Scraper, series_values
from pocketvl.loadgen.timeseries import histogram_quantile, labelled, panels
from pocketvl.telemetry import WorkerMetrics, prometheus_metrics, prometheus_text
from pocketvl.worker.health import Report


def exported_text(durations_s: list[float]) -> str:
    """What a worker's /metrics serves after answering records that took ``durations_s``."""
    provider, registry = prometheus_metrics()
    instruments = WorkerMetrics.create(provider.get_meter("test"))
    for i, duration in enumerate(durations_s):
        domain = "medical" if i % 2 else "driving"
        instruments.processed.add(1, {"domain": domain, "outcome": "answered"})
        instruments.process_duration.record(duration, {"domain": domain, "outcome": "answered"})
        instruments.inference_duration.record(duration, {"model": "m"})
        instruments.cache_lookups.add(1, {"result": "miss"})
    instruments.processed.add(1, {"domain": "medical", "outcome": "dead_lettered"})
    text = prometheus_text(registry).decode()
    provider.shutdown()
    return text


def test_the_exporters_text_is_summed_over_domains_keeping_outcome_and_buckets() -> None:
    values = series_values(exported_text([0.08, 0.09, 0.12, 0.3]))
    assert labelled(values, "pocketvl_messages_processed_total", "outcome") == {
        "answered": 4.0,
        "dead_lettered": 1.0,
    }
    assert values['pocketvl_cache_lookups_total{result="miss"}'] == 4.0
    buckets = labelled(values, "pocketvl_process_duration_seconds_bucket", "le")
    # boundaries in seconds: 100 ms and 250 ms calls land in different buckets
    assert (buckets["0.1"], buckets["0.25"], buckets["0.5"], buckets["+Inf"]) == (2, 3, 4, 4)
    assert not any(key.endswith("_created") or "domain=" in key for key in values)


def test_histogram_quantile_interpolates_inside_the_bucket_as_prometheus_does() -> None:
    buckets = {0.1: 50.0, 0.2: 90.0, 0.5: 100.0, math.inf: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.7, buckets) == pytest.approx(0.15)  # halfway through 0.1..0.2
    assert histogram_quantile(0.95, buckets) == pytest.approx(0.35)
    assert histogram_quantile(0.99, {0.1: 0.0, math.inf: 10.0}) == 0.1  # overflow: its floor
    assert math.isnan(histogram_quantile(0.95, {0.1: 0.0, math.inf: 0.0}))


def sample(
    t: float, worker: str, answered: float, le_01: float, total: float, **gauges: float
) -> dict[str, Any]:
    values = {
        'pocketvl_messages_processed_total{outcome="answered"}': answered,
        'pocketvl_process_duration_seconds_bucket{le="0.1"}': le_01,
        'pocketvl_process_duration_seconds_bucket{le="1.0"}': total,
        'pocketvl_process_duration_seconds_bucket{le="+Inf"}': total,
        **{f"pocketvl_{name}": value for name, value in gauges.items()},
    }
    return {"t": t, "worker": worker, "values": values}


def test_panels_rate_counters_per_worker_and_sum_gauges_per_second() -> None:
    samples: list[dict[str, Any]] = [
        sample(100.0, "a", 0, 0, 0, in_flight=8, consumer_lag=50, ready=1),
        sample(100.2, "b", 0, 0, 0, in_flight=8, consumer_lag=40, ready=1),
        sample(101.0, "a", 40, 40, 40, in_flight=8, consumer_lag=30, ready=1),
        sample(101.2, "b", 30, 0, 30, in_flight=8, consumer_lag=20, ready=0),
        sample(101.6, "a", 60, 60, 60, in_flight=4, consumer_lag=10, ready=1),  # same second
        sample(103.0, "a", 5, 5, 5, in_flight=1, consumer_lag=0, ready=1),  # restarted
    ]
    rows = {int(r["t_s"]): r for r in panels(samples, 100.0)}
    assert sorted(rows) == [0, 1, 3]
    assert rows[0]["workers"] == 2 and rows[0]["lag"] == 90 and rows[0]["ready"] == 2
    one = rows[1]  # a's later sample of the second counts, once
    assert one["workers"] == 2 and one["in_flight"] == 12 and one["ready"] == 1
    assert one["answered_per_s"] == pytest.approx(20 / 0.6 + 30 / 1.0)
    # p95: worker a's records all under 100 ms; b's between 0.1 and 1 s: the slowest one's
    assert one["process_p95_ms"] == pytest.approx((0.1 + 0.9 * 0.95) * 1000)
    assert rows[3]["answered_per_s"] == pytest.approx(5 / 1.4)  # a counter reset: from zero


def test_the_scraper_samples_a_real_metrics_endpoint_until_told_to_stop() -> None:
    text = exported_text([0.05]).encode()
    ok = Report(checks=())
    server = OpsServer("127.0.0.1", 0, lambda: ok, lambda: ok, lambda: text).start()
    try:
        with Scraper(interval_s=0.05) as scraper:
            scraper.watch({"w0": server.port})
            deadline = time.monotonic() + 10
            while len(scraper.scrapes.samples) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            scraper.watch({})
            scraper.phase("p", 1.0, 2.0)
    finally:
        server.close()
    samples = scraper.scrapes.samples
    assert len(samples) >= 3 and {s["worker"] for s in samples} == {"w0"}
    assert samples[0]["values"]['pocketvl_messages_processed_total{outcome="answered"}'] == 1.0
    assert scraper.scrapes.as_json()["phases"] == [{"name": "p", "start": 1.0, "end": 2.0}]


def test_the_metrics_plot_is_drawn_from_samples(tmp_path: Path) -> None:
    samples = [
        sample(100.0 + t, "outage/0", 10.0 * t, 10.0 * t, 10.0 * t, ready=float(t < 5 or t > 9))
        for t in range(15)
    ]
    metrics = {
        "samples": samples,
        "phases": [{"name": "outage", "start": 100.0, "end": 114.0}],
        "events": [{"name": "Triton killed", "t": 105.0}, {"name": "Triton ready", "t": 110.0}],
    }
    report.plot_metrics(metrics, tmp_path / "metrics.png")
    assert (tmp_path / "metrics.png").read_bytes().startswith(b"\x89PNG")
