"""Scraping the workers' ``/metrics`` during a benchmark, once a second, as an operator's
Prometheus would: what the metrics plot is drawn from.

Each sample keeps the ``pocketvl_*`` series of one worker at one moment, summed over the
labels a fleet-wide panel does not split by (domain, topic, partition, model), so a run's
samples stay small; ``outcome``, ``result`` and a histogram's ``le`` are kept.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

KEPT_LABELS = ("outcome", "result", "le")


def series_values(text: str) -> dict[str, float]:
    """Prometheus text into ``{'name{label="v",...}': value}``, ``pocketvl_*`` only (no
    ``_created`` timestamps), summed over every label but :data:`KEPT_LABELS`."""
    values: defaultdict[str, float] = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith("pocketvl_") or sample.name.endswith("_created"):
                continue
            kept = ",".join(f'{k}="{sample.labels[k]}"' for k in KEPT_LABELS if k in sample.labels)
            values[f"{sample.name}{{{kept}}}" if kept else sample.name] += sample.value
    return dict(values)


def fetch_metrics(port: int, timeout_s: float = 2.0) -> dict[str, float]:
    """One scrape of the worker whose operations port is ``port`` (loopback)."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return series_values(response.read().decode())


@dataclass
class Scrapes:
    """What a run's scraping recorded: samples, and the phases to mark on the plot."""

    samples: list[dict[str, Any]] = field(default_factory=list)  # t, worker, values
    phases: list[dict[str, Any]] = field(default_factory=list)  # name, start, end
    events: list[dict[str, Any]] = field(default_factory=list)  # name, t

    def as_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "phases": self.phases, "events": self.events}


class Scraper:
    """Scrapes the workers it is told to watch every ``interval_s``, in a thread."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.scrapes = Scrapes()
        self._targets: dict[str, int] = {}  # worker label -> operations port
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-scraper", daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def watch(self, targets: dict[str, int]) -> None:
        with self._lock:
            self._targets = dict(targets)

    def phase(self, name: str, start: float, end: float) -> None:
        self.scrapes.phases.append({"name": name, "start": start, "end": end})

    def event(self, name: str, at: float) -> None:
        self.scrapes.events.append({"name": name, "t": at})

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                targets = dict(self._targets)
            for worker, port in targets.items():
                at = time.time()
                try:
                    values = fetch_metrics(port, timeout_s=self.interval_s)
                except OSError:
                    continue  # not listening yet, or gone: no sample, as in Prometheus
                self.scrapes.samples.append({"t": round(at, 3), "worker": worker, "values": values})
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))
