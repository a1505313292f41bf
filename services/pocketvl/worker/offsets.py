"""Which offsets may be committed while records finish out of order: ``OffsetTracker``.

Per partition, the committable offset is the lowest offset handed out and not yet
finished (everything below it is answered, dead-lettered or skipped, with its result acked
by the broker), or one past the last offset handed out when nothing is pending. So a
commit never passes unfinished work, whatever order work completes in. Pure: no Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pocketvl.worker.ports import Partition


@dataclass
class _PartitionState:
    pending: set[int] = field(default_factory=set)
    next_offset: int | None = None  # one past the highest offset handed out
    committed: int | None = None


class OffsetTracker:
    def __init__(self) -> None:
        self._partitions: dict[Partition, _PartitionState] = {}

    def track(self, partition: Partition, offset: int) -> None:
        """``offset`` was received and is now in progress. A redelivered offset below what
        was already handed out (after a seek or a rebalance) is tracked as well."""
        state = self._partitions.setdefault(partition, _PartitionState())
        state.pending.add(offset)
        state.next_offset = max(state.next_offset or 0, offset + 1)

    def tracks(self, partition: Partition) -> bool:
        """Whether ``partition`` is tracked (records were received from it, not revoked)."""
        return partition in self._partitions

    def finish(self, partition: Partition, offset: int) -> None:
        """``offset`` is done. Unknown (revoked) partitions and offsets are ignored."""
        state = self._partitions.get(partition)
        if state is not None:
            state.pending.discard(offset)

    def pending(self, partition: Partition | None = None) -> int:
        states = (
            self._partitions.values()
            if partition is None
            else [self._partitions.get(partition, _PartitionState())]
        )
        return sum(len(state.pending) for state in states)

    def committable(self) -> dict[Partition, int]:
        """Per partition, the offset to commit now, where it moved past the last commit."""
        out = {}
        for partition, state in self._partitions.items():
            if state.next_offset is None:
                continue
            offset = min(state.pending) if state.pending else state.next_offset
            if state.committed is None or offset > state.committed:
                out[partition] = offset
        return out

    def restart_points(self, partitions: Iterable[Partition]) -> dict[Partition, int]:
        """Per partition of ``partitions`` that records were received from, the offset to
        read again from if it comes back: the lowest unfinished one, else the next."""
        out = {}
        for partition in partitions:
            state = self._partitions.get(partition)
            if state is not None and state.next_offset is not None:
                out[partition] = min(state.pending) if state.pending else state.next_offset
        return out

    def committed(self, offsets: dict[Partition, int]) -> None:
        for partition, offset in offsets.items():
            state = self._partitions.get(partition)
            if state is not None:
                state.committed = max(state.committed or 0, offset)

    def revoke(self, partitions: Iterable[Partition]) -> None:
        """Forget partitions this worker no longer owns; their in-flight results are
        published but never committed here (the new owner redelivers them)."""
        for partition in partitions:
            self._partitions.pop(partition, None)
