"""A benchmark run as JSON (everything), Markdown (the table people read) and PNG plots:
answers over time from the answer topics (``streaming.png``), and the workers' own metrics
as scraped from ``/metrics`` (``metrics.png``, samples in ``metrics.json``)."""

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
    "scale-out": "≥ 1.8 × one process",
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
        "One worker process (`worker.max_in_flight` = 16) unless the scenario says otherwise;",
        "broker, Redis and Triton local, on the same CPUs. Every figure comes from the same",
        "run; compare ratios, not seconds.",
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
    lines += scale_out_table(run.get("scale_out"))
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
    if run.get("scraped"):
        lines += ["The workers' own /metrics, scraped every second during the run:", ""]
        lines += ["![the workers' metrics over the run](metrics.png)", ""]
    return "\n".join(lines)


def scale_out_table(pair: dict[str, Any] | None) -> list[str]:
    if not pair:
        return []
    lines = [
        "",
        "Scale-out: the same backlog of `fixed_latency` misses, worker processes in one group"
        f" ({pair['rows'][0]['max_in_flight']} in flight each), side by side in this run:",
        "",
        "| worker processes | req/s | × one process | Triton batch | worker CPU ms/req "
        "| records per process | lost | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in pair["rows"]:
        shares = " / ".join(f"{n:.0f}" for n in row["processed_by_worker"])
        target = TARGETS["scale-out"] if row["workers"] > 1 else ""
        lines.append(
            f"| {row['workers']} | {_n(row['throughput'])} | {_n(row['ratio'], 2)}× "
            f"| {_n(row['average_batch'])} | {_n(row['cpu_ms_per_request'], 2)} | {shares} "
            f"| {row['lost']} | {target} |"
        )
    return lines


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


PANELS = (  # title, unit, (column, legend) ...
    (
        "throughput by outcome",
        "records / s",
        (("answered_per_s", "answered"), ("dead_lettered_per_s", "dead-lettered")),
    ),
    ("in flight and waiting", "requests", (("in_flight", "in flight"), ("waiting", "waiting"))),
    ("consumer lag, all partitions", "records", (("lag", "lag"),)),
    (
        "p95 duration over 5 s (log scale)",
        "ms",
        (("process_p95_ms", "processing"), ("inference_p95_ms", "Triton")),
    ),
    ("cache lookups", "lookups / s", (("cache_hit_per_s", "hits"), ("cache_miss_per_s", "misses"))),
    (
        "readiness (/readyz false while Triton is down)",
        "workers",
        (("workers", "scraped"), ("ready", "/readyz ready")),
    ),
)


def plot_metrics(metrics: dict[str, Any], path: Path) -> None:
    """The workers' scraped metrics over the whole run, one panel per question an operator
    asks, each scenario's measured phase shaded and named, Triton's outage in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pocketvl.loadgen.timeseries import panels

    samples = metrics["samples"]
    start = min((float(s["t"]) for s in samples), default=0.0)
    rows = {int(r["t_s"]): r for r in panels(samples, start)}
    seconds = list(range(max(rows, default=0) + 1))  # seconds without a sample: gaps
    fig, axes = plt.subplots(len(PANELS), 1, figsize=(13, 2.1 * len(PANELS)), sharex=True)
    for ax, (title, unit, columns) in zip(axes, PANELS, strict=True):
        for n, (column, legend) in enumerate(columns):
            values = [rows[t].get(column, math.nan) if t in rows else math.nan for t in seconds]
            step = column in ("workers", "ready")
            ax.plot(  # the first line wide and the second dashed: equal values show both
                seconds,
                values,
                label=legend,
                drawstyle="steps-post" if step else "default",
                linewidth=3.0 if n == 0 else 1.3,
                linestyle="-" if n == 0 else "--",
                alpha=0.55 if n == 0 else 1.0,
            )
        ax.set_title(title, fontsize=9, loc="left")
        ax.set_ylabel(unit, fontsize=8)
        if unit == "ms":
            ax.set_yscale("log")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))  # off the data
        ax.grid(alpha=0.3)
        for i, phase in enumerate(metrics["phases"]):
            ax.axvspan(
                phase["start"] - start,
                phase["end"] - start,
                color="#4c72b0",
                alpha=0.06 if i % 2 else 0.12,
            )
        events = {e["name"]: e["t"] - start for e in metrics["events"]}
        if "Triton killed" in events and "Triton ready" in events:
            ax.axvspan(
                events["Triton killed"],
                events["Triton ready"],
                color="#c44e52",
                alpha=0.25,
                label="_Triton down",
            )
    for phase in metrics["phases"]:
        middle = (phase["start"] + phase["end"]) / 2 - start
        axes[0].annotate(
            phase["name"],
            (middle, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    axes[0].set_title(
        "throughput by outcome (shaded: each scenario's measured phase; red: Triton down)",
        fontsize=9,
        loc="left",
        pad=14,
    )
    axes[-1].set_xlabel("seconds since the first scrape (one scrape per worker per second)")
    fig.suptitle("pocketvl bench: the workers' /metrics, scraped every second", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write(run: dict[str, Any], directory: Path) -> list[Path]:
    """streaming.json/.md/.png, and metrics.json/.png where the run scraped its workers."""
    directory.mkdir(parents=True, exist_ok=True)
    metrics = run.get("metrics")
    run = {k: v for k, v in run.items() if k != "metrics"}
    run["scraped"] = bool(metrics and metrics["samples"])
    paths = [directory / "streaming.json", directory / "streaming.md", directory / "streaming.png"]
    paths[0].write_text(json.dumps(run, indent=2, allow_nan=True) + "\n")
    paths[1].write_text(markdown(run))
    plot(run, paths[2])
    if metrics and metrics["samples"]:
        paths += [directory / "metrics.json", directory / "metrics.png"]
        paths[3].write_text(json.dumps(metrics, separators=(",", ":")) + "\n")
        plot_metrics(metrics, paths[4])
    return paths
