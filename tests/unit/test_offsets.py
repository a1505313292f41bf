"""The offset tracker commits only what is finished, in any completion order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pocketvl.worker.offsets import OffsetTracker
from pocketvl.worker.ports import Partition

P0, P1 = Partition("t", 0), Partition("t", 1)


def test_a_gap_holds_the_commit_back_until_it_is_finished() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.track(P0, offset)
    tracker.finish(P0, 11)
    tracker.finish(P0, 12)
    assert tracker.committable() == {P0: 10}  # 10 is still running
    tracker.committed({P0: 10})
    assert tracker.committable() == {}
    tracker.finish(P0, 10)
    assert tracker.committable() == {P0: 13}


def test_revoked_partitions_are_forgotten_and_late_finishes_ignored() -> None:
    tracker = OffsetTracker()
    tracker.track(P0, 0)
    tracker.track(P1, 5)
    tracker.revoke([P1])
    tracker.finish(P1, 5)
    tracker.finish(P0, 0)
    assert tracker.committable() == {P0: 1}
    assert tracker.pending() == 0


@given(
    st.dictionaries(
        st.sampled_from([P0, P1]),
        st.lists(st.integers(0, 60), min_size=1, max_size=40, unique=True),
        min_size=1,
    ),
    st.randoms(use_true_random=False),
    st.lists(st.integers(0, 60), max_size=10),
)
def test_no_commit_ever_passes_unfinished_work(
    received: dict[Partition, list[int]], rng: object, extra_finishes: list[int]
) -> None:
    import random

    assert isinstance(rng, random.Random)
    tracker = OffsetTracker()
    for partition, offsets in received.items():
        for offset in sorted(offsets):
            tracker.track(partition, offset)
    work = [(p, o) for p, offsets in received.items() for o in offsets]
    rng.shuffle(work)
    done: set[tuple[Partition, int]] = set()
    last: dict[Partition, int] = {}
    for index, (partition, offset) in enumerate(work):
        tracker.finish(partition, offset)
        tracker.finish(partition, offset)  # a duplicate completion changes nothing
        if index < len(extra_finishes):
            tracker.finish(partition, extra_finishes[index] + 1000)  # never handed out
        done.add((partition, offset))
        commit = tracker.committable()
        for p, committed in commit.items():
            unfinished = [o for o in received[p] if (p, o) not in done]
            assert all(committed <= o for o in unfinished)  # never past unfinished work
            assert committed > last.get(p, -1)  # only forward
            last[p] = committed
        tracker.committed(commit)
    for partition, offsets in received.items():
        assert last[partition] == max(offsets) + 1  # everything finished: all committed


def test_restart_points_are_the_lowest_unfinished_offset_or_the_next() -> None:
    tracker = OffsetTracker()
    for offset in (4, 5, 6):
        tracker.track(P0, offset)
    tracker.finish(P0, 4)
    tracker.finish(P0, 6)
    tracker.track(P1, 9)
    tracker.finish(P1, 9)
    assert tracker.restart_points([P0, P1, Partition("never", 0)]) == {P0: 5, P1: 10}
