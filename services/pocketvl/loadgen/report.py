"""A benchmark run as JSON (everything), Markdown (the table people read) and a PNG plot."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path
from typing import Any

TARGETS = {  # the targets, checked against each run
    "fixed-latency": "≥ 0.8 × direct",
    "echo": "≥ 0.8 × direct",
    "cpu_miss": "≤ 1 ms",
    "cpu_hit": "≤ 0.3 ms",
    "hits": "≥ 3,000 req/s",
    "outage": "0 DLQ; all answered ≤ 60 s after return",
}


def machine() -> dict[str, Any]:
    import os

    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _n(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def markdown(run: dict[str, Any]) -> str:
    by = {s["name"]: s for s in run["scenarios"]}
    m = run["machine"]
    lines = [
        "# Streaming benchmark",
        "",
        f"{run['started']}; {m['cpus']} CPUs ({m['cpu']}), {m['system']}, Python {m['python']}.",
        "One worker process (`worker.max_in_flight` = 16); broker, Redis and Triton local, on",
        "the same CPUs. Every figure comes from the same run; compare ratios, not seconds.",
        "",
        "| | direct tritonclient, 16 in flight | worker | worker / direct | target |",
        "|---|---|---|---|---|",
    ]
    for name in ("fixed-latency", "echo"):
        if name in by:
            s = by[name]
            d, w = s["direct"], s["worker"]
            lines.append(
                f"| `{s['model']}` | {_n(d['throughput'])} req/s, batch {_n(d['average_batch'])} "
                f"| {_n(w['throughput'])} req/s, batch {_n(w['average_batch'])} "
                f"| {_n(s['worker_vs_direct'], 2)}× | {TARGETS[name]} |"
            )
    worker_rows = [  # (scenario, row, figure, unit, target)
        ("echo", "worker CPU per request, miss path", "cpu_ms_per_request", "ms", "cpu_miss"),
        ("hits", "worker CPU per request, hit path", "cpu_ms_per_request", "ms", "cpu_hit"),
        ("hits", "hit path throughput", "throughput", "req/s", "hits"),
    ]
    for name, what, figure, unit, target in worker_rows:
        if name in by:
            value = by[name]["worker"][figure]
            digits = 2 if unit == "ms" else 1
            lines.append(f"| {what} | — | {_n(value, digits)} {unit} | | {TARGETS[target]} |")
    if "outage" in by:
        o = by["outage"]["outage"]
        lines.append(
            f"| Triton down {_n(o['down_s'])} s under load | — | {o['dead_lettered']} DLQ; "
            f"last answer {_n(o['last_answer_after_return_s'])} s after return | | "
            f"{TARGETS['outage']} |"
        )
    lines += [
        "",
        "| scenario | requests | answered | DLQ | lost | duplicates | req/s | p50 ms | p95 ms "
        "| p99 ms | cache hits | CPU ms/req |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in run["scenarios"]:
        w = s["worker"]
        lat = w["latency_ms"]
        lines.append(
            f"| {s['title']} | {w['requests']} | {w['answered']} | {w['dead_lettered']} "
            f"| {w['lost']} | {w['duplicates']} | {_n(w['throughput'])} | {_n(lat['p50'], 0)} "
            f"| {_n(lat['p95'], 0)} | {_n(lat['p99'], 0)} | {w['cache_hit_ratio']:.0%} "
            f"| {_n(w['cpu_ms_per_request'], 2)} |"
        )
    if run.get("decode"):
        lines += [
            "",
            "Decoding and composing one request in the worker (CPU ms, median of 5):",
            "",
            "| example | inputs | ms |",
            "|---|---|---|",
        ]
        for name, entry in run["decode"].items():
            lines.append(f"| {name} | {entry['inputs']} | {_n(entry['cpu_ms'], 2)} |")
    lines += ["", "![throughput and latency over time](streaming.png)", ""]
    return "\n".join(lines)


def plot(run: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = run["scenarios"]
    fig, axes = plt.subplots(len(scenarios), 2, figsize=(11, 2.6 * len(scenarios)), squeeze=False)
    for row, s in zip(axes, scenarios, strict=True):
        timeline = s["worker"]["timeline"]
        t = [b["t_s"] for b in timeline]
        row[0].bar(t, [b["per_s"] for b in timeline], width=1.0, align="edge", color="#4c72b0")
        row[0].set_ylabel("answers / s")
        row[0].set_title(s["title"], fontsize=9, loc="left")
        row[1].plot(t, [b["p50_ms"] for b in timeline], label="p50")
        row[1].plot(t, [b["p95_ms"] for b in timeline], label="p95")
        row[1].set_ylabel("latency ms")
        row[1].legend(fontsize=8, loc="upper left")
        if "outage" in s:
            down = s["outage"]
            start = down["killed_at_s"]
            for ax in row:
                ax.axvspan(start, start + down["down_s"], color="#dd8452", alpha=0.25)
    for ax in axes[-1]:
        ax.set_xlabel("seconds since the first request")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write(run: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "streaming.json", directory / "streaming.md", directory / "streaming.png"]
    paths[0].write_text(json.dumps(run, indent=2, allow_nan=True) + "\n")
    paths[1].write_text(markdown(run))
    plot(run, paths[2])
    return paths
