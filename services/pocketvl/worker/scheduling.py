"""Which received record runs next: one at a time per lane, and a budget per Triton model.

A lane is what must stay in order (a key, a partition, or nothing: see ``worker.ordering``).
Records wait in their lane; a lane whose head record is for a model at its budget waits,
and the other models' lanes go on, so a slow model never starves a fast one. Pure: the
consumer loop feeds it and asks it; tests drive it directly.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from pocketvl.worker.envelope import InboundRecord
from pocketvl.worker.ports import Partition
from pocketvl.worker.route_book import RouteTable


@dataclass(frozen=True)
class Job:
    inbound: InboundRecord
    lane: Hashable
    model: str | None  # the Triton model its route names; None: not routable (a DLQ record)
    parsed: object = None  # the value's JSON, parsed once on receipt
    seen: bool | None = None  # its event already answered (one done-store lookup per poll)
    routes: RouteTable | None = None  # the routes it was received with: it finishes on them

    @property
    def partition(self) -> Partition:
        return Partition(self.inbound.topic, self.inbound.partition)


class Scheduler:
    def __init__(self, budget: Callable[[str | None], int]) -> None:
        self.budget = budget
        self._lanes: dict[Hashable, deque[Job]] = {}
        self._busy: set[Hashable] = set()  # lanes with a job running
        self._ready: dict[str | None, deque[Hashable]] = {}  # by the head job's model
        self.running: Counter[str | None] = Counter()
        self.waiting: Counter[str | None] = Counter()
        self._feeding: dict[str | None, Counter[Partition]] = {}  # waiting jobs' partitions

    @property
    def buffered(self) -> int:
        return sum(self.waiting.values())

    def feeding(self, model: str | None) -> set[Partition]:
        """The partitions that have jobs for ``model`` waiting."""
        return {p for p, n in self._feeding.get(model, Counter()).items() if n > 0}

    def add(self, job: Job) -> None:
        waiting = self._lanes.setdefault(job.lane, deque())
        waiting.append(job)
        if job.lane not in self._busy and len(waiting) == 1:
            self._ready.setdefault(job.model, deque()).append(job.lane)
        self.waiting[job.model] += 1
        self._feeding.setdefault(job.model, Counter())[job.partition] += 1

    def take(self, limit: int) -> list[Job]:
        """Up to ``limit`` jobs to start now, taken in turn from each model under budget."""
        taken: list[Job] = []
        progress = True
        while len(taken) < limit and progress:
            progress = False
            for model, lanes in self._ready.items():
                if not lanes or self.running[model] >= self.budget(model):
                    continue
                lane = lanes.popleft()
                job = self._lanes[lane].popleft()
                self._busy.add(lane)
                self.running[model] += 1
                self.waiting[model] -= 1
                self._feeding[model][job.partition] -= 1
                taken.append(job)
                progress = True
                if len(taken) == limit:
                    break
        return taken

    def finished(self, job: Job) -> None:
        """``job`` is settled: its lane may start its next job."""
        self.running[job.model] -= 1
        self._busy.discard(job.lane)
        waiting = self._lanes.get(job.lane)
        if waiting:
            self._ready.setdefault(waiting[0].model, deque()).append(job.lane)
        else:
            self._lanes.pop(job.lane, None)

    def drop(self, partitions: set[Partition]) -> None:
        """Forget the waiting jobs of revoked ``partitions`` (their new owner reads them)."""
        for lane, waiting in list(self._lanes.items()):
            kept = deque(j for j in waiting if j.partition not in partitions)
            for job in waiting:
                if job.partition in partitions:
                    self.waiting[job.model] -= 1
                    self._feeding[job.model][job.partition] -= 1
            if kept or lane in self._busy:
                self._lanes[lane] = kept
            else:
                del self._lanes[lane]
        # Ready lanes whose head was dropped are queued again under their new head's model.
        ready: dict[str | None, deque[Hashable]] = {}
        for lanes in self._ready.values():
            for lane in lanes:
                if self._lanes.get(lane):
                    ready.setdefault(self._lanes[lane][0].model, deque()).append(lane)
        self._ready = ready
