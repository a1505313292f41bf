"""The scheduler on arbitrary arrivals, completions and revocations (hypothesis)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from pocketvl.worker.envelope import InboundRecord
from pocketvl.worker.ports import Partition
from pocketvl.worker.scheduling import Job, Scheduler

BUDGETS = {"a": 1, "b": 2, None: 3}
MODELS = st.sampled_from(["a", "b", None])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 2), st.integers(0, 3), MODELS),
        st.tuples(st.just("take"), st.integers(1, 4)),
        st.tuples(st.just("finish"), st.integers(0, 50)),
        st.tuples(st.just("revoke"), st.integers(0, 2)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_budgets_lanes_and_order_hold_whatever_happens(ops: list[tuple[object, ...]]) -> None:
    scheduler = Scheduler(lambda model: BUDGETS[model])
    running: list[Job] = []
    offsets: Counter[int] = Counter()
    started: dict[object, list[int]] = {}  # lane -> offsets started, in order
    revoked: set[int] = set()
    for op in ops:
        if op[0] == "add":
            _, partition, key, model = op
            assert isinstance(partition, int)
            if partition in revoked:
                continue
            offset = offsets[partition]
            offsets[partition] += 1
            record = InboundRecord("t", partition, offset, str(key).encode(), b"")
            scheduler.add(Job(record, (partition, key), model if isinstance(model, str) else None))
        elif op[0] == "take":
            assert isinstance(op[1], int)
            for job in scheduler.take(op[1]):
                running.append(job)
                started.setdefault(job.lane, []).append(job.inbound.offset)
        elif op[0] == "finish" and running:
            assert isinstance(op[1], int)
            scheduler.finished(running.pop(op[1] % len(running)))
        elif op[0] == "revoke":
            assert isinstance(op[1], int)
            revoked.add(op[1])
            scheduler.drop({Partition("t", op[1])})
        by_model = Counter(job.model for job in running)
        assert all(n <= BUDGETS[m] for m, n in by_model.items())
        assert all(scheduler.running[m] == by_model[m] for m in BUDGETS)
        lanes = [job.lane for job in running]
        assert len(lanes) == len(set(lanes)), "two jobs of one lane at once"
    for lane_offsets in started.values():
        assert lane_offsets == sorted(lane_offsets), "a lane ran out of order"
    # Finish everything: every job not revoked is eventually started.
    while running or scheduler.buffered:
        for job in running:
            scheduler.finished(job)
        running = scheduler.take(10)
        for job in running:
            started.setdefault(job.lane, []).append(job.inbound.offset)
    assert scheduler.buffered == 0
    assert sum(scheduler.waiting.values()) == 0
