"""The commit rule, owned here and nowhere else.

A partition's committed offset is one past the longest run of *finished* messages,
counted in the order they were taken, from the last commit (or from the first message
taken after an assignment, which is where the fetch starts: Faust seeks every assigned
partition to its committed offset). It never passes a message that was taken and is
still running — a lead waiting for a slow partner, held in a batch window, or waiting
to be written — whatever order messages finish in.

Offsets the fetch never handed over (transaction markers, compacted records) are no
gap: the run is over the messages taken, so they are stepped over. A message the
fetch handed over but that was not taken (a rebalance started) belongs to an old
generation: the partition is revoked and read again from its commit, and :meth:`forget`
drops what was taken of it.

Pure bookkeeping with no Kafka import, so the rule is property-tested on its own
(tests/test_commit_ledger.py). Faust's own computation (``Consumer._new_offset``) let
the commit pass an unfinished lead: its guard is off by one and skipped when nothing
was committed yet.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field


@dataclass
class _Partition:
    taken: deque[int] = field(default_factory=deque)  # offsets taken and not yet committed, ascending
    members: set[int] = field(default_factory=set)  # the same offsets, for lookups
    finished: set[int] = field(default_factory=set)  # those of ``taken`` that finished

    def take(self, offset: int) -> None:
        if offset in self.members:
            return  # taken again (read again after a seek) while the first one runs
        self.members.add(offset)
        if not self.taken or offset > self.taken[-1]:
            self.taken.append(offset)
        else:  # read again after a seek: keep the order
            self.taken.insert(bisect.bisect(self.taken, offset), offset)


class CommitLedger:
    """Per partition, the messages taken and which of them finished."""

    def __init__(self) -> None:
        self._partitions: dict[Hashable, _Partition] = {}

    def take(self, tp: Hashable, offset: int) -> None:
        """A message starts: no commit may pass it until it finishes."""
        partition = self._partitions.get(tp)
        if partition is None:
            partition = self._partitions[tp] = _Partition()
        partition.take(offset)

    def finish(self, tp: Hashable, offset: int) -> bool:
        """The message's work is done (its output acknowledged, or deliberately deferred).
        False if it was not taken (or was forgotten): nothing changes then."""
        partition = self._partitions.get(tp)
        if partition is None or offset not in partition.members or offset in partition.finished:
            return False
        partition.finished.add(offset)
        return True

    def committable(self, tp: Hashable) -> int | None:
        """The offset to commit now (one past the run of finished messages at the head),
        or None when the oldest taken message is unfinished. The run is consumed: the
        next call counts from there."""
        run = self.finished_head(tp)
        return run[-1] + 1 if run else None

    def finished_head(self, tp: Hashable) -> list[int]:
        """The run of finished messages at the head, in order, consumed (the lead loop
        releases outputs with it under exactly-once: agents.inflight)."""
        partition = self._partitions.get(tp)
        if partition is None:
            return []
        taken, finished, members = partition.taken, partition.finished, partition.members
        run = []
        while taken and taken[0] in finished:
            offset = taken.popleft()
            finished.discard(offset)
            members.discard(offset)
            run.append(offset)
        return run

    def with_finished_head(self) -> Iterator[Hashable]:
        """Partitions whose oldest taken message finished (something to commit)."""
        for tp, partition in list(self._partitions.items()):
            if partition.taken and partition.taken[0] in partition.finished:
                yield tp

    def unfinished(self, tp: Hashable) -> int:
        partition = self._partitions.get(tp)
        return 0 if partition is None else len(partition.taken) - len(partition.finished)

    def oldest_unfinished(self, tp: Hashable) -> int | None:
        partition = self._partitions.get(tp)
        if partition is None:
            return None
        return next((offset for offset in partition.taken if offset not in partition.finished), None)

    def forget(self, tps: Iterable[Hashable]) -> None:
        """The partitions were revoked: the next owner reads them again from their commit."""
        for tp in tps:
            self._partitions.pop(tp, None)
