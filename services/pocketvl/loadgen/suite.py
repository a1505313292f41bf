"""The benchmark suite: what each scenario sends, to which stand-in model.

``echo`` answers at once, so it shows what the worker itself costs; ``fixed_latency`` takes
100 ms per batch of up to 16, as a GPU model roughly does, so it shows whether the worker
keeps Triton's batcher fed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pocketvl.domains.registry import REGISTRY
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

    def scaled(self, factor: float) -> Scenario:
        requests = max(8, int(self.plan.requests * factor))
        outage = None if self.outage is None else (self.outage[0] * factor, self.outage[1] * factor)
        return replace(self, plan=replace(self.plan, requests=requests), outage=outage)


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
    )
}
