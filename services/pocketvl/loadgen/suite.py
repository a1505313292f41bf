"""The benchmark suite: what each scenario sends, to which stand-in model.

``echo`` answers at once, so it shows what the worker itself costs; ``fixed_latency`` takes
100 ms per batch of up to 16, as a GPU model roughly does, so it shows whether the worker
keeps Triton's batcher fed. ``scale-out`` drains the same backlog of ``fixed_latency``
misses with one worker process and then with two in the same consumer group.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pocketvl.domains.registry import REGISTRY
from pocketvl.errors import PocketvlError
from pocketvl.loadgen.plan import LoadPlan

STAND_INS = ("echo", "fixed_latency")
RS_VQA = {"remote_sensing.vqa": 1.0}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    model: str
    plan: LoadPlan
    prime: bool = False  # answer each request's first occurrence before the clock starts
    direct: bool = False  # also drive the model directly at the worker's concurrency
    outage: tuple[float, float] | None = None  # kill Triton after .0 s, for .1 s
    workers: int = 1  # worker processes in the one consumer group
    partitions: int = 3  # of every topic the scenario creates
    max_in_flight: int | None = None  # per worker process; None: the setting's default

    def scaled(self, factor: float) -> Scenario:
        requests = max(8, int(self.plan.requests * factor))
        outage = None if self.outage is None else (self.outage[0] * factor, self.outage[1] * factor)
        return replace(self, plan=replace(self.plan, requests=requests), outage=outage)


# The scale-out pair: 8 partitions (4 per process with two), keys spread evenly over them, and
# 8 in flight per process. One process is then capped by its in-flight budget (8 requests per
# two 100 ms batches: ~40 req/s); two double the budget while Triton's batches (8 of 16) and
# the workers' CPU (~80 req/s x ~6 ms, half a core) stay below what the machine has, so the
# number of processes is the only thing that differs.
SCALE_OUT_PARTITIONS = 8
SCALE_OUT_IN_FLIGHT = 8


def _scale_out(workers: int) -> Scenario:
    processes = "1 worker process" if workers == 1 else f"{workers} worker processes"
    return Scenario(
        f"scale-out-{workers}",
        f"fixed_latency, misses, backlog: {processes}, one group, "
        f"{SCALE_OUT_PARTITIONS} partitions, {SCALE_OUT_IN_FLIGHT} in flight each",
        "fixed_latency",
        LoadPlan(600 * workers, None, RS_VQA, keys=64, even_partitions=SCALE_OUT_PARTITIONS),
        workers=workers,
        partitions=SCALE_OUT_PARTITIONS,
        max_in_flight=SCALE_OUT_IN_FLIGHT,
    )


SUITE = {
    s.name: s
    for s in (
        Scenario(
            "fixed-latency",
            "fixed_latency (100 ms per batch, max batch 16), misses, backlog",
            "fixed_latency",
            LoadPlan(800, None, RS_VQA),
            direct=True,
        ),
        Scenario(
            "echo", "echo, misses, backlog", "echo", LoadPlan(1500, None, RS_VQA), direct=True
        ),
        Scenario(
            "hits",
            "echo, every request a cache hit, backlog",
            "echo",
            LoadPlan(3000, None, RS_VQA, repeat_fraction=1.0),
            prime=True,
        ),
        Scenario(
            "mix",
            "echo, every domain and task, 25% repeats, backlog",
            "echo",
            LoadPlan(
                800,
                None,
                dict.fromkeys((s.example_file()[:-5] for s in REGISTRY), 1.0),
                repeat_fraction=0.25,
            ),
        ),
        Scenario(
            "outage",
            "fixed_latency at 20 req/s, Triton killed mid-run (30 s at scale 1)",
            "fixed_latency",
            LoadPlan(1000, 20.0, RS_VQA),
            outage=(5.0, 30.0),
        ),
        _scale_out(1),
        _scale_out(2),
    )
}
GROUPS = {"scale-out": ("scale-out-1", "scale-out-2")}  # run side by side, compared


def select(names: list[str]) -> list[Scenario]:
    """Scenarios by name or group name, in the order given, each once."""
    chosen: list[str] = []
    for name in names:
        for member in GROUPS.get(name, (name,)):
            if member not in SUITE:
                raise PocketvlError(f"no scenario {member!r}; there are: {', '.join(SUITE)}")
            if member not in chosen:
                chosen.append(member)
    return [SUITE[name] for name in chosen]
