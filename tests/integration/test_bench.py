"""``pocketvl bench`` end to end, scaled down: its own stack, a worker process, the reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pocketvl.worker.envelope import request_topics
from tests.conftest import REPO

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One scaled-down ``pocketvl bench`` run: cache hits, a Triton outage and the
    scale-out pair (one worker process, then two in one group)."""
    out = tmp_path_factory.mktemp("bench")
    command = [sys.executable, "-m", "pocketvl.cli.main", "bench", "--scale", "0.03"]
    command += ["--scenario", "hits", "--scenario", "outage", "--scenario", "scale-out"]
    command += ["--out", str(out)]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=400,
        cwd=REPO,
        env=dict(os.environ),
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (out / "stdout.txt").write_text(done.stdout)
    return out


def test_the_benchmark_counts_every_request_and_writes_its_reports(bench_run: Path) -> None:
    run = json.loads((bench_run / "streaming.json").read_text())
    by = {s["name"]: s for s in run["scenarios"]}
    for scenario in by.values():
        worker = scenario["worker"]
        assert worker["lost"] == 0 and worker["dead_lettered"] == 0, scenario["name"]
        assert worker["answered"] == worker["requests"] > 0
        assert worker["cpu_ms_per_request"] > 0 and worker["throughput"] > 0
    assert by["hits"]["worker"]["cache_hit_ratio"] == 1.0  # primed: every request a hit
    outage = by["outage"]["outage"]
    assert outage["down_s"] > 0.5 and outage["requests_waiting_on_triton"] > 0
    assert outage["dead_lettered"] == 0
    assert "| scenario |" in (bench_run / "streaming.md").read_text()
    assert (bench_run / "streaming.png").read_bytes().startswith(b"\x89PNG")
    assert "hit path throughput" in (bench_run / "stdout.txt").read_text()  # printed too


def test_two_worker_processes_share_the_backlog_and_their_metrics_are_scraped(
    bench_run: Path,
) -> None:
    run = json.loads((bench_run / "streaming.json").read_text())
    by = {s["name"]: s for s in run["scenarios"]}
    one, two = by["scale-out-1"], by["scale-out-2"]
    assert (one["workers"], two["workers"]) == (1, 2)
    for scenario in (one, two):
        assert scenario["worker"]["lost"] == 0 and scenario["worker"]["dead_lettered"] == 0
    # both processes owned partitions and answered part of the backlog
    topics = len(request_topics("p"))  # every domain's request topic, all split evenly
    assert two["worker"]["partitions_owned"] == [two["partitions"] * topics / 2] * 2
    assert all(n > 0 for n in two["worker"]["processed_by_worker"])
    assert sum(two["worker"]["processed_by_worker"]) == two["worker"]["requests"]
    pair = run["scale_out"]
    assert [r["workers"] for r in pair["rows"]] == [1, 2] and pair["ratio"] > 0
    assert (
        "| worker processes | req/s | × one process |" in (bench_run / "streaming.md").read_text()
    )
    metrics = json.loads((bench_run / "metrics.json").read_text())
    scraped = {s["worker"] for s in metrics["samples"]}
    assert {"scale-out-2/0", "scale-out-2/1", "outage/0"} <= scraped
    assert {p["name"] for p in metrics["phases"]} == set(by)
    assert {e["name"] for e in metrics["events"]} == {"Triton killed", "Triton ready"}
    answered = 'pocketvl_messages_processed_total{outcome="answered"}'
    last = {s["worker"]: s["values"].get(answered, 0.0) for s in metrics["samples"]}
    assert last["scale-out-2/0"] > 0 and last["scale-out-2/1"] > 0
    assert (bench_run / "metrics.png").read_bytes().startswith(b"\x89PNG")
