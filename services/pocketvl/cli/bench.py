"""``pocketvl bench``: the streaming benchmark (``make bench``), or one load of your own."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pocketvl.cli.extras import require_extra
from pocketvl.errors import PocketvlError


def add_bench_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from pocketvl.loadgen.suite import GROUPS, STAND_INS, SUITE

    bench = sub.add_parser(
        "bench",
        help="load over Kafka on a private stack: throughput, latency, CPU per request",
        description="Runs the benchmark suite (or one load given by --mix) against worker "
        "processes and the stand-in Triton models, and writes streaming.json, .md and .png, "
        "and the workers' scraped /metrics as metrics.json and .png.",
    )
    bench.add_argument(
        "--scenario",
        action="append",
        choices=sorted([*SUITE, *GROUPS]),
        help="run only these scenarios (repeatable; scale-out: scale-out-1 and -2); default: all",
    )
    bench.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply request counts and outage times (0.1 for a quick look)",
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("bench/results"),
        help="where the reports go (default: bench/results)",
    )
    own = bench.add_argument_group("one load of your own (instead of the suite)")
    own.add_argument("--mix", help="examples and weights, e.g. remote_sensing.vqa=3,medical.vqa")
    own.add_argument("--model", choices=STAND_INS, default="echo")
    own.add_argument("--requests", type=int, default=500)
    own.add_argument(
        "--rate", type=float, help="requests per second (default: as fast as possible)"
    )
    own.add_argument(
        "--repeats",
        type=float,
        default=0.0,
        help="share of requests repeating an earlier one (cache hits), 0..1",
    )
    bench.set_defaults(func=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    require_extra("devstack", "bench")
    from pocketvl.devstack import paths
    from pocketvl.loadgen import report
    from pocketvl.loadgen.plan import LoadPlan, load_examples, parse_mix
    from pocketvl.loadgen.runner import run_suite
    from pocketvl.loadgen.suite import SUITE, Scenario, select

    if args.scale <= 0:
        raise PocketvlError("--scale must be positive")
    examples = load_examples(paths.examples_dir())
    if args.mix:
        plan = LoadPlan(
            args.requests,
            args.rate,
            parse_mix(args.mix, list(examples)),
            repeat_fraction=args.repeats,
        )
        title = f"{args.model}, {args.mix}, {args.repeats:.0%} repeats"
        scenarios = [Scenario("custom", title, args.model, plan, prime=args.repeats >= 1.0)]
    else:
        scenarios = [s.scaled(args.scale) for s in select(args.scenario or list(SUITE))]
    with tempfile.TemporaryDirectory(prefix="pocketvl-bench-") as work:
        run = run_suite(scenarios, examples, paths.stand_in_repository(), Path(work))
    for path in report.write(run, args.out):
        print(f"wrote {path}")
    print()
    print(report.markdown(run))
    return 0
