"""Triton and Redis killed under load: no valid request is dead-lettered, none is lost; the
worker's /readyz says so meanwhile, and its /metrics are scraped and parsed."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pocketvl.adapters.triton_client import TritonInference
from pocketvl.devstack.stack import LocalStack
from pocketvl.service import build_observed_worker
from pocketvl.settings import Settings
from pocketvl.worker.loop import Worker
from tests.fault.conftest import outcomes, send_load

pytestmark = pytest.mark.integration


def wait_for(check: object, timeout_s: float, what: str) -> None:
    assert callable(check)
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


class Running:
    """A worker in a thread of this process, so its counters can be watched."""

    def __init__(self, settings: Settings) -> None:
        self.worker: Worker
        self.worker, ops = build_observed_worker(settings)
        assert ops is not None
        self.ops = ops
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def processed(self) -> int:
        return self.worker.stats.processed

    def published(self) -> float:
        return scrape(self.get("/metrics")[1]).get("pocketvl_messages_published", 0.0)

    def get(self, path: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.ops.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def ready(self) -> tuple[int, dict[str, object]]:
        status, body = self.get("/readyz")
        return status, json.loads(body)

    def fully_ready(self) -> bool:
        status, body = self.ready()
        return status == 200 and body["degraded"] == []

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        self.worker.close()
        self.ops.close()


def scrape(text: str) -> dict[str, float]:
    """Each metric family's total over its samples (counters: the ``_total`` samples)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        samples = [s for s in family.samples if not s.name.endswith(("_created", "_bucket"))]
        if family.type == "counter":
            samples = [s for s in samples if s.name.endswith("_total")]
        totals[family.name] = sum(s.value for s in samples)
    return totals


@pytest.mark.parametrize(
    ("component", "down_s", "shared_memory"),
    [("triton", 15.0, False), ("triton", 15.0, True), ("redis", 5.0, False)],
    ids=["triton", "triton-shared-memory", "redis"],
)
def test_a_component_killed_under_load_loses_nothing_and_dead_letters_nothing(
    local_stack: LocalStack,
    settings: Settings,
    component: str,
    down_s: float,
    shared_memory: bool,
) -> None:
    """With ``shared_memory``, the restarted Triton has forgotten the worker's regions."""
    triton = settings.triton.model_copy(update={"shared_memory": shared_memory})
    settings = settings.model_copy(update={"triton": triton})
    ids = send_load(settings, 200)
    running = Running(settings)
    try:
        wait_for(lambda: running.processed() >= 30, 120, "the first answers")
        assert (before := running.ready())[0] == 200, before[1]  # the answer that failed
        local_stack.kill(component)
        killed_at = running.processed()
        started = time.monotonic()
        if component == "triton":  # not ready while it holds its requests back
            wait_for(lambda: running.ready()[0] == 503, down_s, "/readyz to say 503")
        else:  # answering without the cache: ready, degraded
            wait_for(lambda: running.ready()[1]["degraded"] == ["redis"], down_s, "degraded")
            assert running.ready()[0] == 200
        assert running.get("/livez")[0] == 200  # its loop goes on polling
        time.sleep(max(0.0, down_s - (time.monotonic() - started)))
        local_stack.start(component)
        wait_for(running.fully_ready, 60, "/readyz back to 200, not degraded")
        wait_for(lambda: running.processed() >= len(ids), 240, "every request")
        # processed counts results handed to the producer; published, those the broker acked
        wait_for(lambda: running.published() >= len(ids), 60, "the broker's last acks")
        scraped = scrape(running.get("/metrics")[1])
        inference = running.worker.pipeline.inference
        assert isinstance(inference, TritonInference)
        assert (inference.shared is not None) == shared_memory
        if inference.shared is not None:  # the pixels went through regions it made
            assert inference.shared.regions() >= 1
    finally:
        running.close()
    seen = outcomes(settings)
    assert seen.lost(ids) == []
    assert sorted(seen.dead_lettered) == []  # a server being down is not the request's fault
    assert set(seen.answers) == set(ids)
    assert killed_at < len(ids), "the fault hit while requests were still waiting"
    if component == "redis":  # answered without the cache meanwhile, and said so
        assert seen.cache["unavailable"] > 0 and seen.cache["miss"] > 0
    else:
        assert seen.cache["unavailable"] == 0
    assert scraped["pocketvl_messages_processed"] >= len(ids)
    assert scraped["pocketvl_assigned_partitions"] >= 1
    assert "pocketvl_consumer_lag" in scraped and "pocketvl_in_flight" in scraped
    assert scraped["pocketvl_messages_consumed"] >= len(ids)
    assert scraped["pocketvl_messages_published"] >= len(ids)  # answers, acked
    if component == "redis":
        assert scraped["pocketvl_cache_lookups"] >= len(ids)
    else:  # the requests that met the outage were retried, not dead-lettered
        assert scraped["pocketvl_retries"] > 0
    print(f"{component} down {down_s:.0f} s: {seen.duplicates} duplicate answers, {seen.cache}")
