"""``pocketvl bench`` end to end, scaled down: its own stack, a worker process, the reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration


def test_the_benchmark_counts_every_request_and_writes_its_reports(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "pocketvl.cli.main", "bench", "--scale", "0.03"]
    command += ["--scenario", "hits", "--scenario", "outage", "--out", str(tmp_path)]
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
    run = json.loads((tmp_path / "streaming.json").read_text())
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
    assert "| scenario |" in (tmp_path / "streaming.md").read_text()
    assert (tmp_path / "streaming.png").read_bytes().startswith(b"\x89PNG")
    assert "hit path throughput" in done.stdout  # the table is printed too
